from django.urls import path

from . import views

keys = views.ApiKeyViewSet.as_view({"get": "list", "post": "create"})
key = views.ApiKeyViewSet.as_view({"get": "retrieve", "delete": "destroy"})
rotate = views.ApiKeyViewSet.as_view({"post": "rotate"})

accounts = views.ServiceAccountViewSet.as_view({"get": "list", "post": "create"})
account = views.ServiceAccountViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("service-accounts", accounts, name="service-account-list"),
    path("service-accounts/<str:sa_id>", account, name="service-account-detail"),
    path("clusters/<str:cluster_id>/api-keys", keys, name="api-key-list"),
    path("clusters/<str:cluster_id>/api-keys/<str:key>", key, name="api-key-detail"),
    path("clusters/<str:cluster_id>/api-keys/<str:key>/rotate", rotate, name="api-key-rotate"),
]
