"""Metering and billing writes.

Collection (runs on the broker's host, queue `host.<name>`):
  `usage_collect_host(host_name=)`   scrape every RUNNING broker of the host, record each scrape,
                              then converge the spend-cap quotas of its brokers
  `usage_record_scrape(broker=, scrape=, taken_at=)`   one scrape -> deltas -> hourly upserts, in
                              ONE transaction with the counter cursors it compares against
  `usage_record_final(broker=, metrics=, data_dir=)`   a deleted broker's final usage
Control (queue `kastle`):
  `usage_collect_control()`   evaluate spend caps, then fan collection out to the hosts
  `spend_cap_set`, `spend_caps_evaluate`, `credit_grant_trial`, `invoice_close`,
  `invoices_close_due`, `usage_samples_prune`

Exactly-once counting: a scrape is taken at `taken_at` (host clock, after the HTTP response).
The broker's `BrokerMeter` row is locked; a scrape not newer than the last recorded one is
skipped (late or duplicated); otherwise the deltas against the stored cursors, the hourly
upserts (`INSERT .. ON CONFLICT DO UPDATE SET x = x + excluded.x`) and the new cursors commit
together. A scrape that is lost simply leaves the cursor behind: the next delta covers it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.audit import SYSTEM, Actor, audit_record
from accounts.models import Organization
from brokerd.metrics import UsageJournal
from clusters import selectors as cluster_selectors
from clusters.models import INTERNAL_USERNAME, Broker, BrokerStatus, Cluster, ClusterStatus
from controlplane.errors import Conflict, ValidationFailed
from iam import services as iam_services
from provisioning import supervisor
from provisioning.queues import send_to_host

from . import conf, pricing, quotas, selectors
from .models import (
    BillingAccount,
    BrokerMeter,
    CounterCursor,
    CreditGrant,
    HourlyUsage,
    Invoice,
    InvoiceLine,
    UsageSample,
)
from .scrape import Scrape, ScrapeError, parse
from .selectors import FIELDS  # HourlyUsage's usage columns, in the order of the upserts

logger = logging.getLogger(__name__)

UTC = dt.UTC
# Scrape counter slots -> usage fields.
SLOT_FIELDS = ("bytes_in", "records_in", "bytes_out", "records_out")


def hour_of(when: dt.datetime) -> dt.datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def month_start(when: dt.datetime | dt.date) -> dt.datetime:
    return dt.datetime(when.year, when.month, 1, tzinfo=UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return dt.datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)


def hour_segments(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, int]]:
    """Split [start, end) at UTC hour boundaries: [(hour, milliseconds), ...]."""
    out = []
    cursor = start
    while cursor < end:
        hour = hour_of(cursor)
        stop = min(end, hour + dt.timedelta(hours=1))
        ms = round((stop - cursor) / dt.timedelta(milliseconds=1))
        if ms > 0:
            out.append((hour, ms))
        cursor = stop
    return out


# --- recording one scrape --------------------------------------------------------------------------
@dataclass
class Recorded:
    status: str  # "recorded" | "stale"
    rows: int = 0  # database rows inserted or updated
    resets: list[tuple[str, str]] = field(default_factory=list)


def _meter_for_update(broker_id: int) -> BrokerMeter:
    meter = BrokerMeter.objects.select_for_update().filter(broker_id=broker_id).first()
    if meter is None:
        BrokerMeter.objects.bulk_create([BrokerMeter(broker_id=broker_id)], ignore_conflicts=True)
        meter = BrokerMeter.objects.select_for_update().get(broker_id=broker_id)
    return meter


def usage_record_scrape(*, broker: Broker | int, scrape: Scrape | str, taken_at: dt.datetime) -> Recorded:
    """Turn one /metrics scrape of a broker into usage. Idempotent; see the module docstring."""
    if isinstance(scrape, str):
        scrape = parse(scrape)
    broker_id = broker if isinstance(broker, int) else broker.pk
    with transaction.atomic():
        meter = _meter_for_update(broker_id)
        if meter.last_taken_at is not None and taken_at <= meter.last_taken_at:
            logger.info(
                "metering: scrape of broker %s taken at %s is not newer than %s; skipped",
                broker_id,
                taken_at.isoformat(),
                meter.last_taken_at.isoformat(),
            )
            return Recorded("stale")
        cluster = Cluster.objects.only("id", "organization_id", "plan", "broker_count", "schemas").get(
            brokers__id=broker_id
        )
        rows = 0
        hour = hour_of(taken_at)
        increments: dict[tuple[str, str, dt.datetime], list[int]] = defaultdict(lambda: [0] * len(FIELDS))
        samples: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)

        # 1. counters -> deltas
        cursors = {(c.principal, c.topic): c for c in CounterCursor.objects.filter(broker_id=broker_id)}
        changed: list[CounterCursor] = []
        resets: list[tuple[str, str]] = []
        for key, values in scrape.counters.items():
            if key[0] == INTERNAL_USERNAME:
                continue  # the control plane's own traffic (portal browsing, admin calls) is not billed
            cursor = cursors.get(key)
            old = [0, 0, 0, 0] if cursor is None else [getattr(cursor, f) for f in SLOT_FIELDS]
            if values == old:
                continue
            if any(new < prev for new, prev in zip(values, old, strict=True)):
                # Counters persist across restarts; going backwards means the broker lost its data
                # directory. Everything counted since then is new usage.
                resets.append(key)
                deltas = list(values)
            else:
                deltas = [new - prev for new, prev in zip(values, old, strict=True)]
            row = increments[(key[0], key[1], hour)]
            for slot, name in enumerate(SLOT_FIELDS):
                row[FIELDS.index(name)] += deltas[slot]
                if deltas[slot]:
                    samples[key][name] = deltas[slot]
            changed.append(
                CounterCursor(
                    broker_id=broker_id,
                    principal=key[0],
                    topic=key[1],
                    updated_at=taken_at,
                    **dict(zip(SLOT_FIELDS, values, strict=True)),
                )
            )
        if resets:
            meter.resets += 1
            logger.warning(
                "metering: counters of broker %s went backwards for %s; treating them as reset "
                "(lost data directory?) and counting their current values as new usage",
                broker_id,
                ", ".join(f"{p}/{t}" for p, t in resets[:10]),
            )

        # 2. time-based usage since the previous sample, split at hour boundaries
        elapsed_ms = 0
        segments: list[tuple[dt.datetime, int]] = []
        if meter.last_sample_at is not None:
            gap = (taken_at - meter.last_sample_at).total_seconds()
            if gap <= conf.max_gap():
                segments = hour_segments(meter.last_sample_at, taken_at)
                elapsed_ms = sum(ms for _, ms in segments)
            else:
                logger.warning(
                    "metering: broker %s was not sampled for %.0fs (over %.0fs); that gap is not charged",
                    broker_id,
                    gap,
                    conf.max_gap(),
                )
        # Each broker samples its share of the cluster's time: the cluster is billed once per hour
        # whatever its broker count (the plan's price covers its brokers).
        brokers_per_cluster = max(1, cluster.broker_count)
        for seg_hour, ms in segments:
            row = increments[("", "", seg_hour)]
            row[FIELDS.index("cluster_ms")] += ms // brokers_per_cluster
            # schemas held, as partitions are: a count over time, the cluster's share per broker
            row[FIELDS.index("schema_ms")] += cluster.schemas * ms // brokers_per_cluster
        # Storage and partitions are billed logically, one replica's worth, as Confluent bills
        # them: every replica of a replicated cluster reports its copy, so each counts 1/RF.
        replicas = cluster.plan_limits.replication_factor if cluster.broker_count > 1 else 1
        for topic in set(scrape.stored) | set(scrape.partitions):
            stored = scrape.stored.get(topic, 0) // replicas
            parts = scrape.partitions.get(topic, 0) / replicas
            for seg_hour, ms in segments:
                row = increments[("", topic, seg_hour)]
                row[FIELDS.index("storage_byte_seconds")] += (stored * ms + 500) // 1000
                row[FIELDS.index("partition_ms")] += round(parts * ms)
            samples[("", topic)].update(
                storage_bytes=stored,
                partitions=round(parts),
                storage_byte_seconds=(stored * elapsed_ms + 500) // 1000,
                partition_ms=round(parts * elapsed_ms),
            )
        if elapsed_ms:
            samples[("", "")]["cluster_ms"] = elapsed_ms // brokers_per_cluster
            if cluster.schemas:
                samples[("", "")]["schema_ms"] = cluster.schemas * elapsed_ms // brokers_per_cluster

        # 3. write: hourly upserts, cursors, samples, the meter
        rows += _upsert_hourly(cluster, increments)
        if changed:
            CounterCursor.objects.bulk_create(
                changed,
                update_conflicts=True,
                unique_fields=["broker", "principal", "topic"],
                update_fields=[*SLOT_FIELDS, "updated_at"],
            )
            rows += len(changed)
        sample_rows = [
            UsageSample(
                organization_id=cluster.organization_id,
                cluster_id=cluster.pk,
                broker_id=broker_id,
                principal=p,
                topic=t,
                taken_at=taken_at,
                interval_ms=elapsed_ms,
                **values,
            )
            for (p, t), values in samples.items()
            if values
        ]
        if sample_rows:
            UsageSample.objects.bulk_create(sample_rows, ignore_conflicts=True)
            rows += len(sample_rows)
        meter.last_taken_at = taken_at
        meter.last_sample_at = taken_at
        if resets:
            meter.quota_applied = False  # a lost data directory lost its quotas.json too
        meter.save(update_fields=["last_taken_at", "last_sample_at", "resets", "quota_applied", "updated_at"])
        rows += 1
    return Recorded("recorded", rows, resets)


def _upsert_hourly(cluster: Cluster, increments: dict[tuple[str, str, dt.datetime], list[int]]) -> int:
    rows = [(key, values) for key, values in increments.items() if any(values)]
    if not rows:
        return 0
    table = HourlyUsage._meta.db_table
    cols = ["organization_id", "cluster_id", "principal", "topic", "hour", *FIELDS, "updated_at"]
    placeholders = "(" + ", ".join(["%s"] * len(cols)) + ")"
    now = timezone.now()
    params: list[Any] = []
    for (principal, topic, hour), values in sorted(rows, key=lambda r: (r[0][0], r[0][1], r[0][2])):
        params.extend([cluster.organization_id, cluster.pk, principal, topic, hour, *values, now])
    updates = ", ".join(f"{f} = {table}.{f} + excluded.{f}" for f in FIELDS)
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join([placeholders] * len(rows))} "
        "ON CONFLICT (cluster_id, principal, topic, hour) "
        f"DO UPDATE SET {updates}, updated_at = excluded.updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return len(rows)


# --- collection on a host --------------------------------------------------------------------------
@dataclass
class PassReport:
    brokers: int = 0
    recorded: int = 0
    stale: int = 0
    missed: list[str] = field(default_factory=list)
    rows: int = 0
    quotas: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "brokers": self.brokers,
            "recorded": self.recorded,
            "stale": self.stale,
            "missed": self.missed,
            "rows": self.rows,
            "quotas": self.quotas,
            "seconds": round(self.seconds, 3),
        }


def running_brokers(host_name: str):
    return (
        Broker.objects.filter(
            host__name=host_name,
            status=BrokerStatus.RUNNING,
            cluster__status=ClusterStatus.RUNNING,
            admin_port__isnull=False,
        )
        .select_related("host", "cluster")
        .order_by("pk")
    )


def _default_fetch(broker: Broker) -> str | None:
    return supervisor.fetch_metrics(broker.host.address, broker.admin_port)


def usage_collect_host(*, host_name: str, fetch=None, apply_quota=None, max_workers: int = 16) -> PassReport:
    """One collection pass over this host's RUNNING brokers (scrapes run concurrently)."""
    started = time.monotonic()
    fetch = fetch or _default_fetch
    report = PassReport()
    brokers = list(running_brokers(host_name))
    report.brokers = len(brokers)

    def scrape(broker: Broker) -> tuple[str | None, dt.datetime]:
        text = fetch(broker)
        return text, timezone.now()

    if brokers:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(brokers))) as pool:
            results = list(pool.map(scrape, brokers))
        for broker, (text, taken_at) in zip(brokers, results, strict=True):
            label = f"{broker.cluster.public_id}/{broker.node_id}"
            if text is None:
                report.missed.append(label)  # the next scrape's delta covers it
                continue
            try:
                result = usage_record_scrape(broker=broker.pk, scrape=text, taken_at=taken_at)
            except ScrapeError as exc:
                logger.error("metering: /metrics of %s is malformed: %s", label, exc)
                report.missed.append(label)
                continue
            # the keys' last use, from the same scrape
            iam_services.api_keys_mark_used_from_metrics(cluster_id=broker.cluster_id, text=text)
            report.rows += result.rows
            if result.status == "recorded":
                report.recorded += 1
            else:
                report.stale += 1
    report.quotas = spend_cap_quotas_apply(brokers=brokers, apply=apply_quota)
    report.seconds = time.monotonic() - started
    if report.missed:
        logger.info("metering: %s: no /metrics from %s", host_name, ", ".join(report.missed))
    return report


