"""ACLs and the authorizer: Kafka's AclAuthorizer semantics, a durable store.

- Resource types TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID; pattern types LITERAL (``*`` is the
  wildcard name) and PREFIXED.
- An action is allowed when the principal is a super user (``super.users``), or when no ACL
  matches the resource and ``allow.everyone.if.no.acl.found`` is true, or when no DENY ACL
  matches (operation or ALL) and an ALLOW ACL matches (the operation, ALL, or an operation
  implying it: DESCRIBE is implied by READ, WRITE, DELETE and ALTER; DESCRIBE_CONFIGS by
  ALTER_CONFIGS). Principals match exactly or ``User:*``; hosts exactly or ``*``.
- Filters (DescribeAcls/DeleteAcls) follow ``AclBindingFilter``: ANY matches every value,
  MATCH matches the patterns that affect the named resource.
- The store of a broker alone is one JSON file, ``acls.json`` in the data dir, rewritten
  atomically (temp file, fsync, rename, fsync of the directory) on every change: it survives
  kill -9. In a cluster the bindings are cluster metadata in etcd, one key each
  (brokerd/coordination/metadata.py); every broker holds the same set (``replace``).
- Decisions are cached per (principal, host, operation, resource type, name); the cache is
  dropped whenever the ACLs change.

The authorizer is off unless the broker setting ``authorizer.enable`` is true (brokerd's
development default is off; provisioning turns it on).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from brokerd.durable import atomic_write_json

# ResourceType
R_UNKNOWN, R_ANY, TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = 0, 1, 2, 3, 4, 5
RESOURCE_TYPES = (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID)
# PatternType
P_UNKNOWN, P_ANY, P_MATCH, LITERAL, PREFIXED = 0, 1, 2, 3, 4
# AclOperation
(O_UNKNOWN, O_ANY, ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION,
 DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE) = range(13)
OPERATIONS = tuple(range(ALL, IDEMPOTENT_WRITE + 1))
# AclPermissionType
PERM_UNKNOWN, PERM_ANY, DENY, ALLOW = 0, 1, 2, 3

WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"
ANONYMOUS = "User:ANONYMOUS"

# Operations whose ALLOW also allows the key (Kafka's implied operations).
_ALLOW_OPS: dict[int, tuple[int, ...]] = {
    DESCRIBE: (DESCRIBE, READ, WRITE, DELETE, ALTER, ALL),
    DESCRIBE_CONFIGS: (DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL),
}

# Operations Kafka reports per resource type (authorized-operations bit fields).
SUPPORTED_OPS: dict[int, tuple[int, ...]] = {
    TOPIC: (READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE),
    CLUSTER: (CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE),
    TRANSACTIONAL_ID: (DESCRIBE, WRITE),
}


class AclError(ValueError):
    """An ACL binding that cannot be created (Kafka answers INVALID_REQUEST)."""


@dataclass(frozen=True, slots=True)
class Acl:
    resource_type: int
    name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    def to_json(self) -> list:
        return [self.resource_type, self.name, self.pattern_type, self.principal, self.host,
                self.operation, self.permission]


@dataclass(frozen=True, slots=True)
class AclFilter:
    resource_type: int = R_ANY
    name: str | None = None
    pattern_type: int = P_ANY
    principal: str | None = None
    host: str | None = None
    operation: int = O_ANY
    permission: int = PERM_ANY

    def validate(self) -> str | None:
        """An error message when the filter is unusable (Kafka: INVALID_REQUEST)."""
        if self.resource_type == R_UNKNOWN or self.resource_type > 7 or self.resource_type < 0:
            return f"unknown resource type {self.resource_type}"
        if self.pattern_type == P_UNKNOWN or not 0 < self.pattern_type <= PREFIXED:
            return f"unknown pattern type {self.pattern_type}"
        if self.operation == O_UNKNOWN or not 0 < self.operation <= 14:
            return f"unknown operation {self.operation}"
        if self.permission == PERM_UNKNOWN or not 0 < self.permission <= ALLOW:
            return f"unknown permission type {self.permission}"
        return None

    def matches(self, acl: Acl) -> bool:
        if self.resource_type != R_ANY and self.resource_type != acl.resource_type:
            return False
        pt = self.pattern_type
        if pt not in (P_ANY, P_MATCH) and pt != acl.pattern_type:
            return False
        if self.name is not None:
            if pt == P_ANY or pt == acl.pattern_type:
                if self.name != acl.name:
                    return False
            elif acl.pattern_type == LITERAL:  # MATCH
                if acl.name != self.name and acl.name != WILDCARD:
                    return False
            elif acl.pattern_type == PREFIXED:
                if not self.name.startswith(acl.name):
                    return False
            else:
                return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation != O_ANY and self.operation != acl.operation:
            return False
        return self.permission == PERM_ANY or self.permission == acl.permission


def validate_acl(acl: Acl) -> None:
    if acl.resource_type not in RESOURCE_TYPES:
        raise AclError(f"resource type {acl.resource_type} is not supported (TOPIC, GROUP, CLUSTER, "
                       "TRANSACTIONAL_ID)")
    if acl.pattern_type not in (LITERAL, PREFIXED):
        raise AclError("pattern type must be LITERAL or PREFIXED")
    if not acl.name:
        raise AclError("resource name must not be empty")
    if acl.resource_type == CLUSTER and (acl.name != CLUSTER_NAME or acl.pattern_type != LITERAL):
        raise AclError(f"the only valid name for the CLUSTER resource is {CLUSTER_NAME} (LITERAL)")
    if acl.operation not in OPERATIONS:
        raise AclError(f"operation {acl.operation} is not supported")
    if acl.permission not in (ALLOW, DENY):
        raise AclError("permission type must be ALLOW or DENY")
    kind, sep, name = acl.principal.partition(":")
    if not sep or not kind or not name:
        raise AclError(f"principal {acl.principal!r} is not of the form Type:name (User:alice)")
    if kind != "User":
        raise AclError(f"principal type {kind!r} is not supported (User)")
    if not acl.host:
        raise AclError("host must not be empty (use * for any host)")


def principal_of(username: str | None) -> str:
    """The Kafka principal of a connection's SASL user (``User:ANONYMOUS`` without SASL)."""
    return ANONYMOUS if username is None else "User:" + username


