from django.urls import path

from . import views
from .pages import (
    access,
    account,
    alerts,
    billing,
    clients,
    clusters,
    groups,
    keys,
    messages,
    schemas,
    topics,
    transactions,
)

app_name = "web"

C = "clusters/<str:cluster_id>/"

urlpatterns = [
    path("", clusters.cluster_list, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    # account and organization
    path("account/password/", account.password_change, name="password"),
    path("organization/", account.organization_settings, name="settings"),
    path("organization/tokens/", account.tokens, name="tokens"),
    path("organization/audit/", account.audit_log, name="audit"),
    path("invite/<str:token>/", account.invitation_accept, name="invite"),
    path("usage/", billing.usage_page, name="usage"),
    path("service-accounts/", access.service_accounts, name="service_accounts"),
    path("alerts/", alerts.alerts, name="alerts"),
    # clusters
    path("clusters/new/", clusters.cluster_create, name="cluster_create"),
    path(C, clusters.cluster_detail, name="cluster"),
    path(C + "row/", clusters.cluster_row, name="cluster_row"),
    path(C + "deleted-notice/", clusters.cluster_deleted_notice, name="cluster_deleted_notice"),
    path(C + "ca.pem", clusters.cluster_ca, name="cluster_ca"),
    path(C + "status/", clusters.cluster_status, name="cluster_status"),
    path(C + "delete/", clusters.cluster_delete, name="cluster_delete"),
    path(C + "retry/", clusters.cluster_retry, name="cluster_retry"),
    path(C + "topics/", topics.topic_list, name="topics"),
    path(C + "topics/<str:name>/", topics.topic_detail, name="topic"),
    path(C + "topics/<str:name>/delete/", topics.topic_delete, name="topic_delete"),
    path(C + "api-keys/", keys.api_key_list, name="api_keys"),
    path(C + "api-keys/<str:key>/revoke/", keys.api_key_revoke, name="api_key_revoke"),
    path(C + "api-keys/<str:key>/rotate/", keys.api_key_rotate, name="api_key_rotate"),
    path(C + "messages/", messages.message_browser, name="messages"),
    path(C + "acls/", access.cluster_acls, name="acls"),
    path(C + "schemas/", schemas.schema_list, name="schemas"),
    path(C + "groups/", groups.group_list, name="groups"),
    path(C + "clients/", clients.client_list, name="clients"),
    path(C + "groups/<str:group_id>/", groups.group_detail, name="group"),
    path(C + "groups/<str:group_id>/delete/", groups.group_delete, name="group_delete"),
    path(C + "transactions/", transactions.transaction_list, name="transactions"),
    path(C + "transactions/abort/", transactions.transaction_abort, name="transaction_abort"),
]