def spend_cap_quotas_apply(*, brokers: list[Broker], apply=None) -> list[str]:
    """Converge each broker's `<default>` produce quota to its organization's throttle state."""
    if not brokers:
        return []
    apply = apply or quotas.set_default_produce_quota
    throttled = set(
        BillingAccount.objects.filter(
            throttled=True, organization_id__in={b.cluster.organization_id for b in brokers}
        ).values_list("organization_id", flat=True)
    )
    meters = {m.broker_id: m for m in BrokerMeter.objects.filter(broker_id__in=[b.pk for b in brokers])}
    rate = conf.spend_cap_producer_byte_rate()
    changed = []
    for broker in brokers:
        meter = meters.get(broker.pk)
        if meter is None:
            continue  # never scraped yet
        want = rate if broker.cluster.organization_id in throttled else None
        if want is None and not meter.quota_applied:
            continue
        if (
            want is not None
            and meter.quota_applied
            and meter.quota_rate == want
            and meter.quota_pid == broker.pid
        ):
            continue
        label = f"{broker.cluster.public_id}/{broker.node_id}"
        try:
            apply(broker, want)
        except Exception as exc:  # retried at the next pass
            logger.warning(
                "metering: could not %s the spend-cap quota on %s: %s",
                "set" if want else "remove",
                label,
                exc,
            )
            continue
        BrokerMeter.objects.filter(pk=meter.pk).update(
            quota_applied=want is not None, quota_rate=want, quota_pid=broker.pid if want else None
        )
        logger.warning(
            "metering: spend cap: produce on %s %s",
            label,
            f"throttled to {want} bytes/s per API key" if want else "no longer throttled",
        )
        changed.append(f"{label}:{'throttle' if want else 'lift'}")
    return changed


