"""Shared fixtures for the whole suite.

Isolation from other test runs on the same machine (PostgreSQL and Redis are shared):
- the test database is named per run (`test_kastle_<pid>`), so concurrent runs never clobber it;
- each run leases a Redis database of its own (1..15, a lease key in db 0) for Celery's queues
  and the cache, and exports it as REDIS_URL for subprocesses (workers, servers).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test.utils import override_settings

from tests.helpers import free_port, queued_tasks, wait_until
from tests.platform.api import Tenant

REDIS_BASE_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
LEASE_KEY = "kastle:test-redis-db-lease:{n}"
LEASE_SECONDS = 3 * 3600


# --- database: one test database per run -------------------------------------------------------
@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    suffix = f"p{os.getpid()}"
    for db in settings.DATABASES.values():
        if db["ENGINE"].endswith("sqlite3"):
            continue  # SQLite test databases are in memory already
        test = db.setdefault("TEST", {})
        base = test.get("NAME") or f"test_{db['NAME']}"
        test["NAME"] = f"{base}_{suffix}"


# --- Redis: one database per run ---------------------------------------------------------------
def _redis_url(db: int) -> str:
    base = REDIS_BASE_URL.rsplit("/", 1)[0] if REDIS_BASE_URL.count("/") > 2 else REDIS_BASE_URL
    return f"{base}/{db}"


def _lease_is_stale(value: bytes | None) -> bool:
    if not value:
        return True
    host, _, pid = value.decode().partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lease_redis_db(control: redis.Redis) -> int:
    owner = f"{socket.gethostname()}:{os.getpid()}"
    candidates = list(range(1, 16))
    random.shuffle(candidates)
    for n in candidates:
        key = LEASE_KEY.format(n=n)
        if control.set(key, owner, nx=True, ex=LEASE_SECONDS):
            return n
        if _lease_is_stale(control.get(key)):  # a run on this machine died without releasing it
            control.set(key, owner, ex=LEASE_SECONDS)
            return n
    raise RuntimeError("all 15 test Redis databases are leased by other test runs; try again shortly")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL with a database of this run's own, flushed before and after."""
    control = redis.Redis.from_url(REDIS_BASE_URL)
    try:
        control.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_BASE_URL} (start it, or run bash .ci/run): {exc}")
    n = _lease_redis_db(control)
    url = _redis_url(n)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        control.delete(LEASE_KEY.format(n=n))
        control.close()


@pytest.fixture(scope="session", autouse=True)
def _isolated_services(redis_url: str) -> Iterator[None]:
    """Point Celery and the cache at this run's Redis database, here and in subprocesses."""
    from controlplane.celery import app as celery_app

    os.environ["REDIS_URL"] = redis_url
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": settings.CACHE_KEY_PREFIX,
        }
    }
    override = override_settings(
        CACHES=caches, CELERY_BROKER_URL=redis_url, CELERY_BROKER_TRANSPORT_OPTIONS={}
    )
    override.enable()
    celery_app.conf.broker_url = redis_url
    celery_app.conf.broker_transport_options = {}
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            celery_app.pool.force_close_all()
        override.disable()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _fresh_cache(redis_url: str) -> Iterator[None]:
    """Throttle counters and other cache entries never leak between tests."""
    yield
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{settings.CACHE_KEY_PREFIX}:*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


# --- Celery queue inspection -------------------------------------------------------------------
@pytest.fixture
def celery_queue(redis_client: redis.Redis) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """`celery_queue()` lists the tasks waiting in the default queue; the queue is emptied around the test."""
    redis_client.delete(settings.CELERY_DEFAULT_QUEUE)
    yield lambda queue=None: queued_tasks(redis_client, queue)
    redis_client.delete(settings.CELERY_DEFAULT_QUEUE)


# --- generic helpers ---------------------------------------------------------------------------
@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    return wait_until


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[..., int]:
    return free_port


# --- tenants and API clients -------------------------------------------------------------------
@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def tenant(db) -> Tenant:
    """An organization whose owner is authenticated on `tenant.client`."""
    return Tenant("owner")


@pytest.fixture
def other_tenant(db) -> Tenant:
    """A second, unrelated organization (for cross-tenant checks)."""
    return Tenant("owner")


@pytest.fixture
def make_tenant(db) -> Callable[..., Tenant]:
    return Tenant


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_deadlocks() -> Iterator[None]:
    """A transactional test's teardown TRUNCATEs every table while the e2e worker and beat may be
    mid-query; PostgreSQL can then pick the TRUNCATE as a deadlock victim. The flush runs in one
    transaction, so trying it again is safe."""
    import time

    from django.core.management.base import CommandError
    from django.core.management.commands.flush import Command
    from django.db import OperationalError

    original = Command.handle

    def handle(self, **options):
        for attempt in range(5):
            try:
                return original(self, **options)
            except CommandError as exc:
                deadlock = isinstance(exc.__cause__, OperationalError) and "deadlock" in str(exc.__cause__)
                if not deadlock or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    Command.handle = handle
    try:
        yield
    finally:
        Command.handle = original


# --- etcd: a real server per test module (each test takes its own key prefix) -------------------
@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.etcd_server import EtcdServer

    server = EtcdServer.start(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def etcd_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An etcd with authentication on and a root user (``EtcdServer.root_client()``)."""
    from tests.etcd_server import EtcdServer

    server = EtcdServer.start(tmp_path_factory.mktemp("etcd-auth"))
    server.enable_auth()
    yield server
    server.stop()


@pytest.fixture
def etcd_prefix() -> str:
    """A fresh cluster prefix, so tests sharing one etcd never see each other's keys."""
    import uuid

    return f"/kastle-test/{uuid.uuid4().hex[:12]}/"
