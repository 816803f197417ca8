"""DescribeConfigs 1-4, AlterConfigs 0-2, IncrementalAlterConfigs 0-1 (topics, the broker and
client-metrics subscriptions, kept by brokerd/telemetry/) and
ListConfigResources 0-1.

Topic configs are validated by brokerd/kafka_configs.py (Kafka's names, types, ranges; plan limits
from the broker's ``kastle.plan.*`` settings give POLICY_VIOLATION). Broker resources are this
broker (resource name = its node id) or the cluster default (resource name ""); altering them
(plan caps included) needs a super user (``super.users``; empty means nobody), else
CLUSTER_AUTHORIZATION_FAILED. Alterations of a batch are applied per resource, each with its
own error, as Kafka does. In a cluster a topic's configs are cluster metadata in etcd: any
broker alters them and describes them, and every replica applies them.
"""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from brokerd import acls
from brokerd.coordination.etcd import CoordinationError
from brokerd.coordination.metadata import UnknownTopicError
from brokerd.kafka_configs import (
    ConfigError,
    ConfigSource,
    ConfigType,
    DescribedConfig,
    ResourceType,
    TopicConfig,
    incremental_alter,
    validate_topic_configs,
)
from brokerd.telemetry import subscriptions

_ZERO = datetime.timedelta(0)


def _describe_entries(ctx, described, include_synonyms: bool):
    out = []
    for c in described:
        synonyms = tuple(ctx.build("DescribeConfigsSynonym", name=s.name, value=s.value, source=int(s.source))
                         for s in c.synonyms) if include_synonyms else ()
        out.append(ctx.build(
            "DescribeConfigsResourceResult", name=c.name, value=c.value, read_only=c.read_only,
            config_source=int(c.source), is_sensitive=c.is_sensitive, synonyms=synonyms,
            config_type=int(c.config_type), documentation=c.documentation,
            is_default=c.source is ConfigSource.DEFAULT_CONFIG))
    return tuple(out)


def _broker_target(ctx, name: str) -> tuple[bool | None, str | None]:
    """(is cluster default, error) for a BROKER resource name."""
    if name == "":
        return True, None
    if name == str(ctx.broker.node_id):
        return False, None
    return None, f"Unexpected broker id, expected {ctx.broker.node_id} or empty string, but received {name}"


