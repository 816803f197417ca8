"""Confluent Schema Registry's REST API, per cluster under /schema-registry/<cluster id>/.

Plain Django views (not DRF): Confluent's clients expect its own error bodies
({"error_code", "message"}), status codes and media type, which differ from the platform's API.
Each view authenticates the API key, checks its scope and delegates to services/selectors.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from clusters.models import Cluster, ClusterStatus
from controlplane.errors import ServiceError

from .. import errors, selectors, services
from ..auth import Caller, authenticate
from ..formats import FORMATS
from ..state import content_key

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


def _response(body: Any, status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type=MEDIA_TYPE)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="Kastle Schema Registry"'
    return response


def _flag(request: HttpRequest, name: str) -> bool:
    return request.GET.get(name, "false").lower() == "true"


def _body(request: HttpRequest) -> Any:
    if not request.body:
        return {}
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise errors.RegistryError(400, 400, "The request body is not valid JSON") from None


def _detail(exc: Exception) -> str:
    first = exc.args[0] if exc.args else None
    if hasattr(first, "str"):  # a KafkaError
        return first.str()
    return getattr(exc, "message", None) or str(exc)


def endpoint(*methods: str) -> Callable:
    """Resolve the cluster, authenticate, run the handler with Confluent's error handling."""

    def wrap(handler: Callable) -> Callable:
        @csrf_exempt
        @functools.wraps(handler)
        def view(request: HttpRequest, cluster_id: str, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise errors.RegistryError(405, 405, f"HTTP {request.method} is not allowed here")
                cluster = Cluster.objects.filter(public_id=cluster_id).first()
                if cluster is None:  # as a wrong key: nothing tells one tenant of another's clusters
                    raise errors.unauthorized()
                caller = authenticate(cluster, request.headers.get("Authorization"))
                if cluster.status != ClusterStatus.RUNNING or not cluster.bootstrap_servers:
                    raise errors.RegistryError(
                        503,
                        50301,
                        f"Cluster {cluster.public_id} is {cluster.status}; its registry serves "
                        "only while it is RUNNING",
                    )
                result = handler(request, cluster, caller, **kwargs)
            except errors.RegistryError as exc:
                return _response(exc.body(), exc.status)
            except (KafkaException, ServiceError) as exc:  # the cluster's brokers did not answer well
                logger.warning("schema registry %s: %s", cluster_id, exc)
                failure = errors.store_error(_detail(exc))
                return _response(failure.body(), failure.status)
            return result if isinstance(result, HttpResponse) else _response(result)

        return view

    return wrap


# --- root, types, ids ---------------------------------------------------------------------------------
@endpoint("GET")
def root(request, cluster, caller):
    return {}


@endpoint("GET")
def schema_types(request, cluster, caller):
    return sorted(FORMATS)


def _readable_by_id(cluster: Cluster, caller: Caller, schema_id: int):
    state = selectors.registry_state(cluster=cluster)
    uses = [v for v in state.by_id(schema_id) if caller.may_read(v.subject)]
    if not uses:
        raise errors.schema_not_found(f"Schema {schema_id} not found")
    return state, uses


@endpoint("GET")
def schema_by_id(request, cluster, caller, schema_id: int):
    state, uses = _readable_by_id(cluster, caller, schema_id)
    return selectors.schema_body(state, uses[0], fmt=request.GET.get("format"))


@endpoint("GET")
def schema_text_by_id(request, cluster, caller, schema_id: int):
    state, uses = _readable_by_id(cluster, caller, schema_id)
    return HttpResponse(
        selectors.schema_text(state, uses[0], request.GET.get("format")), content_type=MEDIA_TYPE
    )


@endpoint("GET")
def schema_subjects(request, cluster, caller, schema_id: int):
    _, uses = _readable_by_id(cluster, caller, schema_id)
    deleted = _flag(request, "deleted")
    return sorted({v.subject for v in uses if deleted or not v.deleted})


@endpoint("GET")
def schema_versions(request, cluster, caller, schema_id: int):
    _, uses = _readable_by_id(cluster, caller, schema_id)
    deleted = _flag(request, "deleted")
    return [{"subject": v.subject, "version": v.version} for v in uses if deleted or not v.deleted]


# --- subjects -------------------------------------------------------------------------------------------
@endpoint("GET")
def subjects(request, cluster, caller):
    state = selectors.registry_state(cluster=cluster)
    prefix = request.GET.get("subjectPrefix", "")
    names = state.subject_names(deleted=_flag(request, "deleted"))
    return [s for s in names if s.startswith(prefix) and caller.may_read(s)]


@endpoint("GET", "POST", "DELETE")
def subject(request, cluster, caller, subject: str):
    if request.method == "DELETE":
        caller.require_write(subject)
        return services.subject_delete(
            cluster=cluster, subject=subject, permanent=_flag(request, "permanent")
        )
    caller.require_read(subject)
    if request.method == "GET":  # not in Confluent's API; a clear answer instead of a 405
        raise errors.RegistryError(
            405, 405, "Use GET /subjects/{subject}/versions to list a subject's versions"
        )
    state = selectors.registry_state(cluster=cluster)
    deleted = _flag(request, "deleted")
    if not state.versions(subject, deleted=deleted):
        raise errors.subject_not_found(subject)
    parsed = selectors.parse_offered(state, _body(request))
    refs = selectors.reference_dicts(parsed.references)
    key = content_key(parsed.schema_type, parsed.canonical, refs)
    for version in reversed(state.versions(subject, deleted=deleted)):
        if version.content_key() == key:
            return selectors.version_body(state, version)
    raise errors.schema_not_found("Schema not found")


@endpoint("GET", "POST")
def versions(request, cluster, caller, subject: str):
    if request.method == "POST":
        caller.require_write(subject)
        return {"id": services.schema_register(cluster=cluster, subject=subject, body=_body(request))}
    caller.require_read(subject)
    state = selectors.registry_state(cluster=cluster)
    found = state.versions(subject, deleted=_flag(request, "deleted"))
    if not found:
        raise errors.subject_not_found(subject)
    return [v.version for v in found]


@endpoint("GET", "DELETE")
def version(request, cluster, caller, subject: str, version: str):
    if request.method == "DELETE":
        caller.require_write(subject)
        return services.version_delete(
            cluster=cluster, subject=subject, version=version, permanent=_flag(request, "permanent")
        )
    caller.require_read(subject)
    state = selectors.registry_state(cluster=cluster)
    found = selectors.version_get(state, subject, version, deleted=_flag(request, "deleted"))
    return selectors.version_body(state, found, fmt=request.GET.get("format"))


@endpoint("GET")
def version_schema(request, cluster, caller, subject: str, version: str):
    caller.require_read(subject)
    state = selectors.registry_state(cluster=cluster)
    found = selectors.version_get(state, subject, version, deleted=_flag(request, "deleted"))
    return HttpResponse(
        selectors.schema_text(state, found, request.GET.get("format")), content_type=MEDIA_TYPE
    )


@endpoint("GET")
def referenced_by(request, cluster, caller, subject: str, version: str):
    caller.require_read(subject)
    state = selectors.registry_state(cluster=cluster)
    found = selectors.version_get(state, subject, version, deleted=True)
    return state.referenced_by(subject, found.version)


# --- compatibility --------------------------------------------------------------------------------------
def _compatibility(request, cluster, caller, subject: str, version: str | None):
    caller.require_read(subject)
    state = selectors.registry_state(cluster=cluster)
    messages = selectors.compatibility_test(state, subject, _body(request), version)
    body: dict[str, Any] = {"is_compatible": not messages}
    if _flag(request, "verbose"):
        body["messages"] = messages
    return body


@endpoint("POST")
def compatibility_version(request, cluster, caller, subject: str, version: str):
    return _compatibility(request, cluster, caller, subject, version)


@endpoint("POST")
def compatibility_all(request, cluster, caller, subject: str):
    return _compatibility(request, cluster, caller, subject, None)


# --- config and mode ---------------------------------------------------------------------------------
@endpoint("GET", "PUT", "DELETE")
def config(request, cluster, caller, subject: str | None = None):
    if subject is None and request.method != "GET":
        caller.require_unscoped("changing the global compatibility level")
    if subject is not None:
        (caller.require_read if request.method == "GET" else caller.require_write)(subject)
    if request.method == "PUT":
        level = services.config_set(cluster=cluster, subject=subject, body=_body(request))
        return {"compatibility": level}
    if request.method == "DELETE":
        return {"compatibilityLevel": services.config_delete(cluster=cluster, subject=subject)}
    state = selectors.registry_state(cluster=cluster)
    if subject is not None and subject not in state.config and not _flag(request, "defaultToGlobal"):
        raise errors.subject_config_not_found(subject)
    return {"compatibilityLevel": state.level(subject)}


@endpoint("GET", "PUT", "DELETE")
def mode(request, cluster, caller, subject: str | None = None):
    if subject is None and request.method != "GET":
        caller.require_unscoped("changing the global mode")
    if subject is not None:
        (caller.require_read if request.method == "GET" else caller.require_write)(subject)
    if request.method == "PUT":
        return {
            "mode": services.mode_set(
                cluster=cluster, subject=subject, body=_body(request), force=_flag(request, "force")
            )
        }
    if request.method == "DELETE":
        if subject is None:
            raise errors.RegistryError(405, 405, "The global mode cannot be deleted; set it to READWRITE")
        return {"mode": services.mode_delete(cluster=cluster, subject=subject)}
    state = selectors.registry_state(cluster=cluster)
    if subject is not None and subject not in state.mode and not _flag(request, "defaultToGlobal"):
        raise errors.subject_mode_not_found(subject)
    return {"mode": state.mode_of(subject)}


@endpoint("GET")
def contexts(request, cluster, caller):
    return ["."]