def read_journal_totals(usage_dir: Path) -> dict[tuple[str, str], list[int]] | None:
    """The usage counters a stopped broker left in its data directory (brokerd's journal)."""
    if not usage_dir.is_dir():
        return None
    journal = UsageJournal(usage_dir)
    return {key: list(values) for key, values in journal.totals.items()}


def usage_record_final(*, broker: Broker, metrics: str | None, data_dir: Path | None) -> Recorded | None:
    """A deleted broker's last usage: its final /metrics scrape, with the counters taken from its
    stopped journal when that is readable (it includes what arrived after the scrape)."""
    try:
        scrape = parse(metrics) if metrics else Scrape()
    except ScrapeError as exc:
        logger.error("metering: final /metrics of broker %s is malformed: %s", broker.pk, exc)
        scrape = Scrape()
    try:
        totals = read_journal_totals(Path(data_dir) / "usage") if data_dir else None
    except Exception:
        logger.exception("metering: could not read the usage journal of broker %s", broker.pk)
        totals = None
    if totals is not None:
        for key, values in totals.items():
            old = scrape.counters.get(key)
            scrape.counters[key] = (
                values if old is None else [max(a, b) for a, b in zip(values, old, strict=True)]
            )
    if metrics is None and totals is None:
        logger.warning("metering: no final usage for broker %s (not running, no journal)", broker.pk)
        return None
    result = usage_record_scrape(broker=broker.pk, scrape=scrape, taken_at=timezone.now())
    logger.info("metering: final usage of broker %s recorded (%s rows)", broker.pk, result.rows)
    return result


