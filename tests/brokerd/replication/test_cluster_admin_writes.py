"""Admin writes through a broker that is not the controller, carried out cluster-wide: topics,
topic configs, ACLs, client quotas and client-metrics subscriptions are cluster metadata in
etcd, the same on every broker and enforced by every broker, and they survive a broker's restart.

One shared cluster of three real brokerd processes (127.0.0.1, .2, .3) on a real etcd, with the
authorizer on. ``User:ANONYMOUS`` (the PLAINTEXT listeners) is the super user that administers;
``alice`` (SASL_PLAINTEXT) is the tenant whose ACLs and quotas are checked. Clients bootstrap to
one broker that is not the controller. What every broker holds is read from each broker alone,
over a raw connection to it.
"""

from __future__ import annotations

import asyncio
import datetime
import urllib.request
import uuid
import warnings
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourcePatternType,
    ResourceType,
)

from tests.brokerd.brokerd_wire import Wire, request_class
from tests.brokerd.replication.clustertest import ClusterBroker, cluster_brokers, start_brokers, wait_for
from tests.etcd_server import EtcdServer

ALICE = "alice-secret"
TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR = 36, 37, 38
UNKNOWN_TOPIC_OR_PARTITION, INVALID_CONFIG = 3, 40
CLIENT_METRICS = 16  # Kafka's config resource type of client-metrics subscriptions
TOPIC_RESOURCE, TOPIC_ACL, LITERAL, ANY_ACL, MATCH_ANY_OP = 2, 2, 3, 1, 1


class Cluster:
    def __init__(self, brokers: list[ClusterBroker], etcd: EtcdServer, prefix: str) -> None:
        self.brokers = brokers
        self.etcd = etcd
        self.prefix = prefix

    def acl_keys(self) -> dict[bytes, int]:
        """The ACL binding keys in etcd and the revision each was last written at."""

        async def read():
            client = self.etcd.client()
            try:
                return (await client.get_prefix(f"{self.prefix}acls/".encode()))[1]
            finally:
                await client.close()

        return {entry.key: entry.mod_revision for entry in asyncio.run(read())}

    def controller_id(self) -> int:
        answer = self.call(self.brokers[0], request_class(3, 12)(topics=(), allow_auto_topic_creation=False,
                                                                 include_topic_authorized_operations=False))
        return answer.controller_id

    @property
    def other(self) -> ClusterBroker:
        """A broker that is not the controller."""
        controller = self.controller_id()
        return next(b for b in reversed(self.brokers) if b.node_id != controller)

    def call(self, broker: ClusterBroker, request):
        with Wire(broker.port, host=broker.host) as wire:
            return wire.request(request)

    def admin(self, broker: ClusterBroker) -> AdminClient:
        return AdminClient({"bootstrap.servers": broker.bootstrap})

    def kafka_python_admin(self, broker: ClusterBroker):
        admin = kafka_admin().KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
        # The client sends topic writes to the broker its metadata names as controller; here that is
        # this broker, as a Kafka 4 broker names any live broker and as a client whose metadata is
        # older than the controller's last move sees it.
        admin._controller_id = broker.node_id
        return admin

    def alice(self, **extra) -> Producer:
        return Producer({
            "bootstrap.servers": ",".join(f"{b.host}:{b.ports['SASL_PLAINTEXT']}" for b in self.brokers),
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": "alice", "sasl.password": ALICE, **extra,
        })  # fmt: skip

    def topic(self, broker: ClusterBroker, name: str):
        """The topic as this broker's Metadata reports it, or None."""
        answer = self.call(broker, request_class(3, 12)(
            topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False))
        return next((t for t in answer.topics if t.name == name and t.error_code == 0), None)

    def topic_configs(self, broker: ClusterBroker, name: str) -> dict[str, str] | None:
        mod = _module(32, 4)
        answer = self.call(broker, mod.DescribeConfigsRequest(
            resources=(mod.DescribeConfigsResource(resource_type=TOPIC_RESOURCE, resource_name=name,
                                                   configuration_keys=None),),
            include_synonyms=False, include_documentation=False))
        [result] = answer.results
        if result.error_code:
            return None
        return {c.name: c.value for c in result.configs if c.config_source == 1}  # topic overrides

    def acls(self, broker: ClusterBroker, name: str) -> set[tuple]:
        answer = self.call(broker, request_class(29, 3)(
            resource_type_filter=TOPIC_ACL, resource_name_filter=name, pattern_type_filter=LITERAL,
            principal_filter=None, host_filter=None, operation=MATCH_ANY_OP, permission_type=ANY_ACL))
        assert answer.error_code == 0, answer.error_message
        return {(r.resource_name, a.principal, int(a.operation), int(a.permission_type))
                for r in answer.resources for a in r.acls}

    def quotas(self, broker: ClusterBroker, user: str) -> dict[str, float]:
        mod = _module(48, 1)
        answer = self.call(broker, mod.DescribeClientQuotasRequest(
            components=(mod.ComponentData(entity_type="user", match_type=0, match=user),), strict=True))
        assert answer.error_code == 0, answer.error_message
        return {v.key: v.value for entry in answer.entries for v in entry.values}

    def alter_quotas(self, broker: ClusterBroker, user: str, ops, *, validate_only: bool = False):
        mod = _module(49, 1)
        answer = self.call(broker, mod.AlterClientQuotasRequest(entries=(mod.EntryData(
            entity=(mod.EntityData(entity_type="user", entity_name=user),),
            ops=tuple(mod.OpData(key=k, value=float(v), remove=rm) for k, v, rm in ops)),),
            validate_only=validate_only))
        return [(int(e.error_code), e.error_message) for e in answer.entries]


