"""SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, legacy framing, reload and revocation."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from brokerd_wire import Wire, request_class
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


def list_topics(conf: dict, timeout: float = 5):
    return AdminClient(conf).list_topics(timeout=timeout)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_sasl_success_and_failure(sasl_broker, mechanism: str) -> None:
    md = list_topics(sasl_broker.sasl_config(mechanism))
    assert md.brokers[1].port == sasl_broker.ports["SASL_PLAINTEXT"]  # advertises the SASL listener
    producer = Producer(sasl_broker.sasl_config(mechanism))
    delivered = []
    producer.produce("secure", b"v", on_delivery=lambda err, msg: delivered.append(err or msg.offset()))
    producer.flush(10)
    assert delivered == [0]
    user, password = ("alice", "wrong") if mechanism != "SCRAM-SHA-512" else ("mallory", "x")
    errors = []
    conf = sasl_broker.sasl_config(mechanism, user=user, password=password, error_cb=errors.append)
    admin = AdminClient(conf)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1.5)
    admin.poll(0.2)  # serves error_cb
    assert any(e.name() == "_AUTHENTICATION" for e in errors), errors
    assert "authentication failed" in sasl_broker.log_text().lower()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka_and_kafka_python_sasl(sasl_broker, mechanism: str) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    async def produce(password: str) -> int:
        producer = AIOKafkaProducer(
            bootstrap_servers=sasl_broker.sasl_bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username="alice",
            sasl_plain_password=password,
            request_timeout_ms=5000,
        )
        try:
            await producer.start()
            meta = await producer.send_and_wait("aio-secure", b"x", partition=0)
            return meta.offset
        finally:
            await producer.stop()

    assert asyncio.run(produce("alice-secret")) >= 0
    with pytest.raises(AIOKafkaError):
        asyncio.run(produce("wrong"))

    consumer = KafkaConsumer(
        bootstrap_servers=sasl_broker.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username="alice",
        sasl_plain_password="alice-secret",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    try:
        consumer.assign([KTP("aio-secure", 0)])
        assert [m.value for m in consumer] == [b"x"]
    finally:
        consumer.close()


def _handshake(wire: Wire, mechanism: str, version: int) -> None:
    resp = wire.request(request_class(17, version)(mechanism=mechanism))
    assert resp.error_code == 0
    assert mechanism in resp.mechanisms


def test_legacy_sasl_plain_without_authenticate_framing(sasl_broker) -> None:
    port = sasl_broker.ports["SASL_PLAINTEXT"]
    with Wire(port) as wire:
        _handshake(wire, "PLAIN", 0)
        wire.send_raw(b"\x00alice\x00alice-secret")  # raw token, no Kafka header
        assert wire.recv_frame() == b""  # empty server token: success
        md = wire.request(request_class(3, 1)(topics=None))
        assert md.brokers[0].port == port
    with Wire(port) as wire:
        _handshake(wire, "PLAIN", 0)
        wire.send_raw(b"\x00alice\x00nope")
        assert wire.recv_frame() is None  # closed


def test_frames_before_authentication_are_refused(sasl_broker) -> None:
    port = sasl_broker.ports["SASL_PLAINTEXT"]
    with Wire(port) as wire:
        wire.send(request_class(3, 1)(topics=None))
        assert wire.recv_frame() is None
    with Wire(port) as wire:  # a huge frame before authentication
        wire.sock.sendall(struct.pack(">i", 10_000_000) + b"\x00" * 100)
        assert wire.closed_by_peer()
    with Wire(port) as wire:  # ApiVersions is allowed
        resp = wire.request(request_class(18, 3)(client_software_name="t", client_software_version="1"))
        assert resp.error_code == 0


def test_failed_sasl_authenticate_gets_error_then_close(sasl_broker) -> None:
    with Wire(sasl_broker.ports["SASL_PLAINTEXT"]) as wire:
        _handshake(wire, "PLAIN", 1)
        resp = wire.request(request_class(36, 2)(auth_bytes=b"\x00alice\x00bad"))
        assert resp.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert resp.error_message
        assert wire.recv_frame() is None


def test_unsupported_mechanism(sasl_broker) -> None:
    with Wire(sasl_broker.ports["SASL_PLAINTEXT"]) as wire:
        resp = wire.request(request_class(17, 1)(mechanism="GSSAPI"))
        assert resp.error_code == 33  # UNSUPPORTED_SASL_MECHANISM


def _authenticated_wire(port: int, user: str, password: str) -> Wire:
    wire = Wire(port)
    _handshake(wire, "PLAIN", 1)
    resp = wire.request(request_class(36, 2)(auth_bytes=f"\x00{user}\x00{password}".encode()))
    assert resp.error_code == 0, resp
    return wire


def test_credentials_reload_and_revocation(sasl_broker) -> None:
    port = sasl_broker.ports["SASL_PLAINTEXT"]
    with pytest.raises(KafkaException):
        list_topics(sasl_broker.sasl_config("SCRAM-SHA-256", user="bob", password="bob-secret"), timeout=2)
    sasl_broker.add_user("bob", "bob-secret")
    t0 = time.monotonic()
    deadline = t0 + 3
    while True:
        try:
            list_topics(
                sasl_broker.sasl_config("SCRAM-SHA-256", user="bob", password="bob-secret"), timeout=2
            )
            break
        except KafkaException:
            assert time.monotonic() < deadline, "new user not accepted"
            time.sleep(0.1)
    assert time.monotonic() - t0 < 2.5

    bob = _authenticated_wire(port, "bob", "bob-secret")
    alice = _authenticated_wire(port, "alice", "alice-secret")
    try:
        sasl_broker.delete_user("bob")
        assert bob.closed_by_peer(timeout=2.0), "revoked user's connection stays open"
        # alice is unaffected
        md = alice.request(request_class(3, 1)(topics=None))
        assert md is not None
        with pytest.raises(KafkaException):
            list_topics(sasl_broker.sasl_config("PLAIN", user="bob", password="bob-secret"), timeout=2)
    finally:
        bob.close()
        alice.close()
