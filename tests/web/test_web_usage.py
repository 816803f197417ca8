"""The usage page: readable chart axes over the window asked for, one money format for totals and
tables, and no control-plane credential among the tenant's costs."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from accounts.models import Role
from clusters.models import INTERNAL_USERNAME
from metering import services as metering_services
from tests.platform.factories import BrokerFactory, ClusterFactory, MembershipFactory
from tests.platform.metering.promtext import metrics_text
from web import usage
from web.charts import Series, line_chart

pytestmark = pytest.mark.django_db


def _labels(svg: str, axis: str) -> list[str]:
    return re.findall(rf'<text class="axis {axis}"[^>]*>([^<]*)</text>', str(svg))


def test_a_tiny_storage_axis_has_distinct_labels():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    svg = line_chart(
        [Series("Stored", [(t0, 0.0), (t0 + dt.timedelta(hours=1), 1.0)])], title="Storage", whole=True
    )
    labels = _labels(svg, "y")
    assert len(labels) == len(set(labels)) == 5, labels
    assert labels == ["0 B", "1 B", "2 B", "3 B", "4 B"]  # whole bytes, never "1.2 B"


def test_the_seven_day_axis_spans_seven_days(db):
    broker = BrokerFactory(node_id=1)
    now = timezone.now()
    metering_services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("KEY1", "t"): (5000, 5, 0, 0)}, {("t", 0): 3}), taken_at=now
    )
    charts = usage.organization_charts(broker.cluster.organization, days=7)
    labels = _labels(charts["traffic"], "x")
    today = now.astimezone(dt.UTC).date()
    assert labels[0] == (today - dt.timedelta(days=6)).strftime("%b %d")
    assert labels[-1] == today.strftime("%b %d")
    assert "00:00" not in labels


def test_last_hour_and_last_day_draw_different_ranges(db):
    broker = BrokerFactory(node_id=1)
    now = timezone.now()
    for minutes_ago, total in ((300, 1000), (240, 2000), (30, 3000), (1, 4000)):
        metering_services.usage_record_scrape(
            broker=broker,
            scrape=metrics_text({("KEY1", "t"): (total, 1, 0, 0)}, {("t", 0): total}),
            taken_at=now - dt.timedelta(minutes=minutes_ago),
        )
    hour = usage.cluster_charts(broker.cluster, window="hour")
    day = usage.cluster_charts(broker.cluster, window="day")
    fmt = "%H:%M"
    assert _labels(hour["storage"], "x")[0] == (now - dt.timedelta(hours=1)).astimezone(dt.UTC).strftime(fmt)
    assert _labels(day["storage"], "x")[0] == (now - dt.timedelta(days=1)).astimezone(dt.UTC).strftime(fmt)
    assert str(hour["throughput"]) != str(day["throughput"])


def test_month_total_and_costs_agree_and_the_internal_credential_is_not_a_key(client):
    membership = MembershipFactory(role=Role.OWNER)
    client.force_login(membership.user)
    cluster = ClusterFactory(organization=membership.organization, name="billing")
    broker = BrokerFactory(cluster=cluster, node_id=1)
    now = timezone.now()
    series = {("KEY1", "orders"): (1_000_000, 10, 0, 0), (INTERNAL_USERNAME, "orders"): (9_000, 3, 9_000, 3)}
    metering_services.usage_record_scrape(
        broker=broker, scrape=metrics_text(series, {("orders", 0): 10}), taken_at=now
    )
    html = client.get("/usage/").content.decode()
    assert INTERNAL_USERNAME not in html
    total = re.search(r'id="month-total">([^<]+)<', html).group(1)
    assert total != "$0.00"
    cluster_cost = re.search(r'class="num cost">([^<]+)<', html).group(1)
    assert total == cluster_cost
