"""Per-cluster etcd credentials: one user and one role per cluster, the role granted
read-write on the cluster's prefix range only, so one cluster's brokers can neither read
nor change another's metadata. These calls need etcd's root user (the control plane's).
"""

from __future__ import annotations

import aetcd
import grpc
from aetcd import rpc, utils

from brokerd.coordination.etcd import Etcd


def role_name(user: str) -> str:
    return f"{user}-role"


async def _auth(etcd: Etcd) -> tuple[rpc.AuthStub, aetcd.Client]:
    client = await etcd.client()
    return rpc.AuthStub(client.channel), client


async def enable_auth(etcd: Etcd, root_password: str) -> None:
    """Turn authentication on: etcd needs a ``root`` user holding the ``root`` role first.
    Call on a client without credentials; reconnect as root afterwards."""
    stub, client = await _auth(etcd)
    await stub.UserAdd(rpc.AuthUserAddRequest(name="root", password=root_password), metadata=client.metadata)
    await stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), metadata=client.metadata)
    await stub.AuthEnable(rpc.AuthEnableRequest(), metadata=client.metadata)
    await etcd.close()


async def grant_cluster_access(etcd: Etcd, *, prefix: str, user: str, password: str) -> None:
    """Create ``user`` with a role limited to ``prefix`` (a normalised prefix ending in '/')."""
    if not (prefix.startswith("/") and prefix.endswith("/")):
        raise ValueError(f"a cluster prefix starts and ends with '/': {prefix!r}")
    stub, client = await _auth(etcd)
    role = role_name(user)
    md = client.metadata
    await stub.RoleAdd(rpc.AuthRoleAddRequest(name=role), metadata=md)
    key = prefix.encode()
    permission = rpc.Permission(
        permType=rpc.Permission.READWRITE, key=key, range_end=utils.prefix_range_end(key)
    )
    await stub.RoleGrantPermission(
        rpc.AuthRoleGrantPermissionRequest(name=role, perm=permission), metadata=md
    )
    await stub.UserAdd(rpc.AuthUserAddRequest(name=user, password=password), metadata=md)
    await stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user, role=role), metadata=md)


async def revoke_cluster_access(etcd: Etcd, *, user: str, missing_ok: bool = False) -> None:
    stub, client = await _auth(etcd)
    for call, request in (
        (stub.UserDelete, rpc.AuthUserDeleteRequest(name=user)),
        (stub.RoleDelete, rpc.AuthRoleDeleteRequest(role=role_name(user))),
    ):
        try:
            await call(request, metadata=client.metadata)
        except grpc.aio.AioRpcError as exc:
            if not (missing_ok and "not found" in (exc.details() or "")):
                raise


async def cluster_access_exists(etcd: Etcd, *, user: str) -> bool:
    """Is ``user`` there with its role granted (what ``grant_cluster_access`` leaves)?"""
    stub, client = await _auth(etcd)
    try:
        found = await stub.UserGet(rpc.AuthUserGetRequest(name=user), metadata=client.metadata)
    except grpc.aio.AioRpcError as exc:
        if "not found" in (exc.details() or ""):
            return False
        raise
    return role_name(user) in found.roles
