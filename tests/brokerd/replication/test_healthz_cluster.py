"""/healthz of a broker in a cluster: 200 only once it has registered in etcd and caught up
with the cluster's metadata (load balancers and the platform's readiness checks use it)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.brokerd.conftest import BrokerStartError
from tests.brokerd.replication.clustertest import cluster_brokers
from tests.etcd_server import EtcdServer


def test_healthz_answers_200_only_once_the_broker_has_registered(tmp_path: Path) -> None:
    """A broker that cannot reach etcd serves its admin listener but has no registration:
    /healthz answers 503 until it has registered and caught up with the cluster's metadata."""
    etcd = EtcdServer.start(tmp_path / "etcd")
    [broker] = cluster_brokers(tmp_path, etcd, "/healthz-cluster/", count=1)
    seen: list[int | None] = []

    def healthz() -> int | None:
        try:
            with urllib.request.urlopen(f"{broker.admin_url}/healthz", timeout=2) as resp:
                seen.append(resp.status)
        except urllib.error.HTTPError as exc:
            seen.append(exc.code)
        except OSError:
            seen.append(None)
        return seen[-1]

    broker.healthz = healthz  # type: ignore[method-assign]
    try:
        etcd.crash()
        with pytest.raises(BrokerStartError, match="did not become healthy"):
            broker.start(timeout=8)
        assert 503 in seen and 200 not in seen, seen  # the admin listener answered, not ready
        etcd.relaunch()
        broker.start(timeout=60)
        assert seen[-1] == 200
    finally:
        broker.kill()
        etcd.stop()
