"""brokerd's SASL_SSL listener: four clients verifying the CA, clear failures without it,
certificate reload without dropping connections, and key expiry enforced by the broker.

One broker serves the module (TLS start-up and client handshakes are the slow part).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pki import ca
from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.conftest import Broker

USER, PASSWORD = "alice", "alice-secret"
# kafka-python 3 loads its protocol schemas with importlib.resources' deprecated helpers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


class TlsBroker(Broker):
    """A broker with a SASL_SSL listener (and SASL_PLAINTEXT for comparison)."""

    def __init__(self, root: Path, **options) -> None:
        super().__init__(root, plaintext=False, sasl=True, **options)
        self.ports["SASL_SSL"] = 0
        self.authority = ca.generate_ca("Kastle test CA")
        self.ca_path = self.root / "ca.pem"
        self.ca_path.write_text(self.authority.cert_pem)
        self.cert_path = self.root / "broker.crt"
        self.key_path = self.root / "broker.key"
        self.issue()

    def issue(self, hosts=("127.0.0.1", "localhost")) -> ca.Issued:
        issued = ca.issue_server_certificate(
            self.authority.key_pem, self.authority.cert_pem, common_name="broker", hosts=hosts, valid_days=30
        )
        # key first, then the certificate: brokerd retries a pair that does not match yet
        _atomic_write(self.key_path, issued.key_pem)
        _atomic_write(self.cert_path, issued.cert_pem)
        return issued

    def command(self) -> list[str]:
        cmd = super().command()
        return [
            *cmd,
            "--listener", f"SASL_SSL://127.0.0.1:{self.ports['SASL_SSL']}",
            "--tls-cert", str(self.cert_path), "--tls-key", str(self.key_path),
            "--set", "tls.poll.ms=100", "--set", "credentials.poll.ms=100",
        ]  # fmt: skip

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['SASL_SSL']}"

    def tls_config(self, ca_location: str | None = None, **extra) -> dict:
        conf = {
            "bootstrap.servers": self.ssl_bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": USER,
            "sasl.password": PASSWORD,
            "ssl.ca.location": str(self.ca_path) if ca_location is None else ca_location,
            "socket.timeout.ms": 10000,
        }
        conf.update(extra)
        return conf


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    broker = TlsBroker(tmp_path_factory.mktemp("brokerd-tls"))
    broker.start()
    yield broker
    try:
        broker.stop()
    except Exception:
        broker.kill()


def _served_serial(port: int, ca_path: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca_path))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def _tls_wire(broker: TlsBroker, user: str = USER, password: str = PASSWORD) -> Wire:
    """A raw Kafka connection over TLS, authenticated with SASL PLAIN."""
    wire = Wire(broker.ports["SASL_SSL"])
    ctx = ssl.create_default_context(cafile=str(broker.ca_path))
    wire.sock = ctx.wrap_socket(wire.sock, server_hostname="127.0.0.1")
    resp = wire.request(request_class(17, 1)(mechanism="PLAIN"))
    assert resp.error_code == 0
    resp = wire.request(request_class(36, 2)(auth_bytes=f"\x00{user}\x00{password}".encode()))
    assert resp.error_code == 0, resp.error_message
    return wire


def _plain_login(port: int, user: str, password: str, ca_path: Path | None = None) -> tuple[int, str | None]:
    wire = Wire(port)
    try:
        if ca_path is not None:
            ctx = ssl.create_default_context(cafile=str(ca_path))
            wire.sock = ctx.wrap_socket(wire.sock, server_hostname="127.0.0.1")
        wire.request(request_class(17, 1)(mechanism="PLAIN"))
        resp = wire.request(request_class(36, 2)(auth_bytes=f"\x00{user}\x00{password}".encode()))
        return int(resp.error_code), resp.error_message
    finally:
        wire.close()


# --- four clients, verifying the CA (and the host name) ---------------------------------------------
def test_confluent_kafka_produces_and_consumes_over_sasl_ssl(tls_broker) -> None:
    admin = AdminClient(tls_broker.tls_config(**{"sasl.mechanism": "SCRAM-SHA-256"}))
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("tls-orders", 1)])["tls-orders"].result(10)
    producer = Producer(tls_broker.tls_config(acks="all"))
    for i in range(100):
        producer.produce("tls-orders", value=f"v{i}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer(tls_broker.tls_config(**{"group.id": "g", "enable.auto.commit": False}))
    consumer.assign([TopicPartition("tls-orders", 0, 0)])
    values = []
    deadline = time.monotonic() + 10
    while len(values) < 100 and time.monotonic() < deadline:
        for msg in consumer.consume(100, timeout=0.5):
            assert not msg.error(), msg.error()
            values.append(msg.value())
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(100)]


def test_kafka_python_over_sasl_ssl(tls_broker) -> None:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(
        bootstrap_servers=tls_broker.ssl_bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=USER,
        sasl_plain_password=PASSWORD,
        ssl_cafile=str(tls_broker.ca_path),
        ssl_check_hostname=True,
    )
    try:
        assert isinstance(client.list_topics(), list)
    finally:
        client.close()


def test_aiokafka_over_sasl_ssl(tls_broker) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=tls_broker.ssl_bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_plain_username=USER,
            sasl_plain_password=PASSWORD,
            ssl_context=create_ssl_context(cafile=str(tls_broker.ca_path)),
        )
        await producer.start()
        try:
            await producer.send_and_wait("tls-aio", b"hello")
        finally:
            await producer.stop()

    asyncio.run(run())


def _kcat(broker: TlsBroker, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["kcat", "-b", broker.ssl_bootstrap, "-X", "security.protocol=SASL_SSL",
         "-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", f"sasl.username={USER}",
         "-X", f"sasl.password={PASSWORD}", "-m", "3", *extra, "-L"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_kcat_over_sasl_ssl(tls_broker) -> None:
    done = _kcat(tls_broker, "-X", f"ssl.ca.location={tls_broker.ca_path}")
    assert done.returncode == 0, done.stderr
    assert "sasl_ssl://127.0.0.1" in done.stdout


# --- the wrong CA, or none, fails clearly ----------------------------------------------------------
def _close_leaked_sockets(port: int) -> None:
    """kafka-python leaves the SSL socket of a failed handshake open for the garbage collector."""
    for obj in gc.get_objects():
        # type(), not isinstance(): gc also yields dead weak proxies, which raise ReferenceError.
        if type(obj) is ssl.SSLSocket and obj.fileno() != -1:
            with contextlib.suppress(OSError):
                if obj.getpeername()[1] != port:
                    continue
            obj.close()


def test_clients_without_the_ca_fail_with_a_certificate_error(tls_broker, tmp_path, caplog) -> None:
    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_text(ca.generate_ca("Somebody else's CA").cert_pem)

    for location in (str(wrong), "probe"):  # "probe": the system trust store only
        errors: list[KafkaError] = []
        admin = AdminClient(tls_broker.tls_config(location, error_cb=errors.append))
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=2)
        admin.poll(0.2)
        assert any("certificate verify failed" in e.str() for e in errors), [e.str() for e in errors]

    done = _kcat(tls_broker, "-X", f"ssl.ca.location={wrong}")
    assert done.returncode != 0 and "certificate verify failed" in done.stderr, done.stderr

    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError as KafkaPythonError

    with caplog.at_level(logging.ERROR, logger="kafka"), pytest.raises(KafkaPythonError):
        KafkaAdminClient(
            bootstrap_servers=tls_broker.ssl_bootstrap, security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN", sasl_plain_username=USER, sasl_plain_password=PASSWORD,
            ssl_cafile=str(wrong), request_timeout_ms=2000, bootstrap_timeout_ms=2000,
        )  # fmt: skip
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    caplog.clear()
    _close_leaked_sockets(tls_broker.ports["SASL_SSL"])

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.helpers import create_ssl_context

    async def aio() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=tls_broker.ssl_bootstrap, security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN", sasl_plain_username=USER, sasl_plain_password=PASSWORD,
            ssl_context=create_ssl_context(cafile=str(wrong)), request_timeout_ms=2000,
        )  # fmt: skip
        try:
            with pytest.raises(KafkaConnectionError):
                await producer.start()
        finally:
            await producer.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        asyncio.run(aio())
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text

    # The certificate names 127.0.0.1 and localhost only: another name fails hostname checks.
    ctx = ssl.create_default_context(cafile=str(tls_broker.ca_path))
    with (
        socket.create_connection(("127.0.0.1", tls_broker.ports["SASL_SSL"]), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="kafka.example.com", do_handshake_on_connect=False) as tls,
        pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
    ):
        tls.do_handshake()


def test_plaintext_bytes_on_the_tls_port_are_refused(tls_broker) -> None:
    code = None
    with contextlib.suppress(ConnectionError, OSError, AttributeError):
        code, _ = _plain_login(tls_broker.ports["SASL_SSL"], USER, PASSWORD)
    assert code is None  # no Kafka response without TLS
    assert tls_broker.healthz() == 200


# --- certificate reload ------------------------------------------------------------------------------
def test_certificate_reload_keeps_open_connections(tls_broker) -> None:
    port = tls_broker.ports["SASL_SSL"]
    old_serial = _served_serial(port, tls_broker.ca_path)
    wire = _tls_wire(tls_broker)
    producer = Producer(tls_broker.tls_config(acks="all"))
    producer.produce("tls-reload", value=b"before")
    assert producer.flush(10) == 0
    try:
        issued = tls_broker.issue()
        started = time.monotonic()
        while _served_serial(port, tls_broker.ca_path) != issued.serial:
            assert time.monotonic() - started < 5, "new certificate not served"
            time.sleep(0.05)
        print(f"\nnew certificate served after {time.monotonic() - started:.2f}s")
        assert issued.serial != old_serial
        # The connections made before the reload still work.
        md = wire.request(request_class(3, 1)(topics=None))
        assert md is not None and md.brokers
        producer.produce("tls-reload", value=b"after")
        assert producer.flush(10) == 0
        assert "closing connection" not in tls_broker.log_text()
        assert "TLS certificate reloaded" in tls_broker.log_text()

        # A broken pair (key of another certificate) is not loaded; the current one keeps serving.
        other = ca.issue_server_certificate(
            tls_broker.authority.key_pem, tls_broker.authority.cert_pem,
            common_name="x", hosts=["127.0.0.1"], valid_days=1,
        )  # fmt: skip
        original_key = tls_broker.key_path.read_text()
        _atomic_write(tls_broker.key_path, other.key_pem)
        time.sleep(0.4)
        assert _served_serial(port, tls_broker.ca_path) == issued.serial
        _atomic_write(tls_broker.key_path, original_key)
    finally:
        wire.close()


# --- key expiry (the credentials file's expires_at) -----------------------------------------------
def test_an_expired_key_is_refused_and_its_connections_closed(tls_broker) -> None:
    from brokerd import credentials

    port = tls_broker.ports["SASL_SSL"]
    expires = time.time() + 2.0
    credentials.set_user(tls_broker.credentials_path, "temp", "temp-secret", expires_at=expires)
    deadline = time.monotonic() + 3
    while _plain_login(port, "temp", "temp-secret", tls_broker.ca_path)[0] != 0:
        assert time.monotonic() < deadline, "the new key never worked"
        time.sleep(0.05)
    wire = _tls_wire(tls_broker, "temp", "temp-secret")
    try:
        assert wire.closed_by_peer(timeout=5.0), "the expired key's connection stays open"
        closed_after = time.time() - expires
        code, message = _plain_login(port, "temp", "temp-secret", tls_broker.ca_path)
        print(f"\nexpired key: connection closed {closed_after * 1000:.0f} ms after expires_at")
        assert code == 58 and "expired" in message
        assert closed_after < 2.0
    finally:
        wire.close()
    # SCRAM is refused too, and a wrong password does not learn that the key expired.
    code, message = _plain_login(port, "temp", "wrong", tls_broker.ca_path)
    assert code == 58 and "expired" not in message
    admin = AdminClient(
        tls_broker.tls_config(**{"sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "temp",
                                 "sasl.password": "temp-secret"})
    )  # fmt: skip
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=2)


def test_a_new_expiry_alone_keeps_the_keys_connections(tls_broker) -> None:
    """Rotation gives the old key an expires_at: its open connections live until then."""
    from brokerd import credentials

    credentials.set_user(tls_broker.credentials_path, "rot", "rot-secret")
    time.sleep(0.3)
    wire = _tls_wire(tls_broker, "rot", "rot-secret")
    try:
        users = credentials.load(tls_broker.credentials_path)
        users["rot"]["expires_at"] = time.time() + 60
        credentials.write_atomic(tls_broker.credentials_path, users)
        assert not wire.closed_by_peer(timeout=0.6)
        assert wire.request(request_class(3, 1)(topics=None)) is not None
    finally:
        wire.close()


def test_sasl_ssl_needs_a_certificate(tmp_path) -> None:
    from brokerd.settings import Settings, SettingsError

    base = {"data.dir": str(tmp_path), "listeners": ["SASL_SSL://127.0.0.1:0"],
            "credentials.file": str(tmp_path / "c.json")}  # fmt: skip
    with pytest.raises(SettingsError, match=r"tls\.cert\.file"):
        Settings.resolve(flags=base)
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.resolve(flags={**base, "tls.cert.file": str(tmp_path / "no.pem"), "tls.key.file": "x"})
