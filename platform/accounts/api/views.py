"""REST endpoints for sign-up, tokens, the organization, its members, invitations and the audit log."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, mixins, permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.audit import Actor, client_ip
from accounts.authentication import BearerTokenAuthentication
from accounts.lockout import refusal_message
from accounts.models import AuditEvent, Invitation, Membership, Role
from accounts.throttling import SignupRateThrottle, TokenRateThrottle
from controlplane.api.tenancy import OrganizationScopedMixin, request_membership

from . import serializers as s


class SignupOpen(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        if not settings.KASTLE_SIGNUP_OPEN:
            raise exceptions.PermissionDenied("Sign-up is closed on this Kastle.", code="signup_closed")
        return True


class SignupView(APIView):
    authentication_classes: list = []
    permission_classes = [SignupOpen]
    throttle_classes = [SignupRateThrottle]

    @extend_schema(
        operation_id="signup",
        request=s.SignupSerializer,
        responses={201: s.SignupResponseSerializer},
        auth=[],
        summary="Create an organization and its owner; returns a REST token",
    )
    def post(self, request):
        data = s.SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.organization_signup(
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            organization_name=data.validated_data["organization"],
            source_ip=client_ip(request),
        )
        body = {
            "token": result.raw_token,
            "organization": s.OrganizationSerializer(result.organization).data,
            "user": s.UserSerializer(result.user).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class TokenListCreateView(OrganizationScopedMixin, generics.GenericAPIView):
    """GET: your REST tokens in this organization. POST: log in with email and password for a new token."""

    serializer_class = s.TokenSerializer

    def _is_post(self) -> bool:
        return getattr(getattr(self, "request", None), "method", None) == "POST"

    def get_authenticators(self):
        if self._is_post():  # password login: no session (so no CSRF), 401s carry the Bearer challenge
            return [BearerTokenAuthentication()]
        return super().get_authenticators()

    def get_permissions(self):
        if self._is_post():
            return [permissions.AllowAny()]
        return super().get_permissions()

    def get_throttles(self):
        if self._is_post():
            return [TokenRateThrottle()]
        return super().get_throttles()

    def get_base_queryset(self):
        return selectors.token_list(user=self.request.user, organization=self.organization)

    @extend_schema(operation_id="auth_tokens_list", responses=s.TokenSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.TokenSerializer(page, many=True).data)

    @extend_schema(
        operation_id="auth_tokens_create",
        request=s.TokenCreateSerializer,
        responses={201: s.TokenCreatedSerializer},
        auth=[],
    )
    def post(self, request):
        data = s.TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_authenticate(
            email=data.validated_data["email"], password=data.validated_data["password"], request=request
        )
        if user is None:
            refusal = getattr(request, "kastle_login_refused", None)
            if refusal is not None:  # accounts.lockout: locked account or throttled address
                raise exceptions.Throttled(wait=refusal.retry_after, detail=refusal_message(refusal))
            raise exceptions.AuthenticationFailed("Wrong email or password.", code="invalid_credentials")
        org_id = data.validated_data.get("organization")
        memberships = user.memberships.select_related("organization").order_by("created_at", "id")
        membership = (
            memberships.filter(organization__public_id=org_id).first() if org_id else memberships.first()
        )
        if membership is None:
            raise exceptions.ValidationError({"organization": ["You are not a member of this organization."]})
        token, raw = services.token_create(
            user=user,
            organization=membership.organization,
            name=data.validated_data["name"],
            actor=Actor(user=user, ip=client_ip(request)),
        )
        token.token = raw
        return Response(s.TokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenDetailView(OrganizationScopedMixin, generics.GenericAPIView):
    serializer_class = s.TokenSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "id"

    def get_base_queryset(self):
        return selectors.token_list(user=self.request.user, organization=self.organization)

    def required_role(self, request):
        return Role.MEMBER  # everyone may revoke their own tokens

    @extend_schema(operation_id="auth_tokens_retrieve", responses=s.TokenSerializer)
    def get(self, request, id):
        return Response(s.TokenSerializer(self.get_object()).data)

    @extend_schema(operation_id="auth_tokens_destroy", responses={204: None})
    def delete(self, request, id):
        services.token_revoke(token=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(OrganizationScopedMixin, APIView):
    @extend_schema(
        operation_id="me", responses=s.MeSerializer, summary="Who am I: user, organization and role"
    )
    def get(self, request):
        membership = request_membership(request)
        return Response(
            {
                "user": s.UserSerializer(request.user).data,
                "organization": s.OrganizationSerializer(membership.organization).data,
                "role": membership.role,
            }
        )


class PasswordChangeView(APIView):
    """Change your password (Django's password validators apply)."""

    @extend_schema(
        operation_id="me_password_change",
        request=s.PasswordChangeSerializer,
        responses={204: None},
        summary="Change your password",
    )
    def post(self, request):
        data = s.PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_change(
            user=request.user,
            current_password=data.validated_data["current_password"],
            new_password=data.validated_data["new_password"],
            actor=Actor.from_request(request),
        )
        django_request = request._request
        if getattr(django_request, "user", None) is not None and django_request.user.is_authenticated:
            update_session_auth_hash(django_request, request.user)  # keep this session logged in
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationView(OrganizationScopedMixin, APIView):
    def required_role(self, request):
        return Role.OWNER if request.method == "PATCH" else Role.MEMBER

    @extend_schema(operation_id="organization_retrieve", responses=s.OrganizationSerializer)
    def get(self, request):
        return Response(s.OrganizationSerializer(self.organization).data)

    @extend_schema(
        operation_id="organization_update",
        request=s.OrganizationUpdateSerializer,
        responses=s.OrganizationSerializer,
    )
    def patch(self, request):
        data = s.OrganizationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        org = services.organization_update(
            organization=self.organization,
            name=data.validated_data["name"],
            actor=Actor.from_request(request),
        )
        return Response(s.OrganizationSerializer(org).data)


class MemberViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = s.MemberSerializer
    lookup_field = "user__public_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"
    roles = {"partial_update": Role.OWNER, "destroy": Role.OWNER}
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return selectors.member_list(organization=self.organization).select_related("organization")

    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def partial_update(self, request, *args, **kwargs):
        membership = self.get_object()
        data = s.MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_update(
            membership=membership, role=data.validated_data["role"], actor=Actor.from_request(request)
        )
        return Response(s.MemberSerializer(membership).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.membership_delete(membership=self.get_object(), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditEventListView(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = s.AuditEventSerializer

    def get_base_queryset(self):
        return AuditEvent.objects.none()  # the selector answers (get_queryset)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.get_base_queryset().none()
        filters = s.AuditEventFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.audit_event_list(organization=self.organization, **filters.validated_data)

    @extend_schema(
        operation_id="audit_events_list",
        parameters=[s.AuditEventFilterSerializer],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvitationViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Invitation links to join your organization: admins create and revoke them, members see the open
    ones. A link's token is shown once, when it is created; whoever opens the link joins with its
    role (nobody can invite above their own role). Links work once and expire after 7 days."""

    serializer_class = s.InvitationSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = "[0-9]+"
    roles = {"create": Role.ADMIN, "destroy": Role.ADMIN}
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_base_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return selectors.invitation_list_open(organization=self.organization)

    @extend_schema(
        request=s.InvitationCreateSerializer,
        responses={201: s.InvitationCreatedSerializer},
        summary="Create an invitation link (its token is shown only in this response)",
    )
    def create(self, request):
        data = s.InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = services.invitation_create(
            organization=self.organization,
            role=data.validated_data["role"],
            email=data.validated_data["email"],
            inviter_role=self.membership.role,
            actor=Actor.from_request(request),
        )
        body = s.InvitationSerializer(invitation).data | {
            "token": token,
            "link": request.build_absolute_uri(reverse("web:invite", kwargs={"token": token})),
        }
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(responses={204: None}, summary="Revoke an invitation: its link stops working")
    def destroy(self, request, id=None):
        invitation = selectors.invitation_get(organization=self.organization, invitation_id=id)
        if invitation is None or not invitation.is_open:
            raise Http404
        services.invitation_revoke(invitation=invitation, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(APIView):
    """Join the organization an invitation link names, as the signed-in user, with the link's role."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        operation_id="invitations_accept",
        request=s.InvitationAcceptSerializer,
        responses={201: s.InvitationAcceptedSerializer},
        summary="Accept an invitation: join its organization with its role",
    )
    def post(self, request):
        data = s.InvitationAcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = selectors.invitation_get_by_token(token=data.validated_data["token"])
        if invitation is None:
            raise Http404(services.INVALID_LINK)
        membership = services.invitation_accept(
            invitation=invitation, user=request.user, actor=Actor.from_request(request)
        )
        body = {
            "organization": membership.organization,
            "role": membership.role,
        }
        return Response(s.InvitationAcceptedSerializer(body).data, status=status.HTTP_201_CREATED)
