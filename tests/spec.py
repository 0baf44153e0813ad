"""Check shapes against the OpenAI API specification in ../shared/spec (JSON Schema over the whole doc)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_CANDIDATES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "openai-openapi.json",
    Path("/work/shared/spec/openai-openapi.json"),
)
_URI = "urn:openai-openapi"


@cache
def _registry() -> Registry:
    for path in SPEC_CANDIDATES:
        if path.exists():
            document = _with_nullables(json.loads(path.read_text()))
            _patch_stream_choice(document)
            resource = Resource.from_contents(document, default_specification=DRAFT202012)
            return Registry().with_resource(_URI, resource)
    raise FileNotFoundError("OpenAI spec not found in ../shared/spec")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _with_nullables(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` means 'or null'; JSON Schema needs that spelled out."""
    if isinstance(node, list):
        return [_with_nullables(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _with_nullables(value) for key, value in node.items()}
    if out.pop("nullable", False) is True:
        return _nullable(out)
    return out


def _patch_stream_choice(document: dict[str, Any]) -> None:
    """The spec types a stream choice's finish_reason and logprobs as non-null, yet OpenAI's own streams
    send null in every chunk but the last (and the official SDKs expect that), so null is allowed here."""
    choice = document["components"]["schemas"]["CreateChatCompletionStreamResponse"]["properties"]["choices"]
    properties = choice["items"]["properties"]
    for name in ("finish_reason", "logprobs"):
        properties[name] = _nullable(properties[name])


@cache
def validator(schema_name: str) -> Draft202012Validator:
    schema = {"$ref": f"{_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=_registry())


def assert_matches(schema_name: str, instance: Any) -> None:
    errors = sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
        raise AssertionError(f"{schema_name} mismatch: {details}")
