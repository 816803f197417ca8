from django.urls import path

from . import views

transactions = views.TransactionViewSet.as_view({"get": "list"})
abort = views.TransactionViewSet.as_view({"post": "abort"})

urlpatterns = [
    path("clusters/<str:cluster_id>/transactions", transactions, name="transaction-list"),
    path("clusters/<str:cluster_id>/transactions/abort", abort, name="transaction-abort"),
]
