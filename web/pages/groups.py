"""Consumer groups: members, assignments, lag per partition, offset reset with a dry run."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import Role
from clusters.models import Cluster

from ..portal import can, portal_view


@portal_view()
def group_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    return render(
        request,
        "web/groups/list.html",
        {
            "cluster": cluster,
            "groups": None,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "groups",
        },
    )
