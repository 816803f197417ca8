"""A deleted cluster shows no connection details, and the list's banner agrees with the row."""

from __future__ import annotations

import pytest

from accounts.models import Role
from clusters import services as cluster_services
from clusters.models import ClusterStatus
from tests.platform.factories import ApiKeyFactory, ClusterFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def _admin(client):
    membership = MembershipFactory(role=Role.ADMIN)
    client.force_login(membership.user)
    return membership


@pytest.mark.parametrize("status", [ClusterStatus.DELETING, ClusterStatus.DELETED])
def test_a_deleted_cluster_offers_no_address_key_or_certificate(client, status):
    org = _admin(client).organization
    cluster = ClusterFactory(
        organization=org, name="gone", status=status, bootstrap_servers="127.0.0.1:19555"
    )
    ApiKeyFactory(cluster=cluster)
    html = client.get(f"/clusters/{cluster.public_id}/").content.decode()
    assert "127.0.0.1:19555" not in html
    assert 'id="bootstrap"' not in html and "data-copy" not in html
    assert "Connect a client" not in html and "no connection details" in html
    assert client.get(f"/clusters/{cluster.public_id}/ca.pem").status_code == 404
    assert "127.0.0.1:19555" not in client.get("/").content.decode()  # nor in the list


def test_a_running_cluster_still_shows_its_address(client):
    org = _admin(client).organization
    cluster = ClusterFactory(organization=org, bootstrap_servers="127.0.0.1:19556")
    html = client.get(f"/clusters/{cluster.public_id}/").content.decode()
    assert 'id="bootstrap">127.0.0.1:19556' in html


def test_the_delete_banner_follows_the_clusters_state(client):
    org = _admin(client).organization
    cluster = ClusterFactory(organization=org, name="brief")
    response = client.post(f"/clusters/{cluster.public_id}/delete/", {"confirm": "brief"})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Cluster brief is being deleted" in page and ">Deleting<" in page

    cluster_services.cluster_transition(cluster=cluster, to=ClusterStatus.DELETED)
    # htmx: the polled row settles and tells the banner to refresh; the banner then says the same
    row = client.get(f"/clusters/{cluster.public_id}/row/", HTTP_HX_REQUEST="true")
    assert ">Deleted<" in row.content.decode() and row["HX-Trigger"] == "cluster-settled"
    notice = client.get(f"/clusters/{cluster.public_id}/deleted-notice/", HTTP_HX_REQUEST="true")
    assert "was deleted" in notice.content.decode()
    page = client.get(response["Location"]).content.decode()  # reloaded once it finished
    assert "Cluster brief was deleted." in page and "being deleted" not in page


def test_the_overview_shows_a_growth_and_a_replacement_in_words(client):
    org = _admin(client).organization
    cluster = ClusterFactory(
        organization=org,
        plan="dedicated",
        broker_count=4,
        scale={
            "state": "reassigning",
            "from": 3,
            "to": 4,
            "partitions": 9,
            "moved": 3,
            "moving": [["t", 1, [4]]],
        },
        replacement={
            "state": "replacing",
            "reason": "Host b stopped reporting, so broker 2 was started again.",
        },
    )
    html = client.get(f"/clusters/{cluster.public_id}/").content.decode()
    assert (
        "Growing from 3 to 4 brokers:" in html
        and "3 of 9 partitions moved" in html
        and "1 moving now" in html
    )
    assert "Replacing a lost host" in html and "broker 2 was started again" in html
    cluster.scale = {**cluster.scale, "state": "failed", "error": "Broker 4 did not start."}
    cluster.replacement = {"state": "done", "reason": ""}
    cluster.save()
    html = client.get(f"/clusters/{cluster.public_id}/").content.decode()
    assert "Growing to 4 brokers stopped:</strong> Broker 4 did not start." in html
    assert "Replacing a lost host" not in html
