"""REST endpoints: a cluster's Prometheus export (text format, not JSON); alert channels, rules and
notifications (organization-wide)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, renderers, status, viewsets
from rest_framework.response import Response

from accounts.audit import Actor
from accounts.models import Role
from clusters import selectors as cluster_selectors
from controlplane.api.cluster_scope import CLUSTER_PARAM, ClusterScopedMixin
from controlplane.api.tenancy import OrganizationScopedMixin
from controlplane.errors import ValidationFailed
from monitoring import selectors, services
from monitoring.models import AlertRule, Notification, NotificationChannel

from . import serializers as s

#: The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PrometheusTextRenderer(renderers.BaseRenderer):
    """Lets a scraper's `Accept: text/plain` through content negotiation (the export itself is an
    HttpResponse; errors are switched back to JSON in `finalize_response`)."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)


EXPORT_DESCRIPTION = """\
The cluster's metrics in the Prometheus text format, for your own Prometheus to scrape (every
15 s is fine: the figures are collected at most every few seconds and shared between scrapes).

Authenticate with a REST token (`Authorization: Bearer <token>`; any role). The export holds
only this cluster's figures: per-topic bytes and records produced and fetched (the units billing
uses), the same per partition, per-partition storage, log start and end offsets, replicas and
in-sync replicas, consumer lag per group and partition, and requests, errors, throttle time and connections.
`kastle_export_source_up` says which sources answered; a source that did not answer leaves its
series out rather than failing the scrape. docs/monitoring.md lists every metric, and
docs/grafana-dashboard.json is a dashboard for them.
"""


class ClusterMetricsExportViewSet(ClusterScopedMixin, viewsets.ViewSet):
    renderer_classes = [renderers.JSONRenderer, PrometheusTextRenderer]
    roles = {"export": Role.MEMBER}

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):  # an error: the one JSON error shape, whatever was accepted
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="clusters_metrics_export",
        summary="Prometheus export of the cluster's metrics",
        description=EXPORT_DESCRIPTION,
        parameters=[CLUSTER_PARAM],
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="Prometheus text exposition format 0.0.4"
            )
        },
    )
    def export(self, request, cluster_id=None):
        body = selectors.cluster_metrics_export(cluster=self.get_cluster())
        response = HttpResponse(body, content_type=CONTENT_TYPE)
        response["Cache-Control"] = "no-store"
        return response


# --- alerts ----------------------------------------------------------------------------------------
CHANNEL_PARAM = OpenApiParameter(
    "channel_id", str, OpenApiParameter.PATH, description="The notification channel's id (nch-…)"
)
RULE_PARAM = OpenApiParameter(
    "rule_id", str, OpenApiParameter.PATH, description="The alert rule's id (alr-…)"
)


