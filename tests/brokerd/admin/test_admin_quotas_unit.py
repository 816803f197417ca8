"""Kafka-style client quotas: resolution order, sampled rates, throttle formula, describe/alter."""

import pytest

from brokerd.quotas import (
    CLIENT_ID,
    FETCH,
    MATCH_ANY,
    MATCH_DEFAULT,
    MATCH_EXACT,
    PRODUCE,
    REQUEST,
    USER,
    ConnectionLimiter,
    ConnectionLimitExceeded,
    QuotaError,
    QuotaManager,
    QuotaStore,
    Rate,
)


def test_rate_uses_kafka_minimum_window() -> None:
    r = Rate(11, 1000, now_ms=0)
    r.record(20_000, 0)
    assert r.window_size_ms(0) == 10_000
    assert r.measure(0) == 2000.0
    # after 30 s every sample has expired
    assert r.measure(30_000) == 0.0


def test_throttle_time_is_kafka_formula() -> None:
    store = QuotaStore([{"entity": {"user": "<default>"}, PRODUCE: 1000}])
    q = QuotaManager(store, window_num=11, window_size_seconds=1)
    assert q.record_produce("alice", "c1", 5_000, now_ms=0) == 0  # 500 B/s over the 10 s window
    # +15_000 -> 2000 B/s: (2000 - 1000) / 1000 * 10_000 ms
    assert q.record_produce("alice", "c1", 15_000, now_ms=0) == 10_000
    # bob has his own meter under the <default> user quota
    assert q.record_produce("bob", "c1", 5_000, now_ms=0) == 0
    # unquoted key: never throttled
    assert q.record_fetch("alice", "c1", 10**9, now_ms=0) == 0
    # capped at the full window
    assert q.record_produce("alice", "c1", 10**9, now_ms=0) == 11_000


def test_request_percentage() -> None:
    store = QuotaStore([{"entity": {"client-id": "<default>"}, REQUEST: 10}])
    q = QuotaManager(store)
    # 0.5 s of handler time in a 10 s window = 5 % of a thread
    assert q.record_request_time("u", "c", 0.5, now_ms=0) == 0
    # 2 s = 20 %: (20 - 10) / 10 * 10 s
    assert q.record_request_time("u", "c", 1.5, now_ms=0) == 10_000


def test_resolution_order_kip55() -> None:
    store = QuotaStore([
        {"entity": {"client-id": "<default>"}, PRODUCE: 8},
        {"entity": {"client-id": "app"}, PRODUCE: 7},
        {"entity": {"user": "<default>"}, PRODUCE: 6},
        {"entity": {"user": "<default>", "client-id": "<default>"}, PRODUCE: 5},
        {"entity": {"user": "<default>", "client-id": "app"}, PRODUCE: 4},
        {"entity": {"user": "alice"}, PRODUCE: 3},
        {"entity": {"user": "alice", "client-id": "<default>"}, PRODUCE: 2},
        {"entity": {"user": "alice", "client-id": "app"}, PRODUCE: 1},
    ])
    q = QuotaManager(store)
    assert q.quota(PRODUCE, "alice", "app") == 1
    assert q.quota(PRODUCE, "alice", "other") == 2
    assert q.quota(PRODUCE, "bob", "app") == 4
    assert q.quota(PRODUCE, "bob", "other") == 5
    assert q.resolve(PRODUCE, "alice", "other").meter == (PRODUCE, "alice", "other")
    only_clients = QuotaManager(QuotaStore([{"entity": {"client-id": "app"}, FETCH: 7}]))
    assert only_clients.resolve(FETCH, "bob", "app").meter == (FETCH, "", "app")
    assert only_clients.quota(FETCH, "bob", "x") is None


