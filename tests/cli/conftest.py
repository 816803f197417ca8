"""The `kastle` CLI against the real platform: gunicorn, a Celery worker and beat, real brokers.

One platform per module (the stack is the slow part): `platform` starts the web server on the
shared e2e stack (tests/e2e/conftest.py); `account` signs a tenant up over REST; `cli` runs
`python -m kastle` as a subprocess with a config directory of its own (XDG_CONFIG_HOME) and keeps a
transcript of every run for the secret-scanning test. Tests in a module share the tenant and its
cluster, so they are not transactional: the module's teardown empties the database instead.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    _provisioning_env,
    celery_services,
    provisioning_stack,
)
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"kastle {' '.join(self.args)} exited {self.code}: {self.err}"
        return json.loads(self.out)


@dataclass
class Cli:
    """`kastle` as a user runs it: a subprocess with its own HOME and config directory."""

    home: Path
    url: str
    transcript: list[Run] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.home / "config" / "kastle"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8",
            "COLUMNS": "200",
        }
        env.update(extra)
        return env

    def run(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 90
    ) -> Run:
        proc = subprocess.run(
            [sys.executable, "-m", "kastle", *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.env(**(env or {})),
            cwd=self.home,
            timeout=timeout,
        )
        run = Run(list(args), proc.returncode, proc.stdout, proc.stderr)
        self.transcript.append(run)
        return run

    def ok(self, *args: str, **kw: Any) -> Run:
        run = self.run(*args, **kw)
        assert run.code == 0, f"kastle {' '.join(args)} exited {run.code}: {run.err}"
        return run

    def json(self, *args: str, **kw: Any) -> Any:
        return self.run(*args, "-o", "json", **kw).json()

    def config(self) -> dict[str, Any]:
        return json.loads((self.config_dir / "config.json").read_text())


@dataclass
class Account:
    email: str
    password: str
    token: str  # the sign-up token: the tests' own REST view, independent of the CLI's
    url: str

    def rest(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.url}/api/v1/{path}", headers=headers, timeout=60, **kw)

    def get(self, path: str, **params: Any) -> Any:
        response = self.rest("GET", path, params=params or None)
        assert response.status_code == 200, response.text
        return response.json()

    def results(self, path: str, **params: Any) -> list[Any]:
        return self.get(path, page_size=200, **params)["results"]


@pytest.fixture(scope="module")
def platform(provisioning_stack, django_db_blocker) -> Iterator[Any]:  # noqa: F811
    """The stack plus the control plane under gunicorn; the database is emptied at the end."""
    provisioning_stack.start_web()
    with django_db_blocker.unblock():
        from clusters.models import Host

        wait_until(
            lambda: Host.objects.filter(name="local").exists(), timeout=30, message="host registration"
        )
    try:
        yield provisioning_stack
    finally:
        # Every process of the stack stops before the flush: a live worker's heartbeat would
        # register its host again and leave the row to the modules that run after this one.
        for name in list(provisioning_stack.processes):
            provisioning_stack.stop(name)
        from django.core.management import call_command

        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def account(platform) -> Account:
    url = platform.web_url
    email = f"ada-{secrets.token_hex(4)}@cli.example"
    password = f"a long passphrase {secrets.token_hex(8)}"
    response = requests.post(
        f"{url}/api/v1/signup",
        json={"email": email, "password": password, "organization": "Analytical Engines"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return Account(email, password, response.json()["token"], url)


@pytest.fixture(scope="module")
def cli(platform, tmp_path_factory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli-home"), platform.web_url)
