"""Typed fields from a JSON Schema: what the page renders, how a typed-in string becomes a value, and how a set
of values is checked, with one message per field a person can act on.

Two schemas use this: an approval's ``kwargs_schema`` (any JSON Schema of the arguments; the fields an approver
may edit) and a question's ``response_schema`` (the contract's subset, checked by :func:`check_response_schema`).
The form a browser sends is strings only; :func:`coerce` turns each into its type, and :func:`validate` runs
the schema itself (jsonschema) over the result, so the rules are JSON Schema's, not ours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

RESERVED = frozenset({"csrf_token"})  # the form's own field
MAX_PROPERTIES = 50
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
_FORMATS = {"date": "date", "date-time": "datetime", "email": "email"}
_SUBSET_KEYS = frozenset(
    {"type", "title", "description", "default", "enum", "format", "items", "minimum", "maximum",
     "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
     "examples"}
)  # fmt: skip
_FORMAT_CHECKER = FormatChecker()


class SchemaError(ValueError):
    """A schema the gateway cannot use (given by the agent at create time: a 422 naming what is wrong)."""


@dataclass(frozen=True)
class FormField:
    """One input: ``widget`` is text | textarea | number | integer | checkbox | select | date | datetime | email
    | lines (a list of strings, one per line) | json (anything else, as JSON)."""

    name: str
    label: str
    widget: str
    required: bool = False
    description: str | None = None
    default: Any = None
    choices: tuple[Any, ...] = ()
    schema: Mapping[str, Any] | None = None

    def as_input(self, value: Any) -> str:
        """A value as the string the input shows (the inverse of :func:`coerce`)."""
        if value is None:
            return ""
        if self.widget == "checkbox":
            return "true" if value else ""
        if self.widget == "lines" and isinstance(value, list):
            return "\n".join(str(v) for v in value)
        if self.widget == "json" or not isinstance(value, str | int | float):
            return json.dumps(value, indent=2, ensure_ascii=False)
        if self.widget == "datetime" and isinstance(value, str):
            return value[:16]  # an <input type=datetime-local> takes YYYY-MM-DDTHH:MM
        if self.widget == "select":
            return json.dumps(value) if not isinstance(value, str) else value
        return str(value)


def _widget(prop: Mapping[str, Any], value: Any = None) -> str:
    kind = prop.get("type")
    if "enum" in prop:
        return "select"
    if kind == "boolean":
        return "checkbox"
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "string":
        if prop.get("format") in _FORMATS:
            return _FORMATS[prop["format"]]
        long = isinstance(value, str) and ("\n" in value or len(value) > 80)
        return "textarea" if long or int(prop.get("maxLength") or 0) > 200 else "text"
    if kind == "array" and (prop.get("items") or {}).get("type") == "string":
        return "lines"
    return "json"


def _type_of(value: Any) -> dict[str, Any]:
    """A property schema from a value alone (an editable argument without a kwargs_schema)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return {"type": "array", "items": {"type": "string"}}
    return {}


def _field(name: str, prop: Mapping[str, Any], required: bool, value: Any, default: Any = None) -> FormField:
    return FormField(
        name=name,
        label=str(prop.get("title") or name),
        widget=_widget(prop, value),
        required=required,
        description=prop.get("description"),
        default=default,
        choices=tuple(prop.get("enum") or ()),
        schema=prop,
    )


