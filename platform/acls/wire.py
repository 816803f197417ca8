"""ACL writes to every broker of a cluster of several brokers, one connection each.

Each brokerd keeps its own ACL store (`acls.json` in its data dir), and an AdminClient sends a
CreateAcls or DeleteAcls to whichever broker it likes: in a Standard or Dedicated cluster the
other brokers would then refuse the key (no ACL found, nothing allowed). So the control plane
sends these writes to each broker itself, as its internal user over `sharedkit.kafka_wire`.
Creating an ACL a broker already holds keeps one copy, so a repeat is harmless.
"""

from __future__ import annotations

from kio.schema.create_acls.v1 import request as create_req
from kio.schema.create_acls.v1 import response as create_resp
from kio.schema.delete_acls.v1 import request as delete_req
from kio.schema.delete_acls.v1 import response as delete_resp
from kio.static.primitive import i8

from clusters.models import Cluster
from sharedkit.kafka_wire import internal_connection

from .bindings import OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES, Binding

_NAMES = {
    "resource_type": {int(v.value): k for k, v in RESOURCE_TYPES.items()},
    "pattern_type": {int(v.value): k for k, v in PATTERN_TYPES.items()},
    "operation": {int(v.value): k for k, v in OPERATIONS.items()},
    "permission": {int(v.value): k for k, v in PERMISSIONS.items()},
}


class BrokerRefused(Exception):
    """A broker answered with an error (its message names the broker)."""


def broker_addresses(cluster: Cluster) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (cluster.bootstrap_servers or "").split(",")):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def _each_broker(cluster: Cluster, request, response_cls) -> list:
    answers = []
    for host, port in broker_addresses(cluster):
        try:
            conn = internal_connection(cluster, host, port)
        except OSError as exc:
            raise BrokerRefused(f"broker {host}:{port} is not reachable: {exc}") from exc
        try:
            answers.append(((host, port), conn.call(request, response_cls)))
        except OSError as exc:
            raise BrokerRefused(f"broker {host}:{port} did not answer: {exc}") from exc
        finally:
            conn.close()
    return answers


def create_on_each_broker(cluster: Cluster, bindings: list[Binding]) -> None:
    creations = tuple(
        create_req.AclCreation(
            resource_type=i8(int(RESOURCE_TYPES[b.resource_type].value)),
            resource_name=b.resource_name,
            resource_pattern_type=i8(int(PATTERN_TYPES[b.pattern_type].value)),
            principal=b.principal,
            host=b.host,
            operation=i8(int(OPERATIONS[b.operation].value)),
            permission_type=i8(int(PERMISSIONS[b.permission].value)),
        )
        for b in bindings
    )
    request = create_req.CreateAclsRequest(creations=creations)
    for (host, port), answer in _each_broker(cluster, request, create_resp.CreateAclsResponse):
        for result in answer.results:
            if int(result.error_code) != 0:
                raise BrokerRefused(
                    f"broker {host}:{port} refused an ACL: {result.error_message or result.error_code}"
                )


def delete_on_each_broker(cluster: Cluster, filters: list) -> set[Binding]:
    """Delete by confluent-kafka AclBindingFilters on every broker; the bindings any of them deleted."""
    wire = tuple(
        delete_req.DeleteAclsFilter(
            resource_type_filter=i8(int(f.restype.value)),
            resource_name_filter=f.name,
            pattern_type_filter=i8(int(f.resource_pattern_type.value)),
            principal_filter=f.principal,
            host_filter=f.host,
            operation=i8(int(f.operation.value)),
            permission_type=i8(int(f.permission_type.value)),
        )
        for f in filters
    )
    deleted: set[Binding] = set()
    request = delete_req.DeleteAclsRequest(filters=wire)
    for (host, port), answer in _each_broker(cluster, request, delete_resp.DeleteAclsResponse):
        for result in answer.filter_results:
            if int(result.error_code) != 0:
                raise BrokerRefused(f"broker {host}:{port} refused to delete ACLs: {result.error_message}")
            for acl in result.matching_acls:
                try:
                    deleted.add(
                        Binding(
                            resource_type=_NAMES["resource_type"][int(acl.resource_type)],
                            resource_name=acl.resource_name,
                            pattern_type=_NAMES["pattern_type"][int(acl.pattern_type)],
                            principal=acl.principal,
                            host=acl.host,
                            operation=_NAMES["operation"][int(acl.operation)],
                            permission=_NAMES["permission"][int(acl.permission_type)],
                        )
                    )
                except KeyError:
                    continue  # a type this API does not speak
    return deleted
