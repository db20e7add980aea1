"""Typed fields: from a schema or from values, typed-in strings to values, one message per field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import forms

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "budget": {"type": "integer", "title": "Budget (EUR)", "minimum": 0, "description": "Whole euros"},
        "start": {"type": "string", "format": "date", "title": "Start date"},
        "tier": {"enum": ["basic", "pro"], "default": "basic"},
        "rush": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string", "maxLength": 2000},
    },
    "required": ["budget", "start"],
}


def test_fields_follow_the_schema_in_order_with_labels_widgets_and_marks() -> None:
    fields = forms.fields_from_schema(SCHEMA)
    assert [(f.name, f.label, f.widget, f.required) for f in fields] == [
        ("budget", "Budget (EUR)", "integer", True),
        ("start", "Start date", "date", True),
        ("tier", "tier", "select", False),
        ("rush", "rush", "checkbox", False),
        ("tags", "tags", "lines", False),
        ("note", "note", "textarea", False),
    ]
    assert fields[0].description == "Whole euros"
    assert fields[2].choices == ("basic", "pro") and fields[2].default == "basic"


def test_a_form_is_read_into_typed_values_and_validated() -> None:
    fields = forms.fields_from_schema(SCHEMA)
    form = {"budget": "1,200", "start": "2027-01-04", "tier": "Pro", "rush": "true", "tags": "a\nb\n", "note": ""}
    values = forms.read_form(fields, form)
    assert values == {"budget": 1200, "start": "2027-01-04", "tier": "pro", "rush": True, "tags": ["a", "b"]}
    forms.validate(SCHEMA, values)
    assert forms.as_text(fields, values).splitlines() == [
        "Budget (EUR): 1200",
        "Start date: 2027-01-04",
        "tier: pro",
        "rush: yes",
        "tags: a, b",
    ]


def test_each_wrong_field_gets_its_own_message() -> None:
    fields = forms.fields_from_schema(SCHEMA)
    with pytest.raises(forms.FieldErrors) as caught:
        forms.read_form(fields, {"budget": "lots", "start": "", "tier": "gold"})
    assert caught.value.errors == {
        "budget": "must be a whole number",
        "start": "is required",
        "tier": "choose one of: basic, pro",
    }
    with pytest.raises(forms.FieldErrors) as caught:
        forms.validate(SCHEMA, {"budget": -5, "start": "2027-13-40"})
    assert caught.value.errors == {"budget": "must be at least 0", "start": "must be a date (YYYY-MM-DD)"}


def test_an_unticked_box_is_false_in_a_form_but_unanswered_in_a_reply() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    fields = forms.fields_from_schema(schema)
    assert forms.read_form(fields, {}) == {"ok": False}
    with pytest.raises(forms.FieldErrors) as caught:
        forms.read_form(fields, {}, absent_is_false=False)
    assert caught.value.errors == {"ok": "is required"}
    assert forms.read_form(fields, {"ok": "Yes"}, absent_is_false=False) == {"ok": True}


def test_editable_arguments_are_typed_by_their_values_without_a_schema() -> None:
    kwargs = {"to": "a@example.com", "body": "line one\nline two", "count": 3, "cc": ["x@example.com"], "meta": {}}
    names = forms.editable_names(kwargs, True, None)
    assert names == ["to", "body", "count", "cc", "meta"]
    widgets = {f.name: f.widget for f in forms.editable_fields(kwargs, names, None)}
    assert widgets == {"to": "text", "body": "textarea", "count": "integer", "cc": "lines", "meta": "json"}
    meta = forms.editable_fields(kwargs, ["meta"], None)[0]
    with pytest.raises(ValueError, match="is not valid JSON"):
        forms.coerce(meta, "{not json")
    assert forms.coerce(meta, '{"a": [1, 2]}') == {"a": [1, 2]}


def test_editable_names_must_be_arguments_or_schema_properties() -> None:
    schema = {"type": "object", "properties": {"extra": {"type": "string"}}}
    assert forms.editable_names({"a": 1}, True, schema) == ["a", "extra"]
    assert forms.editable_names({"a": 1}, ["a", "a"], None) == ["a"]
    assert forms.editable_names({"a": 1}, None, None) == []
    with pytest.raises(forms.SchemaError, match="'b'"):
        forms.editable_names({"a": 1}, ["b"], None)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {}}, "needs properties"),
        ({"type": "array"}, "must describe an object"),
        ({"type": "object", "properties": {"a": {"type": "object"}}}, "has type 'object'"),
        ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}, "arrays of strings"),
        ({"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}, "format 'uri'"),
        ({"type": "object", "properties": {"a": {"$ref": "#/x"}}}, r"\$ref is not supported"),
        ({"type": "object", "properties": {"csrf_token": {"type": "string"}}}, "csrf_token"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "does not define"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
    ],
)
def test_a_response_schema_outside_the_subset_is_refused_with_the_reason(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(forms.SchemaError, match=message):
        forms.check_response_schema(schema)


def test_the_subset_itself_is_accepted() -> None:
    forms.check_response_schema(SCHEMA)


@given(st.sampled_from(forms.fields_from_schema(SCHEMA)), st.text(max_size=50))
def test_coerce_either_gives_a_value_or_a_message(field: forms.FormField, raw: str) -> None:
    try:
        forms.coerce(field, raw)
    except ValueError as exc:
        assert str(exc)


@given(st.integers(-(10**9), 10**9), st.dates().map(lambda d: d.isoformat()), st.lists(st.text("abc xyz", min_size=1)))
def test_a_value_shown_in_its_input_reads_back_the_same(number: int, day: str, tags: list[str]) -> None:
    fields = {f.name: f for f in forms.fields_from_schema(SCHEMA)}
    assert forms.coerce(fields["budget"], fields["budget"].as_input(number)) == number
    assert forms.coerce(fields["start"], fields["start"].as_input(day)) == day
    cleaned = [t.strip() for t in tags if t.strip()]
    assert forms.coerce(fields["tags"], fields["tags"].as_input(cleaned)) == (cleaned or None)


@pytest.mark.parametrize(
    ("widget", "typed", "value"),
    [
        ("integer", "1,200", 1200),
        ("integer", "12345678901234567890", 12345678901234567890),  # exactly, not through a float
        ("integer", "3.0", 3),
        ("number", "1,5", 1.5),  # a decimal comma
        ("number", "1,200.25", 1200.25),
        ("number", "-2", -2),
    ],
)
def test_numbers_are_read_as_people_type_them(widget: str, typed: str, value: float) -> None:
    field = forms.FormField(name="n", label="n", widget=widget)
    assert forms.coerce(field, typed) == value


@pytest.mark.parametrize(
    ("widget", "typed"), [("integer", "1,5"), ("number", "inf"), ("number", "nan"), ("number", "1,2,3")]
)
def test_what_is_not_a_number_is_refused(widget: str, typed: str) -> None:
    with pytest.raises(ValueError, match="must be a"):
        forms.coerce(forms.FormField(name="n", label="n", widget=widget), typed)
