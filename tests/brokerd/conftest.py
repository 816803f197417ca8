"""Real brokerd processes for tests.

``Broker`` starts ``python -m brokerd serve`` in a temporary directory on ephemeral loopback
ports (port 0, read back from ``<data-dir>/listeners.json``, so parallel test runs never
collide) and waits for ``GET /healthz``. Restarts reuse the same ports and data directory.

Fixtures:
- ``broker``: a started PLAINTEXT broker.
- ``sasl_broker``: a started broker with PLAINTEXT and SASL_PLAINTEXT listeners and a
  credentials file holding ``alice``/``alice-secret`` (``Broker.USERS``).
- ``broker_factory(**options)``: start brokers with other options (see ``Broker.__init__``);
  all are stopped at teardown.

Other suites (groups, admin, provisioning) can import ``Broker`` from here or use the fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class BrokerStartError(RuntimeError):
    pass


class Broker:
    USERS = {"alice": "alice-secret"}

    def __init__(
        self,
        root: Path,
        *,
        plaintext: bool = True,
        sasl: bool = False,
        users: dict[str, str] | None = None,
        settings: dict[str, object] | None = None,
        config_toml: str | None = None,
        extra_args: list[str] | None = None,
        node_id: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "brokerd.log"
        self.stderr_path = self.root / "brokerd.stderr"
        self.credentials_path = self.root / "credentials.json"
        self.plaintext = plaintext
        self.sasl = sasl
        self.settings = dict(settings or {})
        self.config_toml = config_toml
        self.extra_args = list(extra_args or [])
        self.node_id = node_id
        self.ports: dict[str, int] = {"PLAINTEXT": 0, "SASL_PLAINTEXT": 0, "admin": 0}
        self.proc: subprocess.Popen | None = None
        if sasl:
            from brokerd import credentials

            for name, password in (users if users is not None else self.USERS).items():
                credentials.set_user(self.credentials_path, name, password)

    # --- addresses ----------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['PLAINTEXT']}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['SASL_PLAINTEXT']}"

    @property
    def port(self) -> int:
        return self.ports["PLAINTEXT"]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['admin']}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # --- lifecycle ----------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "brokerd", "serve", "--data-dir", str(self.data_dir)]
        if self.plaintext:
            cmd += ["--listener", f"PLAINTEXT://127.0.0.1:{self.ports['PLAINTEXT']}"]
        if self.sasl:
            cmd += ["--listener", f"SASL_PLAINTEXT://127.0.0.1:{self.ports['SASL_PLAINTEXT']}"]
            cmd += ["--credentials", str(self.credentials_path)]
        cmd += ["--admin-listener", f"127.0.0.1:{self.ports['admin']}", "--log-file", str(self.log_path)]
        if self.node_id is not None:
            cmd += ["--node-id", str(self.node_id)]
        if self.config_toml is not None:
            path = self.root / "brokerd.toml"
            path.write_text(self.config_toml)
            cmd += ["--config", str(path)]
        for key, value in self.settings.items():
            if isinstance(value, bool):
                value = str(value).lower()
            cmd += ["--set", f"{key}={value}"]
        return cmd + self.extra_args

    def start(self, timeout: float = 15.0) -> Broker:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> Broker:
        """Start the process without waiting for it (``wait_ready``), so that several brokers
        can come up side by side."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        (self.data_dir / "listeners.json").unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        runtime = self.data_dir / "listeners.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(f"brokerd exited with {self.proc.returncode}: {self.stderr_tail()}")
            if runtime.exists():
                try:
                    info = json.loads(runtime.read_text())
                except ValueError:
                    info = None
                if info and info.get("pid") == self.proc.pid:
                    self.ports.update(info["listeners"])
                    self.ports["admin"] = info["admin"]
                    if self.healthz() == 200:
                        return
            time.sleep(0.02)
        self.kill()
        raise BrokerStartError(f"brokerd did not become healthy in {timeout}s: {self.stderr_tail()}")

    def healthz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/healthz", timeout=2) as resp:
                return resp.status
        except OSError:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, crash: bool = False) -> Broker:
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    # --- helpers ------------------------------------------------------------------------
    def add_user(self, name: str, password: str) -> None:
        from brokerd import credentials

        credentials.set_user(self.credentials_path, name, password)

    def delete_user(self, name: str) -> None:
        from brokerd import credentials

        credentials.delete_user(self.credentials_path, name)

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stderr_tail(self) -> str:
        text = self.stderr_path.read_text() if self.stderr_path.exists() else ""
        return text[-2000:] + ("\n" + self.log_text()[-2000:] if self.log_text() else "")

    def confluent_config(self, **extra: object) -> dict:
        conf = {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 10000}
        conf.update(extra)
        return conf

    def sasl_config(
        self, mechanism: str = "PLAIN", user: str = "alice", password: str | None = None, **extra: object
    ) -> dict:
        conf = {
            "bootstrap.servers": self.sasl_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": self.USERS.get(user, "") if password is None else password,
        }
        conf.update(extra)
        return conf

    def __enter__(self) -> Broker:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def broker_factory(tmp_path_factory):
    started: list[Broker] = []

    def make(start: bool = True, **options: object) -> Broker:
        b = Broker(tmp_path_factory.mktemp("brokerd"), **options)
        started.append(b)
        return b.start() if start else b

    yield make
    for b in started:
        try:
            b.stop()
        except Exception:
            b.kill()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


@pytest.fixture
def sasl_broker(broker_factory) -> Broker:
    return broker_factory(sasl=True)
