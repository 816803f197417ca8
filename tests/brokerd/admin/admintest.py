"""Helpers for the broker-admin tests: exact-byte produce/fetch over the wire, SASL, metrics, RSS."""

from __future__ import annotations

import datetime
import urllib.request

from brokerd_wire import Wire, make_batch
from kio.index import load_payload_module
from kio.static.constants import EntityType
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Wire", "fetch", "make_batch", "metrics", "produce", "req", "rss_kb", "sasl_wire"]


def req(api_key: int, version: int):
    """The kio request module of (api key, version)."""
    return load_payload_module(api_key, version, EntityType.request)


def ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


def sasl_wire(port: int, user: str, password: str, client_id: str = "wire-test") -> Wire:
    w = Wire(port)
    hs = req(17, 1).SaslHandshakeRequest(mechanism="PLAIN")
    resp = w.request(hs)
    assert resp.error_code == 0, resp
    auth = req(36, 2).SaslAuthenticateRequest(auth_bytes=b"\0" + user.encode() + b"\0" + password.encode())
    resp = w.request(auth)
    assert resp.error_code == 0, resp
    return w


def produce(w: Wire, topic: str, partition: int, batch: bytes, *, acks: int = -1, version: int = 9):
    m = req(0, version)
    r = m.ProduceRequest(
        transactional_id=None, acks=acks, timeout=ms(5000),
        topic_data=(m.TopicProduceData(name=topic, partition_data=(
            m.PartitionProduceData(index=partition, records=batch),)),))
    resp = w.request(r)
    p = resp.responses[0].partition_responses[0]
    return p, int(resp.throttle_time.total_seconds() * 1000)


def fetch(w: Wire, topic: str, partition: int, offset: int, *, max_bytes: int = 10 * 1024 * 1024,
          version: int = 12):
    m = req(1, version)
    r = m.FetchRequest(
        replica_id=-1, max_wait=ms(0), min_bytes=0, max_bytes=max_bytes, isolation_level=0, session_id=0,
        session_epoch=-1, topics=(m.FetchTopic(topic=topic, partitions=(m.FetchPartition(
            partition=partition, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1,
            log_start_offset=-1, partition_max_bytes=max_bytes),)),),
        forgotten_topics_data=(), rack_id="")
    resp = w.request(r)
    p = resp.responses[0].partitions[0]
    return p, int(resp.throttle_time.total_seconds() * 1000)


def metrics(admin_url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def usage(admin_url: str, principal: str, topic: str) -> tuple[float, float, float, float]:
    m = metrics(admin_url)
    labels = (("principal", principal), ("topic", topic))
    return tuple(m.get((f"kastle_{n}_total", labels), 0.0) for n in
                 ("bytes_in", "records_in", "bytes_out", "records_out"))  # type: ignore[return-value]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")
