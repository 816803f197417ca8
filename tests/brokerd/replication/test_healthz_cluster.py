"""/healthz of a broker in a cluster: 200 only once it has registered in etcd and caught up
with the cluster's metadata (load balancers and the platform's readiness checks use it)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.brokerd.conftest import Broker
from tests.brokerd.replication.clustertest import cluster_brokers
from tests.etcd_server import EtcdServer

UNREADY_WATCH_S = 3.0  # how long a broker without etcd is watched saying 503


class WatchedLongEnough(Exception):
    pass


def test_healthz_answers_200_only_once_the_broker_has_registered(tmp_path: Path) -> None:
    """A broker that cannot reach etcd serves its admin listener but has no registration:
    /healthz answers 503 until it has registered and caught up with the cluster's metadata."""
    etcd = EtcdServer.start(tmp_path / "etcd")
    [broker] = cluster_brokers(tmp_path, etcd, "/healthz-cluster/", count=1)
    seen: list[int | None] = []
    first_503: list[float] = []

    def healthz() -> int | None:
        try:
            with urllib.request.urlopen(f"{broker.admin_url}/healthz", timeout=2) as resp:
                seen.append(resp.status)
        except urllib.error.HTTPError as exc:
            seen.append(exc.code)
        except OSError:
            seen.append(None)
        if seen[-1] == 503 and not first_503:
            first_503.append(time.monotonic())
        if first_503 and time.monotonic() - first_503[0] > UNREADY_WATCH_S:
            raise WatchedLongEnough
        return seen[-1]

    broker.healthz = healthz  # type: ignore[method-assign]
    try:
        etcd.crash()
        # polled while it starts: it must say 503 (not ready), and go on saying it, never 200
        with pytest.raises(WatchedLongEnough):
            broker.start(timeout=30)
        assert 503 in seen and 200 not in seen, seen  # the admin listener answered, not ready
        broker.kill()
        etcd.relaunch()
        first_503.clear()
        broker.healthz = lambda: Broker.healthz(broker)  # type: ignore[method-assign]
        broker.start(timeout=60)
        assert broker.healthz() == 200
    finally:
        broker.kill()
        etcd.stop()
