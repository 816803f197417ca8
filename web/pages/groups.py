"""Consumer groups: members, assignments, lag per partition, offset reset with a dry run, delete.

Reads go through `consumergroups.selectors` and writes through `consumergroups.services`, the functions the
REST API calls.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from consumergroups import selectors as group_selectors
from consumergroups import services as group_services
from controlplane.errors import ServiceError

from ..portal import apply_service_error, can, portal_view
from .clusters import ConfirmNameForm

DETAILED_GROUPS = 50  # beyond this many groups the list shows ids and states only


@portal_view()
def group_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    groups = group_selectors.group_list(cluster=cluster)
    for index, group in enumerate(groups):
        if index >= DETAILED_GROUPS:
            break
        try:
            detail = group_selectors.group_get(cluster=cluster, group_id=group["group_id"])
        except (ServiceError, Http404):
            continue  # gone meanwhile, or its coordinator did not answer: the row shows "—"
        group["lag"] = detail["total_lag"]
        group["members_count"] = len(detail["members"])
        group["topics"] = sorted({row["topic"] for row in detail["offsets"]})
    return render(
        request,
        "web/groups/list.html",
        {"cluster": cluster, "groups": groups, "nav": "overview", "tab": "groups"},
    )


class ResetForm(forms.Form):
    to = forms.ChoiceField(
        label="Move the group's offsets to",
        choices=[
            ("earliest", "The earliest message (re-read everything)"),
            ("latest", "The end (skip everything not yet read)"),
            ("timestamp", "A point in time"),
            ("offset", "A given offset"),
        ],
        widget=forms.RadioSelect,
        initial="latest",
    )
    value = forms.CharField(
        required=False,
        label="Time or offset",
        help_text="For a point in time: e.g. 2025-01-31T09:00:00Z. For an offset: a number.",
    )
    topic = forms.CharField(
        required=False, help_text="Empty: every partition the group has committed offsets for."
    )

    def clean(self):
        data = super().clean()
        if data.get("to") in ("timestamp", "offset") and not data.get("value"):
            self.add_error("value", "Give the time or the offset to move to.")
        return data


@portal_view()
@require_http_methods(["GET", "POST"])
def group_detail(request: HttpRequest, cluster: Cluster, group_id: str) -> HttpResponse:
    form = ResetForm(request.POST or None)
    preview = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            dry_run = "apply" not in request.POST
            try:
                outcome = group_services.group_offsets_reset(
                    cluster=cluster,
                    group_id=group_id,
                    to=form.cleaned_data["to"],
                    value=form.cleaned_data["value"] or None,
                    topic=form.cleaned_data["topic"] or None,
                    dry_run=dry_run,
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
                status = exc.status_code
            else:
                if not dry_run:
                    count = len(outcome["offsets"])
                    messages.success(request, f"Offsets of {group_id} moved on {count} partition(s).")
                    return redirect("web:group", cluster_id=cluster.public_id, group_id=group_id)
                preview = outcome["offsets"]
        else:
            status = 400
    group = group_selectors.group_get(cluster=cluster, group_id=group_id)
    return render(
        request,
        "web/groups/detail.html",
        {
            "cluster": cluster,
            "group": group,
            "form": form,
            "preview": preview,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "groups",
        },
        status=status,
    )


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def group_delete(request: HttpRequest, cluster: Cluster, group_id: str) -> HttpResponse:
    """Delete an empty group and its committed offsets: the group id typed to confirm (as for a
    cluster). The broker is the judge of "empty"; a group with members is refused (409)."""
    form = ConfirmNameForm(request.POST or None, expected=group_id)
    form.fields["confirm"].label = "Type the group id to confirm"
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                group_services.group_delete(
                    cluster=cluster, group_id=group_id, actor=Actor.from_request(request)
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
                status = exc.status_code
            else:
                messages.success(request, f"Consumer group {group_id} and its offsets were deleted.")
                return redirect("web:groups", cluster_id=cluster.public_id)
        else:
            status = 400
    group = group_selectors.group_get(cluster=cluster, group_id=group_id)
    return render(
        request,
        "web/groups/delete.html",
        {"cluster": cluster, "group": group, "form": form, "nav": "overview", "tab": "groups"},
        status=status,
    )
