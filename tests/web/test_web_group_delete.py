"""Portal: delete a consumer group (admin only, typed group id, refused while it has members), on a
real brokerd provisioned inline (no worker), as in the consumer-group REST tests."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from consumergroups import selectors as group_selectors
from tests.platform.api import Tenant
from tests.platform.consumergroups.test_consumergroups_api import Running, consume
from tests.platform.inline_cluster import host_env  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db


def _portal(tenant: Tenant) -> Client:
    client = Client()
    client.force_login(tenant.user)
    return client


def test_group_delete_refused_with_members_and_done_when_empty(host_env):  # noqa: F811
    running = Running(Tenant("owner"))
    admin = _portal(running.tenant)
    member = _portal(running.tenant.member(Role.MEMBER))
    base = f"/clusters/{running.cluster.public_id}/groups"
    running.produce(6)

    with running.consumer("billing", "reader-1") as reader:
        reader.subscribe(["orders"])
        consume(reader, 6)
        reader.commit(asynchronous=False)

        detail = admin.get(f"{base}/billing/").content.decode()
        assert 'disabled aria-describedby="delete-why">Delete group</button>' in detail
        assert "1 active member;" in detail and f'href="{base}/billing/delete/"' not in detail
        page = admin.get(f"{base}/billing/delete/")
        assert page.status_code == 200 and 'class="danger" disabled' in page.content.decode()

        wrong = admin.post(f"{base}/billing/delete/", {"confirm": "bill"})
        assert wrong.status_code == 400 and "Type billing exactly to confirm." in wrong.content.decode()
        refused = admin.post(f"{base}/billing/delete/", {"confirm": "billing"})
        assert refused.status_code == 409
        assert "has active members; stop its consumers first" in refused.content.decode()
        assert group_selectors.group_get(cluster=running.cluster, group_id="billing")["members"]

        # A member sees the group but no delete action, and may not delete.
        assert "Delete group" not in member.get(f"{base}/billing/").content.decode()
        assert member.get(f"{base}/billing/delete/").status_code == 403

    assert member.post(f"{base}/billing/delete/", {"confirm": "billing"}).status_code == 403
    detail = admin.get(f"{base}/billing/").content.decode()
    assert f'href="{base}/billing/delete/"' in detail and "disabled" not in detail
    done = admin.post(f"{base}/billing/delete/", {"confirm": "billing"}, follow=True)
    assert done.redirect_chain == [(f"{base}/", 302)]
    assert "Consumer group billing and its offsets were deleted." in done.content.decode()
    assert admin.get(f"{base}/billing/").status_code == 404
    assert admin.get(f"{base}/billing/delete/").status_code == 404
    events = running.tenant.organization.audit_events.filter(action="consumer_group.delete")
    assert events.count() == 1 and events.get().actor_id == running.tenant.user.pk
