"""The cross-tenant matrix: every REST endpoint and portal URL, as the wrong tenant, as a member
without the role, and unauthenticated; over Kafka, a key of tenant A against tenant B's broker.

Endpoints are enumerated from Django's URL resolver (the REST API under /api/v1/ and the
portal's web/urls.py), so a new endpoint is covered without editing this file. Path arguments
are filled with tenant A's objects (cluster, API key, token, member, invoice, service account);
arguments that name broker-side objects (topics, groups, ACLs) get plausible names, since the
cluster in the same URL is what is scoped.

REST, for every route and method:
- unauthenticated: 401 with the error shape (public endpoints excepted: sign-up, plans, schema);
- tenant B's owner, on a route naming A's objects: 404 (never a 403 that leaks existence);
  on a list route: nothing of A's in the body;
- A's members without the role a write needs: 403 with ``missing_role`` naming the role. Which
  writes members may do is listed here (``MEMBER_WRITES``), so a new one is a conscious choice.

Portal: unauthenticated -> redirect to the log-in page; B -> 404 for A's cluster pages; a
member posting to a write -> the 403 page naming the role.
"""

from __future__ import annotations

import re
import time

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.platform.api import Tenant

pytestmark = pytest.mark.django_db

# REST routes anyone may call (no tenant data behind them).
PUBLIC_REST = {"signup", "plan-list", "plan-detail", "schema", "api-docs", "api-redoc"}
# Per-user endpoints: they act on the caller, never on another tenant's objects.
SELF_REST = {"me", "me-password", "token-list"}
# (route name, method) that a plain member may call although it writes.
MEMBER_WRITES = {
    ("me-password", "post"),  # your own password
    ("token-list", "post"),  # a token for yourself (password log-in)
    ("token-detail", "delete"),  # revoking one of your own tokens
}
# Portal pages that do not need a log-in.
PUBLIC_PORTAL = {"signup", "login", "logout", "invite"}
# Portal writes a plain member may make.
PORTAL_MEMBER_WRITES = {"password", "tokens"}  # your own password, your own REST tokens


def _walk(patterns, prefix: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def _route_to_path(route: str, values: dict[str, str]) -> str:
    """'api/v1/^clusters/(?P<id>[^/]+)$' or 'clusters/<str:cluster_id>/' -> a concrete path."""
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    return "/" + route


def _params(route: str) -> list[str]:
    return re.findall(r"\(\?P<(\w+)>", route) + re.findall(r"<(?:\w+:)?(\w+)>", route)


def _rest_methods(pattern: URLPattern) -> dict[str, str | None]:
    """HTTP method -> viewset action (None for plain API views)."""
    cb = pattern.callback
    actions = getattr(cb, "actions", None)
    if actions:  # DRF adds 'head' to this dict on the first GET; HEAD is GET's twin
        return {m: a for m, a in actions.items() if m not in ("head", "options")}
    cls = getattr(cb, "cls", None) or getattr(cb, "view_class", None)
    if cls is None:
        return {}
    return {m: None for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)}


def rest_routes() -> list[tuple[str, str, URLPattern]]:
    out = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if route.startswith("api/v1/"):
            out.append((route, pattern.name, pattern))
    return out


def portal_routes() -> list[tuple[str, str]]:
    from web import urls as web_urls

    return [(str(p.pattern), p.name) for p in web_urls.urlpatterns]