def fields_from_schema(schema: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> list[FormField]:
    """One field per property, in the schema's order."""
    required = set(schema.get("required") or ())
    out = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        out.append(_field(name, prop, name in required, (values or {}).get(name), prop.get("default")))
    return out


def editable_fields(
    kwargs: Mapping[str, Any], editable: Iterable[str], schema: Mapping[str, Any] | None
) -> list[FormField]:
    """The fields an approver may edit: typed by ``kwargs_schema`` where it names them, else by their values."""
    props = (schema or {}).get("properties") or {}
    required = set((schema or {}).get("required") or ())
    out = []
    for name in editable:
        prop = props.get(name) if isinstance(props.get(name), Mapping) else None
        out.append(_field(name, prop or _type_of(kwargs.get(name)), name in required, kwargs.get(name)))
    return out


def editable_names(
    kwargs: Mapping[str, Any], editable: bool | list[str] | None, schema: Mapping[str, Any] | None
) -> list[str]:
    """``editable`` as the list of names it allows (``True``: every argument, and every property the schema
    adds). Raises SchemaError for a name that is neither an argument nor in the schema."""
    known = list(kwargs) + [p for p in ((schema or {}).get("properties") or {}) if p not in kwargs]
    if editable is True:
        return known
    if not editable:
        return []
    unknown = [n for n in editable if n not in known]
    if unknown:
        raise SchemaError(f"editable names {', '.join(map(repr, unknown))}, which are not arguments of this call")
    return list(dict.fromkeys(editable))


# --- the schemas an agent gives ---------------------------------------------------------------------------


def check_schema(schema: Mapping[str, Any], what: str) -> None:
    """A valid JSON Schema (2020-12) of an object, or SchemaError."""
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise SchemaError(
            f"{what} is not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
        ) from None
    if schema.get("type", "object") != "object":
        raise SchemaError(f"{what} must describe an object (type: object)")


def check_response_schema(schema: Mapping[str, Any]) -> None:
    """The contract's subset: an object of string, number, integer and boolean properties (``enum``, ``format``
    date / date-time / email) and arrays of strings; ``required``, ``title``, ``description``, ``default``.
    Anything else is refused now, at create time, rather than shown as a field nobody can fill in."""
    check_schema(schema, "response_schema")
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        raise SchemaError("response_schema needs properties: one per field of the answer")
    if len(props) > MAX_PROPERTIES:
        raise SchemaError(f"response_schema has more than {MAX_PROPERTIES} properties")
    for name, prop in props.items():
        if name in RESERVED or not _NAME_RE.match(name):
            raise SchemaError(f"response_schema property {name!r}: use letters, digits, '_', '.' or '-'")
        if not isinstance(prop, Mapping):
            raise SchemaError(f"response_schema property {name!r} must be an object")
        extra = sorted(set(prop) - _SUBSET_KEYS)
        if extra:
            raise SchemaError(f"response_schema property {name!r}: {', '.join(extra)} is not supported in a form")
        kind = prop.get("type")
        if "enum" in prop and kind is None:
            continue
        if kind not in ("string", "number", "integer", "boolean", "array"):
            raise SchemaError(
                f"response_schema property {name!r} has type {kind!r}; a form field is a string, number, integer,"
                " boolean or array of strings"
            )
        if kind == "array" and (prop.get("items") or {}).get("type") != "string":
            raise SchemaError(f"response_schema property {name!r}: only arrays of strings are supported")
        if "format" in prop and (kind != "string" or prop["format"] not in _FORMATS):
            raise SchemaError(f"response_schema property {name!r}: format {prop['format']!r} is not supported")
    missing = [n for n in schema.get("required") or () if n not in props]
    if missing:
        raise SchemaError(f"response_schema requires {', '.join(map(repr, missing))}, which it does not define")


# --- what a person typed ----------------------------------------------------------------------------------


class FieldErrors(ValueError):
    """What was wrong, per field name ("" for the whole answer)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items()))


def coerce(field: FormField, raw: str | None) -> Any:
    """A typed-in string as its value; None for an empty input. Raises ValueError with a person's message."""
    if field.widget == "checkbox":
        return raw is not None and raw.strip().lower() in ("true", "on", "yes", "1", "y", "x", "✓")
    text = (raw or "").strip()
    if not text:
        return None
    if field.widget == "select":
        for choice in field.choices:
            if (
                text == (choice if isinstance(choice, str) else json.dumps(choice))
                or text.lower() == str(choice).lower()
            ):
                return choice
        raise ValueError(f"choose one of: {', '.join(str(c) for c in field.choices)}")
    if field.widget in ("integer", "number"):
        return _number(_number_text(text), whole=field.widget == "integer")
    if field.widget == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if field.widget == "datetime":
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be a date and time (YYYY-MM-DD HH:MM)") from None
        return moment.isoformat() if moment.tzinfo else moment.isoformat() + "Z"
    if field.widget == "lines":  # one per line; on a single line, comma-separated
        parts = text.splitlines() if "\n" in text else text.split(",")
        return [part.strip() for part in parts if part.strip()]
    if field.widget == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return text


# "1,200" (thousands) and "1,5" (a decimal comma) are both what people type; a comma anywhere else is not a number.
_GROUPED_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")
_INTEGER_RE = re.compile(r"[+-]?\d+")


def _number_text(text: str) -> str:
    if _GROUPED_RE.fullmatch(text):
        return text.replace(",", "")
    if _DECIMAL_COMMA_RE.fullmatch(text):
        return text.replace(",", ".")
    return text


def _number(text: str, *, whole: bool) -> int | float:
    """A typed-in number: an integer exactly as typed (no float rounding), else a finite decimal."""
    if _INTEGER_RE.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a whole number" if whole else "must be a number") from None
    if not math.isfinite(value):
        raise ValueError("must be a whole number" if whole else "must be a number")
    if whole:
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


_ARTICLE = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "yes or no",
            "array": "a list", "object": "an object", "null": "empty"}  # fmt: skip


