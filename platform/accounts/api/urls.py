from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")

urlpatterns = [
    path("signup", views.SignupView.as_view(), name="signup"),
    path("auth/tokens", views.TokenListCreateView.as_view(), name="token-list"),
    path("auth/tokens/<str:id>", views.TokenDetailView.as_view(), name="token-detail"),
    path("me", views.MeView.as_view(), name="me"),
    path("me/password", views.PasswordChangeView.as_view(), name="me-password"),
    path("organization", views.OrganizationView.as_view(), name="organization"),
    path("audit-events", views.AuditEventListView.as_view(), name="audit-event-list"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    *router.urls,
]