class World:
    """Tenant A (owner, admin, member) with one of everything; tenant B's owner."""

    def __init__(self) -> None:
        from accounts.audit import Actor
        from tests.platform.factories import ApiKeyFactory, ClusterFactory

        self.a = Tenant("owner")
        self.a_admin = self.a.member("admin")
        self.a_member = self.a.member("member")
        self.b = Tenant("owner")
        # not RUNNING: if a wall failed, a broker-backed endpoint would answer 409 at once instead
        # of dialling a broker that is not there
        self.cluster = ClusterFactory(organization=self.a.organization, status="PROVISIONING")
        self.b_cluster = ClusterFactory(organization=self.b.organization, status="PROVISIONING")
        self.key = ApiKeyFactory(cluster=self.cluster)
        self.secrets = [self.cluster.public_id, self.key.key, self.a.organization.public_id
                        if hasattr(self.a.organization, "public_id") else str(self.a.organization.pk),
                        self.a.user.email]
        self.values: dict[str, str] = {
            "cluster_id": self.cluster.public_id,
            "key": self.key.key,
            "name": "orders",
            "group_id": "billing-consumers",
            "acl_id": "1",
            "sa_id": "sa-missing",
            "token": "no-such-invitation",
        }
        self.invoice_id = self._invoice()
        sa = self._service_account(Actor(user=self.a.user))
        if sa is not None:
            self.values["sa_id"] = sa
            self.secrets.append(sa)
        self.secrets.append(self.a.token.public_id)
        for param, public_id in self._alerts(Actor(user=self.a.user)).items():
            self.values[param] = public_id
            self.secrets.append(public_id)
        self.invitation_id = self._invitation()

    def _invoice(self) -> str | None:
        import datetime

        from django.db import transaction

        from metering.models import Invoice

        utc = datetime.UTC
        try:
            with transaction.atomic():
                return Invoice.objects.create(
                    organization=self.a.organization,
                    month=datetime.date(2026, 1, 1),
                    period_end=datetime.datetime(2026, 2, 1, tzinfo=utc),
                ).public_id
        except Exception:  # the model's required fields changed: the id stays unknown (still a 404)
            return None

    def _invitation(self) -> str:
        from accounts.audit import Actor
        from accounts.services import invitation_create

        invitation, _ = invitation_create(
            organization=self.a.organization,
            role="member",
            email="invitee@example.com",
            inviter_role="owner",
            actor=Actor(user=self.a.user),
        )
        return str(invitation.pk)

    def _service_account(self, actor) -> str | None:
        from django.db import transaction

        try:
            from iam.models import ServiceAccount

            with transaction.atomic():
                return ServiceAccount.objects.create(organization=self.a.organization, name="etl").public_id
        except Exception:  # service accounts are being built: the id stays unknown (still a 404)
            return None

    def _alerts(self, actor) -> dict[str, str]:
        """A's notification channel and alert rule (ids for alerts/channels/<id>, alerts/rules/<id>)."""
        from decimal import Decimal

        from monitoring import services

        channel, _ = services.channel_create(
            organization=self.a.organization, name="oncall", kind="email", emails=["a@x.example"], actor=actor
        )
        rule = services.rule_create(
            organization=self.a.organization, name="lag", kind="consumer_lag", threshold=Decimal(10),
            cluster=self.cluster, channels=[channel.public_id], actor=actor,
        )  # fmt: skip
        return {"channel_id": channel.public_id, "rule_id": rule.public_id}

    def value(self, route_name: str, param: str) -> str:
        if param in self.values:
            return self.values[param]
        if param == "id":
            if route_name.startswith("member"):
                return self.a_member.user.public_id
            if route_name.startswith("token"):
                return self.a.token.public_id
            if route_name.startswith("invitation"):
                return self.invitation_id
            if route_name.startswith("billing-invoice"):
                return self.invoice_id or "inv-missing"
            return self.cluster.public_id  # clusters/<id>, clusters/<id>/ca.pem
        if param == "pk":
            return self.cluster.public_id
        raise KeyError(f"no value for {param} in {route_name}: add one to World.value")

    def path(self, route: str, name: str) -> str:
        values = {p: self.value(name, p) for p in _params(route)}
        return _route_to_path(route, values)


def _call(client, method: str, path: str):
    kwargs = {"format": "json"} if method in ("post", "put", "patch") else {}
    if method in ("post", "put", "patch"):
        kwargs["data"] = {}
    return getattr(client, method)(path, **kwargs)


def _required_role(pattern: URLPattern, method: str, action: str | None, request) -> str | None:
    cb = pattern.callback
    cls = getattr(cb, "cls", None)
    if cls is None or not hasattr(cls, "required_role"):
        return None
    view = cls()
    view.action = action
    view.request = request
    view.kwargs = {}
    view.format_kwarg = None
    return view.required_role(request)


