"""The usage journal (durable, monotonic counters) and the Prometheus registry."""

import datetime
import struct

from prometheus_client.parser import text_string_to_metric_families

from brokerd.api import response_error_counts
from brokerd.metrics import BrokerMetrics, UsageJournal, batch_stats

TID = b"t" * 16


def batch(records: int, payload: int = 100) -> bytes:
    body = bytes(49 + payload)
    head = struct.pack(">qi", 0, len(body)) + body
    return head[:57] + struct.pack(">i", records) + head[61:]


def samples(metrics: BrokerMetrics) -> dict:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_batch_stats_counts_complete_batches() -> None:
    data = batch(3) + batch(5) + batch(7)[:80]
    assert batch_stats(data) == (8, len(data))
    assert batch_stats(b"") == (0, 0)


def test_counts_survive_restart_without_clean_close(tmp_path) -> None:
    j = UsageJournal(tmp_path, clock=lambda: 1000.0)
    j.reconcile(lambda tid, p: None)
    j.record_in("alice", [("orders", TID, 0, 0, 10, 1000), ("orders", TID, 1, 0, 5, 500)])
    j.record_in("bob", [("logs", TID, 0, 0, 1, 70)])
    j.record_out("alice", [("orders", 15, 1500)])
    j.touch("carol", now=2000.0)
    # no close(): simulate kill -9 (the writes reached the OS)
    j2 = UsageJournal(tmp_path)
    j2.reconcile(lambda tid, p: 10**9)
    assert j2.totals[("alice", "orders")] == [1500, 15, 1500, 15]
    assert j2.totals[("bob", "logs")] == [70, 1, 0, 0]
    assert j2.last_seen == {"alice": 1000.0, "bob": 1000.0, "carol": 2000.0}
    # counters continue, never reset
    j2.record_in("alice", [("orders", TID, 0, 10, 1, 10)])
    j2.close()
    j3 = UsageJournal(tmp_path)
    j3.reconcile(lambda tid, p: 10**9)
    assert j3.totals[("alice", "orders")] == [1510, 16, 1500, 15]
    assert len(list(tmp_path.glob("journal.*"))) <= 1


def test_reconcile_voids_what_the_log_lost(tmp_path) -> None:
    j = UsageJournal(tmp_path)
    j.reconcile(lambda tid, p: None)
    j.record_in("alice", [("orders", TID, 0, 0, 10, 1000)])
    j.record_in("alice", [("orders", TID, 0, 10, 10, 1000)])  # journaled, append never happened
    j.record_in("alice", [("orders", TID, 1, 0, 4, 400)])
    j.record_in("alice", [("orders", TID, 1, 4, 4, 400)])
    j.void_in("alice", "orders", TID, 1, 4, 4, 400)  # append failed and was voided at once
    assert j.totals[("alice", "orders")] == [2400, 24, 0, 0]
    j2 = UsageJournal(tmp_path)
    voided = j2.reconcile(lambda tid, p: {0: 10, 1: 4}[p])
    assert voided == 1
    assert j2.totals[("alice", "orders")] == [1400, 14, 0, 0]
    # after reconciliation, the recovered state is the snapshot: reloading gives the same
    j3 = UsageJournal(tmp_path)
    j3.reconcile(lambda tid, p: 0)
    assert j3.totals[("alice", "orders")] == [1400, 14, 0, 0]


def test_torn_tail_is_ignored(tmp_path) -> None:
    j = UsageJournal(tmp_path)
    j.reconcile(lambda tid, p: None)
    j.record_in("alice", [("orders", TID, 0, 0, 10, 1000)])
    j.sync()
    [path] = tmp_path.glob("journal.*")
    with path.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x30garbage")
    j2 = UsageJournal(tmp_path)
    j2.reconcile(lambda tid, p: 10)
    assert j2.totals[("alice", "orders")] == [1000, 10, 0, 0]


def test_rotation(tmp_path) -> None:
    j = UsageJournal(tmp_path, max_journal_bytes=1000)
    j.reconcile(lambda tid, p: None)
    for i in range(50):
        j.record_in("alice", [("orders", TID, 0, i, 1, 10)])
    assert j.maybe_rotate()
    j.record_in("alice", [("orders", TID, 0, 50, 1, 10)])
    j2 = UsageJournal(tmp_path)
    j2.reconcile(lambda tid, p: 51)
    assert j2.totals[("alice", "orders")] == [510, 51, 0, 0]


