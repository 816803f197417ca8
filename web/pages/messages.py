"""The message browser: read a topic's messages (bounded), and produce one with key and headers."""

from __future__ import annotations

from datetime import UTC
from urllib.parse import urlencode

from django import forms
from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.audit import Actor
from accounts.models import Role
from clusters.models import Cluster
from controlplane.errors import ServiceError
from schemaregistry import decoding
from topics import messages as topic_messages
from topics import selectors as topic_selectors

from ..portal import apply_service_error, can, friendly, portal_view

MODES = [("latest", "Latest messages"), ("offset", "From an offset"), ("timestamp", "From a time (UTC)")]


class BrowseForm(forms.Form):
    topic = forms.ChoiceField(choices=[])
    partition = forms.TypedChoiceField(choices=[], coerce=int, empty_value=None, required=False)
    mode = forms.ChoiceField(choices=MODES, initial="latest", widget=forms.RadioSelect, label="Start from")
    count = forms.IntegerField(
        min_value=1,
        max_value=topic_messages.MAX_MESSAGES,
        initial=topic_messages.DEFAULT_MESSAGES,
        label="How many",
    )
    offset = forms.IntegerField(min_value=0, required=False, help_text="Used with 'From an offset'.")
    timestamp = forms.DateTimeField(
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        label="Time (UTC)",
        help_text="Used with 'From a time'.",
    )

    def __init__(self, *args, topics: list[dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].choices = [(t["name"], t["name"]) for t in topics]
        most = max((t["partitions_count"] for t in topics), default=1)
        self.fields["partition"].choices = [("", "All partitions")] + [(p, str(p)) for p in range(most)]

    def clean(self):
        data = super().clean()
        if data.get("mode") == "offset" and data.get("offset") is None:
            self.add_error("offset", "Give an offset to start from.")
        if data.get("mode") == "timestamp" and data.get("timestamp") is None:
            self.add_error("timestamp", "Give a date and time to start from.")
        return data


class ProduceForm(forms.Form):
    topic = forms.ChoiceField(choices=[])
    partition = forms.TypedChoiceField(
        choices=[], coerce=int, empty_value=None, required=False, help_text="Empty: chosen by the key."
    )
    key = forms.CharField(required=False, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    value = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4}))
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "source: portal"}),
        help_text="One header per line, as name: value.",
    )

    def __init__(self, *args, topics: list[dict], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["topic"].choices = [(t["name"], t["name"]) for t in topics]
        most = max((t["partitions_count"] for t in topics), default=1)
        self.fields["partition"].choices = [("", "Any")] + [(p, str(p)) for p in range(most)]

    def clean_headers(self) -> list[tuple[str, bytes]]:
        out = []
        for number, line in enumerate(self.cleaned_data["headers"].splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise forms.ValidationError(f"Line {number}: write a header as name: value.")
            out.append((name.strip(), value.strip().encode()))
        return out


@portal_view()
@require_http_methods(["GET", "POST"])
def message_browser(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    topics = topic_selectors.topic_list(cluster=cluster)
    can_produce = can(request, Role.ADMIN)
    produce_form = ProduceForm(request.POST or None, topics=topics, prefix="produce")
    status = 200
    if request.method == "POST":
        if produce_form.is_valid():
            data = produce_form.cleaned_data
            try:
                partition, offset = topic_messages.produce(
                    cluster=cluster,
                    topic=data["topic"],
                    key=data["key"].encode() if data["key"] else None,
                    value=data["value"].encode(),
                    headers=data["headers"],
                    partition=data["partition"],
                    actor=Actor.from_request(request),
                )
            except ServiceError as exc:
                apply_service_error(produce_form, exc)
            else:
                flash.success(
                    request, f"Message produced to {data['topic']}, partition {partition}, offset {offset}."
                )
                query = urlencode({"topic": data["topic"], "mode": "latest", "count": 20})
                return redirect(
                    reverse("web:messages", kwargs={"cluster_id": cluster.public_id}) + "?" + query
                )
        status = 400

    selected = request.GET.get("topic") or (
        produce_form.data.get("produce-topic") if request.method == "POST" else None
    )
    browse_data = None
    if "topic" in request.GET:
        # A link to a topic's messages ("Browse messages") names the topic only: the rest are defaults.
        browse_data = request.GET.copy()
        browse_data.setdefault("mode", "latest")
        browse_data.setdefault("count", str(topic_messages.DEFAULT_MESSAGES))
    browse_form = BrowseForm(browse_data, topics=topics, initial={"topic": selected})
    results = None
    error = None
    if browse_data is not None and browse_form.is_valid():
        data = browse_form.cleaned_data
        ts = data.get("timestamp")
        if ts is not None and ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        try:
            results = topic_messages.browse(
                cluster=cluster,
                topic=data["topic"],
                partition=data["partition"],
                mode=data["mode"],
                count=data["count"],
                offset=data.get("offset"),
                timestamp=ts,
            )
        except ServiceError as exc:
            if exc.details and any(k in browse_form.fields for k in exc.details):
                apply_service_error(browse_form, exc)
            else:
                error = friendly(exc)
        else:
            # values in the Schema Registry wire format are shown decoded, with their schema
            for message, decoded in zip(
                results, decoding.decode_all(cluster=cluster, values=[m.value for m in results]), strict=True
            ):
                message.schema = decoded
    if selected and not produce_form.is_bound:
        produce_form.initial["topic"] = selected
    context = {
        "cluster": cluster,
        "topics": topics,
        "browse_form": browse_form,
        "produce_form": produce_form,
        "results": results,
        "error": error,
        "can_produce": can_produce,
        "nav": "overview",
        "tab": "messages",
    }
    if request.htmx and request.method == "GET":
        return render(request, "web/messages/_results.html", context)
    return render(request, "web/messages/browser.html", context, status=status)