def test_rest_matrix(django_capture_on_commit_callbacks) -> None:
    from rest_framework.test import APIClient, APIRequestFactory

    started = time.monotonic()
    w = World()
    anon = APIClient()
    problems: list[str] = []
    checked = {"anon": 0, "wrong_tenant": 0, "role": 0, "list": 0}
    factory = APIRequestFactory()
    routes = rest_routes()
    assert len(routes) >= 25, [r[1] for r in routes]

    for route, name, pattern in routes:
        methods = _rest_methods(pattern)
        if not methods or name in PUBLIC_REST:
            continue
        path = w.path(route, name)
        has_object = bool(_params(route))
        for method, action in methods.items():
            with django_capture_on_commit_callbacks(execute=False):
                # (c) unauthenticated -> 401
                if (name, method) not in {("token-list", "post")}:
                    r = _call(anon, method, path)
                    checked["anon"] += 1
                    if r.status_code != 401:
                        problems.append(f"anonymous {method.upper()} {path} -> {r.status_code}, want 401")
                    elif not r.content or set(r.json()) != {"error"}:
                        problems.append(f"anonymous {method.upper()} {path}: not the error shape")
                # (a) the wrong tenant
                if name not in SELF_REST:
                    r = _call(w.b.client, method, path)
                    if has_object:
                        checked["wrong_tenant"] += 1
                        if r.status_code != 404:
                            problems.append(
                                f"tenant B {method.upper()} {path} (A's object) -> {r.status_code}, "
                                f"want 404: {r.content[:200]!r}"
                            )
                    elif method == "get":
                        checked["list"] += 1
                        body = r.content.decode()
                        leaked = [s for s in w.secrets if s and s in body]
                        if r.status_code >= 500 or leaked:
                            problems.append(f"tenant B GET {path} -> {r.status_code}, shows A's {leaked}")
                # (b) members without the role
                if method == "get":
                    continue
                request = factory.generic(method.upper(), path)
                required = _required_role(pattern, method, action, request)
                for who, tenant in (("member", w.a_member), ("admin", w.a_admin)):
                    if required is None or (name, method) in MEMBER_WRITES:
                        break
                    from accounts.models import role_at_least

                    if role_at_least(who, required):
                        continue
                    checked["role"] += 1
                    r = _call(tenant.client, method, path)
                    if r.status_code != 403:
                        problems.append(f"{who} {method.upper()} {path} -> {r.status_code}, want 403")
                        continue
                    err = r.json().get("error", {})
                    if err.get("code") != "missing_role" or required not in err.get("message", ""):
                        problems.append(f"{who} {method.upper()} {path}: 403 not naming {required}: {err}")
                if required is not None and required == "member" and (name, method) not in MEMBER_WRITES:
                    problems.append(f"{method.upper()} {path} lets plain members write: "
                                    "add it to MEMBER_WRITES if that is intended")
    assert checked["anon"] > 40 and checked["wrong_tenant"] > 20 and checked["role"] > 15, checked
    assert not problems, "\n".join(problems)
    assert time.monotonic() - started < 60


def test_portal_matrix(client) -> None:
    from django.test import Client

    started = time.monotonic()
    w = World()
    b = Client()
    b.force_login(w.b.user)
    member = Client()
    member.force_login(w.a_member.user)
    problems: list[str] = []
    login_url = "/login/"
    routes = portal_routes()
    assert len(routes) >= 20
    writes = 0
    for route, name in routes:
        if name in PUBLIC_PORTAL:
            continue
        path = w.path(route, name)
        # (c) unauthenticated: GET and POST go to the log-in page
        for method in ("get", "post"):
            r = getattr(client, method)(path)
            if r.status_code != 302 or not r["Location"].startswith(login_url):
                problems.append(f"anonymous {method.upper()} {path} -> {r.status_code} "
                                f"{r.get('Location')}, want a redirect to {login_url}")
        # (a) the wrong tenant: A's cluster pages are 404s, read or write
        if "cluster_id" in route:
            for method in ("get", "post"):
                r = getattr(b, method)(path)
                if r.status_code != 404:
                    problems.append(f"tenant B {method.upper()} {path} -> {r.status_code}, want 404")
        # (b) a member posting to a write
        if name not in PORTAL_MEMBER_WRITES:
            r = member.post(path)
            if r.status_code == 405:
                continue  # a read-only page
            writes += 1
            if r.status_code != 403:
                problems.append(f"member POST {path} -> {r.status_code}, want the 403 page")
            elif b"admin" not in r.content.lower() and b"owner" not in r.content.lower():
                problems.append(f"member POST {path}: the 403 page does not name the role")
    assert writes >= 8, writes
    assert not problems, "\n".join(problems)
    assert time.monotonic() - started < 60


# --- over Kafka ------------------------------------------------------------------------------

