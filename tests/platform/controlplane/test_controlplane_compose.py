"""docker-compose.yml cannot run here (no Docker engine); check it against the code instead."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[3]


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_whole_platform():
    services = load()["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
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
