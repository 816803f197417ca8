"""Process control for brokerd on this host: paths, start (detached), identify, health, stop.

Nothing here touches the database. Every process is identified by its pidfile *and* its
command line (`brokerd serve --config <this broker's config>`), so a recycled pid is never
mistaken for a broker, and brokers of other data roots (other hosts, other test runs) are
never touched. A broker forked by the fork server (`forkserver.py`: brokerd's modules imported
once, so a broker starts without paying for the imports) keeps the server's command line; it is
recognised by that command line and its working directory, the broker's own directory.

Layout under a host's root (``KASTLE_DATA_DIR/hosts/<name>/``)::

    clusters/<public id>/credentials.json     the cluster's SCRAM verifiers (atomic rewrites)
    clusters/<public id>/.lock                serialises work on the cluster on this host
    clusters/<public id>/broker-<node>/brokerd.toml, brokerd.pid, brokerd.log, brokerd.stderr
    clusters/<public id>/broker-<node>/data/  the partition logs
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sharedkit.files import file_lock

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


class BrokerStartError(Exception):
    """brokerd did not come up; `message` is one line for the tenant, `transient` says if retrying helps."""

    def __init__(self, message: str, *, transient: bool = True, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.port_in_use = port_in_use


# --- paths --------------------------------------------------------------------------------------
def clusters_root(host_root: Path) -> Path:
    return host_root / "clusters"


def cluster_dir(host_root: Path, public_id: str) -> Path:
    return clusters_root(host_root) / public_id


@dataclass(frozen=True)
class BrokerPaths:
    root: Path  # clusters/<public id>/broker-<node>

    @classmethod
    def of(cls, host_root: Path, public_id: str, node_id: int) -> BrokerPaths:
        return cls(cluster_dir(host_root, public_id) / f"broker-{node_id}")

    @property
    def cluster_dir(self) -> Path:
        return self.root.parent

    @property
    def config(self) -> Path:
        return self.root / "brokerd.toml"

    @property
    def pidfile(self) -> Path:
        return self.root / "brokerd.pid"

    @property
    def log(self) -> Path:
        return self.root / "brokerd.log"

    @property
    def stderr(self) -> Path:
        return self.root / "brokerd.stderr"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def credentials(self) -> Path:
        return self.cluster_dir / "credentials.json"


# --- locks ---------------------------------------------------------------------------------------
def cluster_lock(host_root: Path, public_id: str, **kwargs) -> contextlib.AbstractContextManager[bool]:
    return file_lock(cluster_dir(host_root, public_id) / ".lock", **kwargs)


# --- processes ----------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, OSError):
        return False
    state = stat.rpartition(")")[2].split()[0:1]
    return bool(state) and state[0] not in ("Z", "X")


def is_brokerd_for(pid: int, config: Path) -> bool:
    """Is `pid` a live `brokerd serve --config <config>` (or a broker forked for that config)?"""
    if pid <= 0 or not _alive(pid):
        return False
    found = _config_of(pid)
    return found is not None and (found == str(config) or found == os.path.realpath(config))


def _config_of(pid: int) -> str | None:
    """The broker config a process serves: from a `brokerd serve` command line, or for a broker
    forked by the fork server, the `brokerd.toml` of its working directory."""
    argv = _cmdline(pid)
    if not argv:
        return None
    config = _brokerd_config(argv)
    if config is not None or not any(a.endswith(FORKSERVER_SCRIPT.name) for a in argv):
        return config
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None
    candidate = os.path.join(cwd, "brokerd.toml")
    return candidate if os.path.isfile(candidate) else None  # the server itself has none


def _brokerd_config(argv: list[str]) -> str | None:
    """The --config of a `brokerd serve` command line, else None."""
    if "serve" not in argv or not any(a == "brokerd" or a.endswith("/brokerd") for a in argv):
        return None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(paths: BrokerPaths, *, hint: int | None = None) -> int | None:
    """The pid of this broker's brokerd if it runs (checked by pid *and* command line)."""
    for pid in (read_pid(paths.pidfile), hint):
        if pid and is_brokerd_for(pid, paths.config):
            return pid
    return None


