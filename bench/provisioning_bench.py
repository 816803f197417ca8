#!/usr/bin/env python3
"""Provisioning figures: cluster create/delete latency, key propagation, idle broker memory.

A real stack on this machine: PostgreSQL (a database of its own, dropped afterwards), Redis (a
leased database of its own), one Celery worker consuming `kastle` and `host.local` and beat, real
brokerd processes. REST calls go through the Django API in-process (the same views, serializers,
services and on-commit tasks as behind gunicorn, minus the HTTP hop).

    python3 bench/provisioning_bench.py                 # 20 clusters timed, 100 idle clusters
    python3 bench/provisioning_bench.py --idle 0 --json

Reports:
- create -> RUNNING and delete -> DELETED, p50/p95 over --clusters (20) clusters, one at a time
  (target p50 <= 2 s), as a user sees them (polling GET /api/v1/clusters/{id} every 10 ms);
- the same for --standard (10) Standard clusters (3 brokers meeting in an etcd started under the
  bench's var/ as `manage.py up` starts it; all on this one host), target p50 <= 3 s, and the
  ratio of its p50 to the Basic p50 measured in the same run;
- with --standard, the duration of --restarts (1) rolling restarts of a Standard cluster (3
  brokers, 3 partitions): POST /api/v1/clusters/{id}/restart until its progress says done;
- for both, where the time goes: p50 seconds from the request until the brokers are placed (the
  lifecycle task ran), the first and the last brokerd spawned, every broker healthy (registered in
  etcd), and RUNNING. Brokers are forked from the workers' brokerd fork server; run the bench with
  KASTLE_BROKERD_FORKSERVER=0 to measure a fresh interpreter per broker instead;
- with --replace-sizes (0,50,200 MB), the replacement of a lost host's broker: four more broker
  hosts (workers of their own on 127.0.0.2-.5), a Standard cluster with that much data in a topic
  of 3 partitions (replication factor 3), then one host's worker and its broker killed for good:
  seconds until the broker is placed on another host (the host timeout and the grace period, 5 s
  each here), and from there until its empty replacement has copied its partitions back and every
  ISR is full (the figure that grows with the data);
- with --grow-mb (200), a Dedicated cluster with that much data grown from 3 to 4 brokers over REST:
  seconds until the new broker registered, and until the throttled reassignment balanced the replicas;
- a new API key working, and a revoked key refused, on a new connection (SASL PLAIN login),
  p50/p95 over --keys (10) keys (target <= 2 s);
- exactly --idle (100) idle clusters started at once: time until all are RUNNING, RSS and PSS
  per brokerd and in total, and the machine's free memory (MemAvailable) before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench._common import BenchServices, add_services_args, setup_django  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=20, help="clusters timed one at a time (default 20)")
    p.add_argument("--keys", type=int, default=10, help="API keys timed (default 10)")
    p.add_argument("--standard", type=int, default=10, help="Standard clusters timed (default 10)")
    p.add_argument(
        "--restarts", type=int, default=1, help="rolling restarts of a Standard cluster timed (default 1)"
    )
    p.add_argument(
        "--replace-sizes", default="0,50,200",
        help="MB of data for each timed replacement of a lost host's broker (default 0,50,200; '' skips)",
    )  # fmt: skip
    p.add_argument(
        "--grow-mb", type=int, default=200,
        help="MB of data in a Dedicated cluster timed growing from 3 to 4 brokers (default 200; 0 skips)",
    )  # fmt: skip
    p.add_argument("--idle", type=int, default=100, help="idle clusters started at once (default 100)")
    p.add_argument("--concurrency", type=int, default=4, help="worker processes (default 4)")
    p.add_argument(
        "--security-protocol", default="SASL_SSL", choices=["SASL_SSL", "SASL_PLAINTEXT"],
        help="of the timed and idle clusters (default SASL_SSL, the platform default); the key "
        "timings use a SASL_PLAINTEXT cluster (a raw PLAIN login)",
    )  # fmt: skip
    add_services_args(p)
    p.add_argument("--json", action="store_true", help="print the results as JSON too")
    return p.parse_args()


# --- environment ---------------------------------------------------------------------------------
def free_port_block(size: int) -> tuple[int, int]:
    """A block of ports below Linux's ephemeral range whose first ports are free right now."""
    for _ in range(100):
        low = random.randrange(21000, 32000 - size, 10)
        if all(_port_free(p) for p in range(low, low + 20)):
            return low, low + size - 1
    raise SystemExit("no free port block found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        out[name] = int(rest.split()[0]) * 1024
    return out


def proc_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": round(pct(values, 50), 3),
        "p95_s": round(pct(values, 95), 3),
        "max_s": round(max(values), 3),
        "mean_s": round(statistics.fmean(values), 3),
    }


