"""A topic request with several bad fields gets every field's error at once (REST and the service)."""

from __future__ import annotations

import pytest

from controlplane.errors import ValidationFailed
from tests.platform.api import assert_error
from tests.platform.factories import ClusterFactory
from topics import services


def test_rest_reports_a_bad_name_and_zero_partitions_together(tenant):
    cluster = ClusterFactory(organization=tenant.organization)
    response = tenant.client.post(
        f"/api/v1/clusters/{cluster.public_id}/topics", {"name": "bad name!", "partitions": 0}, format="json"
    )
    error = assert_error(response, 400, "validation_error")
    assert set(error["details"]) == {"name", "partitions"}
    assert "ASCII letters" in error["details"]["name"][0]


def test_service_reports_every_bad_field_before_asking_the_brokers(db):
    cluster = ClusterFactory()  # RUNNING on a port nobody serves: validation must come first
    with pytest.raises(ValidationFailed) as caught:
        services.topic_create(
            cluster=cluster, name="__internal", partitions=0, configs={"retention.ms": "soon"}
        )
    assert set(caught.value.details) == {"name", "partitions", "configs"}
    assert set(caught.value.details["configs"]) == {"retention.ms"}
