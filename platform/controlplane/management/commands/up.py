"""`python manage.py up`: the whole platform on one machine.

Applies migrations, starts a single-node etcd under var/etcd/ unless KASTLE_ETCD_URL names one
(`controlplane.embedded_etcd`: replicated clusters keep their metadata there), then runs the web
server (gunicorn), a Celery worker (the default queue plus this host's `host.<name>` queue) and
Celery beat as child processes. Each child leads its
own process group; Ctrl-C or SIGTERM stops every group (TERM, then KILL after a grace period),
and children get SIGTERM from the kernel if `up` itself dies, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from controlplane.embedded_etcd import EmbeddedEtcd, EtcdNotFound

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: process groups still stop everything on a clean exit


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class Command(BaseCommand):
    help = "Run Kastle: migrate, then the web server, a Celery worker and Celery beat, until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to serve the portal and API on")
        parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--grace", type=float, default=10.0, help="seconds to wait for children on stop")

    def handle(self, *args, **opts) -> None:
        host, port = opts["host"], opts["port"]
        self._stop_signal: int | None = None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

        self.stdout.write(
            f"Kastle: applying migrations ({settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})"
        )
        call_command("migrate", interactive=False, verbosity=0)

        children = self._children(host, port, opts)
        env = self._child_env(host)
        etcd = self._start_etcd()
        if etcd is not None:
            env.update(etcd.env())
        exit_code = 0
        try:
            for child in children:
                child.start(env, settings.BASE_DIR)
            url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            base_url = f"http://{url_host}:{port}"
            if self._wait_ready(base_url, children):
                self.stdout.write(self.style.SUCCESS(f"Kastle is up: {base_url}/"))
                self.stdout.write(f"  REST API  {base_url}/api/v1/   (docs {base_url}/api/v1/docs/)")
                self.stdout.write(f"  data      {settings.VAR_DIR}")
                etcd_url = etcd.url + " (embedded)" if etcd is not None else os.environ["KASTLE_ETCD_URL"]
                self.stdout.write(f"  etcd      {etcd_url}")
                self.stdout.write("Press Ctrl-C to stop.")
                self.stdout.flush()
            while self._stop_signal is None:
                dead = [c for c in children if not c.running]
                if etcd is not None and not etcd.running:
                    self.stderr.write("Kastle: the embedded etcd exited; stopping")
                    exit_code = 1
                    break
                if dead:
                    for child in dead:
                        self.stderr.write(
                            f"Kastle: {child.name} exited with code {child.proc.returncode}; stopping"
                        )
                    exit_code = 1
                    break
                time.sleep(0.25)
        finally:
            self._stop(children, opts["grace"])
            self._run_shutdown_hooks()
            if etcd is not None:  # last: brokers stopped by the hooks no longer need it
                etcd.stop(timeout=opts["grace"])
        if self._stop_signal is not None:
            self.stdout.write("Kastle stopped.")
        if exit_code:
            raise CommandError("a child process exited unexpectedly", returncode=exit_code)

    def _start_etcd(self) -> EmbeddedEtcd | None:
        if os.environ.get("KASTLE_ETCD_URL", "").strip():
            return None  # production: an etcd cluster of its own
        etcd = EmbeddedEtcd(settings.VAR_DIR)
        try:
            etcd.start(preexec_fn=_die_with_parent)
        except (EtcdNotFound, RuntimeError, OSError) as exc:
            raise CommandError(f"Kastle: cannot start the embedded etcd: {exc}") from exc
        return etcd

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        else:  # a second Ctrl-C: stop waiting politely
            raise KeyboardInterrupt

    def _children(self, host: str, port: int, opts) -> list[Child]:
        py = sys.executable
        queues = f"{settings.CELERY_DEFAULT_QUEUE},host.{settings.KASTLE_HOST_NAME}"
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return [
            Child(
                "web",
                [
                    py,
                    "-m",
                    "gunicorn",
                    "controlplane.wsgi:application",
                    "--bind",
                    bind,
                    "--workers",
                    str(opts["web_workers"]),
                    "--threads",
                    "4",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    str(int(opts["grace"])),
                    "--access-logfile",
                    "-",
                    "--log-level",
                    "info",
                    "--no-control-socket",
                ],
            ),
            Child(
                "worker",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "controlplane",
                    "worker",
                    "-Q",
                    queues,
                    "-n",
                    f"{settings.KASTLE_HOST_NAME}@%h",
                    "--concurrency",
                    str(opts["worker_concurrency"]),
                    "--loglevel",
                    "INFO",
                ],
            ),
            Child(
                "beat",
                [
                    py,
                    "-m",
                    "celery",
                    "-A",
                    "controlplane",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    settings.CELERY_BEAT_SCHEDULE_FILENAME,
                ],
            ),
        ]

    def _child_env(self, host: str) -> dict[str, str]:
        env = dict(os.environ)
        root = str(settings.BASE_DIR)
        paths = [root, os.path.join(root, "platform")]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE", "controlplane.settings")
        env["KASTLE_VAR_DIR"] = str(settings.VAR_DIR)
        env["SECRET_KEY"] = settings.SECRET_KEY  # children agree with us even in embedded mode
        env.setdefault("PYTHONUNBUFFERED", "1")
        if "ALLOWED_HOSTS" not in os.environ:
            hosts = list(settings.ALLOWED_HOSTS)
            if host in ("0.0.0.0", "::"):
                hosts = ["*"]
            elif host not in hosts:
                hosts.append(host)
            env["ALLOWED_HOSTS"] = ",".join(hosts)
        return env

    def _wait_ready(self, base_url: str, children: list[Child], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._stop_signal is None:
            if not all(c.running for c in children):
                return False
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        return False

    def _stop(self, children: list[Child], grace: float) -> None:
        for child in children:
            if child.running:
                child.proc.send_signal(signal.SIGTERM)  # the leader shuts its own workers down
        deadline = time.monotonic() + grace
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"Kastle: {child.name} did not stop within {grace:.0f}s; killing it")
        for child in children:
            child.signal_group(signal.SIGKILL)  # whatever is left in its group, leader or not
            if child.proc is not None:
                child.proc.wait()

    def _run_shutdown_hooks(self) -> None:
        for dotted in settings.KASTLE_UP_SHUTDOWN_HOOKS:
            module, _, attr = dotted.rpartition(".")
            try:
                getattr(importlib.import_module(module), attr)()
            except Exception as exc:  # a hook must not keep the others from running
                self.stderr.write(f"Kastle: shutdown hook {dotted} failed: {exc}")