def test_prometheus_exposition(tmp_path) -> None:
    j = UsageJournal(tmp_path)
    j.reconcile(lambda tid, p: None)
    j.record_in("alice", [("orders", TID, 0, 0, 3, 300)])
    m = BrokerMetrics(j, storage=lambda: [("orders", 0, 4096), ("orders", 1, 0)])
    m.observe_request("Produce", 0.002)
    m.observe_request("Metadata", 0.001, {"UNKNOWN_TOPIC_OR_PARTITION": 2})
    m.observe_throttle("alice", "producer_byte_rate", 1500)
    m.connections.labels("PLAINTEXT").inc()
    s = samples(m)
    assert s[("kastle_bytes_in_total", (("principal", "alice"), ("topic", "orders")))] == 300
    assert s[("kastle_records_in_total", (("principal", "alice"), ("topic", "orders")))] == 3
    assert s[("kastle_partition_bytes_stored", (("partition", "0"), ("topic", "orders")))] == 4096
    assert s[("kastle_partitions", (("topic", "orders"),))] == 2
    assert s[("kastle_requests_total", (("api", "Produce"), ("error", "NONE")))] == 1
    assert s[("kastle_requests_total", (("api", "Metadata"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")))] == 2
    assert s[("kastle_request_latency_seconds_count", (("api", "Produce"),))] == 1
    assert s[("kastle_throttle_time_seconds_total",
              (("principal", "alice"), ("quota", "producer_byte_rate")))] == 1.5
    assert s[("kastle_connections", (("listener", "PLAINTEXT"),))] == 1
    # two brokers in one process do not share a registry
    m2 = BrokerMetrics(UsageJournal(tmp_path / "other"))
    assert ("kastle_bytes_in_total", (("principal", "alice"), ("topic", "orders"))) not in samples(m2)


def test_error_counts_walks_kio_responses() -> None:
    from kio.schema.delete_topics.v4.response import (
        DeletableTopicResult,
        DeleteTopicsResponse,
    )
    from kio.schema.errors import ErrorCode
    from kio.static.primitive import i32Timedelta

    resp = DeleteTopicsResponse(throttle_time=i32Timedelta.parse(datetime.timedelta(0)), responses=(
        DeletableTopicResult(name="a", error_code=ErrorCode.none),
        DeletableTopicResult(name="b", error_code=ErrorCode.unknown_topic_or_partition)))
    assert response_error_counts(resp) == {"NONE": 1, "UNKNOWN_TOPIC_OR_PARTITION": 1}


def test_partition_traffic_per_topic_and_partition(tmp_path) -> None:
    live = {"orders", "logs"}
    j = UsageJournal(tmp_path)
    j.reconcile(lambda tid, p: None)
    m = BrokerMetrics(j, live_topics=lambda: live)
    m.partition_traffic.add("orders", 0, 0, 1000, 10)  # produced
    m.partition_traffic.add("orders", 1, 0, 300, 3)
    m.partition_traffic.add("orders", 1, 0, -300, -3)  # that append failed: taken back
    m.partition_traffic.add("orders", 0, 2, 700, 7)  # fetched
    m.partition_traffic.add("logs", 2, 0, 50, 1)
    found = samples(m)
    p0 = (("partition", "0"), ("topic", "orders"))
    assert found[("kastle_partition_bytes_in_total", p0)] == 1000
    assert found[("kastle_partition_records_in_total", p0)] == 10
    assert found[("kastle_partition_bytes_out_total", p0)] == 700
    assert found[("kastle_partition_records_out_total", p0)] == 7
    assert found[("kastle_partition_bytes_in_total", (("partition", "1"), ("topic", "orders")))] == 0
    assert found[("kastle_partition_bytes_in_total", (("partition", "2"), ("topic", "logs")))] == 50

    live.discard("orders")  # a deleted topic's series go away, as Kafka removes its meters
    found = samples(m)
    assert not [labels for _, labels in found if ("topic", "orders") in labels]
    assert found[("kastle_partition_bytes_in_total", (("partition", "2"), ("topic", "logs")))] == 50
