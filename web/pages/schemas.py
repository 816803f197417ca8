"""Schemas: the cluster's Schema Registry in the portal. Subjects, their versions (with a diff
between two versions), compatibility levels, and forms to register a schema or test one for
compatibility. Reads go through `schemaregistry.selectors`, writes through
`schemaregistry.services`: the functions the registry's REST API calls, never HTTP to itself."""

from __future__ import annotations

import difflib
import json

from django import forms
from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from clusters.models import Cluster
from schemaregistry import selectors, services
from schemaregistry.errors import RegistryError

from ..portal import can, portal_view

TYPES = [("AVRO", "Avro"), ("JSON", "JSON Schema"), ("PROTOBUF", "Protobuf")]


class SchemaForm(forms.Form):
    subject = forms.CharField(
        max_length=255,
        help_text="TopicNameStrategy names a topic's value subject <topic>-value, its key <topic>-key.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    schema_type = forms.ChoiceField(choices=TYPES, initial="AVRO", label="Format")
    schema = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}))

    def body(self) -> dict[str, str]:
        data = self.cleaned_data
        body = {"schema": data["schema"]}
        if data["schema_type"] != "AVRO":
            body["schemaType"] = data["schema_type"]
        return body


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _registry_problem(form: forms.Form, exc: RegistryError) -> None:
    field = "schema" if exc.error_code in (409, 42201) else None
    form.add_error(field, f"{exc.message} (error {exc.error_code})")


@portal_view()
@require_http_methods(["GET", "POST"])
def schema_list(request: HttpRequest, cluster: Cluster) -> HttpResponse:
    here = reverse("web:schemas", kwargs={"cluster_id": cluster.public_id})
    register_form = SchemaForm(request.POST if request.POST.get("action") == "register" else None,
                               prefix="register")
    check_form = SchemaForm(request.POST if request.POST.get("action") == "check" else None, prefix="check")
    verdict = None
    status = 200
    if register_form.is_bound and register_form.is_valid():
        subject = register_form.cleaned_data["subject"]
        try:
            schema_id = services.schema_register(cluster=cluster, subject=subject, body=register_form.body())
        except RegistryError as exc:
            _registry_problem(register_form, exc)
        else:
            flash.success(request, f"Schema registered under {subject} with id {schema_id}.")
            return redirect(f"{here}?subject={subject}")
    if check_form.is_bound and check_form.is_valid():
        subject = check_form.cleaned_data["subject"]
        try:
            state = selectors.registry_state(cluster=cluster)
            problems = selectors.compatibility_test(state, subject, check_form.body())
            verdict = {"subject": subject, "level": state.level(subject), "problems": problems}
        except RegistryError as exc:
            _registry_problem(check_form, exc)
    if request.method == "POST" and verdict is None:
        status = 400

    try:
        state = selectors.registry_state(cluster=cluster)
    except RegistryError as exc:
        context = {"cluster": cluster, "error": f"The Schema Registry cannot be read now: {exc.message}",
                   "tab": "schemas", "nav": "overview"}
        return render(request, "web/schemas/list.html", context, status=503)
    subjects = []
    for name in state.subject_names():
        live = state.versions(name)
        subjects.append({"name": name, "versions": len(live), "latest": live[-1], "level": state.level(name)})
    selected = request.GET.get("subject")
    versions = state.versions(selected) if selected else []
    diff = None
    if versions:
        numbers = [v.version for v in versions]
        try:
            old = int(request.GET.get("from", numbers[-2] if len(numbers) > 1 else numbers[-1]))
            new = int(request.GET.get("to", numbers[-1]))
        except ValueError:
            old = new = numbers[-1]
        by_number = {v.version: v for v in versions}
        if old in by_number and new in by_number and old != new:
            diff = {
                "from": old,
                "to": new,
                "lines": list(difflib.unified_diff(
                    _pretty(by_number[old].schema).splitlines(), _pretty(by_number[new].schema).splitlines(),
                    f"version {old}", f"version {new}", lineterm="",
                )),
            }
    context = {
        "cluster": cluster,
        "subjects": subjects,
        "selected": selected,
        "versions": [(v, _pretty(v.schema)) for v in versions],
        "subject_level": state.level(selected) if selected else None,
        "global_level": state.level(None),
        "schema_count": sum(s["versions"] for s in subjects),
        "diff": diff,
        "register_form": register_form,
        "check_form": check_form,
        "verdict": verdict,
        "can_admin": can(request, Role.ADMIN),
        "nav": "overview",
        "tab": "schemas",
    }
    return render(request, "web/schemas/list.html", context, status=status)
