from django.urls import path

from . import views

topics = views.TopicViewSet.as_view({"get": "list", "post": "create"})
topic = views.TopicViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"})

urlpatterns = [
    path("clusters/<str:cluster_id>/topics", topics, name="topic-list"),
    path("clusters/<str:cluster_id>/topics/<str:name>", topic, name="topic-detail"),
]
