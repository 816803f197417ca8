"""Writes for clusters: create, rename, delete, retry, and the lifecycle state machine.

Provisioning hears of a cluster to start or remove through `clusters.signals`, sent with
`transaction.on_commit`, so a rolled-back write never starts anything.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import SYSTEM, Actor, audit_record
from accounts.models import Organization
from brokerd.credentials import make_user_entry
from controlplane.errors import Conflict, ValidationFailed

from .models import TRANSITIONS, Cluster, ClusterStatus
from .names import name_problem
from .plans import PLANS
from .selectors import hosts_with_room
from .signals import deprovision_requested, provision_requested, restart_requested, scale_requested

NAME_TAKEN = "A cluster with this name already exists in your organization."


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, cluster: Cluster, to: str, message: str | None = None) -> None:
        allowed = sorted(TRANSITIONS[ClusterStatus(cluster.status)])
        super().__init__(
            message or f"Cluster {cluster.public_id} is {cluster.status} and cannot become {to}.",
            details={"status": cluster.status, "requested": to, "allowed": allowed},
        )


def _validate_name(name: str) -> str:
    name = (name or "").strip() if isinstance(name, str) else name
    problem = name_problem(name)
    if problem:
        raise ValidationFailed("The cluster is invalid.", details={"name": [problem]})
    return name


def _name_taken(organization: Organization, name: str, exclude_pk: int | None = None) -> bool:
    qs = Cluster.objects.filter(organization=organization, name=name).exclude(status=ClusterStatus.DELETED)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


def _announce_on_commit(signal, cluster_id: int) -> None:
    transaction.on_commit(lambda: signal.send(sender=Cluster, cluster_id=cluster_id))


def cluster_create(
    *,
    organization: Organization,
    name: str,
    plan: str,
    security_protocol: str = "SASL_SSL",
    brokers: int | None = None,
    actor: Actor = SYSTEM,
) -> Cluster:
    """A new cluster in PROVISIONING; `provisioning.cluster_provision` starts after commit.

    `security_protocol`: SASL_SSL (TLS with a certificate from the platform CA, the default) or
    SASL_PLAINTEXT (an explicit opt-in); fixed for the cluster's life.
    """
    name = _validate_name(name)
    if security_protocol not in ("SASL_SSL", "SASL_PLAINTEXT"):
        raise ValidationFailed(
            "The cluster is invalid.",
            details={"security_protocol": ["Choose one of: SASL_SSL, SASL_PLAINTEXT."]},
        )
    if plan not in PLANS:
        raise ValidationFailed(
            "The cluster is invalid.", details={"plan": [f"Choose one of: {', '.join(PLANS)}."]}
        )
    try:
        broker_count = PLANS[plan].broker_count(brokers)
    except ValueError as exc:
        raise ValidationFailed("The cluster is invalid.", details={"brokers": [str(exc)]}) from exc
    if _name_taken(organization, name):
        raise ValidationFailed("The cluster is invalid.", details={"name": [NAME_TAKEN]})
    try:
        with transaction.atomic():
            cluster = Cluster(
                organization=organization,
                name=name,
                plan=plan,
                broker_count=broker_count,
                status=ClusterStatus.PROVISIONING,
                security_protocol=security_protocol,
            )
            cluster.internal_verifier = make_user_entry(cluster.internal_password())
            cluster.save()
            audit_record(
                organization=organization,
                actor=actor,
                action="cluster.create",
                target=cluster,
                details={
                    "plan": plan,
                    **({"brokers": broker_count} if broker_count > 1 else {}),
                    # the opt-out of TLS is worth an audit trail
                    **({"security_protocol": security_protocol} if security_protocol != "SASL_SSL" else {}),
                },
            )
            _announce_on_commit(provision_requested, cluster.pk)
    except IntegrityError as exc:  # a concurrent create took the name
        raise ValidationFailed("The cluster is invalid.", details={"name": [NAME_TAKEN]}) from exc
    return cluster


def cluster_update(*, cluster: Cluster, name: str, actor: Actor = SYSTEM) -> Cluster:
    name = _validate_name(name)
    try:
        with transaction.atomic():
            cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
            if cluster.status in (ClusterStatus.DELETING, ClusterStatus.DELETED):
                raise Conflict(
                    f"Cluster {cluster.public_id} is {cluster.status} and can no longer be changed.",
                    code="invalid_state",
                    details={"status": cluster.status},
                )
            if name == cluster.name:
                return cluster
            if _name_taken(cluster.organization, name, exclude_pk=cluster.pk):
                raise ValidationFailed("The cluster is invalid.", details={"name": [NAME_TAKEN]})
            old = cluster.name
            cluster.name = name
            cluster.save(update_fields=["name", "updated_at"])
            audit_record(
                organization=cluster.organization,
                actor=actor,
                action="cluster.update",
                target=cluster,
                details={"name": {"from": old, "to": name}},
            )
    except IntegrityError as exc:
        raise ValidationFailed("The cluster is invalid.", details={"name": [NAME_TAKEN]}) from exc
    return cluster


def cluster_transition(
    *,
    cluster: Cluster,
    to: str,
    reason: str = "",
    actor: Actor = SYSTEM,
    action: str = "cluster.status",
    **fields,
) -> Cluster:
    """Move a cluster along the state table (row-locked), or raise InvalidTransition (409).

    `fields` sets other columns in the same write (e.g. bootstrap_servers when RUNNING).
    A FAILED cluster must carry a reason.
    """
    to = ClusterStatus(to)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if not locked.can_transition(to):
            raise InvalidTransition(locked, to)
        if to == ClusterStatus.FAILED and not reason.strip():
            raise ValueError("a FAILED cluster needs a reason")
        previous = locked.status
        now = timezone.now()
        locked.status = to
        locked.status_reason = reason.strip() if to == ClusterStatus.FAILED else ""
        locked.status_changed_at = now
        if to == ClusterStatus.DELETED:
            locked.deleted_at = now
        for field, value in fields.items():
            setattr(locked, field, value)
        locked.save()
        details = {"from": previous, "to": to}
        if locked.status_reason:
            details["reason"] = locked.status_reason
        audit_record(
            organization=locked.organization, actor=actor, action=action, target=locked, details=details
        )
    return locked


def cluster_schemas_counted(*, cluster_id: int, count: int) -> None:
    """The registry's live schema versions after its latest write; metering charges their hours."""
    Cluster.objects.filter(pk=cluster_id).exclude(schemas=count).update(schemas=count)


