#!/usr/bin/env python3
"""Cost of a cluster's Prometheus export (GET /api/v1/clusters/{id}/metrics/export).

A real brokerd (PLAINTEXT on loopback) gets --topics topics of --partitions partitions, a few
records in each, and --groups consumer groups that committed offsets on every partition. The
cluster's rows point at it, so the export does exactly what it does in production: it fetches
the broker's /metrics, sends Metadata, ListOffsets (latest and earliest), ListGroups and an
OffsetFetch per group, then renders the text. Requests go through Django's test client (no
HTTP server), with session authentication, in this process.

Measured, per request (median of --requests):
- baseline:  GET /api/v1/clusters/{id} (one row, JSON), the cheapest authenticated read;
- cold:      the export with the cache off (KASTLE_METRICS_EXPORT_CACHE_SECONDS=0): a collection
             every time, as a scrape that misses the cache;
- cached:    the export served from the cached snapshot (Redis), as a second scraper within the
             cache time.
Ratios are against the baseline, measured in the same run.

    python3 bench/monitoring_export_bench.py
    python3 bench/monitoring_export_bench.py --topics 50 --partitions 6 --groups 20 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench._common import BenchServices, Brokerd, add_services_args, print_results, setup_django  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topics", type=int, default=20)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--groups", type=int, default=10)
    p.add_argument("--requests", type=int, default=40, help="requests per measurement (default 40)")
    add_services_args(p)
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def seed_kafka(bootstrap: str, args) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [f"topic-{i:03d}" for i in range(args.topics)]
    for future in admin.create_topics([NewTopic(t, args.partitions, 1) for t in topics]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for t in topics:
        for p in range(args.partitions):
            for i in range(5):
                producer.produce(t, value=b"v%d" % i, partition=p)
    assert producer.flush(30) == 0
    for g in range(args.groups):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"group-{g:03d}"})
        consumer.commit(
            offsets=[TopicPartition(t, p, 2) for t in topics for p in range(args.partitions)],
            asynchronous=False,
        )
        consumer.close()


def seed_rows(brokerd: Brokerd):
    from accounts.models import Membership, Organization, Role, User
    from clusters.models import Broker, Cluster, ClusterStatus, Host

    org = Organization.objects.create(name="Bench")
    user = User.objects.create_user(email="bench@example.com", password="a long passphrase 42")
    Membership.objects.create(user=user, organization=org, role=Role.OWNER)
    host = Host.objects.create(name="bench", address="127.0.0.1", port_min=1, port_max=65000, capacity=5)
    cluster = Cluster.objects.create(
        organization=org,
        name="bench",
        plan="basic",
        status=ClusterStatus.RUNNING,
        bootstrap_servers=brokerd.bootstrap,
        security_protocol="PLAINTEXT",
    )
    Broker.objects.create(
        cluster=cluster, node_id=1, host=host, port=brokerd.port, admin_port=brokerd.admin, status="RUNNING"
    )
    return user, cluster


def timed(client, path: str, n: int) -> tuple[float, bytes]:
    times = []
    body = b""
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.content[:300]
        body = response.content
    return statistics.median(times) * 1000, body


def run(args, cluster, user) -> dict[str, float]:
    from django.conf import settings
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    export = f"/api/v1/clusters/{cluster.public_id}/metrics/export"
    timed(client, f"/api/v1/clusters/{cluster.public_id}", 5)  # warm-up: connections, imports
    settings.KASTLE_METRICS_EXPORT_CACHE_SECONDS = "0"
    timed(client, export, 3)
    baseline, _ = timed(client, f"/api/v1/clusters/{cluster.public_id}", args.requests)
    cold, body = timed(client, export, args.requests)
    settings.KASTLE_METRICS_EXPORT_CACHE_SECONDS = "3600"
    timed(client, export, 1)
    cached, _ = timed(client, export, args.requests)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "series_in_export": series,
        "export_bytes": len(body),
        "baseline_cluster_get_ms": baseline,
        "export_cold_ms": cold,
        "export_cached_ms": cached,
        "cold_vs_baseline_x": cold / baseline,
        "cached_vs_baseline_x": cached / baseline,
        "cold_scrapes_per_second_one_thread": 1000 / cold,
    }


def main() -> int:
    args = parse_args()
    services = BenchServices.create(args.pg, args.redis, f"kastle_monitoring_bench_{os.getpid()}")
    tmp = Path(tempfile.mkdtemp(prefix="kastle-monitoring-bench-"))
    brokerd = Brokerd(tmp / "broker")
    try:
        setup_django(
            {
                "DATABASE_URL": services.database_url,
                "REDIS_URL": services.redis_url,
                "SECRET_KEY": "bench",
                "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            }
        )
        brokerd.start()
        seed_kafka(brokerd.bootstrap, args)
        user, cluster = seed_rows(brokerd)
        results = run(args, cluster, user)
    finally:
        brokerd.stop()
        services.release()
    print(
        f"export of 1 broker, {args.topics} topics x {args.partitions} partitions, {args.groups} groups "
        f"(median of {args.requests} requests):"
    )
    print_results(results)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
