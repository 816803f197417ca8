"""Every REST operation has a description written for API users; no internal docstring leaks."""

from __future__ import annotations

import yaml

from controlplane.api.descriptions import OPERATIONS

CODE_WORDS = ("viewset", "queryset", "Subclasses", "get_base_queryset", "organization_field", "mixin")


def test_every_operation_is_described_for_users(api_client):
    schema = yaml.safe_load(api_client.get("/api/v1/schema/").content)
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert len(operations) >= 50
    for op in operations:
        description = op.get("description", "")
        assert len(description) >= 30, op["operationId"]
        assert not any(word.lower() in description.lower() for word in CODE_WORDS), op["operationId"]
    described = {op["operationId"] for op in operations}
    assert set(OPERATIONS) <= described, "descriptions for operations that no longer exist"
    assert len({op["description"] for op in operations}) == len(operations), "one text per operation"
