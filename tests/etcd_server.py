"""A real etcd for tests: ``/usr/bin/etcd`` (Debian's etcd-server) on free loopback ports in a
temporary directory, stopped and removed at teardown.

``EtcdServer.start(root)`` returns a running server; ``enable_auth`` switches on
authentication with a root user, as production etcd runs (each cluster then gets its own
user and role, see brokerd/coordination/access.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from brokerd.coordination import access
from brokerd.coordination.etcd import Etcd

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    ROOT_PASSWORD = "root-test-password"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.client_port = 0
        self.peer_port = 0
        self.auth = False

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.client_port)

    def url(self, prefix: str) -> str:
        return f"etcd://127.0.0.1:{self.client_port}/{prefix.strip('/')}"

    def client(self, *, user: str | None = None, password: str | None = None) -> Etcd:
        return Etcd([self.endpoint], user=user, password=password)

    def root_client(self) -> Etcd:
        return self.client(user="root", password=self.ROOT_PASSWORD) if self.auth else self.client()

    @classmethod
    def start(cls, root: Path) -> EtcdServer:
        server = cls(root)
        last_error = ""
        for _ in range(5):  # a free port can be taken between probing and binding
            server.client_port, server.peer_port = _free_port(), _free_port()
            if server._launch():
                return server
            last_error = (server.root / "etcd.log").read_text()[-2000:]
        raise RuntimeError(f"etcd did not start:\n{last_error}")

    def _launch(self, *, fresh: bool = True) -> bool:
        data = self.root / "data"
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            ETCD, "--name", "test", "--data-dir", str(data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}", "--initial-cluster-state", "new",
            "--log-outputs", "stderr", "--logger", "zap",
            # tests run many small clusters; snapshots and quotas stay small
            "--snapshot-count", "10000", "--quota-backend-bytes", str(256 * 1024 * 1024),
        ]  # fmt: skip
        log = open(self.root / "etcd.log", "ab")  # noqa: SIM115 - the child writes it until stop()
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self._answers():
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def _answers(self) -> bool:
        # A gRPC channel opened before etcd listens leaves its failed socket to the garbage
        # collector, whose ResourceWarning would then surface in whichever test runs next: ask
        # with a plain socket first, and open the etcd client only once the port accepts.
        try:
            socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
        except OSError:
            return False

        async def probe() -> bool:
            etcd = self.client()
            try:
                await etcd.get(b"/probe")
                return True
            except Exception:
                return False
            finally:
                await etcd.close()

        return asyncio.run(probe())

    def enable_auth(self) -> None:
        async def run() -> None:
            etcd = self.client()
            try:
                await access.enable_auth(etcd, self.ROOT_PASSWORD)
            finally:
                await etcd.close()

        asyncio.run(run())
        self.auth = True

    def crash(self) -> None:
        """SIGKILL etcd, as a machine losing power would (``relaunch`` brings it back)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def relaunch(self) -> None:
        """Start a crashed etcd again on the same ports and data directory: its keys and
        leases survive."""
        if not self._launch(fresh=False):
            raise RuntimeError(f"etcd did not restart:\n{(self.root / 'etcd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None