def test_alter_persist_and_override_static(tmp_path) -> None:
    path = tmp_path / "quotas.json"
    store = QuotaStore([{"entity": {"user": "<default>"}, PRODUCE: 100}], path=path)
    q = QuotaManager(store)
    assert q.quota(PRODUCE, "alice", "c") == 100
    results = store.alter([([(USER, None)], [(PRODUCE, 50.0, False)]),
                           ([(USER, "bob")], [(FETCH, 10.0, False), (REQUEST, 200.0, False)])])
    assert all(r.error_code == 0 for r in results)
    assert q.quota(PRODUCE, "alice", "c") == 50  # cache invalidated by generation
    reloaded = QuotaStore([{"entity": {"user": "<default>"}, PRODUCE: 100}], path=path)
    assert reloaded.get(((USER, "bob"),), REQUEST) == 200
    # removing the dynamic value restores the plan (static) value
    store.alter([([(USER, None)], [(PRODUCE, 0.0, True)])])
    assert q.quota(PRODUCE, "alice", "c") == 100
    # validate_only changes nothing
    store.alter([([(USER, "carol")], [(PRODUCE, 5.0, False)])], validate_only=True)
    assert store.get(((USER, "carol"),), PRODUCE) is None


@pytest.mark.parametrize(("parts", "ops", "needle"), [
    ([(USER, "a")], [("bogus_rate", 1.0, False)], "Invalid quota configuration key bogus_rate"),
    ([(USER, "a")], [(PRODUCE, -1.0, False)], "greater than 0"),
    ([(USER, "a")], [(PRODUCE, 1.5, False)], "integer"),
    ([(USER, "a"), (USER, "b")], [(PRODUCE, 1.0, False)], "Duplicate entity type"),
    ([("ip", "1.2.3.4")], [(PRODUCE, 1.0, False)], "not supported"),
    ([(USER, "a")], [(PRODUCE, 1.0, False), (PRODUCE, 2.0, False)], "Duplicate quota key"),
])
def test_alter_errors_are_per_entry(parts, ops, needle) -> None:
    store = QuotaStore()
    good, bad = store.alter([([(USER, "ok")], [(PRODUCE, 1.0, False)]), (parts, ops)])
    assert good.error_code == 0
    assert bad.error_code == 42 and needle in bad.error_message
    assert store.get(((USER, "ok"),), PRODUCE) == 1.0


def test_describe_filters() -> None:
    store = QuotaStore([
        {"entity": {"user": "<default>"}, PRODUCE: 1},
        {"entity": {"user": "alice"}, PRODUCE: 2},
        {"entity": {"user": "alice", "client-id": "app"}, PRODUCE: 3},
        {"entity": {"client-id": "app"}, PRODUCE: 4},
    ])

    def names(components, strict=False):
        return sorted(str(dict(e)) for e, _ in store.describe(components, strict))

    assert len(names([])) == 4
    assert names([], strict=True) == []
    assert names([(USER, MATCH_EXACT, "alice")]) == [
        str({"client-id": "app", "user": "alice"}), str({"user": "alice"})]
    assert names([(USER, MATCH_EXACT, "alice")], strict=True) == [str({"user": "alice"})]
    assert names([(USER, MATCH_DEFAULT, None)]) == [str({"user": None})]
    assert len(names([(USER, MATCH_ANY, None)])) == 3
    assert names([(CLIENT_ID, MATCH_ANY, None)], strict=True) == [str({"client-id": "app"})]
    with pytest.raises(QuotaError, match="more than once"):
        store.describe([(USER, MATCH_ANY, None), (USER, MATCH_DEFAULT, None)], False)
    with pytest.raises(QuotaError, match="null"):
        store.describe([(USER, MATCH_EXACT, None)], False)


def test_connection_limits() -> None:
    lim = ConnectionLimiter(max_connections=3, max_per_ip=2, max_per_principal=1)
    lim.open("a")
    lim.open("a")
    with pytest.raises(ConnectionLimitExceeded, match="per ip"):
        lim.open("a")
    lim.open("b")
    with pytest.raises(ConnectionLimitExceeded, match="broker connection limit"):
        lim.open("c")
    lim.authenticate("alice")
    with pytest.raises(ConnectionLimitExceeded, match="per principal"):
        lim.authenticate("alice")
    lim.close("a", "alice")
    lim.authenticate("alice")
    lim.open("c")
    assert lim.total == 3