class Stack:
    """Worker + beat subprocesses against the bench database and Redis."""

    def __init__(self, env: dict[str, str], workdir: Path, concurrency: int) -> None:
        self.env = env
        self.workdir = workdir
        self.concurrency = concurrency
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        py = sys.executable
        self._spawn("worker", [
            py, "-m", "celery", "-A", "controlplane", "worker", "-Q", "kastle,host.local",
            "-n", f"bench-{os.getpid()}@%h", "--concurrency", str(self.concurrency), "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip",
        ])  # fmt: skip
        self._spawn("beat", [
            py, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "WARNING",
            "--schedule", str(self.workdir / "beat-schedule"),
        ])  # fmt: skip

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            argv, env={**self.env, **(env or {})}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start_host(self, name: str, address: str) -> None:
        """Another broker host on this machine: a worker on `host.<name>` with a data root of its own."""
        env = {
            "KASTLE_HOST_NAME": name,
            "KASTLE_HOST_ADDRESS": address,
            "KASTLE_DATA_DIR": str(self.host_data(name)),
        }
        self._spawn(f"worker-{name}", [
            sys.executable, "-m", "celery", "-A", "controlplane", "worker", "-Q", f"host.{name}",
            "-n", f"bench-{name}-{os.getpid()}@%h", "--concurrency", "1", "--loglevel", "WARNING",
            "--without-mingle", "--without-gossip",
        ], env)  # fmt: skip

    def host_data(self, name: str) -> Path:
        return self.workdir / f"data-{name}"

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def alive(self) -> bool:
        return all(p.poll() is None for name, p in self.procs.items() if name in ("worker", "beat"))

    def rss(self) -> int:
        """RSS of the worker and its pool processes."""
        worker = self.procs.get("worker")
        if worker is None:
            return 0
        total = proc_memory(worker.pid)[0]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[1]) == worker.pid:
                    total += proc_memory(int(entry.name))[0]
        return total

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- the control plane, in-process ----------------------------------------------------------------
def api_client():
    from rest_framework.test import APIClient

    from accounts.audit import Actor
    from accounts.models import Membership, Organization, Role, User
    from accounts.services import token_create

    org = Organization.objects.create(name="Provisioning bench")
    user = User.objects.create_user("bench@example.com", "bench passphrase 123")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    _, raw = token_create(user=user, organization=org, name="bench", actor=Actor(user=user))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


