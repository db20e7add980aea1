"""gateway.humanlayer.mapping: HumanLayer's calls onto the gateway's requests and back, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.errors import InvalidInputError
from gateway.humanlayer import mapping
from gateway.humanlayer import schemas as hl
from gateway.models import Request, build


def call(**email: object) -> hl.FunctionCall:
    return hl.FunctionCall.model_validate(
        {
            "run_id": "r1",
            "call_id": "call-1",
            "spec": {"fn": "send", "kwargs": {"a": 1}, "channel": {"email": {"address": "a@example.com", **email}}},
        }
    )


def test_the_experimental_names_stand_in_for_the_plain_ones() -> None:
    approval = mapping.approval_of(
        call(
            experimental_subject_line="Re: Budget",
            experimental_in_reply_to_message_id="<m1@example.com>",
            experimental_references_message_id="<m0@example.com> <m1@example.com>",
        )
    )
    email = approval.channel.email
    assert (email.subject, email.in_reply_to, email.references) == (
        "Re: Budget",
        "<m1@example.com>",
        ["<m0@example.com>", "<m1@example.com>"],
    )
    plain = mapping.approval_of(call(subject="Plain", experimental_subject_line="Old"))
    assert plain.channel.email.subject == "Plain"


def test_additional_recipients_by_field() -> None:
    approval = mapping.approval_of(
        call(
            additional_recipients=[
                {"address": "b@example.com", "field": "to"},
                {"address": "c@example.com"},
                {"address": "d@example.com", "field": "cc"},
                {"address": "e@example.com", "field": "bcc"},
            ]
        )
    )
    assert approval.channel.email.to == ["a@example.com", "b@example.com", "c@example.com"]
    assert approval.channel.email.cc == ["d@example.com", "e@example.com"]


def test_a_contact_takes_the_python_sdks_subject_unless_the_channel_has_one() -> None:
    contact = hl.HumanContact.model_validate(
        {
            "run_id": "r",
            "call_id": "c",
            "spec": {"msg": "Hi?", "subject": "From the model", "channel": {"email": {"address": "a@example.com"}}},
        }
    )
    assert mapping.question_of(contact).channel.email.subject == "From the model"
    contact.spec.channel.email.subject = "From the thread"  # type: ignore[union-attr]
    assert mapping.question_of(contact).channel.email.subject == "From the thread"


def test_bad_input_is_a_clear_error_in_the_calls_terms() -> None:
    with pytest.raises(InvalidInputError, match=r"spec\.channel\.sms: the sms channel is not served"):
        mapping.approval_of(
            hl.FunctionCall.model_validate(
                {"run_id": "r", "call_id": "c", "spec": {"fn": "f", "channel": {"sms": {"phone_number": "1"}}}}
            )
        )
    with pytest.raises(InvalidInputError, match="reject_options"):
        mapping.approval_of(
            hl.FunctionCall.model_validate(
                {
                    "run_id": "r",
                    "call_id": "c",
                    "spec": {
                        "fn": "f",
                        "channel": {"email": {"address": "a@example.com"}},
                        "reject_options": [{"name": "has spaces"}],
                    },
                }
            )
        )


def test_escalation_targets() -> None:
    escalation = hl.Escalation.model_validate(
        {
            "escalation_msg": "now",
            "additional_recipients": [{"address": "b@example.com", "field": "cc"}],
            "channel": {"email": {"address": "c@example.com", "additional_recipients": [{"address": "d@example.com"}]}},
        }
    )
    assert mapping.escalation_targets(escalation) == (["c@example.com", "d@example.com"], ["b@example.com"])


def _request(status: str, **fields: object) -> Request:
    when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    values: dict[str, object] = {"kind": "approval", **fields}
    return build(
        Request,
        id="apr_1",
        api_key_id="key_1",
        call_id="call-1",
        run_id="r1",
        ref="ABCD2345",
        channel={"email": {"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}},
        policy={"kind": "any"},
        created_at=when,
        status=status,
        decided_at=when if status != "pending" else None,
        **values,
    )


@pytest.mark.parametrize(
    ("status", "fields", "approved", "comment"),
    [
        ("pending", {}, None, None),
        ("approved", {"comment": "ok"}, True, "ok"),
        ("approved", {}, True, None),
        ("rejected", {"comment": "No."}, False, "No."),
        ("rejected", {"decided_by": "a@example.com"}, False, "Rejected by a@example.com, without a comment."),
        ("expired", {}, False, "Not approved: the request expired at 2026-12-04 12:00 UTC before anyone decided."),
        ("cancelled", {}, False, "Not approved: the request was cancelled at 2026-12-04 12:00 UTC."),
    ],
)
def test_function_call_status(
    status: str, fields: dict[str, object], approved: bool | None, comment: str | None
) -> None:
    out = mapping.function_call_out(_request(status, fn="send", kwargs={}, **fields))
    assert (out.status.approved, out.status.comment) == (approved, comment)
    assert out.spec["channel"]["email"]["address"] == "a@example.com"
    assert out.spec["channel"]["email"]["additional_recipients"] == [
        {"address": "b@example.com", "field": "to"},
        {"address": "c@example.com", "field": "cc"},
    ]


@pytest.mark.parametrize(
    ("status", "fields", "response"),
    [
        ("pending", {}, None),
        ("answered", {"comment": "Tuesday, 10am"}, "Tuesday, 10am"),
        ("answered", {"option": "tue", "options": [{"name": "tue", "title": "Tuesday"}]}, "Tuesday"),
        ("answered", {"option": "wed", "options": [{"name": "wed", "title": None}]}, "wed"),
        ("expired", {}, "No answer: the request expired at 2026-12-04 12:00 UTC before anyone answered."),
        ("cancelled", {}, "No answer: the request was cancelled at 2026-12-04 12:00 UTC."),
    ],
)
def test_human_contact_status_is_never_empty_once_final(
    status: str, fields: dict[str, object], response: str | None
) -> None:
    out = mapping.human_contact_out(_request(status, kind="question", message="Which day?", **fields))
    assert out.status.response == response
