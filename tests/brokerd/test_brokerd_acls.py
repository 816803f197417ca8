"""brokerd's authorizer (Kafka AclAuthorizer semantics) and the ACL APIs.

One SASL broker with ``authorizer.enable=true`` and ``super.users=User:kastle-internal`` (the
control plane's internal principal), and two tenants' keys scoped by prefix:

- alice: WRITE, READ and CREATE on topics prefixed ``alice.``, READ on groups prefixed
  ``alice.``, but DENY WRITE on ``alice.locked``;
- bob: READ on the topic ``alice.shared`` and on groups prefixed ``bob.`` (a consumer only).

Everything else must fail with Kafka's authorization error codes, with confluent-kafka and
kafka-python. The ACLs are created through the Kafka protocol (AdminClient) as the super user,
exactly as the control plane does.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import uuid

import pytest
from brokerd_wire import Wire, request_class, response_class
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kio.serial import entity_reader

from brokerd import acls as A
from brokerd.protocol import kio_adapter
from tests.brokerd.conftest import Broker

# kafka-python reads its protocol schemas with a deprecated importlib.resources API
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources._legacy")

SUPER = "kastle-internal"
USERS = {SUPER: "internal-secret", "alice": "alice-secret", "bob": "bob-secret"}
SETTINGS = {
    "authorizer.enable": True,
    "super.users": f"User:{SUPER}",
    "group.initial.rebalance.delay.ms": 0,
}


class AclBroker(Broker):
    USERS = USERS


def _acl(principal, rtype, name, op, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.ALLOW):
    return AclBinding(rtype, name, pattern, f"User:{principal}", "*", op, perm)


TENANT_ACLS = [
    _acl("alice", ResourceType.TOPIC, "alice.", AclOperation.WRITE, ResourcePatternType.PREFIXED),
    _acl("alice", ResourceType.TOPIC, "alice.", AclOperation.READ, ResourcePatternType.PREFIXED),
    _acl("alice", ResourceType.TOPIC, "alice.", AclOperation.CREATE, ResourcePatternType.PREFIXED),
    _acl("alice", ResourceType.GROUP, "alice.", AclOperation.READ, ResourcePatternType.PREFIXED),
    _acl("alice", ResourceType.TOPIC, "alice.locked", AclOperation.WRITE, perm=AclPermissionType.DENY),
    _acl("bob", ResourceType.TOPIC, "alice.shared", AclOperation.READ),
    _acl("bob", ResourceType.GROUP, "bob.", AclOperation.READ, ResourcePatternType.PREFIXED),
]


def _admin(b: Broker, user: str) -> AdminClient:
    return AdminClient(b.sasl_config(user=user, password=USERS[user], **{"socket.timeout.ms": 10000}))


def _wait(futures: dict, timeout: float = 15) -> dict:
    out = {}
    for key, fut in futures.items():
        try:
            out[key] = fut.result(timeout=timeout)
        except KafkaException as exc:
            out[key] = exc.args[0]
    return out


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory):
    b = AclBroker(tmp_path_factory.mktemp("brokerd-acls"), sasl=True, settings=SETTINGS)
    b.start()
    try:
        admin = _admin(b, SUPER)
        results = _wait(admin.create_acls(TENANT_ACLS))
        assert all(r is None for r in results.values()), results
        created = _wait(admin.create_topics([NewTopic(t, 2, 1) for t in
                                             ("alice.shared", "alice.locked", "other.data")]))
        assert all(r is None for r in created.values()), created
        yield b
    finally:
        b.stop()


# ------------------------------------------------------------------------------ semantics (unit)
def _authz(tmp_path, *acls, allow_if_no_acl=False):
    z = A.Authorizer(tmp_path / "acls.json", super_users=frozenset({"root"}), allow_if_no_acl=allow_if_no_acl)
    z.create([A.Acl(*a) for a in acls])
    return z


def test_authorizer_semantics(tmp_path) -> None:
    z = _authz(
        tmp_path,
        (A.TOPIC, "t.", A.PREFIXED, "User:a", "*", A.READ, A.ALLOW),
        (A.TOPIC, "t.secret", A.LITERAL, "User:a", "*", A.ALL, A.DENY),
        (A.TOPIC, "*", A.LITERAL, "User:*", "10.0.0.1", A.WRITE, A.ALLOW),
        (A.TOPIC, "cfg", A.LITERAL, "User:a", "*", A.ALTER_CONFIGS, A.ALLOW),
        (A.GROUP, "g", A.LITERAL, "User:a", "*", A.ALL, A.ALLOW),
    )
    ok = z.authorize
    assert ok("User:a", "1.2.3.4", A.READ, A.TOPIC, "t.x")
    assert ok("User:a", "1.2.3.4", A.DESCRIBE, A.TOPIC, "t.x")  # implied by READ
    assert not ok("User:a", "1.2.3.4", A.WRITE, A.TOPIC, "t.x")
    assert not ok("User:a", "1.2.3.4", A.READ, A.TOPIC, "t.secret")  # DENY ALL wins
    assert not ok("User:a", "1.2.3.4", A.DESCRIBE, A.TOPIC, "t.secret")
    assert ok("User:b", "10.0.0.1", A.WRITE, A.TOPIC, "anything")  # wildcard name, principal; host
    assert not ok("User:b", "10.0.0.2", A.WRITE, A.TOPIC, "anything")
    assert ok("User:a", "h", A.DESCRIBE_CONFIGS, A.TOPIC, "cfg")  # implied by ALTER_CONFIGS
    assert not ok("User:a", "h", A.DESCRIBE, A.TOPIC, "cfg")
    assert ok("User:a", "h", A.DELETE, A.GROUP, "g")  # ALL
    assert not ok("User:a", "h", A.READ, A.GROUP, "g2")  # no ACL: denied by default
    assert ok("User:root", "h", A.DELETE, A.CLUSTER, A.CLUSTER_NAME)  # super user
    assert not ok("User:a", "h", A.CREATE, A.CLUSTER, A.CLUSTER_NAME)
    # allow.everyone.if.no.acl.found: only resources no ACL matches
    z2 = _authz(tmp_path / "z2", (A.TOPIC, "x", A.LITERAL, "User:a", "*", A.READ, A.ALLOW),
                allow_if_no_acl=True)
    assert z2.authorize("User:b", "h", A.WRITE, A.TOPIC, "y")
    assert not z2.authorize("User:b", "h", A.READ, A.TOPIC, "x")
    # InitProducerId's "WRITE on any topic"
    assert z.authorize_any("User:a", "10.0.0.1", A.WRITE, A.TOPIC)
    assert not z.authorize_any("User:a", "1.2.3.4", A.WRITE, A.TOPIC)
    # the cache follows changes
    z.delete([A.AclFilter(resource_type=A.TOPIC, name="t.secret", pattern_type=A.LITERAL)])
    assert ok("User:a", "1.2.3.4", A.READ, A.TOPIC, "t.secret")


def test_filters_and_durability(tmp_path) -> None:
    rows = [
        (A.TOPIC, "a.", A.PREFIXED, "User:a", "*", A.READ, A.ALLOW),
        (A.TOPIC, "a.b", A.LITERAL, "User:a", "*", A.WRITE, A.ALLOW),
        (A.TOPIC, "*", A.LITERAL, "User:c", "*", A.READ, A.DENY),
        (A.GROUP, "a.b", A.LITERAL, "User:a", "*", A.READ, A.ALLOW),
    ]
    z = _authz(tmp_path, *rows)
    names = lambda f: sorted((a.resource_type, a.name) for a in z.describe(f))  # noqa: E731
    assert names(A.AclFilter()) == sorted((r[0], r[1]) for r in rows)
    assert names(A.AclFilter(resource_type=A.TOPIC, name="a.b", pattern_type=A.P_MATCH)) == [
        (A.TOPIC, "*"), (A.TOPIC, "a."), (A.TOPIC, "a.b")]
    assert names(A.AclFilter(name="a.b", pattern_type=A.P_ANY)) == [(A.TOPIC, "a.b"), (A.GROUP, "a.b")]
    assert names(A.AclFilter(pattern_type=A.PREFIXED)) == [(A.TOPIC, "a.")]
    assert names(A.AclFilter(principal="User:c", permission=A.DENY)) == [(A.TOPIC, "*")]
    assert names(A.AclFilter(operation=A.WRITE)) == [(A.TOPIC, "a.b")]
    # durable: a new store on the same file sees them; a deletion too
    z.delete([A.AclFilter(resource_type=A.GROUP)])
    again = A.Authorizer(tmp_path / "acls.json")
    assert again.acls == z.acls and len(again.acls) == 3
    with pytest.raises(A.AclError):
        A.validate_acl(A.Acl(A.CLUSTER, "other", A.LITERAL, "User:a", "*", A.ALTER, A.ALLOW))
    with pytest.raises(A.AclError):
        A.validate_acl(A.Acl(A.TOPIC, "x", A.LITERAL, "alice", "*", A.READ, A.ALLOW))


# ------------------------------------------------------------------------------ ACL APIs
def test_acl_apis_confluent(acl_broker) -> None:
    admin = _admin(acl_broker, SUPER)
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(every).result(timeout=10)
    assert set(found) >= set(TENANT_ACLS)
    match = AclBindingFilter(ResourceType.TOPIC, "alice.locked", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    matched = admin.describe_acls(match).result(timeout=10)
    assert {(b.name, b.resource_pattern_type, b.operation) for b in matched} == {
        ("alice.", ResourcePatternType.PREFIXED, AclOperation.WRITE),
        ("alice.", ResourcePatternType.PREFIXED, AclOperation.READ),
        ("alice.", ResourcePatternType.PREFIXED, AclOperation.CREATE),
        ("alice.locked", ResourcePatternType.LITERAL, AclOperation.WRITE),
    }
    # create, then delete with a filter
    extra = [_acl("carol", ResourceType.TOPIC, "carol.", AclOperation.READ, ResourcePatternType.PREFIXED),
             _acl("carol", ResourceType.GROUP, "carol", AclOperation.READ)]
    assert all(r is None for r in _wait(admin.create_acls(extra)).values())
    carol = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:carol", None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert set(admin.describe_acls(carol).result(timeout=10)) == set(extra)
    deleted = _wait(admin.delete_acls([carol]))
    assert set(deleted[carol]) == set(extra)
    assert admin.describe_acls(carol).result(timeout=10) == []
    # an invalid binding is refused
    bad = _acl("carol", ResourceType.BROKER, "not-kafka-cluster", AclOperation.ALTER)
    err = _wait(admin.create_acls([bad]))[bad]
    assert isinstance(err, KafkaError) and err.code() == KafkaError.INVALID_REQUEST
    # a tenant's key cannot create, describe or delete ACLs
    alice = _admin(acl_broker, "alice")
    own = _acl("alice", ResourceType.TOPIC, "*", AclOperation.ALL)
    err = _wait(alice.create_acls([own]))[own]
    assert err.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # (librdkafka hands DescribeAcls' top-level error to no one: the result is empty; kafka-python
    # raises ClusterAuthorizationFailedError, see below)
    try:
        assert alice.describe_acls(every).result(timeout=10) == []
    except KafkaException as exc:
        assert exc.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    err = _wait(alice.delete_acls([every]))[every]
    assert err.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert set(admin.describe_acls(every).result(timeout=10)) >= set(TENANT_ACLS)


def test_acl_apis_kafka_python(acl_broker) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourcePatternFilter,
    )
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import ClusterAuthorizationFailedError

    def client(user):
        return KafkaAdminClient(bootstrap_servers=acl_broker.sasl_bootstrap,
                                security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                                sasl_plain_username=user,
                                sasl_plain_password=USERS[user], request_timeout_ms=10000)

    admin = client(SUPER)
    try:
        acl = ACL(principal="User:dave", host="*", operation=ACLOperation.READ,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(KResourceType.TOPIC, "dave.",
                                                   ACLResourcePatternType.PREFIXED))
        result = admin.create_acls([acl])
        assert result["succeeded"] == [acl] and not result["failed"]
        flt = ACLFilter(principal="User:dave", host=None, operation=ACLOperation.ANY,
                        permission_type=ACLPermissionType.ANY,
                        resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                               ACLResourcePatternType.ANY))
        described, error = admin.describe_acls(flt)
        assert error.errno == 0
        assert [(a.principal, a.resource_pattern.resource_name) for a in described] == [
            ("User:dave", "dave.")]
        match = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                          permission_type=ACLPermissionType.ANY,
                          resource_pattern=ResourcePatternFilter(KResourceType.TOPIC, "dave.x",
                                                                 ACLResourcePatternType.MATCH))
        described, _ = admin.describe_acls(match)
        assert [a.principal for a in described] == ["User:dave"]
        deleted = admin.delete_acls([flt])
        (_flt, matches, err), = deleted
        assert err.errno == 0 and [m.principal for m in matches] == ["User:dave"]
        assert admin.describe_acls(flt)[0] == []
    finally:
        admin.close()
    bob = client("bob")
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            bob.describe_acls(flt)
        result = bob.create_acls([acl])
        assert not result["succeeded"] and result["failed"]
        assert "ClusterAuthorizationFailedError" in repr(result["failed"]), result
    finally:
        bob.close()


# ------------------------------------------------------------------------------ enforcement
def _producer_errors(b, user, topic, n=3) -> list:
    p = Producer(b.sasl_config(user=user, password=USERS.get(user, b.USERS.get(user)),
                               **{"message.timeout.ms": 8000, "retries": 0}))
    errors: list = []
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), callback=lambda err, msg: errors.append(err))
    p.flush(15)
    return errors


def test_confluent_scoped_keys(acl_broker) -> None:
    b = acl_broker
    alice = _admin(b, "alice")
    # create-topic: CREATE on the prefix only
    res = _wait(alice.create_topics([NewTopic("alice.orders", 1, 1), NewTopic("bob.stuff", 1, 1)]))
    assert res["alice.orders"] is None
    assert res["bob.stuff"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # produce: WRITE on the prefix; DENY wins on alice.locked; nothing outside the prefix
    assert _producer_errors(b, "alice", "alice.orders") == [None] * 3
    assert _producer_errors(b, "alice", "alice.shared", 1) == [None]
    for topic in ("alice.locked", "other.data"):
        errors = _producer_errors(b, "alice", topic, 1)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], topic
    assert [e.code() for e in _producer_errors(b, "bob", "alice.shared", 1)] == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # describe / metadata: topics a key may not describe are hidden
    assert set(alice.list_topics(timeout=10).topics) == {"alice.orders", "alice.shared", "alice.locked"}
    bob_admin = _admin(b, "bob")
    assert set(bob_admin.list_topics(timeout=10).topics) == {"alice.shared"}
    md = bob_admin.list_topics("other.data", timeout=10)
    assert md.topics["other.data"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # auto-creation needs CREATE too (bob may describe nothing else)
    md = bob_admin.list_topics("alice.auto", timeout=10)
    assert md.topics["alice.auto"].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # consume with a group: READ on topic and group; commit works
    c = Consumer(b.sasl_config(user="alice", password=USERS["alice"], **{
        "group.id": "alice.g1", "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "session.timeout.ms": 6000}))
    try:
        c.subscribe(["alice.orders"])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        assert got == [b"v0", b"v1", b"v2"]
        committed = c.commit(asynchronous=False)
        assert all(tp.error is None for tp in committed)
        offsets = c.committed([TopicPartition("alice.orders", 0)], timeout=10)
        assert offsets[0].offset == 3
    finally:
        c.close()
    # a group outside the prefix: GROUP_AUTHORIZATION_FAILED
    c = Consumer(b.sasl_config(user="alice", password=USERS["alice"], **{
        "group.id": "bob.g1", "auto.offset.reset": "earliest", "session.timeout.ms": 6000}))
    try:
        c.subscribe(["alice.orders"])
        code = None
        deadline = time.monotonic() + 15
        while code is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                code = m.error().code()
        assert code == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()
    # bob may read alice.shared in his own group, not alice.orders
    for topic, expected in (("alice.shared", None), ("alice.orders", KafkaError.TOPIC_AUTHORIZATION_FAILED)):
        c = Consumer(b.sasl_config(user="bob", password=USERS["bob"], **{
            "group.id": "bob.g2", "auto.offset.reset": "earliest", "session.timeout.ms": 6000}))
        try:
            c.assign([TopicPartition(topic, p) for p in ((0, 1) if topic == "alice.shared" else (0,))])
            m = None
            deadline = time.monotonic() + 15
            while m is None and time.monotonic() < deadline:
                m = c.poll(0.5)
            assert m is not None, topic
            assert (m.error().code() if m.error() else None) == expected, (topic, m.error())
        finally:
            c.close()
    # authorized operations: what alice may do on her topic; the cluster's only with DESCRIBE on it
    described = alice.describe_topics(TopicCollection(["alice.orders"]), include_authorized_operations=True)
    ops = set(described["alice.orders"].result(timeout=10).authorized_operations)
    assert ops == {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE}
    cluster = alice.describe_cluster(include_authorized_operations=True).result(timeout=10)
    assert not cluster.authorized_operations
    internal = _admin(b, SUPER)
    cluster = internal.describe_cluster(include_authorized_operations=True).result(timeout=10)
    assert AclOperation.ALTER in cluster.authorized_operations
    # deleting a topic needs DELETE
    res = _wait(alice.delete_topics(["alice.orders"]))
    assert res["alice.orders"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_kafka_python_scoped_keys(acl_broker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KNewTopic
    from kafka.errors import (
        GroupAuthorizationFailedError,
        TopicAlreadyExistsError,
        TopicAuthorizationFailedError,
    )

    b = acl_broker
    common = dict(bootstrap_servers=b.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                  sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password=USERS["alice"],
                  request_timeout_ms=10000)
    admin = KafkaAdminClient(**common)
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([KNewTopic("alice.kp", 1, 1)])
        with pytest.raises(TopicAuthorizationFailedError):
            admin.create_topics([KNewTopic("nope.kp", 1, 1)])
        visible = set(admin.list_topics())  # only topics alice may describe
        assert {"alice.shared", "alice.locked", "alice.kp"} <= visible
        assert all(t.startswith("alice.") for t in visible), visible
    finally:
        admin.close()
    producer = KafkaProducer(**common, retries=0, max_block_ms=10000)
    try:
        producer.send("alice.kp", b"k0").get(timeout=10)
        producer.send("alice.kp", b"k1").get(timeout=10)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send("alice.locked", b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(**common, group_id="alice.kpg", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    try:
        consumer.subscribe(["alice.kp"])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        assert got == [b"k0", b"k1"]
        consumer.commit()
        assert consumer.committed(KTP("alice.kp", 0)) == 2
    finally:
        consumer.close()
    consumer = KafkaConsumer(**common, group_id="other.kpg", auto_offset_reset="earliest")
    try:
        consumer.subscribe(["alice.kp"])
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=500)
    finally:
        consumer.close()
    # a topic outside the prefix: its offsets (ListOffsets) and records are refused
    consumer = KafkaConsumer(**common, group_id=None)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.end_offsets([KTP("other.data", 0)])
    finally:
        consumer.close()


def test_acls_survive_restart_and_kill(tmp_path_factory) -> None:
    b = AclBroker(tmp_path_factory.mktemp("brokerd-acls-restart"), sasl=True, settings=SETTINGS)
    b.start()
    try:
        admin = _admin(b, SUPER)
        name = f"alice.{uuid.uuid4().hex[:6]}"
        acl = _acl("alice", ResourceType.TOPIC, name, AclOperation.WRITE)
        assert _wait(admin.create_acls([acl]))[acl] is None
        assert _wait(admin.create_topics([NewTopic(name, 1, 1)]))[name] is None
        b.restart(crash=True)  # kill -9 right after the create was answered
        assert _producer_errors(b, "alice", name, 1) == [None]
        admin = _admin(b, SUPER)
        flt = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, None, None,
                               AclOperation.ANY, AclPermissionType.ANY)
        assert admin.describe_acls(flt).result(timeout=10) == [acl]
        assert len(_wait(admin.delete_acls([flt]))[flt]) == 1
        b.restart()
        errors = _producer_errors(b, "alice", name, 1)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    finally:
        b.stop()


def test_authorizer_off_by_default(sasl_broker) -> None:
    admin = AdminClient(sasl_broker.sasl_config())
    acl = _acl("alice", ResourceType.TOPIC, "*", AclOperation.ALL)
    assert _wait(admin.create_acls([acl]))[acl].code() == KafkaError.SECURITY_DISABLED
    assert _producer_errors(sasl_broker, "alice", "anything", 1) == [None]  # nothing enforced


def test_admin_requests_confluent(acl_broker) -> None:
    """Configs, partitions, records, groups and idempotent producers as prefix-scoped keys."""
    from confluent_kafka.admin import ConfigResource, NewPartitions

    b = acl_broker
    alice = _admin(b, "alice")
    internal = _admin(b, SUPER)

    def code(fut):
        try:
            fut.result(timeout=10)
        except KafkaException as exc:
            return exc.args[0].code()
        return None

    # configs: DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic (alice has neither), the broker's on the cluster
    for res in (ConfigResource("topic", "alice.shared"), ConfigResource("broker", "1")):
        fut, = alice.describe_configs([res]).values()
        expected = (KafkaError.TOPIC_AUTHORIZATION_FAILED if res.restype == ConfigResource.Type.TOPIC
                    else KafkaError.CLUSTER_AUTHORIZATION_FAILED)
        assert code(fut) == expected, res
    fut, = internal.describe_configs([ConfigResource("topic", "alice.shared")]).values()
    assert code(fut) is None
    # create partitions needs ALTER; delete records needs DELETE
    fut, = alice.create_partitions([NewPartitions("alice.shared", 3)]).values()
    assert code(fut) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    fut, = alice.delete_records([TopicPartition("alice.shared", 0, 0)]).values()
    assert code(fut) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # offsets committed without joining (READ on group and topic); others refused
    c = Consumer(b.sasl_config(user="alice", password=USERS["alice"], **{"group.id": "alice.gx"}))
    try:
        done = c.commit(offsets=[TopicPartition("alice.shared", 0, 0)], asynchronous=False)
        assert done[0].error is None
        with pytest.raises(KafkaException) as exc:
            c.commit(offsets=[TopicPartition("other.data", 0, 0)], asynchronous=False)
        assert exc.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        c.close()
    # groups: listing is filtered, describing/deleting others' (or without DELETE) refused
    listed = {g.group_id for g in alice.list_consumer_groups().result(timeout=10).valid}
    assert "alice.gx" in listed and all(g.startswith("alice.") for g in listed), listed
    assert "alice.gx" in {g.group_id for g in internal.list_consumer_groups().result(timeout=10).valid}
    fut, = alice.describe_consumer_groups(["bob.g9"]).values()
    assert code(fut) == KafkaError.GROUP_AUTHORIZATION_FAILED
    fut, = alice.delete_consumer_groups(["alice.gx"]).values()
    assert code(fut) == KafkaError.GROUP_AUTHORIZATION_FAILED
    # idempotent producers: InitProducerId needs WRITE on some topic (or IDEMPOTENT_WRITE)
    p = Producer(b.sasl_config(user="alice", password=USERS["alice"], **{"enable.idempotence": True}))
    errors: list = []
    p.produce("alice.shared", b"idem", callback=lambda err, msg: errors.append(err))
    p.flush(15)
    assert errors == [None]
    fatal: list = []
    p = Producer(b.sasl_config(user="bob", password=USERS["bob"], **{
        "enable.idempotence": True, "error_cb": lambda err: fatal.append(err.code()),
        "message.timeout.ms": 5000}))
    p.produce("alice.shared", b"idem")
    try:
        p.flush(10)
    except KafkaException as exc:  # librdkafka raises the fatal error from the callback's poll
        fatal.append(exc.args[0].code())
    assert KafkaError.CLUSTER_AUTHORIZATION_FAILED in fatal, fatal


# ------------------------------------------------------------------------------ fetch denied
def _wire(b: Broker, user: str) -> Wire:
    """A raw client authenticated (SASL PLAIN) as ``user``."""
    wire = Wire(b.ports["SASL_PLAINTEXT"])
    assert wire.request(request_class(17, 1)(mechanism="PLAIN")).error_code == 0
    auth = wire.request(request_class(36, 2)(auth_bytes=f"\x00{user}\x00{USERS[user]}".encode()))
    assert auth.error_code == 0, auth
    return wire


def _fetch(wire, version: int, topic: str, topic_id: uuid.UUID | None, partition: int = 0):
    """One Fetch at ``version`` (v13+ names the topic by id only).

    Returns (the response decoded by kio, the raw frame, where kio's decoding ended in it).
    """
    mod = kio_adapter.request_module(1, version)
    part = kio_adapter.build(mod.FetchPartition, partition=partition, current_leader_epoch=-1, fetch_offset=0,
                             last_fetched_epoch=-1, log_start_offset=-1, partition_max_bytes=1 << 20)
    req = kio_adapter.build(
        request_class(1, version), replica_id=-1, max_wait=datetime.timedelta(milliseconds=100), min_bytes=1,
        max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
        topics=(kio_adapter.build(mod.FetchTopic, topic=topic, topic_id=topic_id, partitions=(part,)),),
        forgotten_topics_data=(), rack_id="")
    wire.send(req)
    frame = wire.recv_frame()
    cls = response_class(1, version)
    offset = 5 if cls.__flexible__ else 4
    value, size = entity_reader(cls)(frame, offset)
    return value, frame, offset + size


NOREAD_ACLS = [
    # alice's prefix ALLOWs READ; a literal DENY READ wins
    _acl("alice", ResourceType.TOPIC, "alice.noread", AclOperation.READ, perm=AclPermissionType.DENY),
    # bob may see the topic (Metadata answers it, so librdkafka fetches) but has no READ
    _acl("bob", ResourceType.TOPIC, "alice.noread", AclOperation.DESCRIBE),
]


@pytest.fixture(scope="module")
def noread_topic(acl_broker):
    """``alice.noread`` with one record, which neither alice (DENY READ) nor bob (no READ) may fetch.

    Removed afterwards: the other tests list exactly the topics alice and bob can see.
    """
    admin = _admin(acl_broker, SUPER)
    assert all(r is None for r in _wait(admin.create_acls(NOREAD_ACLS)).values())
    created = _wait(admin.create_topics([NewTopic("alice.noread", 1, 1)]))
    assert created["alice.noread"] is None, created
    try:
        p = Producer(acl_broker.sasl_config(user=SUPER, password=USERS[SUPER]))
        p.produce("alice.noread", b"secret")
        assert p.flush(15) == 0
        described = admin.describe_topics(TopicCollection(["alice.noread"]))
        cid = described["alice.noread"].result(timeout=10).topic_id
        # confluent's Uuid -> kio's uuid.UUID
        yield uuid.UUID(int=(cid.get_most_significant_bits() % (1 << 64)) << 64
                        | cid.get_least_significant_bits() % (1 << 64))
    finally:
        _wait(admin.delete_topics(["alice.noread"]))
        flt = AclBindingFilter(ResourceType.TOPIC, "alice.noread", ResourcePatternType.LITERAL, None, None,
                               AclOperation.ANY, AclPermissionType.ANY)
        _wait(admin.delete_acls([flt]))


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_fetch_denied_read_is_topic_authorization_failed_confluent(acl_broker, noread_topic, user) -> None:
    """DENY READ (alice) or no READ at all (bob): the consumer sees TOPIC_AUTHORIZATION_FAILED from Fetch.

    The partition is assigned at an explicit offset, so no OffsetFetch or ListOffsets precedes the
    Fetch. (Before the fix the error partition's records were null, and librdkafka logged "invalid
    MessageSetSize -1" / "Protocol parse failure for Fetch" and retried forever.)
    """
    c = Consumer(acl_broker.sasl_config(user=user, password=USERS[user], **{
        "group.id": f"{user}.fetch-denied", "enable.auto.commit": False, "fetch.wait.max.ms": 100}))
    try:
        c.assign([TopicPartition("alice.noread", 0, 0)])
        err = None
        deadline = time.monotonic() + 20
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, m.value()  # never the records
                err = m.error()
        assert err is not None, "no error within 20 s"
        assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    finally:
        c.close()


@pytest.mark.parametrize("user", ["alice", "bob"])
@pytest.mark.parametrize("version", [4, 5, 7, 11, 12, 13, 15, 16])
def test_fetch_denied_read_response_decodes(acl_broker, noread_topic, version: int, user: str) -> None:
    """The raw response decodes with kio to its last byte: error 29 per partition, as Kafka fills it."""
    tid = noread_topic
    with _wire(acl_broker, user) as wire:
        for partition in (0, 5):  # an existing and a missing partition of a denied topic: both 29
            resp, frame, end = _fetch(wire, version, "alice.noread", tid, partition)
            assert end == len(frame)
            (topic,) = resp.responses
            if version >= 13:
                assert topic.topic_id == tid  # v13+: the id only, no name
            else:
                assert topic.topic == "alice.noread"
            (p,) = topic.partitions
            assert p.partition_index == partition
            assert p.error_code == KafkaError.TOPIC_AUTHORIZATION_FAILED
            assert p.high_watermark == -1
            if version >= 4:
                assert p.last_stable_offset == -1
            if version >= 5:
                assert p.log_start_offset == -1
            if version >= 11:
                assert p.preferred_read_replica == -1
            assert p.records is not None and len(p.records) == 0  # empty, never null (librdkafka)
            assert not p.aborted_transactions


def test_transactional_ids_are_an_acl_resource(acl_broker) -> None:
    """WRITE and DESCRIBE on transactional ids under a prefix (what a produce-scoped key gets):
    a transactional producer with such an id commits; another id is refused at InitProducerId."""
    admin = _admin(acl_broker, SUPER)
    granted = [_acl("alice", ResourceType.TRANSACTIONAL_ID, "alice.", op, ResourcePatternType.PREFIXED)
               for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    assert all(r is None for r in _wait(admin.create_acls(granted)).values())
    producer = Producer(acl_broker.sasl_config(user="alice", password=USERS["alice"],
                                               **{"transactional.id": "alice.tx-1"}))
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce("alice.shared", value=b"in a transaction", partition=0)
    producer.commit_transaction(15)
    outsider = Producer(acl_broker.sasl_config(user="alice", password=USERS["alice"],
                                               **{"transactional.id": "bob.tx-1"}))
    with pytest.raises(KafkaException) as info:
        outsider.init_transactions(10)
    assert info.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
