"""Security part 1 end to end: REST -> worker -> brokerd over SASL_SSL with the platform CA.

One journey (the stack is the slow part): a tenant signs up, creates a cluster (SASL_SSL by
default) and downloads its CA; confluent-kafka, kafka-python, aiokafka and kcat connect verifying
it; the wrong CA or none fails clearly; a key with an expiry is refused after it; a rotated pair
overlaps, then the old key stops; last_used_at follows use; the certificate is renewed while a
producer stays connected; finally every log file (worker, beat, brokerd, this web process) is
scanned for every secret issued on the way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from clusters.models import Cluster
from tests.e2e.provisioning_stack import provisioning_env, stop_brokers, wait_status
from tests.helpers import wait_until
from tests.platform.api import Tenant, assert_error

# kafka-python 3 loads its protocol schemas with importlib.resources' deprecated helpers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


@pytest.fixture(scope="module")
def _security_env(tmp_path_factory):
    with provisioning_env() as env:
        saved = os.environ.get("KASTLE_METERING_INTERVAL_SECONDS")
        os.environ["KASTLE_METERING_INTERVAL_SECONDS"] = "1"  # last_used_at rides on the scrape
        try:
            yield env
        finally:
            if saved is None:
                os.environ.pop("KASTLE_METERING_INTERVAL_SECONDS", None)
            else:
                os.environ["KASTLE_METERING_INTERVAL_SECONDS"] = saved


@pytest.fixture(scope="module")
def stack(_security_env, celery_services):
    yield celery_services
    stop_brokers(celery_services.data_dir)


@pytest.fixture
def e2e(stack, celery_worker):
    from clusters.models import Host

    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


@pytest.fixture
def web_log(tmp_path):
    """What this process (the web side: views, services) logs at the platform's level (INFO), in a file.

    The tenant's client libraries run in this process too; at DEBUG kafka-python logs its own SASL
    request bytes, which is the tenant's program logging its own secret, not ours.
    """
    path = tmp_path / "web.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield path
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


def _tls_login(cluster: Cluster, key: str, secret: str) -> tuple[int, str]:
    """One SASL PLAIN log-in on a new TLS connection (verifying the CA): (error code, message)."""
    from kio.schema.sasl_authenticate.v0 import request as auth_req
    from kio.schema.sasl_authenticate.v0 import response as auth_resp
    from kio.schema.sasl_handshake.v1 import request as hs_req
    from kio.schema.sasl_handshake.v1 import response as hs_resp

    from sharedkit.kafka_wire import cluster_conn

    host, _, port = cluster.bootstrap_servers.split(",")[0].rpartition(":")
    conn = cluster_conn(cluster, host, int(port))
    try:
        conn.call(hs_req.SaslHandshakeRequest(mechanism="PLAIN"), hs_resp.SaslHandshakeResponse)
        reply = conn.call(
            auth_req.SaslAuthenticateRequest(auth_bytes=f"\0{key}\0{secret}".encode()),
            auth_resp.SaslAuthenticateResponse,
        )
        return int(reply.error_code), reply.error_message or ""
    except ConnectionError as exc:
        return -1, str(exc)
    finally:
        conn.close()


def _served_serial(bootstrap: str, ca_file: Path) -> str:
    host, _, port = bootstrap.rpartition(":")
    ctx = ssl.create_default_context(cafile=str(ca_file))
    import socket

    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def test_sasl_ssl_cluster_journey(e2e, api_client, tmp_path, web_log, caplog):
    from pki.clients import client_configs, kcat_args

    secrets: dict[str, str] = {}
    # 1. sign up over REST (a password and a REST token to look for in the logs later)
    password = "a long passphrase 42 " + os.urandom(4).hex()
    signup = api_client.post(
        "/api/v1/signup", {"email": "sec@journey.example", "password": password, "organization": "Sec"}
    )
    assert signup.status_code == 201, signup.content
    secrets["user password"] = password
    secrets["REST token"] = signup.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secrets['REST token']}")
    client = api_client

    # 2. a cluster: SASL_SSL by default
    started = time.monotonic()
    created = client.post("/api/v1/clusters", {"name": "secure", "plan": "basic"})
    assert created.status_code == 202 and created.json()["security_protocol"] == "SASL_SSL"
    cluster_id = created.json()["id"]
    body = wait_status(client, cluster_id, "RUNNING", timeout=45)
    print(f"\nSASL_SSL cluster create -> RUNNING: {time.monotonic() - started:.2f}s")
    bootstrap = body["bootstrap_servers"]
    cluster = Cluster.objects.get(public_id=cluster_id)
    secrets["internal password"] = cluster.internal_password()
    toml = next((e2e.data_dir / "hosts" / "local" / "clusters" / cluster_id).glob("broker-*/brokerd.toml"))
    assert '"listeners" = ["SASL_SSL://' in toml.read_text()

    # 3. the CA bundle: tenant-scoped
    ca = client.get(f"/api/v1/clusters/{cluster_id}/ca.pem")
    assert ca.status_code == 200 and ca["Content-Type"] == "application/x-pem-file"
    assert ca.content.startswith(b"-----BEGIN CERTIFICATE-----")
    ca_file = tmp_path / "kastle-ca.pem"
    ca_file.write_bytes(ca.content)
    other = Tenant("owner").client
    assert_error(other.get(f"/api/v1/clusters/{cluster_id}/ca.pem"), 404)
    key_dir = e2e.data_dir / "pki"
    assert oct((key_dir / "ca.key").stat().st_mode & 0o777) == "0o600"

    # 4. keys: one that expires soon, and one for the clients
    expiring_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=11)
    short = client.post(
        f"/api/v1/clusters/{cluster_id}/api-keys",
        {"description": "short-lived", "expires_at": expiring_at.isoformat()},
    ).json()
    made = client.post(f"/api/v1/clusters/{cluster_id}/api-keys", {"description": "clients"}).json()
    key, secret = made["key"], made["secret"]
    secrets["API secret"], secrets["short-lived API secret"] = secret, short["secret"]
    wait_until(lambda: _tls_login(cluster, key, secret)[0] == 0, timeout=6, message="the key to work")
    assert _tls_login(cluster, short["key"], short["secret"])[0] == 0
    assert (
        client.post(f"/api/v1/clusters/{cluster_id}/topics", {"name": "tls", "partitions": 1}).status_code
        == 201
    )

    # 5. four clients, each verifying the CA (and the host name), from the shared client configs
    configs = client_configs(cluster, key=key, secret=secret, ca_location=str(ca_file))
    producer = Producer({**configs["confluent_kafka"], "acks": "all"})
    for i in range(50):
        producer.produce("tls", value=f"m{i}".encode())
    assert producer.flush(15) == 0

    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    kp = configs["kafka_python"]
    consumer = KafkaConsumer(**kp, enable_auto_commit=False, consumer_timeout_ms=10000)
    consumer.assign([KTP("tls", 0)])
    consumer.seek_to_beginning()
    got = []
    for message in consumer:
        got.append(message.value)
        if len(got) == 50:
            break
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(50)]

    from aiokafka import AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    async def aio() -> None:
        conf = dict(configs["aiokafka"])
        ctx = create_ssl_context(cafile=conf.pop("ssl_cafile"))
        aio_producer = AIOKafkaProducer(**conf, ssl_context=ctx)
        await aio_producer.start()
        try:
            await aio_producer.send_and_wait("tls", b"from aiokafka")
        finally:
            await aio_producer.stop()

    asyncio.run(aio())

    kcat = subprocess.run(
        ["kcat", *kcat_args(cluster, key=key, secret=secret, ca_location=str(ca_file)), "-C", "-t", "tls",
         "-o", "beginning", "-e", "-q", "-m", "10"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert kcat.returncode == 0, kcat.stderr
    assert kcat.stdout.splitlines()[-1] == "from aiokafka" and len(kcat.stdout.splitlines()) == 51

    # 6. the wrong CA, or none: a clear certificate error
    from pki import ca as pki_ca

    wrong = tmp_path / "wrong-ca.pem"
    wrong.write_text(pki_ca.generate_ca("not Kastle").cert_pem)
    for location in (str(wrong), "probe"):
        errors: list[KafkaError] = []
        admin = AdminClient(
            {**configs["confluent_kafka"], "ssl.ca.location": location, "error_cb": errors.append}
        )
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=2)
        admin.poll(0.1)
        assert any("certificate verify failed" in e.str() for e in errors), [e.str() for e in errors]
    args = kcat_args(cluster, key=key, secret=secret)
    at = args.index(next(a for a in args if a.startswith("ssl.ca.location=")))
    no_ca = args[: at - 1] + args[at + 1 :]  # without "-X ssl.ca.location=...": the system store only
    failed = subprocess.run(["kcat", *no_ca, "-L", "-m", "3"], capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0 and "certificate verify failed" in failed.stderr, failed.stderr

    # 7. the key with an expiry is refused after it (the broker checks; the file also drops it)
    wait_until(lambda: dt.datetime.now(dt.UTC) >= expiring_at, timeout=15, interval=0.05, message="expiry")
    refused_after = time.monotonic()
    wait_until(lambda: _tls_login(cluster, short["key"], short["secret"])[0] == 58, timeout=3, interval=0.05)
    print(f"expired key refused {(time.monotonic() - refused_after) * 1000:.0f} ms after its expires_at")
    code, message = _tls_login(cluster, short["key"], short["secret"])
    assert code == 58, (code, message)
    listed = client.get(f"/api/v1/clusters/{cluster_id}/api-keys/{short['key']}").json()
    assert listed["status"] == "EXPIRED"

    # 8. rotation: the pair overlaps, then the old key stops
    rotated = client.post(f"/api/v1/clusters/{cluster_id}/api-keys/{key}/rotate", {"overlap_seconds": 4})
    assert rotated.status_code == 201, rotated.content
    rotated = rotated.json()
    secrets["rotated API secret"] = rotated["secret"]
    assert rotated["rotated_from"] == key and rotated["description"] == "clients"
    old_expiry = dt.datetime.fromisoformat(rotated["rotated_from_expires_at"].replace("Z", "+00:00"))
    wait_until(lambda: _tls_login(cluster, rotated["key"], rotated["secret"])[0] == 0, timeout=6)
    assert _tls_login(cluster, key, secret)[0] == 0  # both work during the overlap
    producer.produce("tls", value=b"during overlap")  # the old key's open connection still works
    assert producer.flush(10) == 0
    wait_until(
        lambda: dt.datetime.now(dt.UTC) >= old_expiry, timeout=10, interval=0.05, message="overlap end"
    )
    t0 = time.monotonic()
    wait_until(lambda: _tls_login(cluster, key, secret)[0] == 58, timeout=3, interval=0.05)
    print(f"rotated-out key refused {(time.monotonic() - t0) * 1000:.0f} ms after the overlap ended")
    assert _tls_login(cluster, rotated["key"], rotated["secret"])[0] == 0
    producer.flush(1)
    del producer  # its connections were closed by the broker when the old key expired

    # 9. last used: reported by brokerd with its metrics, picked up by the metering scrape
    def last_used(k: str):
        return client.get(f"/api/v1/clusters/{cluster_id}/api-keys/{k}").json()["last_used_at"]

    assert wait_until(lambda: last_used(key), timeout=15, message="last_used_at of the clients' key")
    assert last_used(rotated["key"]) is None or last_used(rotated["key"])  # used by a login only
    new_producer = Producer({**client_configs(cluster, key=rotated["key"], secret=rotated["secret"],
                                              ca_location=str(ca_file))["confluent_kafka"]})  # fmt: skip
    new_producer.produce("tls", value=b"new key")
    assert new_producer.flush(10) == 0
    before = time.time()
    wait_until(
        lambda: (
            (v := last_used(rotated["key"]))
            and dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() >= before - 5
        ),
        timeout=15,
        message="last_used_at of the new key",
    )

    # 10. renewal: a certificate near its end is re-issued by reconciliation and served to new
    # handshakes, while the producer's connection stays up
    from pki.models import BrokerCertificate

    old_serial = _served_serial(bootstrap, ca_file)
    BrokerCertificate.objects.filter(cluster=cluster).update(
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    t0 = time.monotonic()
    wait_until(
        lambda: BrokerCertificate.objects.get(cluster=cluster).serial != old_serial,
        timeout=15,
        message="renewal",
    )
    new_serial = BrokerCertificate.objects.get(cluster=cluster).serial
    wait_until(
        lambda: _served_serial(bootstrap, ca_file) == new_serial, timeout=10, message="new cert served"
    )
    print(f"certificate renewed and served after {time.monotonic() - t0:.2f}s")
    new_producer.produce("tls", value=b"after renewal")
    assert new_producer.flush(10) == 0
    broker_logs = list((e2e.data_dir / "hosts").rglob("brokerd.log"))
    assert any("TLS certificate reloaded" in p.read_text() for p in broker_logs)
    del new_producer

    # 11. no secret in any log: worker, beat, brokerd (log and stderr), and this web process
    logs = [*e2e.workdir.glob("*.log"), *(e2e.data_dir / "hosts").rglob("brokerd.log"),
            *(e2e.data_dir / "hosts").rglob("brokerd.stderr"), web_log]  # fmt: skip
    scanned = 0
    for path in logs:
        text = path.read_text(errors="replace")
        scanned += len(text)
        for name, value in secrets.items():
            assert value not in text, f"the {name} appears in {path}"
    for name, value in secrets.items():
        assert value not in caplog.text, f"the {name} appears in this process's captured log"
    assert scanned > 10_000, "the logs were empty: nothing was scanned"
    print(f"scanned {len(logs)} log files ({scanned} bytes) for {len(secrets)} secrets")
