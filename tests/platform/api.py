"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any


def assert_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has `status` and the one error shape; returns the error object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def assert_page(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert set(body) == {"count", "next", "previous", "results"}, body
    return body["results"]


class Tenant:
    """An organization with a user of a given role and a REST client authenticated as that user."""

    def __init__(self, role: str = "owner", **org_kwargs: Any) -> None:
        from rest_framework.test import APIClient

        from accounts.audit import Actor
        from accounts.services import token_create
        from tests.platform.factories import MembershipFactory, OrganizationFactory

        self.organization = OrganizationFactory(**org_kwargs)
        self.membership = MembershipFactory(organization=self.organization, role=role)
        self.user = self.membership.user
        self.token, self.raw_token = token_create(
            user=self.user, organization=self.organization, name="test", actor=Actor(user=self.user)
        )
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.raw_token}")

    def member(self, role: str) -> Tenant:
        """Another user of this organization with `role`, with a client of their own."""
        other = Tenant.__new__(Tenant)
        from rest_framework.test import APIClient

        from accounts.audit import Actor
        from accounts.services import token_create
        from tests.platform.factories import MembershipFactory

        other.organization = self.organization
        other.membership = MembershipFactory(organization=self.organization, role=role)
        other.user = other.membership.user
        other.token, other.raw_token = token_create(
            user=other.user, organization=self.organization, name="test", actor=Actor(user=other.user)
        )
        other.client = APIClient()
        other.client.credentials(HTTP_AUTHORIZATION=f"Bearer {other.raw_token}")
        return other
