"""Billing: prices, costs, invoices, credit, spend cap and the REST API (PostgreSQL, no brokers)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone

from accounts.audit import SYSTEM
from metering import selectors, services
from metering.models import BillingAccount, HourlyUsage, Invoice, PriceBook
from tests.platform.api import assert_error, assert_page
from tests.platform.factories import ClusterFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = timezone.now()
THIS_HOUR = NOW.replace(minute=0, second=0, microsecond=0)
BASIC = {"base": Decimal("0.10"), "in": Decimal("0.05"), "out": Decimal("0.05"), "gbm": Decimal("0.10"),
         "ph": Decimal("0.0001")}  # fmt: skip


def usage(cluster, principal="", topic="", hour=THIS_HOUR, **values):
    return HourlyUsage.objects.create(
        organization=cluster.organization,
        cluster=cluster,
        principal=principal,
        topic=topic,
        hour=hour,
        **values,
    )


def r6(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def r2(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture
def billed(tenant):
    cluster = ClusterFactory(organization=tenant.organization, plan="basic", name="prod")
    usage(cluster, "KEY1", "orders", bytes_in=3_000_000_000, records_in=3000, bytes_out=1_000_000_000)
    usage(cluster, "KEY2", "clicks", bytes_in=500_000_000, records_in=5, bytes_out=2_500_000_000)
    usage(cluster, "", "orders", storage_byte_seconds=2 * 10**9 * 3600, partition_ms=3 * 3_600_000)
    usage(cluster, "", "", cluster_ms=3_600_000, schema_ms=5 * 3_600_000)  # schemas: metered, not priced
    return cluster


def hand_cost() -> dict[str, Decimal]:
    # 3.5 GB in, 3.5 GB out, 2 GB-hours stored (= 2/730 GB-month), 3 partition-hours, 1 cluster-hour.
    return {
        "base": r6(Decimal(1) * BASIC["base"]),
        "ingress": r6(Decimal("3.5") * BASIC["in"]),
        "egress": r6(Decimal("3.5") * BASIC["out"]),
        "storage": r6(Decimal(2) * BASIC["gbm"] / Decimal(730)),
        "partitions": r6(Decimal(3) * BASIC["ph"]),
    }


def test_plans_serve_prices(api_client):
    body = api_client.get("/api/v1/plans").json()
    basic = {p["name"]: p for p in body["results"]}["basic"]
    assert basic["prices"]["per_gb_in"] == "0.05000000" and basic["prices"]["currency"] == "USD"
    assert basic["max_partitions"] == 100
    PriceBook.objects.create(
        plan="basic", effective_from=NOW.date(), base_per_hour="0.2", per_gb_in="0.06", per_gb_out="0.05",
        per_gb_month_stored="0.1", per_partition_hour="0.0001",
    )  # fmt: skip
    assert api_client.get("/api/v1/plans/basic").json()["prices"]["per_gb_in"] == "0.06000000"


def test_costs_by_cluster_key_topic_day_match_a_hand_computation(tenant, billed):
    expected = hand_cost()
    body = tenant.client.get("/api/v1/billing/costs", {"group_by": "cluster"}).json()
    [group] = assert_page(body)
    assert group["cluster"] == billed.public_id and group["cluster_name"] == "prod"
    lines = {line["dimension"]: line for line in group["lines"]}
    assert {k: Decimal(v["amount"]) for k, v in lines.items()} == expected
    assert lines["ingress"]["quantity"] == "3.500000000" and lines["ingress"]["unit"] == "GB"
    assert lines["storage"]["unit"] == "GB-month" and lines["base"]["unit"] == "cluster-hour"
    assert Decimal(group["amount"]) == sum(expected.values())

    by_key = {
        g["api_key"]: g for g in tenant.client.get("/api/v1/billing/costs?group_by=api_key").json()["results"]
    }
    assert set(by_key) == {"KEY1", "KEY2", None}
    key1 = {line["dimension"]: Decimal(line["amount"]) for line in by_key["KEY1"]["lines"]}
    assert key1 == {"ingress": r6(Decimal(3) * BASIC["in"]), "egress": r6(Decimal(1) * BASIC["out"])}
    assert {line["dimension"] for line in by_key[None]["lines"]} == {"base", "storage", "partitions"}

    by_topic = {
        g["topic"]: g for g in tenant.client.get("/api/v1/billing/costs?group_by=topic").json()["results"]
    }
    assert set(by_topic) == {"orders", "clicks", None}
    [day] = tenant.client.get("/api/v1/billing/costs?group_by=day").json()["results"]
    assert day["day"] == str(THIS_HOUR.date()) and Decimal(day["amount"]) == sum(expected.values())

    empty = tenant.client.get("/api/v1/billing/costs", {"start_date": "2020-01-01", "end_date": "2020-02-01"})
    assert empty.json()["results"] == []
    assert_error(tenant.client.get("/api/v1/billing/costs?group_by=nope"), 400, "validation_error")
    assert_error(tenant.client.get("/api/v1/billing/costs?start_date=2025-02-01&end_date=2025-01-01"), 400)


def test_usage_api_rows_and_cross_tenant(tenant, other_tenant, billed):
    body = tenant.client.get("/api/v1/usage", {"cluster": billed.public_id}).json()
    rows = {(r["api_key"], r["topic"]): r for r in assert_page(body)}
    assert rows[("KEY1", "orders")]["bytes_in"] == 3_000_000_000
    assert rows[("KEY1", "orders")]["hour"] == THIS_HOUR.isoformat().replace("+00:00", "Z")
    assert rows[(None, "orders")]["storage_byte_hours"] == "2000000000.000000"
    assert rows[(None, "orders")]["partition_hours"] == "3.000000"
    assert rows[(None, None)]["cluster_hours"] == "1.000000"
    assert rows[(None, None)]["schema_hours"] == "5.000000"
    days = tenant.client.get("/api/v1/usage?group_by=day").json()["results"]
    assert {(r["api_key"], r["day"]) for r in days} >= {("KEY1", str(THIS_HOUR.date()))}

    other = other_tenant.client
    assert_error(other.get("/api/v1/usage", {"cluster": billed.public_id}), 404)
    assert other.get("/api/v1/usage").json()["results"] == []
    assert other.get("/api/v1/billing/costs").json()["results"] == []
    invoice = services.invoice_close(
        organization=tenant.organization, month=NOW.date(), allow_open_month=True
    )
    assert other.get("/api/v1/billing/invoices").json()["results"] == []
    assert_error(other.get(f"/api/v1/billing/invoices/{invoice.public_id}"), 404)
    assert tenant.client.get(f"/api/v1/billing/invoices/{invoice.public_id}").status_code == 200
    assert Decimal(other.get("/api/v1/billing/credit").json()["granted"]) == 0


def test_invoice_lines_credit_and_idempotence(tenant, billed):
    services.credit_grant_trial(organization=tenant.organization)
    credit = tenant.client.get("/api/v1/billing/credit").json()
    expected_cost = sum(hand_cost().values())
    assert Decimal(credit["granted"]) == Decimal("400.00")
    assert Decimal(credit["remaining"]) == Decimal("400") - expected_cost  # the credit falls by the cost

    month = NOW.date().replace(day=1)
    with pytest.raises(services.Conflict):
        services.invoice_close(organization=tenant.organization, month=month)  # the month has not ended
    invoice = services.invoice_close(organization=tenant.organization, month=month, allow_open_month=True)
    again = services.invoice_close(organization=tenant.organization, month=month, allow_open_month=True)
    assert again.pk == invoice.pk and Invoice.objects.count() == 1
    cents = {
        "base": r2(BASIC["base"]), "ingress": r2(Decimal("3.5") * BASIC["in"]),
        "egress": r2(Decimal("3.5") * BASIC["out"]), "storage": r2(Decimal(2) * BASIC["gbm"] / 730),
        "partitions": r2(Decimal(3) * BASIC["ph"]),
    }  # fmt: skip
    body = tenant.client.get(f"/api/v1/billing/invoices/{invoice.public_id}").json()
    assert {line["dimension"]: Decimal(line["amount"]) for line in body["lines"]} == cents
    assert Decimal(body["subtotal"]) == sum(cents.values()) == Decimal("0.46")
    assert Decimal(body["credit_applied"]) == Decimal("0.46") and Decimal(body["total"]) == 0
    assert body["month"] == f"{month:%Y-%m}" and body["lines"][0]["cluster"] == billed.public_id
    listed = assert_page(tenant.client.get("/api/v1/billing/invoices").json())
    assert [i["id"] for i in listed] == [invoice.public_id] and "lines" not in listed[0]
    credit = tenant.client.get("/api/v1/billing/credit").json()
    assert Decimal(credit["applied_to_invoices"]) == Decimal("0.46")
    assert Decimal(credit["remaining"]) == Decimal("399.54")
    assert tenant.organization.audit_events.filter(action="invoice.close").count() == 1


def test_credit_pays_part_of_an_invoice(tenant):
    cluster = ClusterFactory(organization=tenant.organization, plan="standard")
    services.credit_grant_trial(organization=tenant.organization, amount=Decimal("1.00"))
    last_month = services.month_start(services.month_start(NOW) - dt.timedelta(days=1))
    usage(cluster, hour=last_month, cluster_ms=10 * 3_600_000)  # 10 h x $0.75
    invoice = services.invoice_close(organization=tenant.organization, month=last_month.date())
    assert (invoice.subtotal, invoice.credit_applied, invoice.total) == (
        Decimal("7.50"), Decimal("1.00"), Decimal("6.50"),
    )  # fmt: skip
    assert Decimal(tenant.client.get("/api/v1/billing/credit").json()["remaining"]) == 0


def test_close_due_invoices_after_month_end(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    usage(cluster, hour=dt.datetime(2025, 1, 31, 23, tzinfo=UTC), cluster_ms=3_600_000)
    assert services.invoices_close_due(now=dt.datetime(2025, 2, 1, 0, 30, tzinfo=UTC)) == []  # grace
    [closed] = services.invoices_close_due(now=dt.datetime(2025, 2, 1, 2, tzinfo=UTC))
    assert Invoice.objects.get(public_id=closed).month == dt.date(2025, 1, 1)
    assert services.invoices_close_due(now=dt.datetime(2025, 2, 1, 3, tzinfo=UTC)) == []


def test_spend_cap_throttles_lifts_and_is_owner_only(tenant, billed):
    member = tenant.member("admin").client
    assert_error(member.put("/api/v1/billing/spend-cap", {"spend_cap": "1.00"}), 403)
    assert member.get("/api/v1/billing/spend-cap").json()["spend_cap"] is None

    cost = sum(hand_cost().values())
    body = tenant.client.put("/api/v1/billing/spend-cap", {"spend_cap": "0.10"}).json()
    assert body["throttled"] is True and Decimal(body["month_to_date_cost"]) == cost
    events = tenant.organization.audit_events
    assert events.filter(action="billing.spend_cap.update").count() == 1
    throttle = events.get(action="billing.spend_cap.throttle")
    assert throttle.details["clusters"] == [billed.public_id] and throttle.actor_label == SYSTEM.label

    body = tenant.client.put("/api/v1/billing/spend-cap", {"spend_cap": "100.00"}).json()
    assert body["throttled"] is False and body["spend_cap"] == "100.00"
    assert events.filter(action="billing.spend_cap.lift").count() == 1

    # A new month: month-to-date cost restarts from zero, so the throttle lifts.
    BillingAccount.objects.filter(organization=tenant.organization).update(spend_cap="0.10")
    assert services.spend_caps_evaluate() == [f"{tenant.organization.public_id}:throttle"]
    next_month = services.next_month(services.month_start(NOW))
    assert services.spend_caps_evaluate(now=next_month + dt.timedelta(minutes=1)) == [
        f"{tenant.organization.public_id}:lift"
    ]
    assert_error(tenant.client.put("/api/v1/billing/spend-cap", {"spend_cap": "-1"}), 400, "validation_error")


def test_signup_grants_the_trial_credit(api_client):
    response = api_client.post(
        "/api/v1/signup",
        {"email": "trial@example.com", "password": "a long passphrase 42", "organization": "Trial"},
    )
    assert response.status_code == 201
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    credit = api_client.get("/api/v1/billing/credit").json()
    assert credit["granted"] == "400.000000" and credit["remaining"] == "400.000000"
    assert credit["grants"][0]["reason"] == "trial"


def test_price_book_change_prices_from_its_day(tenant):
    cluster = ClusterFactory(organization=tenant.organization, plan="basic")
    day1 = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    day2 = dt.datetime(2025, 5, 2, 10, tzinfo=UTC)
    usage(cluster, "K", "t", hour=day1, bytes_in=10**9)
    usage(cluster, "K", "t", hour=day2, bytes_in=10**9)
    PriceBook.objects.create(
        plan="basic", effective_from=dt.date(2025, 5, 2), base_per_hour="0.1", per_gb_in="0.07",
        per_gb_out="0.05", per_gb_month_stored="0.1", per_partition_hour="0.0001",
    )  # fmt: skip
    groups = selectors.cost_groups(
        organization=tenant.organization, start_date=dt.date(2025, 5, 1), end_date=dt.date(2025, 6, 1)
    )
    lines = [(line["dimension"], line["unit_price"], line["amount"]) for line in groups[0]["lines"]]
    assert lines == [
        ("ingress", Decimal("0.05"), Decimal("0.05")),
        ("ingress", Decimal("0.07"), Decimal("0.07")),
    ]
