from django.urls import path

from . import views

urlpatterns = [
    path("clusters/<str:id>/ca.pem", views.ClusterCaView.as_view(), name="cluster-ca"),
]
