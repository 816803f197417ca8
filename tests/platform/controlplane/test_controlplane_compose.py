"""docker-compose.yml cannot run here (no Docker engine); check it against the code instead."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.conf import settings

from sharedkit import coordination
from tests.helpers import environ

ROOT = Path(__file__).resolve().parents[3]


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_whole_platform():
    services = load()["services"]
    assert {"postgres", "redis", "etcd", "web", "worker", "beat"} <= set(services)
    for name in ("web", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert env["PYTHONPATH"].split(":")[0] == "/app/platform", name
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
        assert "SECRET_KEY" in env and env["DJANGO_SETTINGS_MODULE"] == "controlplane.settings"
    assert "controlplane.wsgi:application" in services["web"]["command"]
    worker = services["worker"]["command"]
    queues = worker[worker.index("-Q") + 1].split(",")
    assert settings.CELERY_DEFAULT_QUEUE in queues and "host.local" in queues
    assert services["beat"]["command"][:4] == ["celery", "-A", "controlplane", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_dockerfile_ships_every_source_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in ("platform", "web", "brokerd", "manage.py", "pyproject.toml"):
        assert f"COPY {path}" in dockerfile
    assert "PYTHONPATH=/app/platform:/app" in dockerfile


def test_compose_runs_etcd_for_replicated_clusters():
    """The platform and its (host-networked) brokers reach etcd where compose publishes it."""
    services = load()["services"]
    etcd = services["etcd"]
    assert etcd["command"][0] == "etcd" and "127.0.0.1:2379:2379" in etcd["ports"]
    assert "--listen-client-urls" in etcd["command"] and "etcd-data" in etcd["volumes"][0]
    assert "etcdctl" in etcd["healthcheck"]["test"]
    for name in ("web", "beat", "migrate"):
        assert services[name]["environment"]["KASTLE_ETCD_URL"] == "http://etcd:2379", name
    # the host-networked worker renders the address its host-networked brokers dial
    assert services["worker"]["environment"]["KASTLE_ETCD_URL"] == "http://127.0.0.1:2379"
    # everything starts after migrate, which waits for a healthy etcd
    assert services["migrate"]["depends_on"]["etcd"]["condition"] == "service_healthy"
    with environ(KASTLE_ETCD_URL=services["worker"]["environment"]["KASTLE_ETCD_URL"]):
        assert coordination.endpoints() == [("127.0.0.1", 2379)]  # the platform parses it
