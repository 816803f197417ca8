"""A brokerd fork server: one process with brokerd's modules already imported, which forks a new
broker on request instead of starting a fresh interpreter.

Starting `python -m brokerd serve` spends nearly all its time importing (about 1.3 s of CPU;
Broker.start() itself takes tens of milliseconds), and a cluster's brokers on one host start
side by side, competing for the same cores. A fork of a process that has imported brokerd but
started nothing (no event loop, no threads, no sockets but its own) skips all of it; the child
then runs brokerd's own command line, exactly as `python -m brokerd` would.

Run by the host's worker as a script (`python forkserver.py SOCKET`), with the environment brokers
get (`supervisor.brokerd_env`: no secrets). It imports no Django and nothing from the control
plane. Protocol on its Unix socket, one JSON line each way: `{"argv": [...], "cwd": DIR,
"stderr": FILE}` -> `{"pid": N}` or `{"error": "..."}`. A child starts its own session (a worker's
Ctrl-C never reaches it), works in the broker's directory (how the supervisor recognises it:
`/proc/<pid>/cwd`), and is reaped here while this process lives. The server exits when the
worker that started it is gone, so a new worker (new code) always gets a new server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

#: brokerd's modules a broker imports on its way to serving, loaded once here before any fork.
PRELOAD = (
    "brokerd.cli",
    "brokerd.broker",
    "brokerd.settings",
    "brokerd.replication.membership",
    "brokerd.replication.replicas",
    "brokerd.coordination.controller",
    "brokerd.tls",
    "logging.handlers",
    "uvloop",
)


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        # optional ones (uvloop) may be missing: the child then does without, as brokerd does
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _reap(_signum, _frame) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict, server: socket.socket, conn: socket.socket) -> None:
    """In the forked child: become the broker. Never returns."""
    code = 1
    try:
        server.close()
        conn.close()
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        devnull = os.open(os.devnull, os.O_RDWR)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(err, 2)
        os.close(devnull)
        os.close(err)
        sys.argv = ["brokerd", *request["argv"]]
        from brokerd.cli import main

        code = main(list(request["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # reported on the broker's stderr, then the child exits
        with contextlib.suppress(Exception):
            sys.stderr.write(f"brokerd (forked) failed to start: {exc!r}\n")
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _serve_one(server: socket.socket, conn: socket.socket) -> None:
    with conn:
        conn.settimeout(10)
        raw = b""
        while not raw.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                return
            raw += chunk
        try:
            request = json.loads(raw)
            argv = [str(a) for a in request["argv"]]
            request = {"argv": argv, "cwd": str(request["cwd"]), "stderr": str(request["stderr"])}
        except (ValueError, KeyError, TypeError) as exc:
            conn.sendall(json.dumps({"error": f"bad request: {exc}"}).encode() + b"\n")
            return
        pid = os.fork()
        if pid == 0:
            _child(request, server, conn)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def serve(path: str) -> None:
    parent = os.getppid()
    _preload()
    signal.signal(signal.SIGCHLD, _reap)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        if os.path.exists(path):
            os.unlink(path)
        server.bind(path + ".new")
        os.chmod(path + ".new", 0o600)
        os.replace(path + ".new", path)  # appears only once this server answers
        server.listen(16)
        server.settimeout(1.0)
        try:
            while os.getppid() == parent:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except InterruptedError:
                    continue
                _serve_one(server, conn)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


if __name__ == "__main__":
    serve(sys.argv[1])
