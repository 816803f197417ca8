from django.urls import path

from . import views

export = views.ClusterMetricsExportViewSet.as_view({"get": "export"})

urlpatterns = [
    path("clusters/<str:cluster_id>/metrics/export", export, name="cluster-metrics-export"),
]
