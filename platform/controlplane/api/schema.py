"""The API schema: a description written for users on every operation, and the one error shape as
every operation's default response."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc

from .descriptions import OPERATIONS


class KastleAutoSchema(AutoSchema):
    """Descriptions come from `descriptions.OPERATIONS` (or an `extend_schema(description=...)`),
    never from a view class's docstring, which describes code (mixins, querysets), not the API."""

    def get_description(self) -> str:
        described = OPERATIONS.get(self.get_operation_id())
        if described:
            return described
        # Otherwise the action's own docstring, when the project wrote one (DRF's mixins have none
        # worth showing, and a class docstring describes code).
        name = getattr(self.view, "action", None) or self.method.lower()
        handler = getattr(self.view, name, None)
        if handler is None or getattr(handler, "__module__", "").startswith("rest_framework"):
            return ""
        return get_doc(handler)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault(
                "default", {"description": "An error", "content": {"application/json": {"schema": ref}}}
            )
    return result
