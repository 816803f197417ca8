"""API keys: list, create (the secret is shown once, with ready client config downloads), revoke."""

from __future__ import annotations

from urllib.parse import quote

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from controlplane.errors import ServiceError
from iam import selectors as key_selectors
from iam import services as key_services

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


@portal_view()
@require_http_methods(["GET", "POST"])
def api_key_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST or None, organization=cluster.organization)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                owner = form.cleaned_data.get("owner")
                api_key, secret = key_services.api_key_create(
                    cluster=cluster,
                    description=form.cleaned_data["description"],
                    actor=Actor.from_request(request),
                    service_account=(
                        key_selectors.service_account_get(organization=cluster.organization, public_id=owner)
                        if owner
                        else None
                    ),
                    scope=form.scope(),
                )
            except ServiceError as exc:
                apply_service_error(form, exc)
            else:
                files = [
                    (
                        f"kastle-{cluster.name}-{api_key.key}.properties",
                        "Java client.properties",
                        clientconfig.java_properties(cluster, api_key.key, secret),
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
                        "downloads": [(name, label, _data_url(text)) for name, label, text in files],
                        "nav": "overview",
                        "tab": "keys",
                    },
                    status=201,
                )
                response["Cache-Control"] = "no-store"
                return response
        status = 400
    keys = key_selectors.api_key_list(cluster=cluster)
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