class Api:
    def __init__(self, client, protocol: str) -> None:
        self.client = client
        self.protocol = protocol
        self.counter = 0

    def create(self, protocol: str | None = None, plan: str = "basic") -> str:
        self.counter += 1
        body = {
            "name": f"bench-{self.counter}",
            "plan": plan,
            "security_protocol": protocol or self.protocol,
        }
        response = self.client.post("/api/v1/clusters", body, format="json")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    def delete(self, cluster_id: str) -> None:
        response = self.client.delete(f"/api/v1/clusters/{cluster_id}")
        assert response.status_code == 202, response.content

    def get(self, cluster_id: str) -> dict:
        return self.client.get(f"/api/v1/clusters/{cluster_id}").json()

    def wait(self, cluster_id: str, status: str, timeout: float = 120.0, interval: float = 0.01) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(cluster_id)
            if body["status"] == status:
                return body
            if body["status"] == "FAILED":
                raise SystemExit(f"cluster {cluster_id} FAILED: {body['status_reason']}")
            time.sleep(interval)
        raise SystemExit(f"cluster {cluster_id} did not become {status} within {timeout:.0f}s")

    def statuses(self, ids: list[str]) -> dict[str, str]:
        from clusters.models import Cluster

        return dict(Cluster.objects.filter(public_id__in=ids).values_list("public_id", "status"))


def plain_login(bootstrap: str, username: str, password: str, timeout: float = 5.0) -> bool:
    """One SASL PLAIN login on a new connection (SaslHandshake v1 + SaslAuthenticate v0)."""
    import io

    from kio.schema.sasl_authenticate.v0 import request as auth_req
    from kio.schema.sasl_authenticate.v0 import response as auth_resp
    from kio.schema.sasl_handshake.v1 import request as hs_req
    from kio.schema.sasl_handshake.v1 import response as hs_resp
    from kio.serial import entity_reader, entity_writer

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:

        def read(n: int) -> bytes:
            chunks = b""
            while len(chunks) < n:
                chunk = sock.recv(n - len(chunks))
                if not chunk:
                    raise ConnectionError("closed")
                chunks += chunk
            return chunks

        def call(corr: int, entity, response_cls):
            cls = type(entity)
            head = struct.pack(">hhih", cls.__api_key__, cls.__version__, corr, 5) + b"bench"
            buf = io.BytesIO()
            entity_writer(cls)(buf, entity)
            payload = head + buf.getvalue()
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            (size,) = struct.unpack(">i", read(4))
            value, _ = entity_reader(response_cls)(read(size), 4)
            return value

        try:
            call(1, hs_req.SaslHandshakeRequest(mechanism="PLAIN"), hs_resp.SaslHandshakeResponse)
            reply = call(
                2,
                auth_req.SaslAuthenticateRequest(auth_bytes=f"\0{username}\0{password}".encode()),
                auth_resp.SaslAuthenticateResponse,
            )
        except ConnectionError:
            return False
        return int(reply.error_code) == 0


def time_until(predicate, timeout: float = 30.0, interval: float = 0.01) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"not within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - start


# --- phases ---------------------------------------------------------------------------------------
def wait_with_phases(api: Api, cluster_id: str, start: float, timeout: float = 120.0) -> dict[str, float]:
    """Wait for RUNNING, noting when each step became visible in the database (polled every 10 ms):
    the brokers placed (the lifecycle task ran: queue latency, placement, etcd user and role, the
    certificate), the first and the last brokerd spawned (the host steps began), every broker
    healthy (registered in etcd), and the cluster RUNNING; seconds since the create request."""
    from clusters.models import Broker, BrokerStatus, Cluster

    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - start
        rows = Broker.objects.filter(cluster__public_id=cluster_id)
        brokers = list(rows.values_list("port", "pid", "status"))
        cluster = Cluster.objects.filter(public_id=cluster_id)
        status, reason = cluster.values_list("status", "status_reason")[0]
        if brokers and all(port for port, _, _ in brokers):
            seen.setdefault("placed", now)
        spawned = sum(1 for _, pid, _ in brokers if pid)
        if spawned:
            seen.setdefault("first_spawned", now)
        if brokers and spawned == len(brokers):
            seen.setdefault("all_spawned", now)
        if brokers and all(s == BrokerStatus.RUNNING for _, _, s in brokers):
            seen.setdefault("all_healthy", now)
        if status == "RUNNING":
            seen.setdefault("running", now)
            for name in ("placed", "first_spawned", "all_spawned", "all_healthy"):
                seen.setdefault(name, now)
            return seen
        if status == "FAILED":
            raise SystemExit(f"cluster {cluster_id} FAILED: {reason}")
        time.sleep(0.01)
    raise SystemExit(f"cluster {cluster_id} did not become RUNNING within {timeout:.0f}s")


