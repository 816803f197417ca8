"""Collection: scrapes -> deltas -> hourly rows, exactly once (against PostgreSQL, real HTTP scrapes)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from clusters.models import Cluster
from metering import services
from metering.models import BrokerMeter, CounterCursor, HourlyUsage, UsageSample
from metering.scrape import parse
from tests.platform.factories import BrokerFactory, ClusterFactory, HostFactory
from tests.platform.metering.promtext import MetricsEndpoint, metrics_text

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2025, 3, 10, 12, 59, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def totals(cluster, principal: str, topic: str) -> dict[str, int]:
    rows = HourlyUsage.objects.filter(cluster=cluster, principal=principal, topic=topic)
    out = dict.fromkeys(services.FIELDS, 0)
    for row in rows:
        for f in services.FIELDS:
            out[f] += getattr(row, f)
    return out


@pytest.fixture
def broker():
    return BrokerFactory(node_id=1)


def test_parse_reads_usage_and_gauges_only():
    text = metrics_text(
        {("KEY1", "orders"): (1000, 10, 500, 5), ('we"ird', "a.b-c_d"): (1, 1, 0, 0)},
        {("orders", 0): 700, ("orders", 1): 300, ("__consumer_offsets", 7): 4096},
    )
    scrape = parse(text)
    assert scrape.counters == {("KEY1", "orders"): [1000, 10, 500, 5], ('we"ird', "a.b-c_d"): [1, 1, 0, 0]}
    assert scrape.stored == {"orders": 1000}
    assert scrape.partitions == {"orders": 2}


def test_deltas_hourly_rows_and_exactly_once(broker):
    cluster = broker.cluster
    series = {("KEY1", "orders"): (1000, 10, 0, 0), ("KEY2", "clicks"): (200, 2, 0, 0)}
    first = metrics_text(series, {("orders", 0): 1000, ("clicks", 0): 200})
    assert services.usage_record_scrape(broker=broker, scrape=first, taken_at=at(0)).status == "recorded"
    assert totals(cluster, "KEY1", "orders")["bytes_in"] == 1000  # everything since the broker started

    # The same scrape again (duplicated task), and an older one arriving late: skipped.
    assert services.usage_record_scrape(broker=broker, scrape=first, taken_at=at(0)).status == "stale"
    older = metrics_text({("KEY1", "orders"): (900, 9, 0, 0)})
    assert services.usage_record_scrape(broker=broker, scrape=older, taken_at=at(-5)).status == "stale"
    assert totals(cluster, "KEY1", "orders")["bytes_in"] == 1000

    # Growth after the hour boundary: the delta lands in the new hour; storage is split at it.
    series2 = {("KEY1", "orders"): (1500, 15, 1000, 10), ("KEY2", "clicks"): (200, 2, 200, 2)}
    second = metrics_text(series2, {("orders", 0): 1500, ("clicks", 0): 200})
    services.usage_record_scrape(broker=broker, scrape=second, taken_at=at(120))  # 13:01
    rows = HourlyUsage.objects.filter(cluster=cluster, principal="KEY1", topic="orders").order_by("hour")
    assert [(r.hour.hour, r.bytes_in, r.bytes_out, r.records_in, r.records_out) for r in rows] == [
        (12, 1000, 0, 10, 0),
        (13, 500, 1000, 5, 10),
    ]
    storage = {
        r.hour.hour: r for r in HourlyUsage.objects.filter(cluster=cluster, principal="", topic="orders")
    }
    assert storage[12].storage_byte_seconds == 1500 * 60 and storage[12].partition_ms == 60_000
    assert storage[13].storage_byte_seconds == 1500 * 60 and storage[13].partition_ms == 60_000
    base = {
        r.hour.hour: r.cluster_ms for r in HourlyUsage.objects.filter(cluster=cluster, principal="", topic="")
    }
    assert base == {12: 60_000, 13: 60_000}

    # Same counters a minute later: no new bytes, but a minute more of storage and cluster time.
    services.usage_record_scrape(broker=broker, scrape=second, taken_at=at(180))
    assert totals(cluster, "KEY1", "orders")["bytes_in"] == 1500
    assert totals(cluster, "", "orders")["storage_byte_seconds"] == 1500 * 180
    assert totals(cluster, "", "")["cluster_ms"] == 180_000
    assert CounterCursor.objects.get(broker=broker, principal="KEY2").bytes_out == 200
    assert UsageSample.objects.filter(cluster=cluster, principal="KEY1").count() == 2


def test_a_missed_scrape_loses_nothing(broker):
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (100, 1, 0, 0)}), taken_at=at(0)
    )
    # The scrape at +60 s never happened; the one at +120 s carries both intervals' bytes.
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (700, 7, 0, 0)}), taken_at=at(120)
    )
    assert totals(broker.cluster, "K", "t")["bytes_in"] == 700
    assert totals(broker.cluster, "", "")["cluster_ms"] == 120_000


def test_counter_going_backwards_is_a_reset_and_logged(broker, caplog):
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (1000, 10, 0, 0)}), taken_at=at(0)
    )
    with caplog.at_level(logging.WARNING, logger="metering.services"):
        result = services.usage_record_scrape(
            broker=broker, scrape=metrics_text({("K", "t"): (300, 3, 0, 0)}), taken_at=at(60)
        )
    assert result.resets == [("K", "t")]
    assert "went backwards" in caplog.text
    assert totals(broker.cluster, "K", "t")["bytes_in"] == 1300  # the 300 since the reset are new usage
    assert BrokerMeter.objects.get(broker=broker).resets == 1
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (350, 4, 0, 0)}), taken_at=at(120)
    )
    assert totals(broker.cluster, "K", "t")["bytes_in"] == 1350


def test_a_replicated_cluster_is_billed_one_replica_and_once_per_hour():
    """Three brokers each hold a copy of a topic: the tenant pays for one copy, and the cluster's
    time once, not once per broker."""
    cluster = ClusterFactory(plan="standard", broker_count=3)
    brokers = [BrokerFactory(cluster=cluster, node_id=n) for n in (1, 2, 3)]
    text = metrics_text({}, {("orders", 0): 3000, ("orders", 1): 3000})
    for b in brokers:
        services.usage_record_scrape(broker=b, scrape=text, taken_at=at(0))
        services.usage_record_scrape(broker=b, scrape=text, taken_at=at(60))
    orders = totals(cluster, "", "orders")
    assert orders["storage_byte_seconds"] == 6000 * 60  # one replica's 6000 bytes, not 18000
    assert orders["partition_ms"] == 2 * 60_000  # two partitions, not six replicas
    assert totals(cluster, "", "")["cluster_ms"] == 60_000


def test_schemas_held_are_metered_as_schema_hours_once_per_cluster():
    """A registry holding 4 schema versions for a minute is 4 schema-minutes, whatever the number
    of brokers scraped, in the cluster's own row; the count may change between scrapes."""
    cluster = ClusterFactory(plan="standard", broker_count=3, schemas=4)
    brokers = [BrokerFactory(cluster=cluster, node_id=n) for n in (1, 2, 3)]
    text = metrics_text({}, {("orders", 0): 10})
    for b in brokers:
        services.usage_record_scrape(broker=b, scrape=text, taken_at=at(0))
        services.usage_record_scrape(broker=b, scrape=text, taken_at=at(60))
    assert totals(cluster, "", "")["schema_ms"] == 4 * 60_000
    assert totals(cluster, "", "orders")["schema_ms"] == 0
    Cluster.objects.filter(pk=cluster.pk).update(schemas=1)
    for b in brokers:
        services.usage_record_scrape(broker=b, scrape=text, taken_at=at(120))
    assert totals(cluster, "", "")["schema_ms"] == 5 * 60_000