@pytest.fixture
def broker_factory(tmp_path_factory):
    """Real brokerd processes (tests/brokerd/conftest.py's Broker), stopped at teardown."""
    from tests.brokerd.conftest import Broker

    started: list = []

    def make(credentials: dict | None = None, **options: object):
        b = Broker(tmp_path_factory.mktemp("brokerd"), **options)
        if credentials is not None:  # a credentials file as the control plane renders it
            from provisioning import brokerconf

            brokerconf.write_credentials(b.credentials_path, credentials)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        try:
            b.stop()
        except Exception:
            b.kill()


def _auth_result(broker, user: str, password: str, mechanism: str, timeout: float = 1.5) -> str:
    """'ok' once metadata arrives, '_AUTHENTICATION' if the client reported an authentication failure
    (librdkafka may report the broker closing the connection too), else the errors seen."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    client = AdminClient({
        "bootstrap.servers": broker.sasl_bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        "error_cb": errors.append,
        "log_level": 0,
    })
    try:
        client.list_topics(timeout=timeout)
        return "ok"
    except KafkaException as exc:
        deadline = time.monotonic() + 3
        while not errors and time.monotonic() < deadline:
            client.poll(0.2)  # error_cb is served by poll
        names = [e.name() for e in errors] + [exc.args[0].name()]
        return "_AUTHENTICATION" if "_AUTHENTICATION" in names else ",".join(names)


def test_key_of_tenant_a_fails_on_tenant_b_broker(broker_factory) -> None:
    """Each cluster's brokerd gets its own credentials file, rendered by the control plane from that
    cluster's keys only: A's key authenticates on A's broker and fails on B's (PLAIN and both
    SCRAMs). The internal user has the same name on every cluster, but its password derives from
    the cluster id, so A's internal credential does not open B's broker either."""
    from iam import selectors as iam_selectors
    from tests.platform.factories import ApiKeyFactory, ClusterFactory, OrganizationFactory

    cluster_a = ClusterFactory(organization=OrganizationFactory())
    cluster_b = ClusterFactory(organization=OrganizationFactory())
    secret_a, secret_b = "secret-of-a-" + "a" * 40, "secret-of-b-" + "b" * 40
    key_a = ApiKeyFactory(cluster=cluster_a, key="AKEYAAAAAAAAAAAA", secret=secret_a)
    key_b = ApiKeyFactory(cluster=cluster_b, key="BKEYBBBBBBBBBBBB", secret=secret_b)
    entries_a = iam_selectors.cluster_credential_entries(cluster=cluster_a)
    entries_b = iam_selectors.cluster_credential_entries(cluster=cluster_b)
    assert key_a.key in entries_a and key_a.key not in entries_b and key_b.key not in entries_a
    a = broker_factory(sasl=True, users={}, credentials=entries_a)
    b = broker_factory(sasl=True, users={}, credentials=entries_b)

    assert _auth_result(a, key_a.key, secret_a, "SCRAM-SHA-256", 10) == "ok"  # control
    assert _auth_result(b, key_b.key, secret_b, "PLAIN", 10) == "ok"
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        assert _auth_result(b, key_a.key, secret_a, mechanism) == "_AUTHENTICATION", mechanism
    internal = cluster_a.internal_username
    assert internal == cluster_b.internal_username
    assert _auth_result(a, internal, cluster_a.internal_password(), "SCRAM-SHA-512", 10) == "ok"
    assert _auth_result(b, internal, cluster_a.internal_password(), "SCRAM-SHA-512") == "_AUTHENTICATION"


def test_brokerd_does_not_inherit_the_control_plane_secrets(monkeypatch) -> None:
    """A broker process serves hostile input from the network: if it were compromised it must not
    learn SECRET_KEY (every cluster's internal credential derives from it) or the database URL.
    brokerd read none of these, but the worker passed it its whole environment."""
    from provisioning import supervisor

    monkeypatch.setenv("SECRET_KEY", "worker-secret-key")
    monkeypatch.setenv("DATABASE_URL", "postgres://kastle:pw@db/kastle")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("KASTLE_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pw")
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = supervisor.brokerd_env()
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "KASTLE_SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                 "DJANGO_SETTINGS_MODULE"):
        assert name not in env, name
    assert "worker-secret-key" not in "".join(env.values())
    assert env["LANG"] == "C.UTF-8" and env["PYTHONPATH"]