class Authorizer:
    """The ACL store and the authorization decision (with a decision cache)."""

    CACHE_MAX = 100_000

    def __init__(self, path: str | os.PathLike | None, *, super_users: frozenset[str] = frozenset(),
                 allow_if_no_acl: bool = False) -> None:
        # None: the ACLs are the cluster's, held in etcd, and given by ``replace`` (no local file)
        self.path = Path(path) if path is not None else None
        # super users as bare names ("kastle-internal") as brokerd's super.users parses them
        self.super_users = super_users
        self.allow_if_no_acl = allow_if_no_acl
        self.acls: set[Acl] = set()
        # resource type -> name -> ACLs (literal, incl. "*"), and prefix -> ACLs (prefixed)
        self._literal: dict[int, dict[str, list[Acl]]] = {}
        self._prefixed: dict[int, dict[str, list[Acl]]] = {}
        self._prefix_lengths: dict[int, list[int]] = {}
        self._cache: dict[tuple, bool] = {}
        self.generation = 0
        self.load()

    # ------------------------------------------------------------------ store
    def load(self) -> None:
        if self.path is not None and self.path.exists():
            doc = json.loads(self.path.read_text())
            self.acls = {Acl(*row) for row in doc.get("acls", ())}
        else:
            self.acls = set()
        self._reindex()

    def replace(self, acls: set[Acl]) -> None:
        """Hold exactly ``acls`` (a cluster's, as etcd has them now)."""
        if acls != self.acls:
            self.acls = set(acls)
            self._reindex()

    def _save(self) -> None:
        if self.path is None:
            raise OSError("the ACLs of a cluster are changed in its metadata, not in a local file")
        rows = sorted(a.to_json() for a in self.acls)
        atomic_write_json(self.path, {"version": 1, "acls": rows})

    def _reindex(self) -> None:
        literal: dict[int, dict[str, list[Acl]]] = {}
        prefixed: dict[int, dict[str, list[Acl]]] = {}
        for acl in self.acls:
            index = literal if acl.pattern_type == LITERAL else prefixed
            index.setdefault(acl.resource_type, {}).setdefault(acl.name, []).append(acl)
        self._literal = literal
        self._prefixed = prefixed
        self._prefix_lengths = {rt: sorted({len(n) for n in names}) for rt, names in prefixed.items()}
        self._cache = {}
        self.generation += 1

    def create(self, acls: list[Acl]) -> None:
        """Add bindings (already validated); existing ones are kept once. Persisted before return."""
        new = self.acls | set(acls)
        if new != self.acls:
            old = self.acls
            self.acls = new
            try:
                self._save()
            except OSError:
                self.acls = old
                raise
            self._reindex()

    def delete(self, filters: list[AclFilter]) -> list[list[Acl]]:
        """Remove the bindings each filter matches; returns them per filter."""
        out: list[list[Acl]] = []
        gone: set[Acl] = set()
        for f in filters:
            matched = [a for a in self.acls if f.matches(a)]
            matched.sort(key=Acl.to_json)
            out.append(matched)
            gone.update(matched)
        if gone:
            old = self.acls
            self.acls = old - gone
            try:
                self._save()
            except OSError:
                self.acls = old
                raise
            self._reindex()
        return out

    def describe(self, f: AclFilter) -> list[Acl]:
        return sorted((a for a in self.acls if f.matches(a)), key=Acl.to_json)

    # ------------------------------------------------------------------ decisions
    def is_super_user(self, principal: str) -> bool:
        return principal.startswith("User:") and principal[5:] in self.super_users

    def matching(self, resource_type: int, name: str) -> list[Acl]:
        """The ACLs that apply to the resource: literal name, literal ``*``, prefixes of name."""
        out: list[Acl] = []
        lit = self._literal.get(resource_type)
        if lit:
            out.extend(lit.get(name, ()))
            if name != WILDCARD:
                out.extend(lit.get(WILDCARD, ()))
        pre = self._prefixed.get(resource_type)
        if pre:
            for n in self._prefix_lengths[resource_type]:
                if n > len(name):
                    break
                out.extend(pre.get(name[:n], ()))
        return out

    def authorize(self, principal: str, host: str, operation: int, resource_type: int, name: str) -> bool:
        key = (principal, host, operation, resource_type, name)
        cache = self._cache
        decision = cache.get(key)
        if decision is None:
            decision = self._decide(principal, host, operation, resource_type, name)
            if len(cache) >= self.CACHE_MAX:
                cache.clear()
            cache[key] = decision
        return decision

    def _decide(self, principal: str, host: str, operation: int, resource_type: int, name: str) -> bool:
        if self.is_super_user(principal):
            return True
        acls = self.matching(resource_type, name)
        if not acls:
            return self.allow_if_no_acl
        allow_ops = _ALLOW_OPS.get(operation, (operation, ALL))
        allowed = False
        for acl in acls:
            if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
                continue
            if acl.host != host and acl.host != WILDCARD:
                continue
            if acl.permission == DENY:
                if acl.operation == operation or acl.operation == ALL:
                    return False
            elif acl.operation in allow_ops:
                allowed = True
        return allowed

    def authorize_any(self, principal: str, host: str, operation: int, resource_type: int) -> bool:
        """Kafka's authorizeByResourceType: may the principal do ``operation`` on some resource
        of the type? (InitProducerId without IDEMPOTENT_WRITE: WRITE on any topic.)"""
        key = (principal, host, operation, resource_type, None)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide_any(principal, host, operation, resource_type)
            self._cache[key] = decision
        return decision

    def _decide_any(self, principal: str, host: str, operation: int, resource_type: int) -> bool:
        if self.is_super_user(principal):
            return True
        lit = self._literal.get(resource_type, {})
        pre = self._prefixed.get(resource_type, {})
        if not lit and not pre:
            return self.allow_if_no_acl

        def applies(acl: Acl, permission: int) -> bool:
            return (acl.permission == permission
                    and acl.principal in (principal, WILDCARD_PRINCIPAL)
                    and acl.host in (host, WILDCARD)
                    and acl.operation in (operation, ALL))

        deny_literal = {n for n, group in lit.items() if any(applies(a, DENY) for a in group)}
        if WILDCARD in deny_literal:
            return False
        deny_prefixes = [n for n, group in pre.items() if any(applies(a, DENY) for a in group)]
        for index, prefixed in ((lit, False), (pre, True)):
            for name, group in index.items():
                if not any(applies(a, ALLOW) for a in group):
                    continue
                if not prefixed and name in deny_literal:
                    continue
                if any(name.startswith(d) for d in deny_prefixes):
                    continue
                return True
        return False

    def authorized_operations(self, principal: str, host: str, resource_type: int, name: str) -> int:
        """Kafka's authorized-operations bit field for one resource."""
        bits = 0
        for op in SUPPORTED_OPS[resource_type]:
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits


# ---------------------------------------------------------------------- handler helpers
def client_host(conn) -> str:
    """The client's IP address as ACL hosts name it."""
    peer = conn.peer
    host = peer.rpartition(":")[0] if ":" in peer else peer
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _who(conn) -> tuple:
    """(SASL user, Kafka principal, host) of a connection, kept on it (the user is set once)."""
    who = getattr(conn, "_acl_who", None)
    if who is None or who[0] is not conn.principal:
        who = conn._acl_who = (conn.principal, principal_of(conn.principal), client_host(conn))
    return who


def allowed(ctx, operation: int, resource_type: int, name: str) -> bool:
    """Whether the request's principal may do ``operation`` on the resource (True when off)."""
    authz = ctx.broker.authorizer
    if authz is None:
        return True
    _user, principal, host = _who(ctx.conn)
    return authz.authorize(principal, host, operation, resource_type, name)


def allowed_any(ctx, operation: int, resource_type: int) -> bool:
    """Whether the principal may do ``operation`` on some resource of the type (True when off)."""
    authz = ctx.broker.authorizer
    if authz is None:
        return True
    _user, principal, host = _who(ctx.conn)
    return authz.authorize_any(principal, host, operation, resource_type)


def cluster_allowed(ctx, operation: int) -> bool:
    return allowed(ctx, operation, CLUSTER, CLUSTER_NAME)


def authorized_operations(ctx, resource_type: int, name: str) -> int | None:
    """The bit field for include_*_authorized_operations, or None when the authorizer is off.

    As Kafka, the cluster's operations are reported only to a principal that may DESCRIBE the
    cluster (0 otherwise)."""
    authz = ctx.broker.authorizer
    if authz is None:
        return None
    if resource_type == CLUSTER and not cluster_allowed(ctx, DESCRIBE):
        return 0
    _user, principal, host = _who(ctx.conn)
    return authz.authorized_operations(principal, host, resource_type, name)
