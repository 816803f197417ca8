#!/usr/bin/env python3
"""Cost of one metering collection pass over N RUNNING clusters (default 100).

The brokers are SIMULATED: each of the N clusters gets one broker whose admin listener is a tiny
HTTP server on its own loopback port serving realistic brokerd /metrics text (usage counters for
--keys API keys x --topics topics, storage gauges for --partitions partitions per topic, plus the
request, latency-histogram and connection series brokerd also serves). Everything else is real:
PostgreSQL, the collector (`metering.services.usage_collect_host`: concurrent HTTP scrapes, parse, one
transaction per broker with its counter cursors and hourly upserts) and the spend-cap evaluation
that the control-side task runs before fanning out (`spend_caps_evaluate`, every org capped).

    python3 bench/metering_bench.py                    # 100 clusters, 3 passes
    python3 bench/metering_bench.py --clusters 300 --json

Pass 1 is the first ever (every cursor inserted), later passes are the steady state (counters
grew, every series changes). Prints seconds and database rows written (and statements executed)
per pass. It makes its own database (kastle_metering_bench_<pid>) and drops it afterwards.
Target: one pass over 100 RUNNING clusters in under 5 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

import psycopg  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--keys", type=int, default=3, help="API keys producing/consuming per cluster")
    p.add_argument("--topics", type=int, default=5, help="topics per cluster")
    p.add_argument("--partitions", type=int, default=3, help="partitions per topic")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument(
        "--pg", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server URL to create the bench database on",
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def with_db(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def main() -> int:
    args = parse_args()
    db_name = f"kastle_metering_bench_{os.getpid()}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    tmp = tempfile.TemporaryDirectory(prefix="kastle-metering-bench-")
    os.environ.update(
        DATABASE_URL=with_db(args.pg, db_name),
        SECRET_KEY="bench-only-secret-key",
        KASTLE_VAR_DIR=tmp.name,
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        KASTLE_LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    endpoints = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        results = run(args, endpoints)
    finally:
        for endpoint in endpoints:
            endpoint.close()
        from django.db import connections

        connections.close_all()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        tmp.cleanup()
    print_results(args, results)
    return 0


def run(args, endpoints) -> dict:
    from decimal import Decimal

    from django.db import connection

    from accounts.models import Organization
    from clusters.models import Broker, BrokerStatus, Cluster, ClusterStatus, Host
    from metering import services
    from metering.models import BillingAccount, HourlyUsage
    from tests.platform.metering.promtext import MetricsEndpoint, metrics_text

    host = Host.objects.create(
        name="bench-host", address="127.0.0.1", port_min=1, port_max=65535, capacity=10_000
    )
    keys = [f"BENCHKEY{i:08d}" for i in range(args.keys)]
    topics = [f"topic-{t}" for t in range(args.topics)]

    def page(n: int, step: int) -> str:
        grow = step + 1
        counters = {
            (k, t): (1_000_000 * grow * (i + 1), 1000 * grow, 3_000_000 * grow, 3000 * grow)
            for i, (k, t) in enumerate((k, t) for k in keys for t in topics)
        }
        stored = {(t, p): 50_000_000 * grow for t in topics for p in range(args.partitions)}
        return metrics_text(counters, stored)

    t0 = time.monotonic()
    for n in range(args.clusters):
        org = Organization.objects.create(name=f"bench {n}")
        BillingAccount.objects.create(organization=org, spend_cap=Decimal("1000.00"))
        cluster = Cluster.objects.create(
            organization=org, name=f"c{n}", plan="standard", status=ClusterStatus.RUNNING,
            bootstrap_servers="127.0.0.1:9",
        )  # fmt: skip
        endpoint = MetricsEndpoint(page(n, 0))
        endpoints.append(endpoint)
        Broker.objects.create(
            cluster=cluster, node_id=1, host=host, port=endpoint.port, admin_port=endpoint.port,
            status=BrokerStatus.RUNNING,
        )  # fmt: skip
    setup_s = time.monotonic() - t0
    page_bytes = len(endpoints[0].text.encode())

    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    passes = []
    for step in range(args.passes):
        if step:
            time.sleep(1.0)  # a later scrape: counters grew, storage is sampled over 1 s
            for n, endpoint in enumerate(endpoints):
                endpoint.text = page(n, step)
        statements[0] = 0
        with connection.execute_wrapper(count):
            started = time.monotonic()
            caps = services.spend_caps_evaluate()
            caps_s = time.monotonic() - started
            report = services.usage_collect_host(host_name="bench-host")
            total_s = time.monotonic() - started
        passes.append(
            {
                "pass": step + 1,
                "seconds": round(total_s, 3),
                "spend_cap_seconds": round(caps_s, 3),
                "collect_seconds": round(report.seconds, 3),
                "brokers": report.brokers,
                "recorded": report.recorded,
                "missed": len(report.missed),
                "rows_written": report.rows,
                "statements": statements[0],
                "spend_cap_changes": len(caps),
            }
        )
    return {
        "clusters": args.clusters,
        "series_per_broker": args.keys * args.topics,
        "partitions_per_broker": args.topics * args.partitions,
        "metrics_page_bytes": page_bytes,
        "setup_seconds": round(setup_s, 2),
        "hourly_rows": HourlyUsage.objects.count(),
        "passes": passes,
    }


def print_results(args, results: dict) -> None:
    print(
        f"metering collection pass over {results['clusters']} RUNNING clusters (1 broker each)\n"
        f"  brokers SIMULATED: one tiny HTTP server per broker serving realistic brokerd /metrics text\n"
        f"  ({results['metrics_page_bytes']} bytes: {results['series_per_broker']} principal/topic series, "
        f"{results['partitions_per_broker']} partitions, plus request/latency/connection series);\n"
        f"  real PostgreSQL, real collector (metering.services.usage_collect_host) and spend-cap evaluation"
    )
    print(f"{'pass':>4} {'seconds':>8} {'caps s':>7} {'collect s':>9} {'rows written':>12} {'stmts':>6}")
    for p in results["passes"]:
        print(
            f"{p['pass']:>4} {p['seconds']:>8.3f} {p['spend_cap_seconds']:>7.3f} "
            f"{p['collect_seconds']:>9.3f} {p['rows_written']:>12} {p['statements']:>6}"
            + ("" if p["recorded"] == p["brokers"] else f"  (recorded {p['recorded']}/{p['brokers']})")
        )
    worst = max(p["seconds"] for p in results["passes"])
    print(f"target: < 5 s per pass -> {'OK' if worst < 5 else 'MISSED'} (worst {worst:.3f} s)")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