def cluster_delete(*, cluster: Cluster, actor: Actor = SYSTEM) -> Cluster:
    """DELETING now; `provisioning.cluster_deprovision` runs after commit."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.status == ClusterStatus.DELETING:
            raise InvalidTransition(
                locked, ClusterStatus.DELETING, f"Cluster {locked.public_id} is already being deleted."
            )
        if locked.status == ClusterStatus.DELETED:
            raise InvalidTransition(
                locked, ClusterStatus.DELETING, f"Cluster {locked.public_id} is already deleted."
            )
        cluster = cluster_transition(
            cluster=locked, to=ClusterStatus.DELETING, actor=actor, action="cluster.delete"
        )
        _announce_on_commit(deprovision_requested, cluster.pk)
    return cluster


def cluster_restart(*, cluster: Cluster, actor: Actor = SYSTEM, node_ids: list[int] | None = None) -> Cluster:
    """Restart a RUNNING cluster's brokers one at a time (after commit, provisioning does it).

    Each broker stops cleanly, starts again on its address, and the next waits until every
    partition is back in full ISR; `Cluster.restart` shows the progress. `node_ids`: only these
    brokers (an operator draining a host), else all."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.status != ClusterStatus.RUNNING:
            raise Conflict(
                f"Only a RUNNING cluster can be restarted; {locked.public_id} is {locked.status}.",
                details={"status": locked.status},
            )
        if (locked.restart or {}).get("state") == "running":
            raise Conflict(
                f"Cluster {locked.public_id} is being restarted already.", details={"restart": locked.restart}
            )
        if (locked.scale or {}).get("state") in ("starting", "reassigning"):
            raise Conflict(
                f"Cluster {locked.public_id} is growing; restart it once that is done.",
                details={"scale": locked.scale},
            )
        now = timezone.now()
        brokers = list(locked.brokers.order_by("node_id").values_list("node_id", flat=True))
        locked.restart = {
            "state": "running",
            "brokers": [n for n in brokers if node_ids is None or n in node_ids],
            "restarted": [],
            "current": None,
            "started_at": now.isoformat(),
            "finished_at": None,
            "error": "",
        }
        locked.save(update_fields=["restart", "updated_at"])
        audit_record(
            organization=locked.organization, actor=actor, action="cluster.restart", target=locked,
            details={"brokers": locked.restart["brokers"]},
        )  # fmt: skip
        _announce_on_commit(restart_requested, locked.pk)
    return locked