def brokerd_processes(host_root: Path) -> dict[Path, int]:
    """Every brokerd process whose config lies under `host_root`: {config path: pid}."""
    roots = (str(clusters_root(host_root)) + os.sep, os.path.realpath(clusters_root(host_root)) + os.sep)
    found: dict[Path, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        config = _config_of(pid)
        if config and config.startswith(roots) and _alive(pid):
            found[Path(config)] = pid
    return found


def brokerd_command(paths: BrokerPaths) -> list[str]:
    return [
        sys.executable,
        "-m",
        "brokerd",
        "serve",
        "--config",
        str(paths.config),
        "--pidfile",
        str(paths.pidfile),
        "--log-file",
        str(paths.log),
    ]


#: The worker's environment variables a broker must not inherit: brokerd reads none of them, and a
#: compromised broker process must not learn SECRET_KEY (every cluster's internal credential, the
#: broker TLS keys' encryption, sessions) or the database and Redis URLs (docs/security.md).
_SECRET_ENV = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
_SECRET_ENV_WORDS = ("SECRET", "PASSWORD", "TOKEN", "CREDENTIAL", "PRIVATE")


def brokerd_env() -> dict[str, str]:
    """The environment a brokerd process starts with: the worker's, minus its secrets."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in _SECRET_ENV and not any(word in k.upper() for word in _SECRET_ENV_WORDS)
        and not k.startswith("DJANGO_")
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Forked:
    """A broker forked by the fork server: not this process's child, so watched through /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        return None if _alive(self.pid) else -1


FORKSERVER_SCRIPT = Path(__file__).resolve().parent / "forkserver.py"
_forkservers: dict[str, subprocess.Popen] = {}  # socket path -> this process's fork server
_forkserver_lock = threading.Lock()


def forkserver_enabled() -> bool:
    return os.environ.get("KASTLE_BROKERD_FORKSERVER", "1").lower() not in ("0", "false", "no", "off")


def _forkserver_socket(host_root: Path) -> str:
    # One server per worker process (each prefork child has its own); Unix socket paths are short.
    path = str(host_root / f".brokerd-forkserver-{os.getpid()}.sock")
    if len(path) > 100:
        import hashlib
        import tempfile

        digest = hashlib.sha256(str(host_root).encode()).hexdigest()[:12]
        path = os.path.join(tempfile.gettempdir(), f"kastle-brokerd-{digest}-{os.getpid()}.sock")
    return path


def forkserver_start(host_root: Path, *, wait: float = 0.0) -> str | None:
    """This process's fork server for `host_root` (started if needed); its socket once it answers,
    else None (a caller then starts brokerd the ordinary way). `wait`: how long to wait for it."""
    if not forkserver_enabled():
        return None
    path = _forkserver_socket(host_root)
    with _forkserver_lock:
        server = _forkservers.get(path)
        if server is None or server.poll() is not None:
            host_root.mkdir(parents=True, exist_ok=True)
            with open(host_root / "forkserver.log", "ab") as log:
                server = subprocess.Popen(
                    [sys.executable, str(FORKSERVER_SCRIPT), path],
                    cwd=host_root,
                    env=brokerd_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    close_fds=True,
                )
            _forkservers[path] = server
            threading.Thread(target=server.wait, name="reap-forkserver", daemon=True).start()
    deadline = time.monotonic() + wait
    while not os.path.exists(path):
        if server.poll() is not None or time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return path


def forkserver_stop(host_root: Path) -> None:
    """Stop this process's fork server for `host_root` (brokers it forked keep running)."""
    with _forkserver_lock:
        server = _forkservers.pop(_forkserver_socket(host_root), None)
    if server is not None and server.poll() is None:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)


def forkserver_stop_all() -> None:
    """Stop every fork server this process started: a worker (or pool process) that exits takes
    its servers with it, so none outlives it (the brokers they forked keep running)."""
    with _forkserver_lock:
        servers = list(_forkservers.values())
        _forkservers.clear()
    for server in servers:
        if server.poll() is None:
            server.terminate()
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)


