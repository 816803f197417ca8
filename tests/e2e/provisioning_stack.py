"""Helpers for the provisioning end-to-end tests: the stack's environment, REST polling, Kafka clients.

`provisioning_env()` sets (for the worker, beat and this process) a port range of this run's
own, a fast heartbeat and reconciliation, and short operation leases; the shared
`celery_services` fixture copies os.environ when it starts the processes.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.helpers import environ, wait_until

ENV = {
    "KASTLE_HEARTBEAT_INTERVAL": "1",
    "KASTLE_HOST_TIMEOUT": "10",
    "KASTLE_RECONCILE_INTERVAL": "1.5",
    "KASTLE_OPERATION_LEASE": "6",
    "KASTLE_UNCLAIMED_GRACE": "4",
    "KASTLE_HOST_CAPACITY": "50",
}


def free_port_block(size: int = 100) -> tuple[int, int]:
    """A block of ports outside Linux's ephemeral range whose first ports are free right now."""
    for _ in range(50):
        low = random.randrange(21000, 32000 - size, 10)
        if all(_free(p) for p in range(low, low + 10)):
            return low, low + size - 1
    raise RuntimeError("no free port block found")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def provisioning_env() -> Iterator[dict[str, str]]:
    low, high = free_port_block()
    values = {**ENV, "KASTLE_HOST_PORTS": f"{low}-{high}"}
    with environ(**values):
        yield values


def stop_brokers(data_dir: Path) -> None:
    from provisioning import supervisor

    hosts = data_dir / "hosts"
    if hosts.is_dir():
        for host in hosts.iterdir():
            supervisor.stop_all(host, timeout=10)


# --- REST --------------------------------------------------------------------------------------------
def wait_status(client, cluster_id: str, status: str, timeout: float = 60.0) -> dict[str, Any]:
    def check():
        body = client.get(f"/api/v1/clusters/{cluster_id}").json()
        if body.get("status") == "FAILED" and status != "FAILED":
            raise AssertionError(f"cluster FAILED: {body.get('status_reason')}")
        return body if body.get("status") == status else None

    return wait_until(check, timeout=timeout, interval=0.1, message=f"cluster {cluster_id} to be {status}")


def create_running_cluster(
    client, name: str = "c1", plan: str = "basic", security_protocol: str = "SASL_PLAINTEXT"
) -> dict[str, Any]:
    # SASL_PLAINTEXT (an opt-in since SASL_SSL became the default): the helpers below speak it.
    body = {"name": name, "plan": plan, "security_protocol": security_protocol}
    response = client.post("/api/v1/clusters", body)
    assert response.status_code == 202, response.content
    return wait_status(client, response.json()["id"], "RUNNING")


# --- Kafka clients -----------------------------------------------------------------------------------
def sasl(bootstrap: str, username: str, password: str, **extra: Any) -> dict[str, Any]:
    conf = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": username,
        "sasl.password": password,
    }
    conf.update(extra)
    return conf


def auth_result(bootstrap: str, username: str, password: str, timeout: float = 5.0) -> bool | None:
    """True: a new connection authenticates; False: it is refused; None: no answer either way."""
    errors: list[KafkaError] = []
    client = AdminClient(
        sasl(bootstrap, username, password, error_cb=errors.append, **{"retry.backoff.ms": 100})
    )
    try:
        client.list_topics(timeout=timeout)
        return True
    except KafkaException:
        client.poll(0.2)  # serve error_cb
    if any(e.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) for e in errors):
        return False
    return None


def plain_login(bootstrap: str, username: str, password: str) -> bool:
    """One SASL PLAIN login on a new connection (exact timing, unlike a client's retry loop)."""
    from kio.schema.sasl_authenticate.v0 import request as auth_req
    from kio.schema.sasl_authenticate.v0 import response as auth_resp
    from kio.schema.sasl_handshake.v1 import request as hs_req
    from kio.schema.sasl_handshake.v1 import response as hs_resp

    from sharedkit.kafka_wire import BrokerConnection

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    conn = BrokerConnection(host, int(port))
    try:
        conn.call(hs_req.SaslHandshakeRequest(mechanism="PLAIN"), hs_resp.SaslHandshakeResponse)
        secret = f"\0{username}\0{password}".encode()
        reply = conn.call(
            auth_req.SaslAuthenticateRequest(auth_bytes=secret), auth_resp.SaslAuthenticateResponse
        )
        return int(reply.error_code) == 0
    except ConnectionError:
        return False
    finally:
        conn.close()


def time_until(predicate, timeout: float) -> float:
    start = time.monotonic()
    wait_until(predicate, timeout=timeout, interval=0.05)
    return time.monotonic() - start


def produce(bootstrap: str, key: str, secret: str, topic: str, count: int, prefix: str = "r") -> None:
    producer = Producer(sasl(bootstrap, key, secret, acks="all", **{"linger.ms": 5}))
    failures: list[Any] = []
    for i in range(count):
        producer.produce(
            topic,
            key=str(i).encode(),
            value=f"{prefix}-{i}".encode(),
            on_delivery=lambda err, msg: failures.append(err) if err else None,
        )
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert not failures, failures[:3]


def consume_all(
    bootstrap: str, key: str, secret: str, topic: str, partitions: int, expected: int, timeout: float = 60.0
) -> list[bytes]:
    consumer = Consumer(
        sasl(
            bootstrap,
            key,
            secret,
            **{"group.id": "e2e-reader", "enable.auto.commit": False, "auto.offset.reset": "earliest"},
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error():
                    raise AssertionError(msg.error())
                values.append(msg.value())
    finally:
        consumer.close()
    return values