def kafka_admin():
    """kafka-python's admin module (kafka-python 3 reads its schemas with a deprecated API)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka.admin
        import kafka.errors

    return kafka.admin


def _module(api_key: int, version: int):
    from kio.index import load_payload_module
    from kio.static.constants import EntityType

    return load_payload_module(api_key, version, EntityType.request)


def _requests_of(broker: ClusterBroker, api: str) -> float:
    text = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kastle_requests_total{") and f'api="{api}"' in line)


def _throttled(broker: ClusterBroker, principal: str) -> float:
    text = urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kastle_throttled_responses_total{") and f'principal="{principal}"' in line
               and 'quota="producer_byte_rate"' in line)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer) -> Iterator[Cluster]:
    prefix = f"/kastle-test/{uuid.uuid4().hex[:12]}/"
    settings = {"authorizer.enable": True, "allow.everyone.if.no.acl.found": True,
                "super.users": "User:ANONYMOUS"}
    brokers = cluster_brokers(tmp_path_factory.mktemp("admin-writes"), etcd_server, prefix,
                              settings=settings, sasl=True, users={"alice": ALICE})
    try:
        start_brokers(brokers)
        cluster = Cluster(brokers, etcd_server, prefix)
        wait_for(lambda: cluster.controller_id() in (1, 2, 3), what="a controller")
        yield cluster
    finally:
        for broker in brokers:
            broker.kill()


def _everywhere(cluster: Cluster, check, what: str) -> None:
    for broker in cluster.brokers:
        wait_for(lambda b=broker: check(b), timeout=15, what=f"{what} on broker {broker.node_id}")


def test_topics_are_created_grown_and_deleted_through_a_broker_that_is_not_the_controller(
    cluster: Cluster,
) -> None:
    ka = kafka_admin()
    from kafka.errors import InvalidPartitionsError, InvalidReplicationFactorError, TopicAlreadyExistsError

    NewPartitions, NewTopic = ka.NewPartitions, ka.NewTopic

    other = cluster.other
    controller = next(b for b in cluster.brokers if b.node_id == cluster.controller_id())
    before = _requests_of(other, "CreateTopics"), _requests_of(controller, "CreateTopics")
    admin = cluster.kafka_python_admin(other)
    try:
        admin.create_topics([NewTopic("fwd-orders", 3, 3)], validate_only=True)
        assert all(cluster.topic(b, "fwd-orders") is None for b in cluster.brokers)
        admin.create_topics([NewTopic("fwd-orders", 3, 3, topic_configs={"retention.ms": "3600000"})])
        _everywhere(cluster, lambda b: (t := cluster.topic(b, "fwd-orders")) and len(t.partitions) == 3,
                    "the new topic")
        # it carried them out itself: no answer sent the client on to the controller
        assert _requests_of(other, "CreateTopics") == before[0] + 2
        assert _requests_of(controller, "CreateTopics") == before[1]
        parts = cluster.topic(cluster.brokers[0], "fwd-orders").partitions
        assert sorted(p.leader_id for p in parts) == [1, 2, 3]
        assert all(sorted(p.replica_nodes) == [1, 2, 3] for p in parts)
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([NewTopic("fwd-orders", 3, 3)])
        with pytest.raises(InvalidReplicationFactorError):
            admin.create_topics([NewTopic("fwd-wide", 1, 4)])
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({"fwd-orders": NewPartitions(2)})
        admin.create_partitions({"fwd-orders": NewPartitions(5)}, validate_only=True)
        admin.create_partitions({"fwd-orders": NewPartitions(5)})
        _everywhere(cluster, lambda b: len(cluster.topic(b, "fwd-orders").partitions) == 5, "5 partitions")
        _everywhere(cluster, lambda b: cluster.topic_configs(b, "fwd-orders") == {"retention.ms": "3600000"},
                    "the topic's configs")
        admin.delete_topics(["fwd-orders"])
        _everywhere(cluster, lambda b: cluster.topic(b, "fwd-orders") is None, "the topic deleted")
        _everywhere(cluster, lambda b: not (b.data_dir / "fwd-orders-0").exists(), "its logs removed")
    finally:
        admin.close()


def test_create_topics_answers_kafka_errors_from_a_broker_that_is_not_the_controller(
    cluster: Cluster,
) -> None:
    mod = _module(19, 7)
    other = cluster.other

    def create(*topics, validate_only=False):
        answer = cluster.call(other, mod.CreateTopicsRequest(
            topics=tuple(mod.CreatableTopic(name=n, num_partitions=p, replication_factor=r, assignments=(),
                                            configs=tuple(mod.CreatableTopicConfig(name=k, value=v)
                                                          for k, v in (c or {}).items()))
                         for n, p, r, c in topics),
            timeout=datetime.timedelta(seconds=10), validate_only=validate_only))
        return {t.name: (int(t.error_code), t.num_partitions, t.replication_factor) for t in answer.topics}

    assert create(("fwd-v", 2, 3, None), validate_only=True) == {"fwd-v": (0, 2, 3)}
    assert cluster.topic(other, "fwd-v") is None
    assert create(("fwd-v", 2, -1, None), ("fwd-zero", 0, 1, None), ("fwd-rf", 1, 0, None),
                  ("fwd-bad", 1, 1, {"cleanup.policy": "sideways"})) == {
        "fwd-v": (0, 2, 3),  # -1: the cluster's default of 3
        "fwd-zero": (INVALID_PARTITIONS, -1, -1),
        "fwd-rf": (INVALID_REPLICATION_FACTOR, -1, -1),
        "fwd-bad": (INVALID_CONFIG, -1, -1),
    }
    assert create(("fwd-v", 1, 1, None)) == {"fwd-v": (TOPIC_ALREADY_EXISTS, -1, -1)}
    _everywhere(cluster, lambda b: cluster.topic(b, "fwd-v") is not None, "the topic")


def test_topic_configs_altered_through_one_broker_are_described_and_enforced_on_every_broker(
    cluster: Cluster,
) -> None:
    ka = kafka_admin()

    other = cluster.other
    admin = cluster.admin(other)
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("fwd-cfg", 3, 3)])["fwd-cfg"].result(timeout=20)
    _everywhere(cluster, lambda b: cluster.topic(b, "fwd-cfg") is not None, "the topic")
    resource = ConfigResource(ResourceType.TOPIC, "fwd-cfg", incremental_configs=[
        ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("min.insync.replicas", "2", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([resource], validate_only=True)[resource].result(timeout=20)
    assert cluster.topic_configs(other, "fwd-cfg") == {}
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    wanted = {"max.message.bytes": "2000", "min.insync.replicas": "2", "cleanup.policy": "compact,delete"}
    _everywhere(cluster, lambda b: cluster.topic_configs(b, "fwd-cfg") == wanted, "the altered configs")

    # max.message.bytes applies on every partition's leader (each broker leads one)
    producer = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in cluster.brokers),
                         "message.max.bytes": 100000, "compression.type": "none", "linger.ms": 0})
    errors: dict[int, KafkaError | None] = {}
    for partition in range(3):
        producer.produce("fwd-cfg", b"x" * 5000, key=b"k", partition=partition,
                         on_delivery=lambda err, msg: errors.__setitem__(msg.partition(), err))
    assert producer.flush(30) == 0
    assert {p: e.code() if e else None for p, e in errors.items()} == {
        p: KafkaError.MSG_SIZE_TOO_LARGE for p in range(3)}

    # kafka-python deletes three and sets one (IncrementalAlterConfigs), through the same broker
    kp_admin = cluster.kafka_python_admin(other)
    try:
        changes = {"retention.ms": "60000", **{name: ("DELETE", None) for name in wanted}}
        kp_admin.alter_configs([ka.ConfigResource(ka.ConfigResourceType.TOPIC, "fwd-cfg", configs=changes)])
    finally:
        kp_admin.close()
    _everywhere(cluster, lambda b: cluster.topic_configs(b, "fwd-cfg") == {"retention.ms": "60000"},
                "the altered configs")
    # AlterConfigs replaces the overrides as a whole
    replace = ConfigResource(ResourceType.TOPIC, "fwd-cfg", set_config={"retention.bytes": "9000000"})
    with warnings.catch_warnings():  # confluent-kafka deprecates AlterConfigs; brokers still answer it
        warnings.simplefilter("ignore", DeprecationWarning)
        admin.alter_configs([replace])[replace].result(timeout=20)
    _everywhere(cluster, lambda b: cluster.topic_configs(b, "fwd-cfg") == {"retention.bytes": "9000000"},
                "the replaced configs")
    errors.clear()
    for partition in range(3):
        producer.produce("fwd-cfg", b"x" * 5000, key=b"k", partition=partition,
                         on_delivery=lambda err, msg: errors.__setitem__(msg.partition(), err))
    assert producer.flush(30) == 0
    assert errors == {0: None, 1: None, 2: None}
    bad = ConfigResource(ResourceType.TOPIC, "fwd-cfg", incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match=r"retention\.ms") as refused:
        admin.incremental_alter_configs([bad])[bad].result(timeout=20)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    missing = ConfigResource(ResourceType.TOPIC, "fwd-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([missing])[missing].result(timeout=20)
    assert refused.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_acls_created_through_one_broker_are_enforced_on_every_broker(cluster: Cluster) -> None:
    ka = kafka_admin()

    other = cluster.other
    admin = cluster.admin(other)
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("fwd-locked", 3, 3)])["fwd-locked"].result(timeout=20)
    _everywhere(cluster, lambda b: cluster.topic(b, "fwd-locked") is not None, "the topic")

    deny = AclBinding(ResourceType.TOPIC, "fwd-locked", ResourcePatternType.LITERAL, "User:alice", "*",
                      AclOperation.WRITE, AclPermissionType.DENY)
    for future in admin.create_acls([deny]).values():
        future.result(timeout=20)
    kp_admin = cluster.kafka_python_admin(other)
    try:
        describe = ka.ACL("User:alice", "*", ka.ACLOperation.DESCRIBE, ka.ACLPermissionType.ALLOW,
                          ka.ResourcePattern(ka.ResourceType.TOPIC, "fwd-locked"))
        result = kp_admin.create_acls([describe])
        assert not result["failed"], result
        wanted = {("fwd-locked", "User:alice", 4, 2), ("fwd-locked", "User:alice", 8, 3)}
        _everywhere(cluster, lambda b: cluster.acls(b, "fwd-locked") == wanted, "both bindings")
        # Creating a binding the cluster holds already writes nothing (the control plane repeats
        # its whole set on every reconciliation)
        stored = cluster.acl_keys()
        for broker in cluster.brokers:
            again = cluster.admin(broker)
            for future in again.create_acls([deny]).values():
                future.result(timeout=20)
        assert cluster.acl_keys() == stored

        # Every partition's leader refuses alice's writes (each broker leads one partition)
        producer = cluster.alice(**{"message.timeout.ms": 10000})
        errors: dict[int, KafkaError | None] = {}
        for partition in range(3):
            producer.produce("fwd-locked", b"v", partition=partition,
                             on_delivery=lambda err, msg: errors.__setitem__(msg.partition(), err))
        assert producer.flush(30) == 0
        assert {p: e.code() if e else None for p, e in errors.items()} == {
            p: KafkaError.TOPIC_AUTHORIZATION_FAILED for p in range(3)}

        # Deleted through the same broker: gone everywhere, alice writes again
        matching = ka.ACLFilter(None, None, ka.ACLOperation.ANY, ka.ACLPermissionType.ANY,
                                ka.ResourcePatternFilter(ka.ResourceType.TOPIC, "fwd-locked",
                                                         ka.ACLResourcePatternType.LITERAL))
        deleted = kp_admin.delete_acls([matching])
        assert len(deleted[0][1]) == 2, deleted
    finally:
        kp_admin.close()
    _everywhere(cluster, lambda b: cluster.acls(b, "fwd-locked") == set(), "no bindings")
    producer = cluster.alice(**{"message.timeout.ms": 20000})
    errors = {}
    for partition in range(3):
        producer.produce("fwd-locked", b"v", partition=partition,
                         on_delivery=lambda err, msg: errors.__setitem__(msg.partition(), err))
    assert producer.flush(30) == 0
    assert errors == {0: None, 1: None, 2: None}


def test_client_quotas_altered_through_one_broker_apply_on_every_broker(cluster: Cluster) -> None:
    other = cluster.other
    assert cluster.alter_quotas(other, "alice", [("producer_byte_rate", 100, False)], validate_only=True) \
        == [(0, None)]
    assert cluster.quotas(other, "alice") == {}
    assert cluster.alter_quotas(other, "alice", [("producer_byte_rate", 100, False),
                                                 ("consumer_byte_rate", 5000, False)]) == [(0, None)]
    both = {"producer_byte_rate": 100.0, "consumer_byte_rate": 5000.0}
    _everywhere(cluster, lambda b: cluster.quotas(b, "alice") == both, "the quotas")
    [(code, message)] = cluster.alter_quotas(other, "alice", [("producer_byte_rate", -1, False)])
    assert code == 42 and "greater than 0" in message  # INVALID_REQUEST

    # Each broker throttles alice's produce against the quota set through another one
    from confluent_kafka.admin import NewTopic

    admin = cluster.admin(other)
    admin.create_topics([NewTopic("fwd-quota", 3, 3)])["fwd-quota"].result(timeout=20)
    _everywhere(cluster, lambda b: cluster.topic(b, "fwd-quota") is not None, "the topic")
    producer = cluster.alice(**{"linger.ms": 50})
    errors = []
    for partition in range(3):
        for _ in range(3):
            producer.produce("fwd-quota", b"q" * 1000, partition=partition,
                             on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(60) == 0
    assert not errors
    _everywhere(cluster, lambda b: _throttled(b, "alice") > 0, "alice throttled")

    # Removing one key through yet another broker leaves the other, everywhere
    third = next(b for b in cluster.brokers if b is not other)
    assert cluster.alter_quotas(third, "alice", [("producer_byte_rate", 0, True)]) == [(0, None)]
    left = {"consumer_byte_rate": 5000.0}
    _everywhere(cluster, lambda b: cluster.quotas(b, "alice") == left, "one quota left")


def _alter_client_metrics(cluster: Cluster, broker: ClusterBroker, name: str, *changes,
                          validate_only: bool = False) -> tuple[int, str | None]:
    mod = _module(44, 1)
    resource = mod.AlterConfigsResource(resource_type=CLIENT_METRICS, resource_name=name, configs=tuple(
        mod.AlterableConfig(name=k, config_operation=op, value=v) for k, op, v in changes))
    [row] = cluster.call(broker, mod.IncrementalAlterConfigsRequest(
        resources=(resource,), validate_only=validate_only)).responses
    return int(row.error_code), row.error_message


def _client_metrics(cluster: Cluster, broker: ClusterBroker, name: str) -> dict[str, str]:
    mod = _module(32, 4)
    [result] = cluster.call(broker, mod.DescribeConfigsRequest(
        resources=(mod.DescribeConfigsResource(resource_type=CLIENT_METRICS, resource_name=name,
                                               configuration_keys=None),),
        include_synonyms=False, include_documentation=False)).results
    assert result.error_code == 0, result.error_message
    return {c.name: c.value for c in result.configs}


def test_client_metrics_subscriptions_altered_through_one_broker_apply_on_every_broker(
    cluster: Cluster,
) -> None:
    other = cluster.other
    changes = [("metrics", 0, "org.apache.kafka.producer."), ("interval.ms", 0, "2000"),
               ("match", 0, "client_id=pay-.*")]
    assert _alter_client_metrics(cluster, other, "fwd-sub", *changes, validate_only=True) == (0, None)
    assert _client_metrics(cluster, other, "fwd-sub") == {}
    assert _alter_client_metrics(cluster, other, "fwd-sub", *changes) == (0, None)
    wanted = {"metrics": "org.apache.kafka.producer.", "interval.ms": "2000", "match": "client_id=pay-.*"}
    _everywhere(cluster, lambda b: _client_metrics(cluster, b, "fwd-sub") == wanted, "the subscription")
    # an APPEND through another broker starts from what the cluster holds
    third = next(b for b in cluster.brokers if b is not other)
    assert _alter_client_metrics(cluster, third, "fwd-sub", ("metrics", 2, "org.apache.kafka.consumer.")) \
        == (0, None)
    both = {**wanted, "metrics": "org.apache.kafka.producer.,org.apache.kafka.consumer."}
    _everywhere(cluster, lambda b: _client_metrics(cluster, b, "fwd-sub") == both, "the appended metrics")
    code, _message = _alter_client_metrics(cluster, other, "fwd-sub", ("interval.ms", 0, "5"))
    assert code == INVALID_CONFIG
    assert _client_metrics(cluster, third, "fwd-sub") == both
    removed = [(k, 1, None) for k in wanted]
    assert _alter_client_metrics(cluster, third, "fwd-sub", *removed) == (0, None)
    _everywhere(cluster, lambda b: _client_metrics(cluster, b, "fwd-sub") == {}, "the deletion")


def test_delete_records_by_the_leader_reaches_every_replica(cluster: Cluster) -> None:
    import json

    from confluent_kafka import Consumer, TopicPartition

    kafka_admin()  # kafka-python's modules, loaded under its warning filter
    from kafka.structs import TopicPartition as KafkaTopicPartition

    admin = cluster.admin(cluster.other)
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("fwd-trim", 1, 3)])["fwd-trim"].result(timeout=20)
    _everywhere(cluster, lambda b: cluster.topic(b, "fwd-trim") is not None, "the topic")
    producer = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in cluster.brokers), "acks": "all"})
    for i in range(100):
        producer.produce("fwd-trim", b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    leader_id = cluster.topic(cluster.brokers[0], "fwd-trim").partitions[0].leader_id
    follower = next(b for b in cluster.brokers if b.node_id != leader_id)

    mod = _module(21, 2)
    answer = cluster.call(follower, mod.DeleteRecordsRequest(topics=(mod.DeleteRecordsTopic(
        name="fwd-trim", partitions=(mod.DeleteRecordsPartition(partition_index=0, offset=40),)),),
        timeout=datetime.timedelta(seconds=10)))
    assert answer.topics[0].partitions[0].error_code == 6  # NOT_LEADER_OR_FOLLOWER

    kp_admin = cluster.kafka_python_admin(cluster.other)  # sends it to the partition's leader
    try:
        kp_admin.delete_records({KafkaTopicPartition("fwd-trim", 0): 40})
    finally:
        kp_admin.close()

    def start_offset(broker: ClusterBroker) -> int | None:
        path = broker.data_dir / "log-start-offsets.json"
        return json.loads(path.read_text()).get("fwd-trim:0") if path.exists() else None

    _everywhere(cluster, lambda b: start_offset(b) == 40, "the log start moved to 40")
    # A follower that takes over keeps the records deleted
    leader = next(b for b in cluster.brokers if b.node_id == leader_id)
    leader.kill()
    try:
        survivors = [b for b in cluster.brokers if b is not leader]
        wait_for(lambda: (t := cluster.topic(survivors[0], "fwd-trim")) and t.partitions[0].leader_id
                 not in (-1, leader_id), what="a new leader")  # fmt: skip
        bootstrap = ",".join(b.bootstrap for b in survivors)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "trim"})

        def watermarks():
            try:  # the new leader's, once the consumer's metadata names it
                return consumer.get_watermark_offsets(TopicPartition("fwd-trim", 0), timeout=5)
            except KafkaException:
                return None

        try:
            assert wait_for(watermarks, what="the new leader's offsets") == (40, 100)
        finally:
            consumer.close()
    finally:
        leader.start(timeout=30)


def test_cluster_metadata_survives_a_broker_restart(cluster: Cluster) -> None:
    from confluent_kafka.admin import NewTopic

    other = cluster.other
    admin = cluster.admin(other)
    admin.create_topics([NewTopic("fwd-kept", 1, 3, config={"retention.bytes": "1048576"})])[
        "fwd-kept"].result(timeout=20)
    binding = AclBinding(ResourceType.TOPIC, "fwd-kept", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=20)
    assert cluster.alter_quotas(other, "kept", [("request_percentage", 50, False)]) == [(0, None)]
    restarted = next(b for b in cluster.brokers if b is not other)
    _everywhere(cluster, lambda b: cluster.acls(b, "fwd-kept") and cluster.quotas(b, "kept"), "the metadata")
    restarted.restart(crash=True)
    assert cluster.topic_configs(restarted, "fwd-kept") == {"retention.bytes": "1048576"}
    assert cluster.acls(restarted, "fwd-kept") == {("fwd-kept", "User:alice", 3, 3)}
    assert cluster.quotas(restarted, "kept") == {"request_percentage": 50.0}
    # Held in etcd, not in the broker's files
    assert not (restarted.data_dir / "acls.json").exists()
    assert not (restarted.data_dir / "quotas.json").exists()


def test_the_first_broker_of_an_upgraded_cluster_brings_its_own_acls_and_quotas_into_etcd(
    tmp_path, etcd_server: EtcdServer, etcd_prefix: str
) -> None:
    import json

    settings = {"authorizer.enable": True, "allow.everyone.if.no.acl.found": True,
                "super.users": "User:ANONYMOUS"}
    brokers = cluster_brokers(tmp_path, etcd_server, etcd_prefix, count=2, settings=settings)
    # What each broker kept in its own files before its cluster held ACLs and quotas in etcd
    kept = {1: ("old-1", "bob"), 2: ("old-2", "carol")}
    for broker in brokers:
        topic, user = kept[broker.node_id]
        broker.data_dir.mkdir(parents=True)
        (broker.data_dir / "acls.json").write_text(json.dumps(
            {"version": 1, "acls": [[TOPIC_ACL, topic, LITERAL, "User:bob", "*", 3, 3]]}))
        (broker.data_dir / "quotas.json").write_text(json.dumps(
            {"entries": [{"entity": {"user": user}, "values": {"producer_byte_rate": 1000.0}}]}))
    cluster = Cluster(brokers, etcd_server, etcd_prefix)
    try:
        for broker in brokers:  # one after the other: broker 1 is the first
            broker.start(timeout=30)
        for broker in brokers:
            assert cluster.acls(broker, "old-1") == {("old-1", "User:bob", 3, 3)}
            assert cluster.quotas(broker, "bob") == {"producer_byte_rate": 1000.0}
            # broker 2's files were older than what the cluster held by then: set aside
            assert cluster.acls(broker, "old-2") == set()
            assert cluster.quotas(broker, "carol") == {}
            assert not (broker.data_dir / "acls.json").exists()
            assert (broker.data_dir / "acls.json.adopted").exists()
    finally:
        for broker in brokers:
            broker.kill()
