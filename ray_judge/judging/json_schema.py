"""A judge's ``schema`` (the structured output it asks for), checked when the judge loads.

A typo in a schema (``"type": "integr"``, ``"required": "score"``) would otherwise fail
every request at the provider, after the run started; checking it against its draft's
metaschema turns that into a load-time error naming the judge, the key and the bad part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["schema_problem"]


def schema_problem(schema: Mapping[str, Any]) -> tuple[str, Any] | None:
    """What is wrong with ``schema`` and the part that is wrong, or ``None`` if it is valid.

    The draft is the one its ``$schema`` names, else 2020-12; an unknown ``$schema`` is a
    problem (jsonschema would silently check it against the latest draft).
    """
    # Imported here: only judges with a schema pay for jsonschema's import.
    from jsonschema import Draft202012Validator, SchemaError, validators

    unknown = object()
    named = schema.get("$schema")
    if named is not None and not isinstance(named, str):
        return "$schema must be a metaschema URI (a string)", named
    validator = validators.validator_for(schema, default=unknown)
    if validator is unknown:
        if named is not None:
            return "names an unknown $schema (no JSON Schema draft has that URI)", named
        validator = Draft202012Validator
    try:
        validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        draft = validator.__name__.removesuffix("Validator")
        return (f"is not a valid JSON schema ({draft}) at {where.lstrip('.') or 'the top'}: "
                f"{exc.message}"), exc.instance
    return None