def describe_configs(request, ctx):
    broker = ctx.broker
    synonyms = bool(getattr(request, "include_synonyms", False))
    docs = bool(getattr(request, "include_documentation", False))
    results = []
    for res in request.resources:
        keys = None if res.configuration_keys is None else list(res.configuration_keys)
        error, message, configs = ErrorCode.none, None, ()
        rtype = int(res.resource_type)
        if rtype == ResourceType.TOPIC:
            overrides = _topic_overrides(broker, res.resource_name)
            if not acls.allowed(ctx, acls.DESCRIBE_CONFIGS, acls.TOPIC, res.resource_name):
                error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
            elif overrides is None:
                error, message = ErrorCode.unknown_topic_or_partition, \
                    f"Topic {res.resource_name} does not exist"
            else:
                described = TopicConfig(broker.configs, overrides).describe(
                    keys, include_synonyms=synonyms, include_documentation=docs)
                configs = _describe_entries(ctx, described, synonyms)
        elif rtype == ResourceType.BROKER:
            default, message = _broker_target(ctx, res.resource_name)
            if message is not None:
                error = ErrorCode.invalid_request
            elif not acls.cluster_allowed(ctx, acls.DESCRIBE_CONFIGS):
                error, message = ErrorCode.cluster_authorization_failed, "Authorization failed."
            else:
                described = broker.configs.describe(keys, include_synonyms=synonyms,
                                                   include_documentation=docs)
                if default:  # the cluster default: only the dynamic default values
                    described = [c for c in described
                                 if c.source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
                configs = _describe_entries(ctx, described, synonyms)
        elif rtype == ResourceType.CLIENT_METRICS:
            if not acls.cluster_allowed(ctx, acls.DESCRIBE_CONFIGS):  # DESCRIBE_CONFIGS on the cluster
                error, message = ErrorCode.cluster_authorization_failed, "Authorization failed."
            else:
                configs = _describe_entries(ctx, _client_metrics_entries(ctx, res.resource_name, keys, docs),
                                            synonyms)
        else:
            error, message = ErrorCode.invalid_request, f"Unsupported resource type {rtype}"
        results.append(ctx.build(
            "DescribeConfigsResult", error_code=error, error_message=message, resource_type=rtype,
            resource_name=res.resource_name, configs=configs))
    return ctx.response(throttle_time=_ZERO, results=tuple(results))


def _client_metrics_entries(ctx, name: str, keys, docs: bool) -> list[DescribedConfig]:
    """A client-metrics subscription's configs as Kafka describes them (CLIENT_METRICS_CONFIG)."""
    stored = ctx.broker.telemetry.subscriptions.configs(name) or {}
    return [
        DescribedConfig(key, value, ConfigSource.CLIENT_METRICS_CONFIG, False, False,
                        ConfigType.INT if key == subscriptions.INTERVAL_MS else ConfigType.LIST,
                        subscriptions.DOCS[key] if docs else None)
        for key, value in stored.items() if keys is None or key in keys
    ]


def _client_metrics_change(res, incremental: bool):
    """The alteration as a function of the subscription's current configs (validating; raises
    ConfigError with Kafka's error code): AlterConfigs replaces them, IncrementalAlterConfigs
    applies its operations."""
    name = res.resource_name
    if incremental:
        ops = [(c.name, int(c.config_operation), c.value) for c in res.configs]
        change = lambda current: subscriptions.altered(name, current, ops)  # noqa: E731
    else:
        wanted = {c.name: c.value for c in res.configs}
        change = lambda _current: subscriptions.validated(name, wanted)  # noqa: E731

    def checked(current: dict[str, str]) -> dict[str, str]:
        try:
            return change(current)
        except subscriptions.SubscriptionError as exc:
            error = ConfigError(name, str(exc))
            code = ErrorCode.invalid_request if exc.unknown_name else ErrorCode.invalid_config
            error.error_code = int(code)
            raise error from None
    return checked


def _alter_client_metrics(ctx, res, validate_only: bool, incremental: bool) -> None:
    """Alter one client-metrics subscription of a broker alone (its own file)."""
    store = ctx.broker.telemetry.subscriptions
    configs = _client_metrics_change(res, incremental)(store.configs(res.resource_name) or {})
    store.replace(res.resource_name, configs, validate_only=validate_only)


def _topic_overrides(broker, name: str) -> dict[str, str] | None:
    """A topic's config overrides: in a cluster the cluster's (etcd), alone the local log's."""
    if broker.cluster is not None:
        record = broker.cluster.view.state.topics.get(name)
        return None if record is None else record.configs
    topic = broker.logs.topics.get(name)
    return None if topic is None else topic.configs


def _topic_change(res, incremental: bool, broker_configs):
    """The alteration as a function of the topic's current overrides (validating, may raise
    ConfigError): AlterConfigs replaces them all, IncrementalAlterConfigs applies its operations."""
    if incremental:
        ops = [(c.name, int(c.config_operation), c.value) for c in res.configs]
        return lambda current: incremental_alter(current, ops, broker_configs)
    names = [c.name for c in res.configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(sorted(dup)[0], f"Error due to duplicate config keys: {', '.join(sorted(dup))}")
    wanted = {c.name: c.value for c in res.configs if c.value is not None}
    return lambda _current: validate_topic_configs(wanted, broker_configs)


def _alter(ctx, resources, validate_only: bool, incremental: bool):
    broker = ctx.broker
    out = []
    changed_broker = False
    in_cluster = []  # (row index, resource name, etcd write, alteration): written by this broker
    for res in resources:
        rtype = int(res.resource_type)
        error, message = ErrorCode.none, None
        try:
            if rtype == ResourceType.TOPIC:
                topic = broker.logs.topics.get(res.resource_name)
                if not acls.allowed(ctx, acls.ALTER_CONFIGS, acls.TOPIC, res.resource_name):
                    error, message = ErrorCode.topic_authorization_failed, "Authorization failed."
                elif broker.cluster is not None:
                    in_cluster.append((len(out), res.resource_name, broker.cluster.writes.alter_topic_configs,
                                       _topic_change(res, incremental, broker.configs)))
                elif topic is None:
                    error, message = ErrorCode.unknown_topic_or_partition, \
                        f"Topic {res.resource_name} does not exist"
                else:
                    new = _topic_change(res, incremental, broker.configs)(dict(topic.configs))
                    if not validate_only:
                        broker.logs.set_topic_configs(topic, new)
            elif rtype == ResourceType.BROKER:
                default, message = _broker_target(ctx, res.resource_name)
                if message is not None:
                    error = ErrorCode.invalid_request
                elif not acls.cluster_allowed(ctx, acls.ALTER_CONFIGS):
                    error, message = ErrorCode.cluster_authorization_failed, "Authorization failed."
                elif not broker.configs.is_super_user(ctx.principal):
                    error, message = ErrorCode.cluster_authorization_failed, \
                        "Altering broker configs needs a super user"
                else:
                    if incremental:
                        changes = {}
                        for c in res.configs:
                            op = int(c.config_operation)
                            if op not in (0, 1):
                                raise ConfigError(c.name, f"Config value append/subtract is not allowed "
                                                          f"for broker config {c.name}")
                            changes[c.name] = c.value if op == 0 else None
                        broker.configs.alter(changes, default=bool(default), replace=False,
                                            validate_only=validate_only)
                    else:
                        broker.configs.alter({c.name: c.value for c in res.configs}, default=bool(default),
                                            replace=True, validate_only=validate_only)
                    changed_broker = changed_broker or not validate_only
            elif rtype == ResourceType.CLIENT_METRICS:
                if not acls.cluster_allowed(ctx, acls.ALTER_CONFIGS):  # ALTER_CONFIGS on the cluster
                    error, message = ErrorCode.cluster_authorization_failed, "Authorization failed."
                elif broker.cluster is not None:
                    in_cluster.append((len(out), res.resource_name,
                                       broker.cluster.writes.alter_client_metrics,
                                       _client_metrics_change(res, incremental)))
                else:
                    _alter_client_metrics(ctx, res, validate_only, incremental)
            else:
                error, message = ErrorCode.invalid_request, f"Unsupported resource type {rtype}"
        except ConfigError as exc:
            error, message = ErrorCode(exc.error_code), exc.message
        out.append(dict(error_code=error, error_message=message, resource_type=rtype,
                        resource_name=res.resource_name))
    if changed_broker:
        broker.logs.refresh_all_settings()
    if in_cluster:
        return _alter_in_cluster(ctx, out, in_cluster, validate_only)
    return _altered(ctx, out)


def _altered(ctx, rows):
    return ctx.response(throttle_time=_ZERO, responses=tuple(
        ctx.build("AlterConfigsResourceResponse", **row) for row in rows))


async def _alter_in_cluster(ctx, rows, alterations, validate_only: bool):
    """Topic configs and client-metrics subscriptions of a cluster: read from etcd, altered and
    written back by this broker (brokerd/coordination/metadata.py); every broker applies them as
    its view follows."""
    for index, name, write, change in alterations:
        error, message = ErrorCode.none, None
        try:
            await write(name, change, validate_only=validate_only)
        except ConfigError as exc:
            error, message = ErrorCode(exc.error_code), exc.message
        except UnknownTopicError:
            error, message = ErrorCode.unknown_topic_or_partition, f"Topic {name} does not exist"
        except (CoordinationError, TimeoutError) as exc:  # etcd unreachable or busy: the client retries
            error, message = ErrorCode.request_timed_out, f"cluster metadata: {exc}"
        rows[index].update(error_code=error, error_message=message)
    return _altered(ctx, rows)


def alter_configs(request, ctx):
    return _alter(ctx, request.resources, request.validate_only, incremental=False)


def incremental_alter_configs(request, ctx):
    return _alter(ctx, request.resources, request.validate_only, incremental=True)


# ListConfigResources (KIP-1142): v0 was ListClientMetricsResources and lists only client-metrics
# subscriptions (brokerd has none); v1 lists the resources of the types asked for, all of the
# types brokerd describes when none are named. Config resource types, as DescribeConfigs has them:
TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP = 2, 4, 8, 16, 32
LISTABLE = (TOPIC, BROKER, CLIENT_METRICS)


def list_config_resources(request, ctx):
    if not acls.cluster_allowed(ctx, acls.DESCRIBE_CONFIGS):  # DESCRIBE_CONFIGS on the cluster
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.cluster_authorization_failed,
                            config_resources=())
    asked = (CLIENT_METRICS,) if ctx.api_version == 0 else tuple(request.resource_types) or LISTABLE
    if any(int(t) not in LISTABLE for t in asked):  # broker loggers, group configs: not held here
        return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.unsupported_version,
                            config_resources=())
    broker = ctx.broker
    found: list[tuple[int, str]] = []
    if TOPIC in asked:
        names = broker.replicas.topics() if broker.replicas is not None else broker.logs.topics
        found += [(TOPIC, name) for name in sorted(names)]
    if BROKER in asked:
        found += [(BROKER, str(b[0])) for b in broker.cluster_brokers(ctx.conn.listener, ctx.conn.port)]
    if CLIENT_METRICS in asked:
        found += [(CLIENT_METRICS, name) for name in broker.telemetry.subscriptions.names()]
    return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, config_resources=tuple(
        ctx.build("ConfigResource", resource_name=name, resource_type=rtype) for rtype, name in found))
