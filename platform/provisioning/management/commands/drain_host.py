"""`python manage.py drain_host NAME [--wait]`: restart every broker on a host, the way a rolling
restart does (one broker of a cluster at a time, each cleanly stopped, started on its address and
waited for until its cluster's partitions are back in full ISR), for operators about to work on
the machine or its software. Clusters restart side by side; each cluster's progress is its
`restart` field (REST, portal)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from clusters import services as cluster_services
from clusters.models import Broker, Cluster, ClusterStatus, Host
from controlplane.errors import Conflict


class Command(BaseCommand):
    help = "Restart every broker on a host, one broker of a cluster at a time, waiting for full ISR."

    def add_arguments(self, parser) -> None:
        parser.add_argument("host", help="the host's name (its worker's KASTLE_HOST_NAME)")
        parser.add_argument("--wait", action="store_true", help="wait until every restart is over")
        parser.add_argument("--timeout", type=float, default=1800.0, help="seconds --wait waits at most")

    def handle(self, *args, host: str, wait: bool, timeout: float, **options) -> None:
        if not Host.objects.filter(name=host).exists():
            raise CommandError(f"No host is named {host!r}.")
        nodes: dict[int, list[int]] = {}
        for cluster_id, node_id in Broker.objects.filter(
            host__name=host, cluster__status=ClusterStatus.RUNNING
        ).values_list("cluster_id", "node_id"):
            nodes.setdefault(cluster_id, []).append(node_id)
        started: list[Cluster] = []
        for cluster in Cluster.objects.filter(pk__in=nodes).order_by("public_id"):
            try:
                started.append(cluster_services.cluster_restart(cluster=cluster, node_ids=nodes[cluster.pk]))
            except Conflict as exc:
                self.stderr.write(f"{cluster.public_id}: {exc.message}")
                continue
            brokers = sorted(nodes[cluster.pk])
            self.stdout.write(f"{cluster.public_id}: restarting broker(s) {brokers} on {host}")
        if not nodes:
            self.stdout.write(f"No running broker on {host}.")
        if not wait or not started:
            return
        deadline = time.monotonic() + timeout
        pending = {c.pk for c in started}
        failed = []
        while pending and time.monotonic() < deadline:
            time.sleep(1.0)
            for cluster in Cluster.objects.filter(pk__in=pending):
                state = (cluster.restart or {}).get("state")
                if state == "done":
                    self.stdout.write(f"{cluster.public_id}: done")
                elif state == "failed":
                    failed.append(cluster.public_id)
                    self.stderr.write(f"{cluster.public_id}: failed: {cluster.restart.get('error')}")
                else:
                    continue
                pending.discard(cluster.pk)
        if pending or failed:
            raise CommandError(
                f"{len(failed)} restart(s) failed, {len(pending)} still running after {timeout:.0f} s."
            )
