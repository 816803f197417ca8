#!/usr/bin/env python3
"""Control-plane REST latency: GET /api/v1/clusters and POST /api/v1/clusters/{id}/api-keys.

Serves the API with gunicorn (production-style) on PostgreSQL and drives each endpoint with an
open-loop load of --rate requests/s for --duration seconds (after a warm-up). Latency is measured
from each request's scheduled start, so a stalled server is not hidden by a stalled client
(no coordinated omission). Prints p50/p90/p99/max and the achieved requests/s.

    python3 bench/api_latency.py                      # 100 req/s, 20 s per endpoint
    python3 bench/api_latency.py --rate 200 --duration 30 --json

It makes its own database (kastle_bench_<pid>) and leases a Redis database of its own, and
removes both afterwards. Target: p99 <= 50 ms at 100 req/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

import requests  # noqa: E402

from bench._common import BenchServices, add_services_args, setup_django  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0, help="requests per second per endpoint (default 100)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per endpoint (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per endpoint (default 3)")
    p.add_argument("--workers", type=int, default=3, help="gunicorn worker processes (default 3)")
    p.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (default 2)")
    p.add_argument("--clients", type=int, default=32, help="client threads (default 32)")
    add_services_args(p)
    p.add_argument("--only", choices=["get", "post"], help="drive just one endpoint")
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(keys_needed: int) -> tuple[str, list[str]]:
    """An organization, its owner's REST token and enough dedicated clusters for the key POSTs."""
    from accounts.audit import Actor
    from accounts.models import Membership, Organization, Role, User
    from accounts.services import token_create
    from brokerd.credentials import make_user_entry
    from clusters.models import Cluster, ClusterStatus
    from clusters.plans import PLANS

    org = Organization.objects.create(name="Bench")
    user = User.objects.create_user("bench@example.com", "bench passphrase 123")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    _, raw = token_create(user=user, organization=org, name="bench", actor=Actor(user=user))
    per_cluster = PLANS["dedicated"].max_api_keys
    clusters = []
    for i in range(max(3, math.ceil(keys_needed / per_cluster) + 1)):
        # PROVISIONING: no brokers run here, so a key's ACL sync is left to the cluster becoming
        # RUNNING. This measures the REST path itself; provisioning_bench times a key reaching a
        # real broker ("new key works").
        cluster = Cluster(
            organization=org, name=f"bench-{i}", plan="dedicated", status=ClusterStatus.PROVISIONING,
            bootstrap_servers=f"127.0.0.1:{19092 + i}",
        )  # fmt: skip
        cluster.internal_verifier = make_user_entry(cluster.internal_password())
        cluster.save()
        clusters.append(cluster.public_id)
    return raw, clusters


def start_server(env: dict[str, str], workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "controlplane.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--no-control-socket",
            "--log-level", "warning",
        ],
        env={**os.environ, **env}, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not come up")


class Driver:
    def __init__(self, clients: int) -> None:
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=clients)

    def session(self) -> requests.Session:
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def run(self, make_request, rate: float, seconds: float) -> dict:
        """Open loop: request i is due at t0 + i/rate; latency counts from when it was due."""
        n = int(rate * seconds)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def one(i: int, due: float) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                status = make_request(self.session(), i)
                ok = 200 <= status < 300
            except requests.RequestException as exc:
                ok, status = False, repr(exc)
            done = time.perf_counter()
            with lock:
                latencies.append(done - due)
                if not ok:
                    errors.append(str(status))

        t0 = time.perf_counter() + 0.05
        futures = []
        for i in range(n):
            due = t0 + i / rate
            # submit a little ahead of time so a free thread is waiting when the request is due
            while due - time.perf_counter() > 0.02:
                time.sleep(0.005)
            futures.append(self.pool.submit(one, i, due))
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
        lat_ms = sorted(x * 1000 for x in latencies)

        def pct(p: float) -> float:
            return lat_ms[min(len(lat_ms) - 1, math.ceil(p / 100 * len(lat_ms)) - 1)]

        return {
            "requests": n,
            "errors": len(errors),
            "error_sample": errors[:3],
            "req_per_s": round(n / elapsed, 1),
            "p50_ms": round(pct(50), 2),
            "p90_ms": round(pct(90), 2),
            "p99_ms": round(pct(99), 2),
            "max_ms": round(lat_ms[-1], 2),
            "mean_ms": round(statistics.fmean(lat_ms), 2),
        }


def main() -> None:
    args = parse_args()
    services = BenchServices.create(args.pg, args.redis, f"kastle_bench_{os.getpid()}")
    env = {
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        "KASTLE_LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        setup_django(env)
        total_posts = int(args.rate * (args.duration + args.warmup)) + 10
        token, clusters = seed(total_posts)
        server, base = start_server(env, args.workers, args.threads)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        driver = Driver(args.clients)
        counter = iter(range(10**9))
        counter_lock = threading.Lock()

        def get_clusters(s: requests.Session, i: int) -> int:
            r = s.get(f"{base}/api/v1/clusters", headers=headers, timeout=10)
            return r.status_code

        def post_key(s: requests.Session, i: int) -> int:
            with counter_lock:
                k = next(counter)
            cluster = clusters[k % len(clusters)]
            url = f"{base}/api/v1/clusters/{cluster}/api-keys"
            r = s.post(url, data=b'{"description": "bench"}', headers=headers, timeout=10)
            return r.status_code

        results = {}
        endpoints = []
        if args.only in (None, "get"):
            endpoints.append(("GET /api/v1/clusters", get_clusters))
        if args.only in (None, "post"):
            endpoints.append(("POST /api/v1/clusters/{id}/api-keys", post_key))
        for label, fn in endpoints:
            driver.run(fn, args.rate, args.warmup)
            results[label] = driver.run(fn, args.rate, args.duration)

        print(
            f"Kastle control-plane API latency — gunicorn {args.workers}x{args.threads} on PostgreSQL, "
            f"open loop at {args.rate:g} req/s for {args.duration:g}s per endpoint, {os.cpu_count()} CPUs"
        )
        columns = ("req/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
        print(f"{'endpoint':40} " + " ".join(f"{c:>8}" for c in columns) + f" {'errors':>7}")
        for label, r in results.items():
            print(
                f"{label:40} {r['req_per_s']:>8} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['p99_ms']:>8} "
                f"{r['max_ms']:>8} {r['errors']:>7}"
            )
            if r["errors"]:
                print(f"  error sample: {r['error_sample']}")
        if args.json:
            print(json.dumps(results, indent=2))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        services.release()


if __name__ == "__main__":
    main()
