"""End-to-end fixtures: a real Celery worker and beat as subprocesses against the test database.

Use in a test:

    def test_something(celery_worker, tenant_e2e):   # celery_worker makes the test transactional
        ... REST calls commit, on_commit publishes to this run's Redis database ...
        celery_worker.wait_for_log("worker", "succeeded", timeout=30)

API (`CeleryServices`, module-scoped as `celery_services`, function-scoped as `celery_worker`):
- `env`: the environment the processes run with (DATABASE_URL of the test database, this run's
  REDIS_URL, SECRET_KEY, KASTLE_VAR_DIR/KASTLE_DATA_DIR in a temp dir, PYTHONPATH).
- `data_dir`: KASTLE_DATA_DIR of the processes (brokers put hosts/<name>/ under it).
- `start_worker(name="worker", queues=None, concurrency=2, env=None)`, `start_beat(name="beat", env=None)`:
  start (or restart) a process; each runs in its own process group, output in `log_path(name)`. With
  `wait=False` it is not waited for: start several, then `wait_ready(*names)` (they boot in parallel).
- `stop(name, timeout=20)`: SIGTERM (warm shutdown), then SIGKILL the group; returns the exit code.
- `kill(name, sig=SIGKILL)`: signal the process group without waiting (crash tests).
- `restart(name)`, `processes[name]` (a `ServiceProcess`), `log(name)`, `wait_for_log(name, text, timeout)`.
- `start_host_worker(host, address, queues=None, env=None)`: another broker host on this machine — a
  worker `worker-<host>` consuming `host.<host>` with KASTLE_HOST_NAME/KASTLE_HOST_ADDRESS set and a
  data root of its own (`host_data_dir(host)`); its brokers are stopped at teardown too. Linux routes
  all of 127.0.0.0/8 to lo, so 127.0.0.2, 127.0.0.3, … serve as the addresses of further hosts.
- `start_web(name="web", workers=1, threads=4, env=None)`: the control plane under gunicorn on a free
  port (production-style, a process of its own); returns its URL (`web_url`), for clients that speak
  HTTP (the `kastle` CLI) rather than through the Django test client.
- `wait_until(predicate, timeout, interval, message)`.
Everything still running is stopped when the module's tests are done.

`provisioning_stack` (module-scoped) is the whole stack for provisioning tests: the fast heartbeat
and reconcile settings of `provisioning_env()`, the worker and beat, and the brokers stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.e2e.provisioning_stack import free_port_block, provisioning_env, stop_brokers
from tests.helpers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if not db["ENGINE"].endswith("postgresql"):
        pytest.fail("end-to-end tests need PostgreSQL: run them with DATABASE_URL set (bash scripts/test)")
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db.get("PASSWORD") else user
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _terminated: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def terminate(self) -> None:
        """SIGTERM once (a worker's warm shutdown; a second one would not wait for its tasks)."""
        if self.proc is not None and self.proc.poll() is None and self._terminated is not self.proc:
            self._terminated = self.proc
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.signal_group(signal.SIGKILL)  # anything left in the group (pool children)
        return self.proc.wait()


class CeleryServices:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.data_dir = Path(env["KASTLE_DATA_DIR"])
        self.processes: dict[str, ServiceProcess] = {}
        self.wait_until = wait_until
        self.data_dirs: list[Path] = [self.data_dir]  # every data root whose brokers teardown stops
        self.web_url: str | None = None
        self._starting: dict[str, tuple[str, int, float]] = {}  # name -> (ready text, log offset, timeout)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log(self, name: str) -> str:
        return self.processes[name].log()

    def _start(
        self, name: str, argv: list[str], ready: str, env: dict[str, str] | None, timeout: float,
        wait: bool = True,
    ):  # fmt: skip
        if name in self.processes and self.processes[name].alive:
            self.stop(name)
        proc_env = {**self.env, **(env or {})}
        process = ServiceProcess(name, argv, proc_env, self.log_path(name))
        offset = len(process.log())
        process.start()
        self.processes[name] = process
        self._starting[name] = (ready, offset, timeout)
        if wait:
            self.wait_ready(name)
        return process

    def wait_ready(self, *names: str) -> None:
        """Wait until processes started with `wait=False` are ready (started side by side, they
        boot in parallel: a worker's start-up is mostly importing Django)."""
        for name in names:
            ready, offset, timeout = self._starting.pop(name)
            process = self.processes[name]
            wait_until(
                lambda p=process, r=ready, o=offset: r in p.log()[o:] or not p.alive,
                timeout=timeout,
                message=f"{name} to be ready",
            )
            if not process.alive:
                pytest.fail(f"{name} exited during start-up:\n{process.log()[offset:][-4000:]}")

    def start_worker(
        self,
        name: str = "worker",
        queues: list[str] | None = None,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        wait: bool = True,
    ) -> ServiceProcess:
        queues = queues or [settings.CELERY_DEFAULT_QUEUE, f"host.{settings.KASTLE_HOST_NAME}"]
        argv = [
            sys.executable, "-m", "celery", "-A", "controlplane", "worker", "-Q", ",".join(queues),
            "-n", f"{name}-{os.getpid()}@%h", "--concurrency", str(concurrency), "--loglevel", "INFO",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        return self._start(name, argv, " ready.", env, timeout, wait)

    def host_data_dir(self, host: str) -> Path:
        return self.workdir / f"data-{host}"

    def start_host_worker(
        self,
        host: str,
        address: str,
        queues: list[str] | None = None,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        wait: bool = True,
    ) -> ServiceProcess:
        """Start (or restart) the worker of broker host `host` as `worker-<host>` (see the module doc)."""
        data_dir = self.host_data_dir(host)
        if data_dir not in self.data_dirs:
            self.data_dirs.append(data_dir)
        host_env = {
            "KASTLE_HOST_NAME": host,
            "KASTLE_HOST_ADDRESS": address,
            "KASTLE_DATA_DIR": str(data_dir),
        }
        return self.start_worker(
            f"worker-{host}",
            queues=[f"host.{host}", *(queues or [])],
            concurrency=concurrency,
            env={**host_env, **(env or {})},
            timeout=timeout,
            wait=wait,
        )

    def start_beat(
        self, name: str = "beat", env: dict[str, str] | None = None, timeout: float = 60.0, wait: bool = True
    ):
        argv = [
            sys.executable, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "INFO",
            "--schedule", str(self.workdir / f"{name}-schedule"),
        ]  # fmt: skip
        return self._start(name, argv, "beat: Starting...", env, timeout, wait)

    def start_web(
        self, name: str = "web", workers: int = 1, threads: int = 4, env: dict[str, str] | None = None
    ) -> str:
        """The REST API and portal under gunicorn on a free port of 127.0.0.1; returns the site URL."""
        port = free_port()
        argv = [
            sys.executable, "-m", "gunicorn", "controlplane.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
            "--log-level", "info",
        ]  # fmt: skip
        self._start(name, argv, "Booting worker", env, timeout=60.0)
        self.web_url = f"http://127.0.0.1:{port}"
        return self.web_url

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        return self.processes[name].stop(timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.processes[name].signal_group(sig)

    def restart(self, name: str, **kwargs: Any) -> ServiceProcess:
        if name.startswith("beat"):
            return self.start_beat(name, **kwargs)
        if name in self.processes and not kwargs:  # same queues and environment as before
            process = self.processes[name]
            if process.alive:
                self.stop(name)
            extra = {k: v for k, v in process.env.items() if self.env.get(k) != v}
            queues = process.argv[process.argv.index("-Q") + 1].split(",")
            concurrency = int(process.argv[process.argv.index("--concurrency") + 1])
            return self.start_worker(name, queues=queues, concurrency=concurrency, env=extra)
        return self.start_worker(name, **kwargs)

    def wait_for_log(self, name: str, text: str, timeout: float = 30.0) -> None:
        wait_until(lambda: text in self.log(name), timeout=timeout, message=f"{text!r} in the {name} log")

    def stop_all(self) -> None:
        for process in self.processes.values():  # all shut down side by side
            process.terminate()
        for process in self.processes.values():
            process.stop()


@pytest.fixture(scope="module")
def celery_services(
    django_db_setup: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryServices]:
    """A worker (default queue + host.local) and beat for this module's tests; stopped afterwards."""
    workdir = tmp_path_factory.mktemp("celery")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        DATABASE_URL=_database_url(),
        DATABASE_CONN_MAX_AGE="0",  # never keep a connection that a test's flush would wait on
        REDIS_URL=redis_url,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="false",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        KASTLE_VAR_DIR=str(workdir / "var"),
        KASTLE_DATA_DIR=str(workdir / "data"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        PYTHONUNBUFFERED="1",
        C_FORCE_ROOT="1",
        # Brokers of this run get ports of their own (provisioning leases them from this range).
        KASTLE_HOST_PORTS=os.environ.get("KASTLE_HOST_PORTS") or "{}-{}".format(*free_port_block()),
    )
    services = CeleryServices(workdir, env)
    try:
        services.start_worker(wait=False)
        services.start_beat(wait=False)
        services.wait_ready("worker", "beat")
        yield services
    finally:
        services.stop_all()
        for data_dir in services.data_dirs:
            stop_brokers(data_dir)  # brokerd runs detached from the worker (provisioning)


@pytest.fixture(scope="module")
def _provisioning_env() -> Iterator[dict[str, str]]:
    with provisioning_env() as env:
        yield env


@pytest.fixture(scope="module")
def provisioning_stack(_provisioning_env: dict[str, str], celery_services: CeleryServices):
    """The worker and beat with provisioning_env() in force; this module's brokers stopped afterwards."""
    yield celery_services
    stop_brokers(celery_services.data_dir)


@pytest.fixture
def celery_worker(celery_services: CeleryServices, transactional_db: None) -> Iterator[CeleryServices]:
    """The module's worker and beat, for a transactional test (commits are real, tasks run)."""
    for name, process in celery_services.processes.items():
        if not process.alive:
            pytest.fail(f"{name} is not running:\n{process.log()[-4000:]}")
    yield celery_services
