"""API keys: list (expiry, status, last use), create (the secret is shown once, with ready client
config downloads), rotate (a new key the same way; the old one expires after an overlap), revoke.

Writes go through `iam.services`, the functions the REST API calls; their validation errors are
shown beside the form's fields."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors as cluster_selectors
from clusters.models import Cluster
from controlplane.errors import ServiceError
from iam import selectors as key_selectors
from iam import services as key_services
from iam.models import ApiKey

from .. import clientconfig
from ..portal import apply_service_error, can, portal_view

ACCESS_CHOICES = [
    ("", "Full access to the cluster"),
    ("produce", "Produce: write and describe topics with the prefix"),
    ("consume", "Consume: read topics with the prefix, in consumer groups with the same prefix"),
    ("full", "Full under the prefix: produce, consume and create topics with the prefix"),
]


class ApiKeyCreateForm(forms.Form):
    description = forms.CharField(
        max_length=200,
        required=False,
        help_text="What uses this key, e.g. 'orders service'.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    owner = forms.ChoiceField(
        choices=[("", "You")],
        required=False,
        help_text="A service account owns a key of an application rather than a person.",
    )
    access = forms.ChoiceField(choices=ACCESS_CHOICES, required=False, widget=forms.RadioSelect, initial="")
    topic_prefix = forms.CharField(
        max_length=249,
        required=False,
        label="Topic prefix",
        help_text="For a scoped key: topics and consumer groups whose names start with this, e.g. 'orders.'",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires (UTC, optional)",
        help_text="From then on the brokers refuse the key. Empty: the key never expires.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args, organization=None, **kwargs):
        super().__init__(*args, **kwargs)
        if organization is not None:
            accounts = key_selectors.service_account_list(organization=organization)
            self.fields["owner"].choices = [("", "You")] + [
                (a.public_id, f"Service account {a.name} ({a.public_id})") for a in accounts
            ]

    def clean(self):
        data = super().clean()
        if data.get("access") and not data.get("topic_prefix"):
            self.add_error("topic_prefix", "A scoped key needs a topic prefix.")
        return data

    def scope(self) -> dict | None:
        access = self.cleaned_data.get("access")
        return {"topic_prefix": self.cleaned_data["topic_prefix"], "access": access} if access else None


def _data_url(text: str) -> str:
    return "data:text/plain;charset=utf-8," + quote(text)


#: A live key with an expiry closer than this is shown as "expiring".
EXPIRING_WITHIN = dt.timedelta(days=7)


def key_status(api_key: ApiKey, now: dt.datetime | None = None) -> str:
    """active / expiring / expired / revoked, for the list's status column."""
    now = now or timezone.now()
    if api_key.revoked_at is not None:
        return "revoked"
    if api_key.expires_at is None:
        return "active"
    if api_key.expires_at <= now:
        return "expired"
    return "expiring" if api_key.expires_at - now <= EXPIRING_WITHIN else "active"


def _secret_page(
    request: HttpRequest,
    cluster: Cluster,
    api_key: ApiKey,
    secret: str,
    *,
    rotated_from: ApiKey | None = None,
) -> HttpResponse:
    """The one response that carries a new key's secret (create and rotate): never cached."""
    registry_url = cluster_selectors.schema_registry_url(cluster, request)
    files = [
        (
            f"kastle-{cluster.name}-{api_key.key}.properties",
            "Java client.properties",
            clientconfig.java_properties(cluster, api_key.key, secret, registry_url=registry_url),
        ),
        (
            f"kastle-{cluster.name}-{api_key.key}.librdkafka.conf",
            "librdkafka config (kcat -F, confluent-kafka)",
            clientconfig.librdkafka_properties(cluster, api_key.key, secret),
        ),
    ]
    response = render(
        request,
        "web/keys/created.html",
        {
            "cluster": cluster,
            "api_key": api_key,
            "secret": secret,
            "rotated_from": rotated_from,
            "downloads": [(name, label, _data_url(text)) for name, label, text in files],
            "nav": "overview",
            "tab": "keys",
        },
        status=201,
    )
    response["Cache-Control"] = "no-store"
    return response


@portal_view()
@require_http_methods(["GET", "POST"])
def api_key_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST or None, organization=cluster.organization)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                owner = form.cleaned_data.get("owner")
                actor, account = key_selectors.key_owner_resolve(
                    organization=cluster.organization,
                    owner={"type": "service_account", "id": owner} if owner else None,
                    actor=Actor.from_request(request),
                )
                api_key, secret = key_services.api_key_create(
                    cluster=cluster,
                    description=form.cleaned_data["description"],
                    actor=actor,
                    service_account=account,
                    scope=form.scope(),
                    expires_at=form.cleaned_data.get("expires_at"),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                return _secret_page(request, cluster, api_key, secret)
        status = 400
    now = timezone.now()
    keys = [(k, key_status(k, now)) for k in key_selectors.api_key_list(cluster=cluster)]
    return render(
        request,
        "web/keys/list.html",
        {
            "cluster": cluster,
            "keys": keys,
            "form": form,
            "can_admin": can(request, Role.ADMIN),
            "nav": "overview",
            "tab": "keys",
        },
        status=status,
    )


@portal_view()
@require_http_methods(["POST"])
def api_key_revoke(request: HttpRequest, cluster: Cluster, key: str) -> HttpResponse:
    api_key = key_selectors.api_key_get(cluster=cluster, key=key)
    if api_key is None:
        raise Http404("No such API key on this cluster.")
    key_services.api_key_revoke(api_key=api_key, actor=Actor.from_request(request))
    messages.success(request, f"API key {key} revoked. Clients using it are disconnected within seconds.")
    return redirect("web:api_keys", cluster_id=cluster.public_id)


OVERLAP_CHOICES = [
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
    ("0", "None: the old key stops working now"),
    ("custom", "Custom"),
]


class ApiKeyRotateForm(forms.Form):
    overlap = forms.ChoiceField(
        label="How long the old key keeps working beside the new one",
        choices=OVERLAP_CHOICES,
        widget=forms.RadioSelect,
        initial="3600",
    )
    overlap_seconds = forms.IntegerField(
        required=False,
        label="Custom overlap (seconds)",
        help_text=f"For a custom overlap: 0 to {key_services.MAX_OVERLAP_SECONDS} seconds (30 days).",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("overlap") == "custom" and data.get("overlap_seconds") is None:
            self.add_error("overlap_seconds", "Give the overlap in seconds.")
        return data

    def seconds(self) -> int:
        overlap = self.cleaned_data["overlap"]
        return self.cleaned_data["overlap_seconds"] if overlap == "custom" else int(overlap)


@portal_view(read=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def api_key_rotate(request: HttpRequest, cluster: Cluster, key: str) -> HttpResponse:
    api_key = key_selectors.api_key_get(cluster=cluster, key=key)
    if api_key is None:
        raise Http404("No such API key on this cluster.")
    form = ApiKeyRotateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                new_key, secret = key_services.api_key_rotate(
                    api_key=api_key, overlap_seconds=form.seconds(), actor=Actor.from_request(request)
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
                status = exc.status_code
            else:
                api_key.refresh_from_db()
                return _secret_page(request, cluster, new_key, secret, rotated_from=api_key)
        else:
            status = 400
    return render(
        request,
        "web/keys/rotate.html",
        {
            "cluster": cluster,
            "api_key": api_key,
            "key_status": key_status(api_key),
            "form": form,
            "nav": "overview",
            "tab": "keys",
        },
        status=status,
    )
