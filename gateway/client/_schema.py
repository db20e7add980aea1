"""A pydantic model as the gateway's ``response_schema``, and an answer back as that model.

``Model.model_json_schema()`` speaks all of JSON Schema, with ``$ref`` for enums and ``anyOf`` for optional
fields; the answer form takes a flat subset (CONTRACT.md). This reduces the one to the other and refuses, at
call time and naming the field, what a form cannot ask for (a nested model, a list of numbers, a union).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from gateway.forms import SchemaError, check_response_schema

M = TypeVar("M", bound=BaseModel)
_KEEP = ("title", "description", "default", "format", "enum", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems")  # fmt: skip


class ResponseModelError(TypeError):
    """A response model the answer form cannot express."""


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``$ref`` and a single ``allOf`` replaced by what they point to; the property's own keys win."""
    prop = dict(prop)
    if "allOf" in prop and len(prop["allOf"]) == 1:
        prop = {**prop.pop("allOf")[0], **prop}
    ref = prop.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        prop = {**defs.get(ref.split("/")[-1], {}), **prop}
    return prop


def _optional(prop: dict[str, Any]) -> dict[str, Any]:
    """``X | None``: the X (an empty field stands for None)."""
    options = prop.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = {**rest[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                merged.pop("default")
            return merged
    return prop


def response_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields as the gateway's response_schema; ResponseModelError names what cannot be a field."""
    full = model.model_json_schema()
    defs = full.get("$defs") or {}
    properties: dict[str, Any] = {}
    for name, raw in (full.get("properties") or {}).items():
        prop = _optional(_resolve(raw, defs))
        prop = _resolve(prop, defs)
        if "const" in prop:
            prop["enum"] = [prop.pop("const")]
        if prop.get("type") == "array":
            prop["items"] = _resolve(prop.get("items") or {}, defs)
        reduced = {k: prop[k] for k in _KEEP if k in prop}
        if "type" in prop:
            reduced["type"] = prop["type"]
        if prop.get("type") == "array":
            reduced["items"] = {"type": (prop.get("items") or {}).get("type")}
        if "enum" in reduced and "type" not in reduced and len({type(v) for v in reduced["enum"]}) == 1:
            first = reduced["enum"][0]
            reduced["type"] = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
                type(first), "string"
            )
        properties[name] = reduced
    schema: dict[str, Any] = {"type": "object", "title": full.get("title", model.__name__), "properties": properties}
    if full.get("required"):
        schema["required"] = list(full["required"])
    try:
        check_response_schema(schema)
    except SchemaError as exc:
        raise ResponseModelError(f"{model.__name__} cannot be answered on a form: {exc}") from None
    return schema


def parse_answer(model: type[M], data: dict[str, Any] | None) -> M:
    """The validated answer as ``model`` (the gateway checked it against the schema; pydantic checks the rest)."""
    return model.model_validate(data or {})
