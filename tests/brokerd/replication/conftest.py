"""Fixtures: a real etcd per test module (each test uses its own key prefix), and one with
authentication on for the isolation tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.etcd_server import EtcdServer


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer.start(tmp_path_factory.mktemp("etcd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def etcd_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer.start(tmp_path_factory.mktemp("etcd-auth"))
    server.enable_auth()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh cluster prefix, so tests sharing one etcd never see each other's keys."""
    return f"/kastle-test/{uuid.uuid4().hex[:12]}/"
