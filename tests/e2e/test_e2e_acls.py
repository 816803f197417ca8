"""Service accounts, ACLs and scoped keys end to end: REST -> PostgreSQL -> worker -> brokerd's
authorizer -> confluent-kafka and kafka-python clients.

One provisioned cluster per test (the database is flushed between tests). Every denial is checked
for Kafka's own authorization error, not just "it failed".
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, AdminClient, NewTopic
from confluent_kafka.admin import ResourcePatternType as Pattern
from confluent_kafka.admin import ResourceType as RT

from tests.e2e.provisioning_stack import (
    auth_result,
    create_running_cluster,
    provisioning_env,
    sasl,
    stop_brokers,
    wait_status,
)
from tests.helpers import wait_until
from tests.platform.api import Tenant, assert_error, assert_page

# kafka-python 3 loads its protocol schemas with importlib.resources' deprecated helpers.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")


@pytest.fixture(scope="module")
def _acl_env():
    with provisioning_env() as env:
        yield env


@pytest.fixture(scope="module")
def stack(_acl_env, celery_services):
    yield celery_services
    stop_brokers(celery_services.data_dir)


@pytest.fixture
def e2e(stack, celery_worker):
    from clusters.models import Host

    wait_until(lambda: Host.objects.filter(name="local").exists(), timeout=15, message="host registration")
    yield stack
    from sharedkit import kafka_admin

    kafka_admin.clear_cache()


def _key(client, cluster_id: str, bootstrap: str, **body) -> tuple[str, str]:
    made = client.post(f"/api/v1/clusters/{cluster_id}/api-keys", body, format="json")
    assert made.status_code == 201, made.content
    key, secret = made.json()["key"], made.json()["secret"]
    wait_until(lambda: auth_result(bootstrap, key, secret, timeout=2) is True, timeout=8, message="key works")
    return key, secret


def _produce(bootstrap: str, key: str, secret: str, topic: str, n: int = 5) -> list[KafkaError | None]:
    producer = Producer(sasl(bootstrap, key, secret, **{"message.timeout.ms": 6000, "linger.ms": 1}))
    results: list[KafkaError | None] = []
    for i in range(n):
        producer.produce(topic, value=f"v{i}".encode(), on_delivery=lambda err, msg: results.append(err))
    producer.flush(10)
    return results


def _consume(bootstrap: str, key: str, secret: str, topic: str, group: str, want: int) -> list[bytes]:
    """Subscribe (join the group) and read; raises KafkaException with the first error."""
    consumer = Consumer(sasl(bootstrap, key, secret, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 15
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg.value())
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def _create_topic(bootstrap: str, key: str, secret: str, name: str) -> KafkaError | None:
    admin = AdminClient(sasl(bootstrap, key, secret))
    try:
        admin.create_topics([NewTopic(name, 1)], request_timeout=10)[name].result(15)
        return None
    except KafkaException as exc:
        return exc.args[0]


def _visible_topics(bootstrap: str, key: str, secret: str) -> set[str]:
    admin = AdminClient(sasl(bootstrap, key, secret))
    return {t for t in admin.list_topics(timeout=10).topics if not t.startswith("__")}


def _kp(bootstrap: str, key: str, secret: str) -> dict:
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": key,
        "sasl_plain_password": secret,
    }


def test_scoped_keys_can_do_exactly_what_their_scope_allows(e2e):
    tenant = Tenant("owner")
    client = tenant.client
    cluster = create_running_cluster(client, name="scopes")
    cid, bootstrap = cluster["id"], cluster["bootstrap_servers"]
    for name in ("orders.events", "payments.events"):
        assert client.post(f"/api/v1/clusters/{cid}/topics", {"name": name}, format="json").status_code == 201

    full = _key(client, cid, bootstrap)  # no scope: the whole cluster, as the first key of a cluster
    producer = _key(client, cid, bootstrap, scope={"topic_prefix": "orders.", "access": "produce"})
    consumer = _key(client, cid, bootstrap, scope={"topic_prefix": "orders.", "access": "consume"})
    owner = _key(client, cid, bootstrap, scope={"topic_prefix": "orders.", "access": "full"})

    # --- confluent-kafka -------------------------------------------------------------------------
    # the unscoped key: everything
    assert _produce(bootstrap, *full, "payments.events") == [None] * 5
    assert _visible_topics(bootstrap, *full) == {"orders.events", "payments.events"}
    # produce scope: writes and describes its prefix; nothing else
    assert _produce(bootstrap, *producer, "orders.events") == [None] * 5
    denied = _produce(bootstrap, *producer, "payments.events", n=1)
    assert [e.code() for e in denied] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], denied
    assert _visible_topics(bootstrap, *producer) == {"orders.events"}  # Metadata hides the rest
    assert _create_topic(bootstrap, *producer, "orders.new").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as read:
        _consume(bootstrap, *producer, "orders.events", "orders.g", 1)
    assert read.value.args[0].code() in (
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    )
    # consume scope: joins groups with the prefix and reads; cannot write, nor use other groups
    assert len(_consume(bootstrap, *consumer, "orders.events", "orders.billing", 5)) == 5
    with pytest.raises(KafkaException) as group:
        _consume(bootstrap, *consumer, "orders.events", "analytics", 1)
    assert group.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as other_topic:
        _consume(bootstrap, *consumer, "payments.events", "orders.pay", 1)
    assert other_topic.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    denied = _produce(bootstrap, *consumer, "orders.events", n=1)
    assert [e.code() for e in denied] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # full scope: creates topics under its prefix only, reads and writes them
    assert _create_topic(bootstrap, *owner, "orders.created") is None
    assert _create_topic(bootstrap, *owner, "payments.new").code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _produce(bootstrap, *owner, "orders.created") == [None] * 5
    assert len(_consume(bootstrap, *owner, "orders.created", "orders.own", 5)) == 5
    assert _visible_topics(bootstrap, *owner) == {"orders.events", "orders.created"}
    # ACLs: only the unscoped key may describe them
    flt = AclBindingFilter(RT.ANY, None, Pattern.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
    owner_admin = AdminClient(sasl(bootstrap, *owner))  # kept alive: its futures need the handle
    # The broker answers CLUSTER_AUTHORIZATION_FAILED (kafka-python raises it, below); librdkafka
    # 2.16 drops DescribeAcls' top-level error and reports an empty list.
    assert owner_admin.describe_acls(flt, request_timeout=10).result(15) == []
    full_admin = AdminClient(sasl(bootstrap, *full))
    seen = full_admin.describe_acls(flt, request_timeout=10).result(15)
    assert {a.principal for a in seen} >= {f"User:{k}" for k, _ in (full, producer, consumer, owner)}

    # --- kafka-python ----------------------------------------------------------------------------
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.admin import NewTopic as KNewTopic
    from kafka.errors import (
        ClusterAuthorizationFailedError,
        GroupAuthorizationFailedError,
        TopicAuthorizationFailedError,
    )

    kp = KafkaProducer(**_kp(bootstrap, *producer), max_block_ms=8000, request_timeout_ms=8000)
    try:
        kp.send("orders.events", b"kp").get(timeout=10)
        with pytest.raises(TopicAuthorizationFailedError):
            kp.send("payments.events", b"no").get(timeout=10)
    finally:
        kp.close(timeout=5)
    kc = KafkaConsumer(
        "orders.events",
        **_kp(bootstrap, *consumer),
        group_id="orders.kp",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    try:
        got = []
        for message in kc:
            got.append(message.value)
            if len(got) >= 6:
                break
        assert b"kp" in got
    finally:
        kc.close()
    kc = KafkaConsumer("orders.events", **_kp(bootstrap, *consumer), group_id="analytics.kp")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in range(20):
                kc.poll(timeout_ms=500)
    finally:
        kc.close()
    ka = KafkaAdminClient(**_kp(bootstrap, *owner), request_timeout_ms=10000)
    try:
        ka.create_topics([KNewTopic("orders.kp", 1, 1)])
        with pytest.raises(TopicAuthorizationFailedError):
            ka.create_topics([KNewTopic("payments.kp", 1, 1)], raise_errors=True)
        any_acl = ACLFilter(
            principal=None,
            host="*",
            operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        with pytest.raises(ClusterAuthorizationFailedError):
            ka.describe_acls(any_acl)
    finally:
        ka.close()

    # revoking a key deletes its ACLs
    assert client.delete(f"/api/v1/clusters/{cid}/api-keys/{producer[0]}").status_code == 204
    left = assert_page(client.get(f"/api/v1/clusters/{cid}/acls", {"principal": f"User:{owner[0]}"}).json())
    assert left and all(a["principal"] == f"User:{owner[0]}" for a in left)

    def producer_acls_gone():
        seen = full_admin.describe_acls(flt, request_timeout=10).result(15)
        return not any(a.principal == f"User:{producer[0]}" for a in seen)

    wait_until(producer_acls_gone, timeout=10, message="the revoked key's ACLs to be deleted")


def test_acl_rest_round_trip_service_accounts_and_tenancy(e2e):
    tenant = Tenant("owner")
    client = tenant.client
    # the cluster's first key, issued while it is still PROVISIONING, gets full access once RUNNING
    created = client.post(
        "/api/v1/clusters", {"name": "acls", "plan": "basic", "security_protocol": "SASL_PLAINTEXT"}
    )
    assert created.status_code == 202, created.content
    cid = created.json()["id"]
    first = client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": "first"}, format="json").json()
    bootstrap = wait_status(client, cid, "RUNNING")["bootstrap_servers"]
    path = f"/api/v1/clusters/{cid}/acls"
    full = (first["key"], first["secret"])
    wait_until(lambda: auth_result(bootstrap, *full, timeout=2) is True, timeout=8, message="first key works")
    app = client.post("/api/v1/service-accounts", {"name": "billing-app"}, format="json").json()
    narrow = _key(
        client,
        cid,
        bootstrap,
        owner={"type": "service_account", "id": app["id"]},
        scope={"topic_prefix": "billing.", "access": "consume"},
    )
    for name in ("ledger", "billing.in"):
        assert client.post(f"/api/v1/clusters/{cid}/topics", {"name": name}, format="json").status_code == 201
    tenant_admin = AdminClient(sasl(bootstrap, *full))

    # a key's scope and full access are on the broker, listed and marked managed
    rows = assert_page(client.get(path, {"principal": narrow[0]}).json())
    assert {(r["resource_type"], r["resource_name"], r["operation"]) for r in rows} == {
        ("TOPIC", "billing.", "READ"),
        ("TOPIC", "billing.", "DESCRIBE"),
        ("GROUP", "billing.", "READ"),
    }
    assert all(r["managed"] and r["service_account"] == app["id"] and r["api_key"] == narrow[0] for r in rows)

    # an ACL for the service account: on its key now, and on keys it gets later
    body = {"resource_type": "TOPIC", "resource_name": "ledger", "principal": app["id"], "operation": "READ"}
    made = client.post(path, body, format="json")
    assert made.status_code == 201, made.content
    assert [r["principal"] for r in made.json()] == [f"User:{narrow[0]}"]
    assert _produce(bootstrap, *full, "ledger", n=3) == [None] * 3
    assert len(_consume(bootstrap, *narrow, "ledger", "billing.ledger", 3)) == 3
    second = _key(client, cid, bootstrap, owner={"type": "service_account", "id": app["id"]}, scope=None)
    ledger = assert_page(client.get(path, {"resource_name": "ledger", "pattern_type": "LITERAL"}).json())
    assert {r["principal"] for r in ledger} == {f"User:{narrow[0]}", f"User:{second[0]}"}

    # an ACL for one key, seen by the tenant's own AdminClient (one truth), then deleted by id
    deny = {
        "resource_type": "GROUP",
        "resource_name": "billing.",
        "pattern_type": "PREFIXED",
        "principal": f"User:{narrow[0]}",
        "operation": "READ",
        "permission": "DENY",
    }
    created = client.post(path, deny, format="json").json()
    assert len(created) == 1 and created[0]["managed"] is False
    who = f"User:{narrow[0]}"
    flt = AclBindingFilter(
        RT.GROUP, "billing.", Pattern.PREFIXED, who, None, AclOperation.READ, AclPermissionType.DENY
    )
    seen = tenant_admin.describe_acls(flt, request_timeout=10).result(15)
    assert len(seen) == 1
    with pytest.raises(KafkaException) as denied:  # DENY wins over the scope's ALLOW
        _consume(bootstrap, *narrow, "billing.in", "billing.g", 1)
    assert denied.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert client.delete(f"{path}/{created[0]['id']}").status_code == 204
    assert tenant_admin.describe_acls(flt, request_timeout=10).result(15) == []
    assert_error(client.delete(f"{path}/{created[0]['id']}"), 404)

    # an ACL created with the tenant's AdminClient is listed over REST
    from confluent_kafka.admin import AclBinding

    mine = AclBinding(RT.GROUP, "audit-", Pattern.PREFIXED, "User:*", "*", AclOperation.READ,
                      AclPermissionType.ALLOW)  # fmt: skip
    tenant_admin.create_acls([mine], request_timeout=10)[mine].result(15)
    listed = assert_page(client.get(path, {"resource_type": "GROUP", "principal": "User:*"}).json())
    assert [(r["resource_name"], r["pattern_type"], r["managed"]) for r in listed] == [
        ("audit-", "PREFIXED", False)
    ]

    # delete by filter: the service account's binding goes from the broker and from desired state
    gone = client.delete(f"{path}?principal={app['id']}&resource_name=ledger")
    assert gone.status_code == 200 and len(gone.json()["deleted"]) == 2
    assert assert_page(client.get(path, {"resource_name": "ledger"}).json()) == []
    from acls.models import ServiceAccountBinding
    from acls.tasks import cluster_sync

    assert not ServiceAccountBinding.objects.exists()
    from clusters.models import Cluster

    cluster_sync.apply(args=(Cluster.objects.get(public_id=cid).pk,)).get()
    assert assert_page(client.get(path, {"resource_name": "ledger"}).json()) == []

    # reconcile repairs a live key's missing ACLs (deleted behind Kastle's back)
    by_key = AclBindingFilter(RT.ANY, None, Pattern.ANY, f"User:{narrow[0]}", None, AclOperation.ANY,
                              AclPermissionType.ANY)  # fmt: skip
    tenant_admin.delete_acls([by_key], request_timeout=10)[by_key].result(15)
    assert tenant_admin.describe_acls(by_key, request_timeout=10).result(15) == []
    cluster_sync.apply(args=(Cluster.objects.get(public_id=cid).pk,)).get()
    assert len(tenant_admin.describe_acls(by_key, request_timeout=10).result(15)) == 3

    # another tenant: the cluster's ACLs and the service account are 404; a foreign account is no principal
    other = Tenant("owner")
    assert_error(other.client.get(path), 404, "not_found")
    assert_error(other.client.post(path, body, format="json"), 404, "not_found")
    assert_error(other.client.delete(f"{path}?resource_type=TOPIC"), 404, "not_found")
    assert_error(other.client.get(f"/api/v1/service-accounts/{app['id']}"), 404, "not_found")
    foreign = other.client.post("/api/v1/service-accounts", {"name": "x"}, format="json").json()
    error = assert_error(client.post(path, {**body, "principal": foreign["id"]}, format="json"), 400)
    assert "principal" in error["details"]
