"""DescribeAcls, CreateAcls and DeleteAcls v1-3 (semantics in brokerd/acls.py).

Describing needs DESCRIBE on the cluster, creating and deleting need ALTER on the cluster
(super users always may). With the authorizer off (``authorizer.enable=false``) all three
answer SECURITY_DISABLED, as Kafka without an authorizer. In a cluster any broker takes the
writes: the bindings live in etcd, the same on every broker.
"""

from __future__ import annotations

import datetime
import logging

from kio.schema.errors import ErrorCode
from kio.static.primitive import i8

from brokerd import acls
from brokerd.acls import Acl, AclError, AclFilter
from brokerd.coordination.etcd import CoordinationError

log = logging.getLogger("brokerd.acls")

_ZERO = datetime.timedelta(0)
_DISABLED = "No Authorizer is configured on the broker (authorizer.enable=false)"


def _filter(f, describe: bool) -> AclFilter:
    return AclFilter(
        resource_type=int(f.resource_type_filter),
        name=f.resource_name_filter,
        pattern_type=int(f.pattern_type_filter),
        principal=f.principal_filter,
        host=f.host_filter,
        operation=int(f.operation),
        permission=int(f.permission_type),
    )


def describe_acls(request, ctx):
    authz = ctx.broker.authorizer

    def error(code, message):
        return ctx.response(throttle_time=_ZERO, error_code=code, error_message=message, resources=())

    if authz is None:
        return error(ErrorCode.security_disabled, _DISABLED)
    if not acls.cluster_allowed(ctx, acls.DESCRIBE):
        return error(ErrorCode.cluster_authorization_failed, "DescribeAcls needs DESCRIBE on the cluster")
    f = _filter(request, True)
    problem = f.validate()
    if problem:
        return error(ErrorCode.invalid_request, problem)
    grouped: dict[tuple[int, str, int], list[Acl]] = {}
    for acl in authz.describe(f):
        grouped.setdefault((acl.resource_type, acl.name, acl.pattern_type), []).append(acl)
    resources = tuple(
        ctx.build(
            "DescribeAclsResource",
            resource_type=i8(rt), resource_name=name, pattern_type=i8(pt),
            acls=tuple(ctx.build("AclDescription", principal=a.principal, host=a.host,
                                 operation=i8(a.operation), permission_type=i8(a.permission))
                       for a in group),
        )
        for (rt, name, pt), group in grouped.items()
    )
    return ctx.response(throttle_time=_ZERO, error_code=ErrorCode.none, error_message=None,
                        resources=resources)


def create_acls(request, ctx):
    authz = ctx.broker.authorizer

    def result(code=ErrorCode.none, message=None):
        return ctx.build("AclCreationResult", error_code=code, error_message=message)

    def all_failed(code, message):
        return ctx.response(throttle_time=_ZERO,
                            results=tuple(result(code, message) for _ in request.creations))

    if authz is None:
        return all_failed(ErrorCode.security_disabled, _DISABLED)
    if not acls.cluster_allowed(ctx, acls.ALTER):
        return all_failed(ErrorCode.cluster_authorization_failed, "CreateAcls needs ALTER on the cluster")
    results: list = []
    valid: list[Acl] = []
    for c in request.creations:
        acl = Acl(int(c.resource_type), c.resource_name, int(c.resource_pattern_type), c.principal, c.host,
                  int(c.operation), int(c.permission_type))
        try:
            acls.validate_acl(acl)
        except AclError as exc:
            results.append(result(ErrorCode.invalid_request, str(exc)))
            continue
        valid.append(acl)
        results.append(None)

    def respond():
        rows = tuple(r if r is not None else result() for r in results)
        return ctx.response(throttle_time=_ZERO, results=rows)

    if not valid:
        return respond()
    who = acls.principal_of(ctx.principal)
    if ctx.broker.cluster is not None:
        return _create_in_cluster(ctx.broker.cluster.writes, valid, who, respond, all_failed)
    try:
        authz.create(valid)
    except OSError as exc:
        log.error("cannot write the ACL store: %s", exc)
        return all_failed(ErrorCode.unknown_server_error, "cannot write the ACL store")
    log.info("%s created %d ACL(s)", who, len(valid))
    return respond()