# --- control: fan-out, spend caps ------------------------------------------------------------------
def usage_collect_control(*, send=None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Beat: evaluate spend caps (the hosts then converge quotas), then ask each host to collect."""
    changes = spend_caps_evaluate(now=now)
    hosts = set(
        Broker.objects.filter(status=BrokerStatus.RUNNING, cluster__status=ClusterStatus.RUNNING)
        .values_list("host__name", flat=True)
        .distinct()
    )
    sent = []
    for host in cluster_selectors.live_hosts():
        if host.name in hosts:
            (send or _send_host_collect)(host.name)
            sent.append(host.name)
    return {"hosts": sent, "spend_caps": changes}


def _send_host_collect(host_name: str) -> None:
    send_to_host("metering.host_collect", host_name, expires=max(conf.interval() * 2, 2.0))


def _account(organization: Organization, *, lock: bool = False) -> BillingAccount:
    qs = BillingAccount.objects.select_for_update() if lock else BillingAccount.objects
    account = qs.filter(organization=organization).first()
    if account is None:
        BillingAccount.objects.bulk_create([BillingAccount(organization=organization)], ignore_conflicts=True)
        account = qs.get(organization=organization)
    return account


def spend_cap_set(*, organization: Organization, spend_cap: Decimal | None, actor: Actor) -> BillingAccount:
    """Set (or clear, None) the monthly spend cap; re-evaluated at once, applied by the next pass."""
    if spend_cap is not None:
        if spend_cap < 0:
            raise ValidationFailed("The spend cap is invalid.", details={"spend_cap": ["Must be 0 or more."]})
        spend_cap = spend_cap.quantize(pricing.INVOICE_PLACES)
    with transaction.atomic():
        account = _account(organization, lock=True)
        old = account.spend_cap
        account.spend_cap = spend_cap
        account.save(update_fields=["spend_cap", "updated_at"])
        audit_record(
            organization=organization,
            actor=actor,
            action="billing.spend_cap.update",
            target_type="organization",
            target_id=organization.public_id,
            details={"spend_cap": {"from": _str(old), "to": _str(spend_cap)}},
        )
    spend_caps_evaluate(organization_ids=[organization.pk])
    account.refresh_from_db()
    return account


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def spend_caps_evaluate(*, now: dt.datetime | None = None, organization_ids=None) -> list[str]:
    """Throttle organizations whose month-to-date cost reached their cap; lift the others."""
    now = now or timezone.now()
    accounts = BillingAccount.objects.filter(Q(spend_cap__isnull=False) | Q(throttled=True))
    if organization_ids is not None:
        accounts = accounts.filter(organization_id__in=organization_ids)
    changes = []
    for account in accounts.select_related("organization"):
        org = account.organization
        cost = selectors.cost_total(organization=org, start=month_start(now), end=now)
        should = account.spend_cap is not None and cost >= account.spend_cap
        if should == account.throttled:
            continue
        with transaction.atomic():
            locked = _account(org, lock=True)
            if locked.throttled == should:
                continue
            locked.throttled = should
            locked.throttled_at = now if should else None
            locked.save(update_fields=["throttled", "throttled_at", "updated_at"])
            clusters = list(
                Cluster.objects.filter(organization=org, status=ClusterStatus.RUNNING).values_list(
                    "public_id", flat=True
                )
            )
            if should:
                reason = "month-to-date cost reached the cap"
            elif locked.spend_cap is None:
                reason = "the cap was removed"
            else:
                reason = "month-to-date cost is below the cap (cap raised, or a new month)"
            audit_record(
                organization=org,
                actor=SYSTEM,
                action="billing.spend_cap.throttle" if should else "billing.spend_cap.lift",
                target_type="organization",
                target_id=org.public_id,
                details={
                    "spend_cap": _str(locked.spend_cap),
                    "month_to_date_cost": str(cost),
                    "clusters": clusters,
                    "producer_byte_rate": conf.spend_cap_producer_byte_rate() if should else None,
                    "reason": reason,
                },
            )
        logger.warning(
            "metering: organization %s %s: month-to-date cost %s, cap %s; clusters %s",
            org.public_id,
            "reached its spend cap, throttling produce" if should else "is no longer capped",
            cost,
            locked.spend_cap,
            ", ".join(clusters) or "-",
        )
        changes.append(f"{org.public_id}:{'throttle' if should else 'lift'}")
    return changes


# --- credit -----------------------------------------------------------------------------------------
def credit_grant_trial(*, organization: Organization, amount: Decimal | None = None) -> CreditGrant | None:
    """The sign-up credit (once per organization)."""
    amount = conf.trial_credit() if amount is None else amount
    if amount <= 0:
        return None
    CreditGrant.objects.bulk_create(
        [CreditGrant(organization=organization, amount=amount, reason="trial")], ignore_conflicts=True
    )
    return CreditGrant.objects.filter(organization=organization, reason="trial").first()


# --- invoices ---------------------------------------------------------------------------------------
def invoice_close(
    *,
    organization: Organization,
    month: dt.date,
    now: dt.datetime | None = None,
    allow_open_month: bool = False,
) -> Invoice:
    """Invoice one month of an organization's usage (idempotent: a closed month is returned as is).

    Lines per cluster, dimension and unit price; each line's amount is its exact amount rounded
    half-up to cents. The trial credit left pays as much of the subtotal as it covers. A month
    that has not ended is refused unless `allow_open_month` (then usage up to now is invoiced).
    """
    now = now or timezone.now()
    start = month_start(month)
    end = next_month(start)
    if end > now and not allow_open_month:
        raise Conflict(f"{start:%Y-%m} has not ended yet; it can be invoiced from {end:%Y-%m-%d}.")
    period_end = min(end, now)
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        existing = Invoice.objects.filter(organization=organization, month=start.date()).first()
        if existing is not None:
            return existing
        lines = selectors.invoice_lines(organization=organization, start=start, end=period_end)
        subtotal = sum((line["amount"] for line in lines), Decimal("0.00"))
        available = selectors.credit_available_for_invoices(organization=organization)
        credit = min(max(available, Decimal("0")), subtotal).quantize(pricing.INVOICE_PLACES)
        invoice = Invoice.objects.create(
            organization=organization,
            month=start.date(),
            subtotal=subtotal,
            credit_applied=credit,
            total=subtotal - credit,
            period_end=period_end,
        )
        InvoiceLine.objects.bulk_create([InvoiceLine(invoice=invoice, **line) for line in lines])
        audit_record(
            organization=organization,
            actor=SYSTEM,
            action="invoice.close",
            target=invoice,
            target_label=f"{start:%Y-%m}",
            details={"subtotal": str(subtotal), "credit_applied": str(credit), "total": str(invoice.total)},
        )
    logger.info(
        "metering: invoice %s for %s %s: %s",
        invoice.public_id,
        organization.public_id,
        f"{start:%Y-%m}",
        invoice.total,
    )
    return invoice


def invoices_close_due(*, now: dt.datetime | None = None, months_back: int = 3) -> list[str]:
    """Beat: invoice every organization with usage in a month that ended (plus the grace time)."""
    now = now or timezone.now()
    closed = []
    start = month_start(now)
    for _ in range(months_back):
        end = start
        start = month_start(end - dt.timedelta(days=1))
        if (now - end).total_seconds() < conf.invoice_grace():
            continue
        org_ids = (
            HourlyUsage.objects.filter(hour__gte=start, hour__lt=end)
            .exclude(organization__invoices__month=start.date())
            .values_list("organization_id", flat=True)
            .distinct()
        )
        for org in Organization.objects.filter(pk__in=list(org_ids)):
            closed.append(invoice_close(organization=org, month=start.date(), now=now).public_id)
    return closed


def usage_samples_prune(*, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=conf.sample_retention_hours())
    deleted, _ = UsageSample.objects.filter(taken_at__lt=cutoff).delete()
    return deleted
