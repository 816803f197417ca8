from django.urls import path

from . import views

export = views.ClusterMetricsExportViewSet.as_view({"get": "export"})
channels = views.ChannelViewSet.as_view({"get": "list", "post": "create"})
channel = views.ChannelViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
channel_test = views.ChannelViewSet.as_view({"post": "test"})
channel_rotate = views.ChannelViewSet.as_view({"post": "rotate_secret"})
rules = views.RuleViewSet.as_view({"get": "list", "post": "create"})
rule = views.RuleViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})
clients = views.ClientViewSet.as_view({"get": "list"})
subscriptions = views.ClientMetricsSubscriptionViewSet.as_view({"get": "list"})
subscription = views.ClientMetricsSubscriptionViewSet.as_view({"put": "update", "delete": "destroy"})

urlpatterns = [
    path("clusters/<str:cluster_id>/clients", clients, name="cluster-client-list"),
    path(
        "clusters/<str:cluster_id>/client-metrics-subscriptions",
        subscriptions,
        name="client-metrics-subscription-list",
    ),
    path(
        "clusters/<str:cluster_id>/client-metrics-subscriptions/<str:name>",
        subscription,
        name="client-metrics-subscription-detail",
    ),
    path("clusters/<str:cluster_id>/metrics/export", export, name="cluster-metrics-export"),
    path("alerts/channels", channels, name="alert-channel-list"),
    path("alerts/channels/<str:channel_id>", channel, name="alert-channel-detail"),
    path("alerts/channels/<str:channel_id>/test", channel_test, name="alert-channel-test"),
    path(
        "alerts/channels/<str:channel_id>/rotate-secret", channel_rotate, name="alert-channel-rotate-secret"
    ),
    path("alerts/rules", rules, name="alert-rule-list"),
    path("alerts/rules/<str:rule_id>", rule, name="alert-rule-detail"),
    path("alerts/notifications", views.NotificationListView.as_view(), name="alert-notification-list"),
]
