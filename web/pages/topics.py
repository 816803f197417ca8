"""Topics: list, create, edit configs (and grow partitions), delete with the name typed to confirm.

Every read and write goes through `topics.services`, the same functions the REST API calls.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.validators import MaxValueValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from clusters.plans import Plan
from controlplane.errors import ServiceError
from topics import selectors as topic_selectors
from topics import services as topic_services

from .. import usage
from ..charts import human_bytes
from ..portal import apply_service_error, can, portal_view
from .clusters import ConfirmNameForm

DETAILED_TOPICS = 50  # beyond this many topics the list shows names and partitions only
RETENTION_CHOICES = [
    ("", "Cluster default"),
    ("3600000", "1 hour"),
    ("86400000", "1 day"),
    ("259200000", "3 days"),
    ("604800000", "7 days"),
    ("2592000000", "30 days"),
    ("-1", "Forever"),
]


def retention_words(ms: str | None) -> str:
    if ms in (None, ""):
        return "—"
    try:
        value = int(ms)
    except ValueError:
        return ms
    if value < 0:
        return "forever"
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000), ("second", 1000)):
        if value >= size and value % size == 0:
            n = value // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{value} ms"


def cleanup_words(policy: str | None) -> str:
    """cleanup.policy in plain words (the topic page's summary)."""
    policies = set((policy or "delete").split(","))
    if policies == {"compact"}:
        return "Compacted: keeps the latest message per key"
    if policies == {"compact", "delete"}:
        return "Compacted, and old messages deleted after the retention"
    return "Old messages deleted after the retention"


def _config_map(detail: dict) -> dict[str, str | None]:
    return {c["name"]: c["value"] for c in detail["configs"]}


def retention_choices(plan: Plan) -> list[tuple[str, str]]:
    """The retention periods the plan allows (the form offers no period the plan would refuse)."""
    unlimited = plan.max_retention_ms < 0

    def allowed(value: str) -> bool:
        if value in ("", "-1"):
            return value == "" or unlimited
        return unlimited or int(value) <= plan.max_retention_ms

    return [(value, words) for value, words in RETENTION_CHOICES if allowed(value)]


class TopicCreateForm(forms.Form):
    name = forms.CharField(
        max_length=topic_services.MAX_NAME_LENGTH,
        help_text="Letters, digits, '.', '_' and '-'.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    partitions = forms.IntegerField(
        min_value=1,
        max_value=topic_services.MAX_PARTITIONS_PER_REQUEST,
        initial=1,
        help_text="More partitions let more consumers read in parallel; the count can grow later.",
        widget=forms.NumberInput(attrs={"class": "narrow"}),
    )
    retention = forms.ChoiceField(choices=RETENTION_CHOICES, required=False, label="Keep messages for")
    cleanup_policy = forms.ChoiceField(
        choices=[
            ("", "Delete old messages (default)"),
            ("compact", "Compact: keep the latest message per key"),
            ("compact,delete", "Compact, and delete what is older than the retention"),
        ],
        required=False,
        label="Clean-up policy",
    )
    schema_validation = forms.MultipleChoiceField(
        choices=[("value", "Values"), ("key", "Keys")],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Schema validation",
        help_text="The brokers refuse records without a schema id registered in this cluster's Schema "
        "Registry under <topic>-value (or <topic>-key).",
    )

    def __init__(self, *args, plan: Plan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan
        partitions = self.fields["partitions"]
        partitions.max_value = min(topic_services.MAX_PARTITIONS_PER_REQUEST, plan.max_partitions)
        partitions.validators = [v for v in partitions.validators if not isinstance(v, MaxValueValidator)]
        partitions.validators.append(
            MaxValueValidator(
                partitions.max_value,
                message=f"The {plan.display_name} plan allows at most {plan.max_partitions} partitions "
                "per cluster.",
            )
        )
        partitions.widget.attrs["max"] = partitions.max_value
        partitions.help_text += f" Up to {plan.max_partitions} on the {plan.display_name} plan."
        retention = self.fields["retention"]
        retention.choices = retention_choices(plan)
        retention.error_messages["invalid_choice"] = (
            f"The {plan.display_name} plan keeps messages for at most "
            f"{retention_words(str(plan.max_retention_ms))}; pick one of the periods offered."
        )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        try:
            return topic_services.validate_name(name)
        except ServiceError as exc:
            raise forms.ValidationError(exc.details["name"]) from exc

    def configs(self) -> dict[str, str]:
        out = {}
        if self.cleaned_data.get("retention"):
            out["retention.ms"] = self.cleaned_data["retention"]
        if self.cleaned_data.get("cleanup_policy"):
            out["cleanup.policy"] = self.cleaned_data["cleanup_policy"]
        for part in self.cleaned_data.get("schema_validation") or ():
            out[f"confluent.{part}.schema.validation"] = "true"
        return out


@portal_view()
@require_http_methods(["GET", "POST"])
def topic_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    form = TopicCreateForm(request.POST or None, plan=cluster.plan_limits)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                topic_services.topic_create(
                    cluster=cluster,
                    name=form.cleaned_data["name"],
                    partitions=form.cleaned_data["partitions"],
                    configs=form.configs(),
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                if exc.details and "configs" in exc.details:
                    configs = exc.details["configs"]
                    if isinstance(configs, dict):
                        for key, errors in configs.items():
                            field = {"retention.ms": "retention", "cleanup.policy": "cleanup_policy"}.get(key)
                            for error in errors if isinstance(errors, list) else [errors]:
                                form.add_error(field, str(error))
                    else:
                        apply_service_error(form, exc)
                else:
                    apply_service_error(form, exc)
            else:
                messages.success(request, f"Topic {form.cleaned_data['name']} created.")
                return redirect("web:topics", cluster_id=cluster.public_id)
        status = 400
    topics = topic_selectors.topic_list(cluster=cluster)
    rates = usage.topic_rates(cluster)
    rows = []
    for index, topic in enumerate(topics):
        row = {
            "name": topic["name"],
            "partitions": topic["partitions_count"],
            "rate": rates.get(topic["name"]),
        }
        if index < DETAILED_TOPICS:
            try:
                detail = topic_selectors.topic_get(cluster=cluster, name=topic["name"])
            except ServiceError:
                detail = None
            if detail is not None:
                configs = _config_map(detail)
                row.update(
                    retention=retention_words(configs.get("retention.ms")),
                    size=human_bytes(detail["size_bytes"]),
                    records=detail["records"],
                )
        rows.append(row)
    return render(
        request,
        "web/topics/list.html",
        {
            "cluster": cluster,
            "topics": rows,
            "form": form,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "topics",
        },
        status=status,
    )


EDITABLE = [
    ("retention.ms", "Retention (ms); -1 keeps messages forever"),
    ("retention.bytes", "Retention per partition (bytes); -1 is no limit"),
    ("cleanup.policy", "Clean-up policy: delete (drop old messages), compact (keep the latest "
                       "message per key) or compact,delete (both)"),
    ("max.message.bytes", "Largest message (bytes)"),
    ("segment.bytes", "Segment size (bytes)"),
    ("min.insync.replicas", "Minimum in-sync replicas"),
]


class TopicEditForm(forms.Form):
    partitions = forms.IntegerField(
        min_value=1,
        max_value=topic_services.MAX_PARTITIONS_PER_REQUEST,
        help_text="The partition count can only grow.",
    )

    def __init__(self, *args, configs: list[dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current = {c["name"]: c for c in configs}
        for name, help_text in EDITABLE:
            entry = self.current.get(name)
            if entry is None or entry["read_only"]:
                continue
            self.fields[f"config:{name}"] = forms.CharField(
                label=name, required=False, help_text=f"{help_text}. Leave empty for the cluster default."
            )
            self.initial[f"config:{name}"] = "" if entry["is_default"] else (entry["value"] or "")

    def changes(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for field, value in self.cleaned_data.items():
            if not field.startswith("config:"):
                continue
            name = field.split(":", 1)[1]
            entry = self.current[name]
            value = value.strip()
            if value == "":
                if not entry["is_default"]:
                    out[name] = None
            elif entry["is_default"] or value != (entry["value"] or ""):
                out[name] = value
        return out


@portal_view()
@require_http_methods(["GET", "POST"])
def topic_detail(request: HttpRequest, cluster: Cluster, name: str) -> HttpResponse:
    detail = topic_selectors.topic_get(cluster=cluster, name=name)
    form = TopicEditForm(
        request.POST or None, configs=detail["configs"], initial={"partitions": detail["partitions_count"]}
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            partitions = form.cleaned_data["partitions"]
            try:
                topic_services.topic_update(
                    cluster=cluster,
                    name=name,
                    configs=form.changes(),
                    partitions=partitions if partitions != detail["partitions_count"] else None,
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                configs = (exc.details or {}).get("configs")
                if isinstance(configs, dict):
                    for key, errors in configs.items():
                        field = f"config:{key}" if f"config:{key}" in form.fields else None
                        for error in errors if isinstance(errors, list) else [errors]:
                            form.add_error(field, str(error))
                else:
                    apply_service_error(form, exc)
            else:
                messages.success(request, f"Topic {name} saved.")
                return redirect("web:topic", cluster_id=cluster.public_id, name=name)
        status = 400
    return render(
        request,
        "web/topics/detail.html",
        {
            "cluster": cluster,
            "topic": detail,
            "size": human_bytes(detail["size_bytes"]),
            "retention": retention_words(_config_map(detail).get("retention.ms")),
            "cleanup": cleanup_words(_config_map(detail).get("cleanup.policy")),
            "form": form,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "topics",
        },
        status=status,
    )


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def topic_delete(request: HttpRequest, cluster: Cluster, name: str) -> HttpResponse:
    topic_selectors.topic_get(cluster=cluster, name=name)  # 404 for an unknown topic
    form = ConfirmNameForm(request.POST or None, expected=name)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                topic_services.topic_delete(cluster=cluster, name=name, actor=Actor.from_request(request))
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Topic {name} deleted.")
                return redirect("web:topics", cluster_id=cluster.public_id)
        status = 400
    return render(
        request,
        "web/topics/delete.html",
        {"cluster": cluster, "name": name, "form": form, "nav": "overview", "tab": "topics"},
        status=status,
    )
