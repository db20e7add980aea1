"""Typed inputs from JSON Schema: approvals whose arguments an approver may edit, and questions answered with a
form (``response_schema``). Pure: no I/O, so every rule is tested without a server."""

from gateway.forms.fields import (
    FieldErrors,
    FormField,
    SchemaError,
    as_text,
    check_response_schema,
    check_schema,
    coerce,
    editable_fields,
    editable_names,
    fields_from_schema,
    read_form,
    validate,
)
from gateway.forms.reply import read_lines

__all__ = [
    "FieldErrors",
    "FormField",
    "SchemaError",
    "as_text",
    "check_response_schema",
    "check_schema",
    "coerce",
    "editable_fields",
    "editable_names",
    "fields_from_schema",
    "read_form",
    "read_lines",
    "validate",
]
