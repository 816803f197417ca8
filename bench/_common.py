"""Helpers shared by the benches (each bench runs as a script: ``python3 bench/<name>.py``).

- :class:`Brokerd`: one real brokerd process on loopback, timed from spawn to serving;
- :func:`print_results`: a bench's figures, one a line;
- :class:`BenchServices`: a PostgreSQL database and a leased Redis database of the run's own,
  for the control-plane benches (with :func:`add_services_args`, :func:`setup_django`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import redis

REPO = Path(__file__).resolve().parent.parent
#: The same leases as the test suite's (tests/conftest.py), so a bench and a test run never share a database.
LEASE_KEY = "kastle:test-redis-db-lease:{n}"


# --- brokerd ---------------------------------------------------------------------------------------
class Brokerd:
    """brokerd serving PLAINTEXT on loopback from ``root/data`` (log: ``root/brokerd.log``).

    ``settings`` become ``--set key=value`` flags. The ports brokerd picks at the first start are
    kept across restarts.
    """

    def __init__(self, root: Path, settings: dict[str, object] | None = None, repo: Path = REPO) -> None:
        self.root = root
        self.repo = repo  # the checkout whose brokerd runs (another git ref's, for comparisons)
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.settings = settings or {}
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.admin = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start; returns seconds from spawn to /healthz 200."""
        (self.data / "listeners.json").unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "brokerd", "serve", "--data-dir", str(self.data),
            "--listener", f"PLAINTEXT://127.0.0.1:{self.port}",
            "--admin-listener", f"127.0.0.1:{self.admin}",
            "--log-file", str(self.root / "brokerd.log"),
        ]  # fmt: skip
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=self.repo, env=dict(os.environ, PYTHONPATH=str(self.repo)), stdout=subprocess.DEVNULL
        )
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("brokerd exited")
            try:
                info = json.loads((self.data / "listeners.json").read_text())
                if info["pid"] == self.proc.pid:
                    self.port, self.admin = info["listeners"]["PLAINTEXT"], info["admin"]
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/healthz", timeout=1) as r:
                        if r.status == 200:
                            return time.monotonic() - t0
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.005)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return -1.0


def print_results(results: dict[str, float], places: int = 2) -> None:
    """``name  value``, one a line, the names padded to one width."""
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:<{width}}  {v:10.{places}f}")


# --- PostgreSQL and Redis of the bench's own -------------------------------------------------------
def add_services_args(p: argparse.ArgumentParser) -> None:
    """--pg and --redis: the servers the bench makes its database and leases its Redis database on."""
    p.add_argument(
        "--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server URL to create the bench database on",
    )  # fmt: skip
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


def lease_redis_db(base: str) -> tuple[int, str, redis.Redis]:
    import redis

    control = redis.Redis.from_url(base)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    candidates = list(range(1, 16))
    random.shuffle(candidates)
    for n in candidates:
        if control.set(LEASE_KEY.format(n=n), owner, nx=True, ex=3600):
            return n, f"{base.rsplit('/', 1)[0]}/{n}", control
    raise SystemExit("no free Redis database to lease (1..15 are all in use)")


def with_db(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class BenchServices:
    """A database ``db_name`` created on the PostgreSQL server and a leased Redis database."""

    db_name: str
    database_url: str
    redis_url: str
    lease: int
    control: redis.Redis
    admin: Any  # psycopg.Connection to the server, autocommit

    @classmethod
    def create(cls, pg: str, redis_base: str, db_name: str) -> BenchServices:
        import psycopg

        n, redis_url, control = lease_redis_db(redis_base)
        admin = psycopg.connect(pg, autocommit=True)
        admin.execute(f'CREATE DATABASE "{db_name}"')
        return cls(db_name, with_db(pg, db_name), redis_url, n, control, admin)

    def release(self) -> None:
        """Close Django's connections, drop the database, flush and give back the Redis database."""
        import redis
        from django.db import connections

        connections.close_all()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.admin.close()
        redis.Redis.from_url(self.redis_url).flushdb()
        self.control.delete(LEASE_KEY.format(n=self.lease))


def setup_django(env: dict[str, str]) -> None:
    """Django in this process with ``env`` (os.environ updated), the database migrated."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
