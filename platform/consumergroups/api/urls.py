from django.urls import path

from . import views

groups = views.ConsumerGroupViewSet.as_view({"get": "list"})
group = views.ConsumerGroupViewSet.as_view({"get": "retrieve", "delete": "destroy"})
reset = views.ConsumerGroupViewSet.as_view({"post": "reset_offsets"})

urlpatterns = [
    path("clusters/<str:cluster_id>/consumer-groups", groups, name="consumer-group-list"),
    path("clusters/<str:cluster_id>/consumer-groups/<str:group_id>", group, name="consumer-group-detail"),
    path(
        "clusters/<str:cluster_id>/consumer-groups/<str:group_id>/reset-offsets",
        reset,
        name="consumer-group-reset-offsets",
    ),
]
