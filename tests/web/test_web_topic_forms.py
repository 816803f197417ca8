"""The topic form offers only what the plan allows, and speaks in its own units."""

from __future__ import annotations

from clusters.plans import PLANS
from web.pages.topics import TopicCreateForm


def _form(plan: str, **data):
    return TopicCreateForm({"name": "orders", "partitions": "1", **data}, plan=PLANS[plan])


def test_retention_choices_stop_at_the_plans_limit():
    basic = dict(_form("basic").fields["retention"].choices)
    assert "604800000" in basic and "2592000000" not in basic and "-1" not in basic
    standard = dict(_form("standard").fields["retention"].choices)
    assert "2592000000" in standard and "-1" not in standard
    assert "-1" in dict(_form("dedicated").fields["retention"].choices)


def test_a_retention_beyond_the_plan_is_refused_in_days():
    form = _form("basic", retention="2592000000")
    assert not form.is_valid()
    message = form.errors["retention"][0]
    assert "7 days" in message and "604800000" not in message


def test_partitions_are_capped_by_the_plan():
    form = _form("basic", partitions="1000")
    assert not form.is_valid()
    assert form.errors["partitions"] == ["The Basic plan allows at most 100 partitions per cluster."]
    assert _form("basic", partitions="100").is_valid()
    assert 'max="100"' in str(_form("basic")["partitions"])


def test_a_bad_name_and_bad_partitions_are_reported_together():
    form = _form("basic", name="bad name!", partitions="0")
    assert not form.is_valid()
    assert set(form.errors) == {"name", "partitions"}
