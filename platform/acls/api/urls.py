from django.urls import path

from . import views

acls = views.AclViewSet.as_view({"get": "list", "post": "create", "delete": "delete_matching"})
acl = views.AclViewSet.as_view({"delete": "destroy"})

urlpatterns = [
    path("clusters/<str:cluster_id>/acls", acls, name="acl-list"),
    path("clusters/<str:cluster_id>/acls/<str:acl_id>", acl, name="acl-detail"),
]