def _message(error: jsonschema.ValidationError) -> str:
    v, value = error.validator, error.validator_value
    if v == "type":
        kinds = [value] if isinstance(value, str) else list(value)
        return "must be " + " or ".join(_ARTICLE.get(k, k) for k in kinds)
    if v == "enum":
        return f"choose one of: {', '.join(str(c) for c in value)}"
    if v == "format":
        return {"date": "must be a date (YYYY-MM-DD)", "date-time": "must be a date and time",
                "email": "must be an email address"}.get(value, f"must be a valid {value}")  # fmt: skip
    if v in ("minimum", "exclusiveMinimum"):
        return f"must be {'at least' if v == 'minimum' else 'more than'} {value}"
    if v in ("maximum", "exclusiveMaximum"):
        return f"must be {'at most' if v == 'maximum' else 'less than'} {value}"
    if v == "minLength":
        return f"must be at least {value} characters long"
    if v == "maxLength":
        return f"must be at most {value} characters long"
    if v == "pattern":
        return "is not in the expected form"
    if v == "minItems":
        return f"needs at least {value} item{'s' if value != 1 else ''}"
    if v == "maxItems":
        return f"takes at most {value} item{'s' if value != 1 else ''}"
    return error.message[:300]


def validate(schema: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """``values`` against the schema; FieldErrors with the first message per field."""
    errors: dict[str, str] = {}
    validator = Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)
    for error in sorted(validator.iter_errors(dict(values)), key=lambda e: list(e.path)):
        if error.validator == "required":
            for name in error.validator_value:
                if name not in values:
                    errors.setdefault(str(name), "is required")
            continue
        name = str(error.path[0]) if error.path else ""
        errors.setdefault(name, _message(error))
    if errors:
        raise FieldErrors(errors)


def read_form(
    fields: Iterable[FormField], form: Mapping[str, str | None], prefix: str = "", *, absent_is_false: bool = True
) -> dict[str, Any]:
    """Every field's value from a submitted form (``prefix`` + name), or FieldErrors for those that do not
    parse or are required and empty. Empty optional fields are left out. A browser sends nothing for an
    unticked box (``absent_is_false``); a reply that does not name a field did not answer it."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        if not absent_is_false and form.get(prefix + field.name) is None:
            if field.required:
                errors[field.name] = "is required"
            continue
        try:
            value = coerce(field, form.get(prefix + field.name))
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if value is None:
            if field.required:
                errors[field.name] = "is required"
            continue
        values[field.name] = value
    if errors:
        raise FieldErrors(errors)
    return values


def as_text(fields: Iterable[FormField], values: Mapping[str, Any]) -> str:
    """The answer as ``Label: value`` lines: what a person reads, and what ``response`` holds."""
    lines = []
    for field in fields:
        if field.name not in values:
            continue
        value = values[field.name]
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value)
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value, ensure_ascii=False)
        lines.append(f"{field.label}: {shown}")
    return "\n".join(lines)
