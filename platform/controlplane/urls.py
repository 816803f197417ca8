"""URL map: the portal at /, the REST API under /api/v1/, Django admin at /admin/."""

from django.contrib import admin
from django.db import connection
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from controlplane.api import exceptions


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("clusters.api.urls")),
    path("", include("iam.api.urls")),
    path("", include("acls.api.urls")),
    path("", include("topics.api.urls")),
    path("", include("consumergroups.api.urls")),
    path("", include("transactions.api.urls")),
    path("", include("metering.api.urls")),
    path("", include("pki.api.urls")),
    path("", include("monitoring.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    # Confluent-compatible: clients set schema.registry.url to this prefix (see schemaregistry.urls).
    path("schema-registry/<str:cluster_id>/", include("schemaregistry.api.urls")),
    path("healthz", healthz, name="healthz"),
    path("", include("web.urls")),
]


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return exceptions.api_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return exceptions.api_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
