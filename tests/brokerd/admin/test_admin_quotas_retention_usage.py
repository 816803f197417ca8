"""Quotas (KIP-219 throttle, by values), retention deleting segments, and usage across kill -9."""

from __future__ import annotations

import contextlib
import time

import pytest
from admintest import fetch, make_batch, metrics, produce, req, sasl_wire, usage
from brokerd_wire import Wire
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic


def _create(bootstrap: str, *topics: NewTopic) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(list(topics)).values():
        f.result(timeout=10)


@pytest.fixture
def broker(broker_factory):
    # PLAINTEXT clients are ANONYMOUS; altering broker configs and quotas needs a super user.
    return broker_factory(settings={"super.users": "User:ANONYMOUS"})


def _alter_quotas(w: Wire, entries, validate_only=False, version=1):
    m = req(49, version)
    r = m.AlterClientQuotasRequest(entries=tuple(
        m.EntryData(entity=tuple(m.EntityData(entity_type=t, entity_name=n) for t, n in entity),
                    ops=tuple(m.OpData(key=k, value=float(v), remove=rm) for k, v, rm in ops))
        for entity, ops in entries), validate_only=validate_only)
    return w.request(r)


def _describe_quotas(w: Wire, components, strict=False, version=1):
    m = req(48, version)
    r = m.DescribeClientQuotasRequest(components=tuple(
        m.ComponentData(entity_type=t, match_type=mt, match=match) for t, mt, match in components),
        strict=strict)
    return w.request(r)


def test_client_quotas_alter_describe_persist(broker) -> None:
    with Wire(broker.port) as w:
        resp = _alter_quotas(w, [([("user", None)], [("producer_byte_rate", 1024, False)]),
                                 ([("user", "alice"), ("client-id", "app")],
                                  [("consumer_byte_rate", 2048, False)]),
                                 ([("user", "bob")], [("nonsense", 1, False)])])
        assert [e.error_code for e in resp.entries] == [0, 0, 42]
        assert "nonsense" in resp.entries[2].error_message
        _alter_quotas(w, [([("user", "carol")], [("producer_byte_rate", 5, False)])], validate_only=True)
        resp = _describe_quotas(w, [])
        assert resp.error_code == 0
        got = {tuple((e.entity_type, e.entity_name) for e in entry.entity):
               {v.key: v.value for v in entry.values} for entry in resp.entries}
        assert got == {(("user", None),): {"producer_byte_rate": 1024.0},
                       (("client-id", "app"), ("user", "alice")): {"consumer_byte_rate": 2048.0}}
        resp = _describe_quotas(w, [("user", 0, "alice")], strict=True, version=0)
        assert resp.entries == ()
        resp = _describe_quotas(w, [("user", 1, None)], strict=True)
        assert len(resp.entries) == 1
        resp = _describe_quotas(w, [("user", 2, None), ("user", 1, None)])
        assert resp.error_code == 42
    broker.restart()
    with Wire(broker.port) as w:
        assert len(_describe_quotas(w, [("user", 2, None)]).entries) == 2
        _alter_quotas(w, [([("user", None)], [("producer_byte_rate", 0, True)])])
        assert len(_describe_quotas(w, [("user", 2, None)]).entries) == 1


def test_produce_and_fetch_quota_throttle_by_value(broker) -> None:
    _create(broker.bootstrap, NewTopic("q", 1, 1))
    batch = make_batch([(None, b"x" * 1000)] * 150)  # ~150 KB in one batch
    with Wire(broker.port) as w:
        _alter_quotas(w, [([("user", None)], [("producer_byte_rate", 10_000, False),
                                              ("consumer_byte_rate", 20_000, False)])])
    with Wire(broker.port) as w:
        p, throttle = produce(w, "q", 0, batch)
        assert p.error_code == 0
        # Kafka's formula over the 10 s minimum window: (len/10 s - 10 KB/s) / 10 KB/s * 10 s
        expected = (len(batch) / 10 - 10_000) / 10_000 * 10_000
        assert abs(throttle - expected) <= 50, (throttle, expected)
    m = metrics(broker.admin_url)
    labels = (("principal", "ANONYMOUS"), ("quota", "producer_byte_rate"))
    assert m[("kastle_throttle_time_seconds_total", labels)] * 1000 == throttle
    assert m[("kastle_throttled_responses_total", labels)] == 1
    # Nothing was dropped: the data is there. Fetch over quota is answered empty with a throttle.
    with Wire(broker.port) as w:
        part, t1 = fetch(w, "q", 0, 0)
        assert t1 == 0 and part.records is not None and len(part.records) == len(batch)
    with Wire(broker.port) as w:
        part, t2 = fetch(w, "q", 0, 0)  # a second full read puts this user over 20 KB/s
        assert t2 > 0 and not part.records and part.high_watermark == 150
    _, _, bytes_out, records_out = usage(broker.admin_url, "ANONYMOUS", "q")
    assert (bytes_out, records_out) == (len(batch), 150)  # the empty answer is not counted