def _fork_broker(paths: BrokerPaths) -> Forked | None:
    import json
    import socket

    host_root = paths.root.parents[2]
    with _forkserver_lock:  # only a process that started one (a host's worker) forks brokers:
        known = _forkserver_socket(host_root) in _forkservers  # elsewhere a server would not pay off
    path = forkserver_start(host_root, wait=0.0) if known else None  # (started again if it died)
    if path is None:
        return None
    request = {"argv": brokerd_command(paths)[3:], "cwd": str(paths.root), "stderr": str(paths.stderr)}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            conn.connect(path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            raw = b""
            while not raw.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                raw += chunk
        answer = json.loads(raw)
    except (OSError, ValueError) as exc:
        logger.warning("brokerd fork server at %s did not answer (%s); starting brokerd directly", path, exc)
        return None
    if "pid" not in answer:
        logger.warning("brokerd fork server refused: %s; starting brokerd directly", answer.get("error"))
        return None
    return Forked(int(answer["pid"]))


def spawn(paths: BrokerPaths) -> subprocess.Popen | Forked:
    """Start brokerd detached: its own session (a worker restart or Ctrl-C never reaches it).

    Forked by this worker's fork server when it runs (no interpreter start, no imports), else a
    new `python -m brokerd serve` process."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.pidfile.unlink(missing_ok=True)
    (paths.data / "listeners.json").unlink(missing_ok=True)
    forked = _fork_broker(paths)
    if forked is not None:
        return forked
    env = brokerd_env()
    with open(paths.stderr, "ab") as err:
        proc = subprocess.Popen(
            brokerd_command(paths),
            cwd=paths.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
        )
    # Reap it if it exits while this process lives; after we exit, init (or a subreaper) does.
    threading.Thread(target=proc.wait, name=f"reap-brokerd-{proc.pid}", daemon=True).start()
    return proc


def healthz(address: str, admin_port: int, timeout: float = 1.0) -> bool:
    try:
        url = f"http://{_url_host(address)}:{admin_port}/healthz"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def fetch_metrics(address: str, admin_port: int, timeout: float = 2.0) -> str | None:
    try:
        url = f"http://{_url_host(address)}:{admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace") if r.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def stderr_tail(paths: BrokerPaths, limit: int = 2000) -> str:
    try:
        with open(paths.stderr, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def wait_healthy(
    paths: BrokerPaths,
    proc: subprocess.Popen | Forked,
    address: str,
    admin_port: int,
    timeout: float,
    *,
    tick: Callable[[], None] | None = None,
) -> int:
    """Wait until the process started by `spawn` answers /healthz; return its pid."""
    deadline = time.monotonic() + timeout
    stderr_size = paths.stderr.stat().st_size if paths.stderr.exists() else 0
    next_tick = time.monotonic() + 2.0
    while True:
        code = proc.poll()
        if code is not None or not _alive(proc.pid):
            tail = _new_stderr(paths, stderr_size)
            last = tail.strip().splitlines()[-1] if tail.strip() else f"brokerd exited with status {code}"
            in_use = "already in use" in tail or "Address already in use" in tail
            raise BrokerStartError(last, transient=True, port_in_use=in_use)
        if read_pid(paths.pidfile) == proc.pid and healthz(address, admin_port):
            return proc.pid
        if time.monotonic() >= deadline:
            stop_pid(proc.pid, paths, timeout=5)
            raise BrokerStartError(f"brokerd did not become healthy within {timeout:.0f}s", transient=True)
        if tick is not None and time.monotonic() >= next_tick:
            tick()
            next_tick = time.monotonic() + 2.0
        time.sleep(0.03)


def _new_stderr(paths: BrokerPaths, offset: int) -> str:
    try:
        with open(paths.stderr, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop_pid(pid: int, paths: BrokerPaths | None = None, *, timeout: float = 10.0) -> bool:
    """SIGTERM (brokerd shuts down cleanly and removes its pidfile), then SIGKILL after `timeout`.

    With `paths`, only a process verified to be that broker's brokerd is signalled.
    Returns True if a process was stopped.
    """
    if paths is not None and not is_brokerd_for(pid, paths.config):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    logger.warning("brokerd pid %s did not stop within %.0fs; killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(250):
        if not _alive(pid):
            break
        time.sleep(0.02)
    return True


def stop_broker(paths: BrokerPaths, *, timeout: float = 10.0) -> bool:
    pid = running_pid(paths)
    return stop_pid(pid, paths, timeout=timeout) if pid else False


def remove_tree(path: Path) -> None:
    def onerror(func, p, exc_info):  # a file vanished meanwhile: fine
        if not (isinstance(exc_info[1], OSError) and exc_info[1].errno == errno.ENOENT):
            raise exc_info[1]

    if path.exists():
        shutil.rmtree(path, onerror=onerror)


def port_is_free(address: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def wait_ports_free(address: str, ports: set[int], timeout: float) -> set[int]:
    """Wait up to `timeout` for `ports` to be bindable on `address`; return those still held.

    A broker killed a moment ago may still hold its listeners: its main thread shows as exited
    while its other threads are still closing the process's sockets."""
    deadline = time.monotonic() + timeout
    while True:
        busy = {p for p in ports if not port_is_free(address, p)}
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.05)


def stop_all(host_root: Path, *, timeout: float = 10.0) -> list[int]:
    """Stop every brokerd of this host root (SIGTERM all, then wait). Returns their pids."""
    procs = brokerd_processes(host_root)
    for pid in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = set(procs.values())
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if _alive(pid)}
        time.sleep(0.05)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    forkserver_stop(host_root)
    return sorted(procs.values())