async def _create_in_cluster(writes, valid: list[Acl], who: str, respond, all_failed):
    """The bindings go to etcd, from where every broker's authorizer takes them; this broker's
    holds them before the answer leaves."""
    try:
        await writes.create_acls([a.to_json() for a in valid])
    except (CoordinationError, TimeoutError) as exc:  # etcd unreachable: the client retries
        return all_failed(ErrorCode.request_timed_out, f"cluster metadata: {exc}")
    log.info("%s created %d ACL(s) in the cluster", who, len(valid))
    return respond()


def delete_acls(request, ctx):
    authz = ctx.broker.authorizer

    def failed(code, message):
        return ctx.build("DeleteAclsFilterResult", error_code=code, error_message=message, matching_acls=())

    def all_failed(code, message):
        return ctx.response(throttle_time=_ZERO,
                            filter_results=tuple(failed(code, message) for _ in request.filters))

    if authz is None:
        return all_failed(ErrorCode.security_disabled, _DISABLED)
    if not acls.cluster_allowed(ctx, acls.ALTER):
        return all_failed(ErrorCode.cluster_authorization_failed, "DeleteAcls needs ALTER on the cluster")
    filters = [_filter(f, False) for f in request.filters]
    problems = [f.validate() for f in filters]
    usable = [f for f, p in zip(filters, problems, strict=True) if p is None]
    if ctx.broker.cluster is not None:
        return _delete_in_cluster(ctx, usable, problems, failed, all_failed)
    try:
        deleted = authz.delete(usable)
    except OSError as exc:
        log.error("cannot write the ACL store: %s", exc)
        return all_failed(ErrorCode.unknown_server_error, "cannot write the ACL store")
    return _deleted(ctx, deleted, problems, failed)


async def _delete_in_cluster(ctx, usable: list[AclFilter], problems, failed, all_failed):
    """Each filter matches the bindings etcd holds now; they are deleted there, and from every
    broker's authorizer as its view follows."""
    matchers = [lambda row, f=f: f.matches(Acl(*row)) for f in usable]
    try:
        rows = await ctx.broker.cluster.writes.delete_acls(matchers)
    except (CoordinationError, TimeoutError) as exc:
        return all_failed(ErrorCode.request_timed_out, f"cluster metadata: {exc}")
    deleted = [sorted((Acl(*row) for row in matched), key=Acl.to_json) for matched in rows]
    return _deleted(ctx, deleted, problems, failed)


def _deleted(ctx, deleted: list[list[Acl]], problems, failed):
    """The DeleteAcls answer: per filter, its problem or the bindings it deleted."""
    per_filter = iter(deleted)
    out = []
    total = 0
    for problem in problems:
        if problem is not None:
            out.append(failed(ErrorCode.invalid_request, problem))
            continue
        matched = next(per_filter)
        total += len(matched)
        out.append(ctx.build(
            "DeleteAclsFilterResult", error_code=ErrorCode.none, error_message=None,
            matching_acls=tuple(
                ctx.build("DeleteAclsMatchingAcl", error_code=ErrorCode.none, error_message=None,
                          resource_type=i8(a.resource_type), resource_name=a.name,
                          pattern_type=i8(a.pattern_type),
                          principal=a.principal, host=a.host, operation=i8(a.operation),
                          permission_type=i8(a.permission))
                for a in matched),
        ))
    if total:
        log.info("%s deleted %d ACL(s)", acls.principal_of(ctx.principal), total)
    return ctx.response(throttle_time=_ZERO, filter_results=tuple(out))