class ChannelViewSet(OrganizationScopedMixin, viewsets.GenericViewSet):
    """Notification channels: where alerts are sent (admins write, members read)."""

    serializer_class = s.ChannelSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "channel_id"
    roles = {"create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN,
             "test": Role.ADMIN, "rotate_secret": Role.ADMIN}  # fmt: skip

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return NotificationChannel.objects.none()
        return selectors.channel_list(organization=self.organization)

    @extend_schema(
        summary="List notification channels",
        description="Your organization's e-mail and webhook channels. Secrets are never listed.",
        responses=s.ChannelSerializer(many=True),
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ChannelSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a notification channel",
        description="`kind` email needs `emails` (up to 10 addresses). `kind` webhook needs a "
        "public http(s) `url`. The answer then includes the signing `secret`, and this is the only "
        "time it is shown. Webhooks are POSTs of JSON, signed with "
        '`Kastle-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. '
        "docs/monitoring.md shows how to verify them.",
        request=s.ChannelCreateSerializer,
        responses={201: s.ChannelCreatedSerializer},
    )
    def create(self, request):
        data = s.ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel, secret = services.channel_create(
            organization=self.organization, actor=Actor.from_request(request), **data.validated_data
        )
        body = {**s.ChannelSerializer(channel).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a notification channel", parameters=[CHANNEL_PARAM])
    def retrieve(self, request, channel_id=None):
        return Response(s.ChannelSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a notification channel",
        description="Rename it, or change its addresses (e-mail) or URL (webhook). Its kind cannot change.",
        parameters=[CHANNEL_PARAM],
        request=s.ChannelUpdateSerializer,
        responses=s.ChannelSerializer,
    )
    def partial_update(self, request, channel_id=None):
        channel = self.get_object()
        data = s.ChannelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = services.channel_update(
            channel=channel, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ChannelSerializer(channel).data)

    @extend_schema(
        summary="Delete a notification channel",
        description="Rules that used it stop notifying it.",
        parameters=[CHANNEL_PARAM],
        responses={204: None},
    )
    def destroy(self, request, channel_id=None):
        services.channel_delete(channel=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Send a test notification",
        description="Sends a test message through the channel right away. The answer says whether "
        "the channel took it (`status` sent) or why not (`last_error`).",
        parameters=[CHANNEL_PARAM],
        request=None,
        responses=s.NotificationSerializer,
    )
    def test(self, request, channel_id=None):
        notification = services.channel_test(channel=self.get_object(), actor=Actor.from_request(request))
        return Response(s.NotificationSerializer(notification).data)

    @extend_schema(
        summary="Rotate a webhook's signing secret",
        description="A new secret signs every notification from now on. The old one stops at once.",
        parameters=[CHANNEL_PARAM],
        request=None,
        responses=s.SecretSerializer,
    )
    def rotate_secret(self, request, channel_id=None):
        secret = services.channel_rotate_secret(channel=self.get_object(), actor=Actor.from_request(request))
        return Response({"secret": secret})


class RuleViewSet(OrganizationScopedMixin, viewsets.GenericViewSet):
    """Alert rules on your clusters and spend (admins write, members read)."""

    serializer_class = s.RuleSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "rule_id"
    roles = {"create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN}

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AlertRule.objects.none()
        return selectors.rule_list(organization=self.organization)

    @extend_schema(
        summary="List alert rules",
        description="Every rule with its state (ok or firing), its last value, and when it was last "
        "evaluated and last notified.",
        responses=s.RuleSerializer(many=True),
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RuleSerializer(page, many=True).data)

    @extend_schema(
        summary="Create an alert rule",
        description="A rule fires while its value is above `threshold`, and it resolves when the value "
        "is back at or below it. Each change notifies the rule's channels once. Kinds and their "
        "units: `consumer_lag`, the total lag of `group_id` (or of any group) in records; "
        "`under_replicated_partitions`, in partitions (always 0 on single-broker clusters, where "
        "each partition's one replica is its ISR); `produce_throttling`, in throttle seconds per "
        "second; `storage`, in GB stored; `spend`, the month-to-date cost as a percentage of the "
        "spend cap (organization-wide, with no `cluster`). Rules are evaluated every 30 s by "
        "default.",
        request=s.RuleCreateSerializer,
        responses={201: s.RuleSerializer},
    )
    def create(self, request):
        data = s.RuleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["cluster"] = self._cluster(values.pop("cluster", None))
        rule = services.rule_create(
            organization=self.organization, actor=Actor.from_request(request), **values
        )
        return Response(s.RuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    def _cluster(self, public_id: str | None):
        if not public_id:
            return None
        cluster = cluster_selectors.cluster_get(organization=self.organization, public_id=public_id)
        if cluster is None:
            raise ValidationFailed(
                "The alert rule is invalid.",
                details={"cluster": [f"No cluster {public_id} in your organization."]},
            )
        return cluster

    @extend_schema(summary="Show an alert rule", parameters=[RULE_PARAM])
    def retrieve(self, request, rule_id=None):
        return Response(s.RuleSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change an alert rule",
        description="Its state is kept. The next evaluation compares the value with the new threshold. "
        "Disabling a rule stops its evaluation.",
        parameters=[RULE_PARAM],
        request=s.RuleUpdateSerializer,
        responses=s.RuleSerializer,
    )
    def partial_update(self, request, rule_id=None):
        rule = self.get_object()
        data = s.RuleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = services.rule_update(rule=rule, actor=Actor.from_request(request), **data.validated_data)
        return Response(s.RuleSerializer(rule).data)

    @extend_schema(summary="Delete an alert rule", parameters=[RULE_PARAM], responses={204: None})
    def destroy(self, request, rule_id=None):
        services.rule_delete(rule=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationListView(OrganizationScopedMixin, generics.GenericAPIView):
    """Notifications sent (or being sent) to your channels, newest first."""

    serializer_class = s.NotificationSerializer

    def get_base_queryset(self):
        return Notification.objects.select_related("rule", "channel")

    @extend_schema(
        operation_id="alerts_notifications_list",
        summary="List notifications",
        description="Each notification has its state: pending (queued, or waiting for a retry), sent, "
        "or failed (after 6 attempts, or a test that did not get through), with its last error "
        "and the exact payload.",
        parameters=[s.NotificationFilterSerializer],
        responses=s.NotificationSerializer(many=True),
    )
    def get(self, request):
        filters = s.NotificationFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = selectors.notification_list(organization=self.organization, **filters.validated_data)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.NotificationSerializer(page, many=True).data)


SUBSCRIPTION_PARAM = OpenApiParameter(
    "name", str, OpenApiParameter.PATH, description="The subscription's name"
)


class ClientViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.ClientSerializer
    roles = {"list": Role.MEMBER}

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        responses=s.ClientSerializer(many=True),
        summary="The clients connected to the cluster, as they report themselves",
        description="Client ids, software names and versions, and the metrics each client pushes "
        "(request latency, throttling, queue time, fetch latency, assigned partitions, ...), for clients "
        "that match a client-metrics subscription and support client telemetry (librdkafka 2.5+, Java 3.7+).",
    )
    def list(self, request, cluster_id=None):
        rows = selectors.client_list(cluster=self.get_cluster())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.ClientSerializer(page, many=True).data)


class ClientMetricsSubscriptionViewSet(ClusterScopedMixin, viewsets.GenericViewSet):
    serializer_class = s.ClientMetricsSubscriptionSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    roles = {"list": Role.MEMBER, "update": Role.ADMIN, "destroy": Role.ADMIN}

    @extend_schema(
        parameters=[CLUSTER_PARAM],
        responses=s.ClientMetricsSubscriptionSerializer(many=True),
        summary="List the client-metrics subscriptions",
        description="Which clients are asked to push which metrics, and how often.",
    )
    def list(self, request, cluster_id=None):
        rows = selectors.client_metrics_subscription_list(cluster=self.get_cluster())
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.ClientMetricsSubscriptionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM, SUBSCRIPTION_PARAM],
        request=s.ClientMetricsSubscriptionSerializer,
        responses=s.ClientMetricsSubscriptionSerializer,
        summary="Create or replace a client-metrics subscription",
        description="Matching clients fetch it at their next subscription refresh and push the named "
        "metrics every interval_ms.",
    )
    def update(self, request, cluster_id=None, name=None):
        cluster = self.get_cluster()  # another tenant's cluster is a 404 before any validation
        data = s.ClientMetricsSubscriptionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body = services.client_metrics_subscription_set(
            cluster=cluster, name=name, actor=Actor.from_request(request), **data.validated_data
        )
        return Response(s.ClientMetricsSubscriptionSerializer(body).data)

    @extend_schema(
        parameters=[CLUSTER_PARAM, SUBSCRIPTION_PARAM],
        responses={204: None},
        summary="Delete a client-metrics subscription",
        description="Matching clients stop pushing the metrics it asked for.",
    )
    def destroy(self, request, cluster_id=None, name=None):
        services.client_metrics_subscription_delete(
            cluster=self.get_cluster(), name=name, actor=Actor.from_request(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
