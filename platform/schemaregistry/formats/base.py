"""What every schema format provides: parsing into a canonical form, and a reader/writer check.

No Django here. A format module exposes ``parse(text, references) -> ParsedSchema`` (raising
``InvalidSchema`` with a message naming what is wrong) and ``incompatibilities(reader, writer)``:
the reasons data written with ``writer`` cannot be read with ``reader`` (empty when it can).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class InvalidSchema(ValueError):
    """The schema text does not parse or is not a valid schema of its type (Confluent's 42201)."""


@dataclass(frozen=True)
class Reference:
    """A schema reference, resolved: ``name`` is how the referring schema names it (an Avro full
    name, a JSON Schema URL, a .proto import path); ``schema`` its text; ``references`` its own."""

    name: str
    subject: str
    version: int
    schema_type: str
    schema: str
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True)
class ParsedSchema:
    schema_type: str
    #: the text stored and compared: registering the same schema twice finds the first id
    canonical: str
    parsed: Any = field(compare=False, repr=False)
    references: tuple[Reference, ...] = field(default=(), compare=False, repr=False)


def flatten(references: tuple[Reference, ...] | list[Reference]) -> list[Reference]:
    """Every reference, transitively, dependencies before the schemas that use them, once each."""
    seen: set[str] = set()
    out: list[Reference] = []

    def visit(ref: Reference) -> None:
        if ref.name in seen:
            return
        seen.add(ref.name)
        for inner in ref.references:
            visit(inner)
        out.append(ref)

    for ref in references:
        visit(ref)
    return out
