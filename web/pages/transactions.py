"""A cluster's open transactions (read-only), and aborting a hanging one on one partition.

Reads go through `transactions.selectors` and the abort through `transactions.services`, the
functions the REST API calls: the partition's leader must know the producer with a transaction
open there, and the abort marker goes with the epoch it knows (as `kafka-transactions.sh abort`).
The abort is a second step: a page that names the transaction and the partition, then a POST.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from transactions import selectors as txn_selectors
from transactions import services as txn_services
from transactions.wire import MAX_PARTITION, MAX_PRODUCER_ID

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from controlplane.errors import ServiceError

from ..portal import apply_service_error, can, portal_view


@portal_view()
def transaction_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    return render(
        request,
        "web/transactions/list.html",
        {
            "cluster": cluster,
            "transactions": txn_selectors.transaction_list(cluster=cluster),
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "transactions",
        },
    )


class AbortForm(forms.Form):
    """The transaction to abort, carried from the list's link to the confirmation's POST."""

    topic = forms.CharField(max_length=249, widget=forms.HiddenInput)
    partition = forms.IntegerField(min_value=0, max_value=MAX_PARTITION, widget=forms.HiddenInput)
    producer_id = forms.IntegerField(min_value=0, max_value=MAX_PRODUCER_ID, widget=forms.HiddenInput)


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def transaction_abort(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    """GET: what would be aborted (from the open transactions the coordinators list). POST: the
    abort, refused (409) when the partition's leader has no transaction of that producer open."""
    form = AbortForm(request.POST if request.method == "POST" else request.GET)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            done = txn_services.transaction_abort(
                cluster=cluster, topic=data["topic"], partition=data["partition"],
                producer_id=data["producer_id"], actor=Actor.from_request(request),
            )  # fmt: skip
        except ServiceError as exc:
            apply_service_error(form, exc)
            status = exc.status_code
        else:
            messages.success(
                request,
                f"Aborted the transaction of producer {done['producer_id']} (epoch {done['producer_epoch']}) "
                f"on {done['topic']}-{done['partition']}.",
            )
            return redirect("web:transactions", cluster_id=cluster.public_id)
    elif not form.is_valid():
        status = 400
    data = form.cleaned_data if form.is_valid() else {}
    heading = (
        f"Abort the transaction of producer {data['producer_id']} on {data['topic']}-{data['partition']}"
        if data
        else "Abort a transaction"
    )
    txn = next(
        (
            t
            for t in txn_selectors.transaction_list(cluster=cluster)
            if t["producer_id"] == data.get("producer_id")
        ),
        None,
    )
    return render(
        request,
        "web/transactions/abort.html",
        {
            "cluster": cluster, "form": form, "heading": heading, "txn": txn,
            "nav": "overview", "tab": "transactions",
        },
        status=status,
    )
