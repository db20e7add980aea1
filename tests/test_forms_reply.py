"""Typed answers written in a reply: Name: value lines, matched loosely."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway import forms

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "start_date": {"type": "string", "format": "date", "title": "Start date"},
        "budget": {"type": "integer"},
        "notes": {"type": "string", "maxLength": 5000},
    },
    "required": ["start_date", "budget"],
}
FIELDS = forms.fields_from_schema(SCHEMA)


def test_names_match_by_title_or_name_in_any_case_and_spacing() -> None:
    text = "Sure, here you go:\n\n- START DATE: 2027-02-01\n* Budget = 4000\n\nThanks"
    assert forms.read_lines(FIELDS, text) == {"start_date": "2027-02-01", "budget": "4000"}
    assert forms.read_lines(FIELDS, "start_date: 2027-02-01\nbudget:4000") == {
        "start_date": "2027-02-01",
        "budget": "4000",
    }


def test_a_long_text_field_goes_on_over_the_following_lines() -> None:
    text = "Budget: 10\nNotes: first line\nsecond line\n\nthird after a gap\nStart date: 2027-01-01"
    values = forms.read_lines(FIELDS, text)
    assert values["notes"] == "first line\nsecond line\n\nthird after a gap"
    assert values["start_date"] == "2027-01-01"


def test_a_line_that_only_looks_like_a_field_is_not_taken_for_one() -> None:
    assert forms.read_lines(FIELDS, "Note to self: call Bob\nBudget: 5") == {"budget": "5"}


def test_a_schema_of_one_field_takes_the_whole_reply() -> None:
    one = forms.fields_from_schema({"type": "object", "properties": {"city": {"type": "string"}}})
    assert forms.read_lines(one, "Lisbon, please") == {"city": "Lisbon, please"}
    assert forms.read_lines(one, "City: Porto") == {"city": "Porto"}


def test_what_a_reply_misses_is_named() -> None:
    raw = forms.read_lines(FIELDS, "Budget: a lot")
    try:
        forms.read_form(FIELDS, raw, absent_is_false=False)
    except forms.FieldErrors as exc:
        assert exc.errors == {"start_date": "is required", "budget": "must be a whole number"}
    else:
        raise AssertionError("an incomplete reply was accepted")


@given(st.text(max_size=400))
def test_any_text_reads_without_error_and_only_names_known_fields(text: str) -> None:
    assert set(forms.read_lines(FIELDS, text)) <= {"start_date", "budget", "notes"}
