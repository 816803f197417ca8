"""Alerts: rules on your clusters and spend, the channels that deliver them, a test button, and the
latest notifications. Admins change them; members see them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors as cluster_selectors
from controlplane.errors import ServiceError
from monitoring import selectors, services
from monitoring.models import ChannelKind, RuleKind

from ..portal import apply_service_error, can, portal_view

RULE_HELP = (
    "Units of the threshold: consumer lag in records, under-replicated partitions in partitions, "
    "produce throttling in throttle seconds per second, storage in GB, spend in percent of your "
    "spend cap. A rule fires while its value is above the threshold."
)


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=64)
    kind = forms.ChoiceField(choices=ChannelKind.choices, widget=forms.RadioSelect, initial=ChannelKind.EMAIL)
    emails = forms.CharField(
        required=False, max_length=2000, label="E-mail addresses", help_text="E-mail: comma-separated"
    )
    url = forms.CharField(
        required=False, max_length=500, label="Webhook URL", help_text="Webhook: receives a signed JSON POST"
    )


class RuleForm(forms.Form):
    name = forms.CharField(max_length=64)
    kind = forms.ChoiceField(choices=RuleKind.choices, help_text=RULE_HELP)
    cluster = forms.ChoiceField(required=False, help_text="Every kind but spend watches one cluster")
    threshold = forms.DecimalField(max_digits=24, decimal_places=6, min_value=0)
    group_id = forms.CharField(
        required=False,
        max_length=255,
        label="Consumer group",
        help_text="Consumer lag: empty means any group",
    )
    channels = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, clusters=(), channels=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cluster"].choices = [("", "— none (spend) —")] + [
            (c.public_id, f"{c.name} ({c.public_id})") for c in clusters
        ]
        self.fields["channels"].choices = [(c.public_id, f"{c.name} ({c.kind})") for c in channels]


@portal_view()
@require_http_methods(["GET", "POST"])
def alerts(request: HttpRequest) -> HttpResponse:
    org = request.organization
    clusters = list(cluster_selectors.cluster_list(organization=org))
    channels = list(selectors.channel_list(organization=org))
    channel_form = ChannelForm()
    rule_form = RuleForm(clusters=clusters, channels=channels)
    secret = None
    status = 200
    if request.method == "POST":
        actor = Actor.from_request(request)
        action = request.POST.get("action")
        try:
            if action == "create_channel":
                channel_form = ChannelForm(request.POST)
                if channel_form.is_valid():
                    data = channel_form.cleaned_data
                    emails = [e for e in data["emails"].replace(";", ",").split(",") if e.strip()]
                    channel, secret = services.channel_create(
                        organization=org, name=data["name"], kind=data["kind"], emails=emails,
                        url=data["url"], actor=actor,
                    )  # fmt: skip
                    if secret is None:
                        messages.success(request, f"Channel {channel.name} created.")
                        return redirect("web:alerts")
                    channels.append(channel)
                    channel_form = ChannelForm()
                    rule_form = RuleForm(clusters=clusters, channels=channels)
                else:
                    status = 400
            elif action == "create_rule":
                rule_form = RuleForm(request.POST, clusters=clusters, channels=channels)
                if rule_form.is_valid():
                    data = rule_form.cleaned_data
                    cluster = next((c for c in clusters if c.public_id == data["cluster"]), None)
                    rule = services.rule_create(
                        organization=org, name=data["name"], kind=data["kind"], threshold=data["threshold"],
                        cluster=cluster, group_id=data["group_id"], channels=data["channels"], actor=actor,
                    )  # fmt: skip
                    messages.success(request, f"Rule {rule.name} created; it is evaluated within a minute.")
                    return redirect("web:alerts")
                status = 400
            elif action in ("test_channel", "delete_channel"):
                channel = selectors.channel_get(organization=org, public_id=request.POST.get("channel", ""))
                if channel is None:
                    raise Http404("No such channel in your organization.")
                if action == "delete_channel":
                    services.channel_delete(channel=channel, actor=actor)
                    messages.success(request, f"Channel {channel.name} deleted.")
                else:
                    sent = services.channel_test(channel=channel, actor=actor)
                    if sent.status == "sent":
                        messages.success(request, f"Test notification sent to {channel.name}.")
                    else:
                        messages.error(request, f"{channel.name} did not take the test: {sent.last_error}")
                return redirect("web:alerts")
            elif action in ("delete_rule", "enable_rule", "disable_rule"):
                rule = selectors.rule_get(organization=org, public_id=request.POST.get("rule", ""))
                if rule is None:
                    raise Http404("No such rule in your organization.")
                if action == "delete_rule":
                    services.rule_delete(rule=rule, actor=actor)
                    messages.success(request, f"Rule {rule.name} deleted.")
                else:
                    services.rule_update(rule=rule, enabled=action == "enable_rule", actor=actor)
                    messages.success(
                        request, f"Rule {rule.name} {'enabled' if rule.enabled else 'disabled'}."
                    )
                return redirect("web:alerts")
            else:
                status = 400
                messages.error(request, "Unknown action.")
        except ServiceError as exc:
            apply_service_error(rule_form if action == "create_rule" else channel_form, exc)
            status = exc.status_code
    response = render(
        request,
        "web/alerts/index.html",
        {
            "nav": "alerts",
            "rules": selectors.rule_list(organization=org),
            "channels": channels,
            "notifications": selectors.notification_list(organization=org)[:20],
            "channel_form": channel_form,
            "rule_form": rule_form,
            "secret": secret,
            "can_admin": can(request, Role.ADMIN),
        },
        status=201 if secret else status,
    )
    if secret:
        response["Cache-Control"] = "no-store"
    return response