def cluster_restart_progress(*, cluster_id: int, **changes) -> dict:
    """Update the rolling restart's progress (row-locked); returns it."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster_id)
        restart = {**(locked.restart or {}), **changes}
        if changes.get("state") in ("done", "failed"):
            restart["current"] = None
            restart["finished_at"] = timezone.now().isoformat()
        locked.restart = restart
        locked.save(update_fields=["restart", "updated_at"])
        if changes.get("state") in ("done", "failed"):
            details = {"state": restart["state"], "restarted": restart.get("restarted", [])}
            if restart.get("error"):
                details["error"] = restart["error"]
            audit_record(
                organization=locked.organization, actor=SYSTEM, action="cluster.restart.finished",
                target=locked, details=details,
            )  # fmt: skip
    return restart


def cluster_scale(*, cluster: Cluster, count: int, actor: Actor = SYSTEM) -> Cluster:
    """Grow a RUNNING Dedicated cluster to `count` brokers (after commit, provisioning starts them
    and moves replicas over to balance); `Cluster.scale` shows the progress. Shrinking is refused."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        plan = locked.plan_limits
        if not plan.brokers_chosen:
            raise ValidationFailed(
                f"A {plan.display_name} cluster runs a fixed number of brokers ({plan.brokers}); only "
                "Dedicated clusters grow.",
                details={"plan": locked.plan},
            )
        if locked.status != ClusterStatus.RUNNING:
            raise Conflict(
                f"Only a RUNNING cluster can grow; {locked.public_id} is {locked.status}.",
                details={"status": locked.status},
            )
        current = locked.broker_count
        if count < current:
            raise ValidationFailed(
                f"The cluster runs {current} brokers; shrinking a cluster is not supported yet: its "
                "partitions would first have to move off the brokers removed.",
                details={"count": [f"Choose more than {current}."]},
            )
        if count == current:
            raise ValidationFailed(
                f"The cluster runs {current} brokers already.",
                details={"count": [f"Choose more than {current}."]},
            )
        if count > plan.brokers_max:
            raise ValidationFailed(
                f"The {plan.display_name} plan runs at most {plan.brokers_max} brokers.",
                details={"count": [f"Choose at most {plan.brokers_max}."]},
            )
        for busy, what in (("scale", "growing"), ("restart", "being restarted")):
            if (getattr(locked, busy) or {}).get("state") in ("starting", "reassigning", "running"):
                raise Conflict(
                    f"Cluster {locked.public_id} is {what} already; try again when that is done.",
                    details={busy: getattr(locked, busy)},
                )
        free = hosts_with_room(exclude_cluster=locked)
        if free < count - current:
            raise Conflict(
                f"Growing to {count} brokers needs {count - current} more broker host"
                f"{'s' if count - current > 1 else ''} with room, one per broker, and only {free} "
                f"{'is' if free == 1 else 'are'} available now. Choose fewer brokers, or try again once the "
                "operators add hosts.",
                code="insufficient_capacity",
                details={"hosts_available": free, "hosts_needed": count - current},
            )
        locked.broker_count = count
        locked.scale = {
            "state": "starting",
            "from": current,
            "to": count,
            "partitions": 0,
            "moved": 0,
            "started_at": timezone.now().isoformat(),
            "finished_at": None,
            "error": "",
        }
        locked.save(update_fields=["broker_count", "scale", "updated_at"])
        audit_record(
            organization=locked.organization, actor=actor, action="cluster.scale", target=locked,
            details={"from": current, "to": count},
        )  # fmt: skip
        _announce_on_commit(scale_requested, locked.pk)
    return locked


def cluster_scale_progress(*, cluster_id: int, **changes) -> dict:
    """Update the growth's progress (row-locked); returns it. The end is audited."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster_id)
        scale = {**(locked.scale or {}), **changes}
        ended = changes.get("state") in ("done", "failed")
        if ended:
            scale["finished_at"] = timezone.now().isoformat()
        locked.scale = scale
        locked.save(update_fields=["scale", "updated_at"])
        if ended:
            audit_record(
                organization=locked.organization, actor=SYSTEM, action="cluster.scale.finished",
                target=locked, details={k: scale.get(k) for k in ("state", "from", "to", "moved", "error")},
            )  # fmt: skip
    return scale


def cluster_replacement_progress(*, cluster_id: int, audit: str = "", **changes) -> dict:
    """Record where the replacement of a lost host's brokers stands (row-locked); `audit` names an
    audit log action to record with the new state (the replacement, and its return to health)."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster_id)
        replacement = {**(locked.replacement or {}), **changes, "updated_at": timezone.now().isoformat()}
        locked.replacement = replacement
        locked.save(update_fields=["replacement", "updated_at"])
        if audit:
            audit_record(
                organization=locked.organization, actor=SYSTEM, action=audit, target=locked,
                details={k: v for k, v in replacement.items() if k != "updated_at"},
            )  # fmt: skip
    return replacement


def cluster_retry(*, cluster: Cluster, actor: Actor = SYSTEM) -> Cluster:
    """A FAILED cluster goes back to PROVISIONING and is provisioned again."""
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        if locked.status != ClusterStatus.FAILED:
            raise InvalidTransition(
                locked,
                ClusterStatus.PROVISIONING,
                f"Only a FAILED cluster can be retried; {locked.public_id} is {locked.status}.",
            )
        cluster = cluster_transition(
            cluster=locked, to=ClusterStatus.PROVISIONING, actor=actor, action="cluster.retry"
        )
        _announce_on_commit(provision_requested, cluster.pk)
    return cluster