PHASES = ("placed", "first_spawned", "all_spawned", "all_healthy", "running")


def bench_lifecycle(api: Api, n: int, plan: str = "basic") -> dict:
    created, deleted = [], []
    ids = []
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for _ in range(n):
        start = time.monotonic()
        cid = api.create(plan=plan)
        seen = wait_with_phases(api, cid, start)
        api.wait(cid, "RUNNING")
        created.append(time.monotonic() - start)
        for name in PHASES:
            phases[name].append(seen[name])
        ids.append(cid)
    for cid in ids:
        start = time.monotonic()
        api.delete(cid)
        api.wait(cid, "DELETED")
        deleted.append(time.monotonic() - start)
    return {
        "create_to_running": summary(created),
        "delete_to_deleted": summary(deleted),
        "phases_p50_s": {name: round(pct(values, 50), 3) for name, values in phases.items()},
    }


def bench_rolling_restart(api: Api, n: int) -> dict:
    """POST /clusters/{id}/restart on a Standard cluster (3 brokers, one host, 3 partitions): until
    its progress says done, every broker restarted and every partition back in full ISR."""
    cid = api.create(plan="standard")
    api.wait(cid, "RUNNING")
    topic = {"name": "bench", "partitions": 3}
    made = api.client.post(f"/api/v1/clusters/{cid}/topics", topic, format="json")
    assert made.status_code == 201, made.content
    durations = []
    for _ in range(n):
        start = time.monotonic()
        response = api.client.post(f"/api/v1/clusters/{cid}/restart")
        assert response.status_code == 202, response.content
        deadline = time.monotonic() + 300
        while (restart := api.get(cid)["restart"])["state"] == "running":
            if time.monotonic() > deadline:
                raise SystemExit(f"rolling restart not done within 300 s: {restart}")
            time.sleep(0.05)
        if restart["state"] != "done":
            raise SystemExit(f"rolling restart failed: {restart}")
        durations.append(time.monotonic() - start)
        print(f"rolling restart: seconds per broker and step {restart.get('steps')}")
    api.delete(cid)
    api.wait(cid, "DELETED")
    return {"rolling_restart": summary(durations)}


REPLACE_HOSTS = {"ra": "127.0.0.2", "rb": "127.0.0.3", "rc": "127.0.0.4", "rd": "127.0.0.5"}


def bench_replacement(api: Api, stack: Stack, sizes: list[int]) -> dict:
    """For each size: a Standard cluster with that many MB in a topic (3 partitions, 3 replicas),
    then one broker's host lost for good (its worker and the broker killed): seconds until the
    broker is placed on another host, and from there until every ISR is full again."""
    from clusters.models import Broker, Cluster

    _start_hosts(stack)
    rows = []
    for size in sizes:
        cid = api.create("SASL_PLAINTEXT", plan="standard")
        body = api.wait(cid, "RUNNING")
        cluster = Cluster.objects.get(public_id=cid)
        made = api.client.post(
            f"/api/v1/clusters/{cid}/topics", {"name": "bench", "partitions": 3}, format="json"
        )
        assert made.status_code == 201, made.content
        started = time.monotonic()
        _fill(cluster, body["bootstrap_servers"], "bench", size)
        produced_s = time.monotonic() - started
        victim = next(
            b for b in Broker.objects.select_related("host").filter(cluster=cluster).order_by("node_id")
            if b.host.name in REPLACE_HOSTS
        )  # fmt: skip
        lost_at = time.monotonic()
        stack.kill(f"worker-{victim.host.name}")
        os.kill(victim.pid, signal.SIGKILL)
        placed_s = time_until(lambda c=cid: _replacement_state(api, c) == "replacing", 120, 0.05)
        placed_at = time.monotonic()
        time_until(lambda c=cid: _replacement_state(api, c) == "done", 600, 0.05)
        in_sync_s = time.monotonic() - placed_at
        moved = Broker.objects.select_related("host").get(pk=victim.pk)
        data = stack.host_data(moved.host.name) / "hosts" / moved.host.name / "clusters" / cid
        copied = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 1e6
        rows.append({
            "mb": size, "produce_s": round(produced_s, 2), "placed_s": round(placed_s, 2),
            "in_sync_s": round(in_sync_s, 2), "total_s": round(time.monotonic() - lost_at, 2),
            "copied_mb": round(copied, 1), "from": victim.host.name, "to": moved.host.name,
        })  # fmt: skip
        print(f"replacement with {size} MB: {rows[-1]}")
        stack.start_host(victim.host.name, REPLACE_HOSTS[victim.host.name])  # back for the next round
        api.delete(cid)
        api.wait(cid, "DELETED")
        time_until(lambda n=victim.host.name: api_host_live(n), 90)
    return {"replacement": rows}