def test_a_long_gap_is_not_charged_for_time(broker, settings):
    settings.KASTLE_METERING_MAX_GAP_SECONDS = 600
    text = metrics_text({}, {("t", 0): 10**9})
    services.usage_record_scrape(broker=broker, scrape=text, taken_at=at(0))
    services.usage_record_scrape(broker=broker, scrape=text, taken_at=at(3 * 3600))
    assert totals(broker.cluster, "", "t")["storage_byte_seconds"] == 0
    services.usage_record_scrape(broker=broker, scrape=text, taken_at=at(3 * 3600 + 60))
    assert totals(broker.cluster, "", "t")["storage_byte_seconds"] == 60 * 10**9


def test_collect_host_scrapes_running_brokers_over_http():
    host = HostFactory(name="metering-h1")
    endpoints = []
    try:
        brokers = []
        for i in range(3):
            endpoint = MetricsEndpoint(
                metrics_text({(f"K{i}", "t"): (100 * (i + 1), i + 1, 0, 0)}, {("t", 0): 5})
            )
            endpoints.append(endpoint)
            brokers.append(BrokerFactory(host=host, node_id=1, admin_port=endpoint.port, status="RUNNING"))
        stopped = BrokerFactory(host=host, node_id=1, status="STOPPED")  # not scraped
        endpoints[2].close()  # this broker does not answer: missed, counted at the next pass
        report = services.usage_collect_host(host_name="metering-h1")
        assert report.brokers == 3 and report.recorded == 2 and len(report.missed) == 1
        assert totals(brokers[0].cluster, "K0", "t")["bytes_in"] == 100
        assert totals(brokers[1].cluster, "K1", "t")["bytes_in"] == 200
        assert not HourlyUsage.objects.filter(cluster=brokers[2].cluster).exists()
        assert not BrokerMeter.objects.filter(broker=stopped).exists()
        assert report.rows > 0
    finally:
        for endpoint in endpoints[:2]:
            endpoint.close()


def test_final_usage_from_metrics_and_journal(broker, tmp_path):
    from brokerd.metrics import UsageJournal

    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (100, 1, 0, 0)}), taken_at=at(0)
    )
    # A stopped broker's data directory: its journal holds more than the last scrape saw.
    journal = UsageJournal(tmp_path / "usage")
    journal.totals[("K", "t")] = [400, 4, 50, 1]
    journal.snapshot()
    services.usage_record_final(
        broker=broker, metrics=metrics_text({("K", "t"): (300, 3, 0, 0)}), data_dir=tmp_path
    )
    assert totals(broker.cluster, "K", "t")["bytes_in"] == 400
    assert totals(broker.cluster, "K", "t")["bytes_out"] == 50


def test_prune_samples_keeps_48_hours(broker):
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (1, 1, 0, 0)}), taken_at=at(0)
    )
    services.usage_record_scrape(
        broker=broker, scrape=metrics_text({("K", "t"): (2, 2, 0, 0)}), taken_at=at(3600 * 47)
    )
    assert services.usage_samples_prune(now=at(3600 * 48 + 1)) >= 1
    assert list(UsageSample.objects.filter(principal="K").values_list("bytes_in", flat=True)) == [1]


def test_cluster_factory_default_is_running():
    assert ClusterFactory().status == "RUNNING"