def _sizes(paths) -> list[int]:
    sizes = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            sizes.append(path.stat().st_size)
    return sizes


def test_retention_deletes_segments(broker_factory) -> None:
    b = broker_factory(settings={"log.segment.bytes": 2048, "log.retention.check.interval.ms": 50})
    _create(b.bootstrap, NewTopic("sized", 1, 1), NewTopic("timed", 1, 1))
    seg_dir = b.data_dir / "sized-0"
    with Wire(b.port) as w:
        for _ in range(20):
            produce(w, "sized", 0, make_batch([(None, b"y" * 900)]))
        old = int(time.time() * 1000) - 3_600_000
        for _ in range(5):
            produce(w, "timed", 0, make_batch([(None, b"z" * 900)], timestamp=old))
    before = len(list(seg_dir.glob("*.log")))
    assert before >= 8
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for name, key, value in (("sized", "retention.bytes", "4096"), ("timed", "retention.ms", "60000")):
        res = ConfigResource("topic", name, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
        for f in admin.incremental_alter_configs([res]).values():
            f.result(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Retention may delete a segment between the listing and the size check.
        logs = sorted(seg_dir.glob("*.log"))
        sizes = _sizes(logs)
        timed = [size for size in _sizes((b.data_dir / "timed-0").glob("*.log")) if size]
        if len(logs) < before and sum(sizes) <= 4096 + 2048 and not timed:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"retention did not run: {logs}, {timed}")
    with Wire(b.port) as w:
        part, _ = fetch(w, "sized", 0, 0)
        assert part.error_code == 1 and part.log_start_offset > 0  # below the new log start
        part, _ = fetch(w, "sized", 0, part.log_start_offset)
        assert part.error_code == 0 and part.high_watermark == 20
        part, _ = fetch(w, "timed", 0, 5)
        assert part.error_code == 0 and part.log_start_offset == 5 and part.high_watermark == 5
    m = metrics(b.admin_url)
    stored = m[("kastle_partition_bytes_stored", (("partition", "0"), ("topic", "sized")))]
    assert stored == sum(p.stat().st_size for p in seg_dir.glob("*.log"))


def test_usage_counts_match_bytes_across_kill9(broker_factory) -> None:
    b = broker_factory(sasl=True, users={"alice": "a-secret", "bob": "b-secret"})
    admin = AdminClient(b.sasl_config(user="alice", password="a-secret"))
    for f in admin.create_topics([NewTopic("orders", 2, 1), NewTopic("logs", 1, 1)]).values():
        f.result(timeout=10)
    sent: dict[tuple[str, str], list[int]] = {}

    def send(w, user, topic, partition, n, size, acks):
        batch = make_batch([(b"k", b"v" * size)] * n)
        p, _ = produce(w, topic, partition, batch, acks=acks)
        assert p.error_code == 0
        row = sent.setdefault((user, topic), [0, 0, 0, 0])
        row[0] += len(batch)
        row[1] += n

    with sasl_wire(b.ports["SASL_PLAINTEXT"], "alice", "a-secret") as wa, \
            sasl_wire(b.ports["SASL_PLAINTEXT"], "bob", "b-secret") as wb:
        for i in range(10):
            send(wa, "alice", "orders", i % 2, 3, 100 + i, -1)
            send(wb, "bob", "orders", i % 2, 2, 50, 1)
            send(wb, "bob", "logs", 0, 1, 10 * i + 1, -1)
        part, _ = fetch(wa, "logs", 0, 0)
        sent[("alice", "logs")] = [0, 0, len(part.records), 10]
    for (user, topic), row in sent.items():
        assert usage(b.admin_url, user, topic) == tuple(row), (user, topic)
    b.kill()  # kill -9
    b.start()
    for (user, topic), row in sent.items():
        assert usage(b.admin_url, user, topic) == tuple(row), (user, topic)
    with sasl_wire(b.ports["SASL_PLAINTEXT"], "bob", "b-secret") as wb:
        send(wb, "bob", "logs", 0, 4, 20, 1)
    b.kill()
    b.start()
    for (user, topic), row in sent.items():
        assert usage(b.admin_url, user, topic) == tuple(row), (user, topic)
    seen = metrics(b.admin_url)[("kastle_principal_last_seen_timestamp_seconds", (("principal", "bob"),))]
    assert time.time() - 60 < seen <= time.time()