def _start_hosts(stack: Stack) -> None:
    from clusters.models import Host

    for name, address in REPLACE_HOSTS.items():
        if f"worker-{name}" not in stack.procs or stack.procs[f"worker-{name}"].poll() is not None:
            stack.start_host(name, address)
    time_until(lambda: all(api_host_live(n) for n in REPLACE_HOSTS) and Host.objects.count() > 0, 90)


def _fill(cluster, bootstrap: str, topic: str, mb: int) -> None:
    """`mb` MB of 64 KB records in `topic`, acks=all, as the cluster's internal user."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN", "sasl.username": cluster.internal_username,
        "sasl.password": cluster.internal_password(), "acks": "all", "linger.ms": 20,
        "batch.size": 1_000_000, "queue.buffering.max.kbytes": 262144,
    })  # fmt: skip
    value = os.urandom(64 * 1024)
    failures: list = []
    for _ in range(mb * 16):
        while True:
            try:
                producer.produce(topic, value, on_delivery=lambda e, m: e and failures.append(e))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0 and not failures, failures[:3]


def bench_grow(api: Api, stack: Stack, mb: int) -> dict:
    """A Dedicated cluster of 3 brokers with `mb` MB in a topic of 6 partitions (3 replicas) grown
    to 4 over REST: seconds until the new broker registered, and until the throttled reassignment
    balanced the replicas (KASTLE_REASSIGN_THROTTLE, KASTLE_REASSIGN_BATCH)."""
    from clusters.models import Cluster

    _start_hosts(stack)
    body = {"name": "bench-grow", "plan": "dedicated", "brokers": 3, "security_protocol": "SASL_PLAINTEXT"}
    made = api.client.post("/api/v1/clusters", body, format="json")
    assert made.status_code == 202, made.content
    cid = made.json()["id"]
    running = api.wait(cid, "RUNNING")
    cluster = Cluster.objects.get(public_id=cid)
    topic = api.client.post(
        f"/api/v1/clusters/{cid}/topics", {"name": "bench", "partitions": 6}, format="json"
    )
    assert topic.status_code == 201, topic.content
    _fill(cluster, running["bootstrap_servers"], "bench", mb)
    start = time.monotonic()
    grown = api.client.post(f"/api/v1/clusters/{cid}/brokers", {"count": 4}, format="json")
    assert grown.status_code == 202, grown.content
    registered_s = time_until(lambda: (api.get(cid)["scale"] or {}).get("state") != "starting", 300, 0.05)
    time_until(lambda: (api.get(cid)["scale"] or {}).get("state") in ("done", "failed"), 900, 0.1)
    scale = api.get(cid)["scale"]
    if scale["state"] != "done":
        raise SystemExit(f"growth failed: {scale}")
    result = {
        "mb": mb, "registered_s": round(registered_s, 2), "balanced_s": round(time.monotonic() - start, 2),
        "moved": scale["moved"],
        "throttle_bytes_s": int(os.environ.get("KASTLE_REASSIGN_THROTTLE") or 50 << 20),
    }  # fmt: skip
    print(f"growth 3 -> 4 with {mb} MB: {result}")
    api.delete(cid)
    api.wait(cid, "DELETED")
    return {"grow": result}


def _replacement_state(api: Api, cluster_id: str) -> str | None:
    return (api.get(cluster_id)["replacement"] or {}).get("state")


def api_host_live(name: str) -> bool:
    from clusters.selectors import live_hosts

    return live_hosts().filter(name=name).exists()


def bench_keys(api: Api, n: int) -> dict:
    cid = api.create("SASL_PLAINTEXT")
    bootstrap = api.wait(cid, "RUNNING")["bootstrap_servers"]
    works, refused = [], []
    for i in range(n):
        start = time.monotonic()
        made = api.client.post(f"/api/v1/clusters/{cid}/api-keys", {"description": f"k{i}"}, format="json")
        assert made.status_code == 201, made.content
        key, secret = made.json()["key"], made.json()["secret"]
        time_until(lambda: plain_login(bootstrap, key, secret))  # noqa: B023
        works.append(time.monotonic() - start)
        start = time.monotonic()
        assert api.client.delete(f"/api/v1/clusters/{cid}/api-keys/{key}").status_code == 204
        time_until(lambda: not plain_login(bootstrap, key, secret))  # noqa: B023
        refused.append(time.monotonic() - start)
    api.delete(cid)
    api.wait(cid, "DELETED")
    return {"new_key_works": summary(works), "revoked_key_refused": summary(refused)}


def bench_idle(api: Api, stack: Stack, host_root: Path, n: int) -> dict:
    from provisioning import supervisor

    before = meminfo()
    start = time.monotonic()
    ids = [api.create() for _ in range(n)]
    deadline = time.monotonic() + 30 + 5 * n
    while True:
        statuses = api.statuses(ids)
        if all(s == "RUNNING" for s in statuses.values()):
            break
        failed = {k: s for k, s in statuses.items() if s == "FAILED"}
        if failed or time.monotonic() > deadline:
            raise SystemExit(f"idle clusters not RUNNING: {sorted(set(statuses.values()))}, failed {failed}")
        time.sleep(0.1)
    all_running = time.monotonic() - start
    time.sleep(10)  # idle: start-up garbage collected, connections from provisioning closed
    procs = supervisor.brokerd_processes(host_root)
    mine = {config.parent.parent.name: pid for config, pid in procs.items()}
    assert set(ids) <= set(mine), f"{len(set(ids) - set(mine))} clusters without a brokerd process"
    memory = [proc_memory(mine[cid]) for cid in ids]
    rss = [m[0] for m in memory]
    pss = [m[1] for m in memory]
    after = meminfo()
    worker_rss = stack.rss()
    start = time.monotonic()
    for cid in ids:
        api.delete(cid)
    deadline = time.monotonic() + 30 + 2 * n
    while not all(s == "DELETED" for s in api.statuses(ids).values()):
        if time.monotonic() > deadline:
            raise SystemExit("idle clusters not DELETED in time")
        time.sleep(0.1)
    all_deleted = time.monotonic() - start
    mb = 1024 * 1024
    return {
        "clusters": n,
        "brokerd_processes": len(ids),
        "all_running_s": round(all_running, 2),
        "all_deleted_s": round(all_deleted, 2),
        "rss_per_cluster_mb": {
            "mean": round(statistics.fmean(rss) / mb, 1),
            "min": round(min(rss) / mb, 1),
            "max": round(max(rss) / mb, 1),
        },
        "pss_per_cluster_mb": round(statistics.fmean(pss) / mb, 1),
        "rss_total_mb": round(sum(rss) / mb, 1),
        "pss_total_mb": round(sum(pss) / mb, 1),
        "worker_rss_mb": round(worker_rss / mb, 1),
        "machine_total_mb": round(before["MemTotal"] / mb),
        "mem_available_before_mb": round(before["MemAvailable"] / mb),
        "mem_available_with_idle_clusters_mb": round(after["MemAvailable"] / mb),
        "mem_free_with_idle_clusters_mb": round(after["MemFree"] / mb),
    }


def main() -> None:
    args = parse_args()
    services = BenchServices.create(args.pg, args.redis, f"kastle_bench_prov_{os.getpid()}")
    workdir = Path(tempfile.mkdtemp(prefix="kastle-prov-bench-"))
    low, high = free_port_block(max(100, 4 * max(args.idle, args.clusters) + 40))
    env = {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": services.redis_url,
        "SECRET_KEY": "bench-" + os.urandom(16).hex(),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        "C_FORCE_ROOT": "1",
        "KASTLE_LOG_LEVEL": "WARNING",
        "KASTLE_VAR_DIR": str(workdir / "var"),
        "KASTLE_DATA_DIR": str(workdir / "data"),
        "KASTLE_HOST_PORTS": f"{low}-{high}",
        "KASTLE_HOST_CAPACITY": str(max(200, args.idle + 10)),
    }
    sizes = [int(x) for x in args.replace_sizes.split(",") if x.strip()]
    if sizes or args.grow_mb:  # hosts lost quickly: a 1 s heartbeat, gone after 5 s, replaced right then
        env.update(KASTLE_HEARTBEAT_INTERVAL="1", KASTLE_HOST_TIMEOUT="5", KASTLE_REPLACE_AFTER="5",
                   KASTLE_RECONCILE_INTERVAL="1")  # fmt: skip
    etcd = None
    if args.standard or sizes or args.grow_mb:
        from controlplane.embedded_etcd import EmbeddedEtcd

        etcd = EmbeddedEtcd(workdir / "var")
        etcd.start()
        env.update(etcd.env())
    stack = Stack(env, workdir, args.concurrency)
    results: dict = {}
    try:
        setup_django(env)
        from django.db import connection

        connection.close()
        stack.start()
        from clusters.models import Host

        time_until(lambda: Host.objects.filter(name="local").exists() or not stack.alive(), timeout=60)
        if not stack.alive():
            raise SystemExit(f"worker or beat exited; see {workdir}")
        api = Api(api_client(), args.security_protocol)
        warm = api.create()  # first start pays cold caches; not measured
        api.wait(warm, "RUNNING")
        api.delete(warm)
        api.wait(warm, "DELETED")

        if args.clusters:
            basic = bench_lifecycle(api, args.clusters)
            results.update(basic)
        if args.standard:
            standard = bench_lifecycle(api, args.standard, plan="standard")
            results["standard_create_to_running"] = standard["create_to_running"]
            results["standard_phases_p50_s"] = standard["phases_p50_s"]
            results["standard_delete_to_deleted"] = standard["delete_to_deleted"]
        if args.standard and args.restarts:
            results.update(bench_rolling_restart(api, args.restarts))
        if sizes:
            results.update(bench_replacement(api, stack, sizes))
        if args.grow_mb:
            results.update(bench_grow(api, stack, args.grow_mb))
        if args.keys:
            results.update(bench_keys(api, args.keys))
        if args.idle:
            results["idle"] = bench_idle(api, stack, workdir / "data" / "hosts" / "local", args.idle)
    finally:
        stack.stop()
        from provisioning import supervisor

        supervisor.stop_all(workdir / "data" / "hosts" / "local", timeout=10)
        for name in REPLACE_HOSTS:
            supervisor.stop_all(stack.host_data(name) / "hosts" / name, timeout=10)
        if etcd is not None:
            etcd.stop()
        services.release()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"Kastle provisioning — {os.cpu_count()} CPUs, worker concurrency {args.concurrency}, "
        f"{args.security_protocol} clusters (keys: SASL_PLAINTEXT), basic plan"
    )
    rows = [
        ("create -> RUNNING", "create_to_running", "p50 <= 2 s"),
        ("delete -> DELETED", "delete_to_deleted", ""),
        ("Standard -> RUNNING", "standard_create_to_running", "p50 <= 3 s"),
        ("Standard -> DELETED", "standard_delete_to_deleted", ""),
        ("rolling restart", "rolling_restart", "3 brokers, full ISR"),
        ("new key works", "new_key_works", "<= 2 s"),
        ("revoked key refused", "revoked_key_refused", "<= 2 s"),
    ]
    print(f"{'':22} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}  target")
    for label, key, target in rows:
        if key in results:
            r = results[key]
            print(f"{label:22} {r['n']:>4} {r['p50_s']:>7} {r['p95_s']:>7} {r['max_s']:>7}  {target}")
    if "standard_create_to_running" in results and "create_to_running" in results:
        ratio = results["standard_create_to_running"]["p50_s"] / max(
            results["create_to_running"]["p50_s"], 1e-9
        )
        print(f"Standard (3 brokers, one host) / Basic create -> RUNNING p50: {ratio:.2f}x")
    for label, key in (("Basic", "phases_p50_s"), ("Standard", "standard_phases_p50_s")):
        if key in results:
            steps = ", ".join(f"{name} {value} s" for name, value in results[key].items())
            print(f"{label} create, p50 seconds after the request until: {steps}")
    if "replacement" in results:
        print(
            "\nA lost host's broker replaced (Standard cluster, 3 partitions x 3 replicas; host timeout "
            "and grace period 5 s each):"
        )
        print(f"{'data MB':>8} {'placed s':>9} {'to full ISR s':>14} {'total s':>8} {'copied MB':>10}")
        for r in results["replacement"]:
            print(
                f"{r['mb']:>8} {r['placed_s']:>9} {r['in_sync_s']:>14} {r['total_s']:>8} {r['copied_mb']:>10}"
            )
        base = results["replacement"][0]["in_sync_s"]
        for r in results["replacement"][1:]:
            print(f"  to full ISR with {r['mb']} MB / with {results['replacement'][0]['mb']} MB: "
                  f"{r['in_sync_s'] / max(base, 1e-9):.2f}x")  # fmt: skip
    if "grow" in results:
        g = results["grow"]
        print(
            f"\nA Dedicated cluster grown from 3 to 4 brokers with {g['mb']} MB (6 partitions x 3 replicas): "
            f"new broker registered after {g['registered_s']} s, replicas balanced after {g['balanced_s']} s "
            f"({g['moved']} partitions moved, throttled at {g['throttle_bytes_s'] / 2**20:.0f} MiB/s)"
        )
    if "idle" in results:
        i = results["idle"]
        print(
            f"\n{i['clusters']} idle clusters started at once: all RUNNING after {i['all_running_s']} s, "
            f"all DELETED {i['all_deleted_s']} s after their deletes"
        )
        print(
            f"  RSS per brokerd {i['rss_per_cluster_mb']['mean']} MB (min {i['rss_per_cluster_mb']['min']}, "
            f"max {i['rss_per_cluster_mb']['max']}), PSS {i['pss_per_cluster_mb']} MB"
        )
        print(
            f"  total RSS {i['rss_total_mb']} MB, total PSS {i['pss_total_mb']} MB; "
            f"worker {i['worker_rss_mb']} MB"
        )
        print(
            f"  machine: {i['machine_total_mb']} MB, available {i['mem_available_before_mb']} MB before, "
            f"{i['mem_available_with_idle_clusters_mb']} MB with the idle clusters "
            f"(free {i['mem_free_with_idle_clusters_mb']} MB)"
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
