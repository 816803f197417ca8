from django.urls import path
from rest_framework.routers import SimpleRouter

from . import plans, views

router = SimpleRouter(trailing_slash=False)
router.register("plans", plans.PlanViewSet, basename="plan")

urlpatterns = [
    *router.urls,
    path("usage", views.UsageView.as_view(), name="usage"),
    path("billing/costs", views.CostsView.as_view(), name="billing-costs"),
    path("billing/credit", views.CreditView.as_view(), name="billing-credit"),
    path("billing/spend-cap", views.SpendCapView.as_view(), name="billing-spend-cap"),
    path("billing/invoices", views.InvoiceListView.as_view(), name="billing-invoice-list"),
    path("billing/invoices/<str:id>", views.InvoiceDetailView.as_view(), name="billing-invoice-detail"),
]
