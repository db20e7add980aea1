"""HumanLayer's calls onto the gateway's own requests and back: a function call is an approval, a human contact a
question, the email channel the gateway's email channel. Pure functions; the routes do the I/O."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.approvals.schemas import ApprovalCreate, QuestionCreate
from gateway.errors import InvalidInputError
from gateway.humanlayer import schemas as hl
from gateway.models import Request

SERVED = (
    "this gateway reaches humans by email only: give the channel as"
    " ContactChannel(email=EmailContactChannel(address=...))"
)


def _not_email(channel: hl.ContactChannel | None, where: str) -> hl.EmailContactChannel:
    if channel is None:
        raise InvalidInputError(f"{where}: no contact channel; {SERVED}")
    others = [name for name in ("slack", "sms", "whatsapp") if getattr(channel, name) is not None]
    if others:
        raise InvalidInputError(f"{where}.{others[0]}: the {others[0]} channel is not served; {SERVED}")
    if channel.email is None:
        raise InvalidInputError(f"{where}: no email in the contact channel; {SERVED}")
    return channel.email


def _recipients(extra: list[hl.EmailRecipient] | None) -> tuple[list[str], list[str]]:
    """Additional recipients: "to" approve; "cc" and "bcc" are copied (every mail is addressed to its one
    recipient alone, so a copy is never shown to the others, as a blind copy would not be)."""
    to = [r.address for r in extra or () if r.field in (None, "to")]
    cc = [r.address for r in extra or () if r.field in ("cc", "bcc")]
    return to, cc


def email_channel(channel: hl.ContactChannel | None, where: str, subject: str | None = None) -> dict[str, Any]:
    email = _not_email(channel, where)
    to, cc = _recipients(email.additional_recipients)
    references = email.references_message_id or email.experimental_references_message_id
    return {
        "email": {
            "to": [email.address, *to],
            "cc": cc,
            "subject": email.subject or email.experimental_subject_line or subject,
            "in_reply_to": email.in_reply_to_message_id or email.experimental_in_reply_to_message_id,
            "references": references.split() if references else None,
        }
    }


def _options(options: list[hl.ResponseOption] | None) -> list[dict[str, Any]] | None:
    if not options:
        return None
    return [{"name": o.name, "title": o.title, "description": o.description} for o in options]


def _validated(model: type[ApprovalCreate] | type[QuestionCreate], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"{where}: {first['msg']} (as the gateway reads this call)") from None


def approval_of(call: hl.FunctionCall) -> ApprovalCreate:
    spec = call.spec
    return _validated(
        ApprovalCreate,
        {
            "fn": spec.fn,
            "kwargs": spec.kwargs,
            "channel": email_channel(spec.channel, "spec.channel"),
            "call_id": call.call_id,
            "run_id": call.run_id or None,
            "reject_options": _options(spec.reject_options),
            "state": spec.state,
        },
    )


def question_of(contact: hl.HumanContact) -> QuestionCreate:
    spec = contact.spec
    return _validated(
        QuestionCreate,
        {
            "message": spec.msg,
            "channel": email_channel(spec.channel, "spec.channel", spec.subject),
            "call_id": contact.call_id,
            "run_id": contact.run_id or None,
            "response_options": _options(spec.response_options),
            "state": spec.state,
        },
    )


def escalation_targets(escalation: hl.Escalation) -> tuple[list[str], list[str]]:
    to, cc = _recipients(escalation.additional_recipients)
    if escalation.channel is not None:
        email = _not_email(escalation.channel, "channel")
        more_to, more_cc = _recipients(email.additional_recipients)
        to, cc = [*to, email.address, *more_to], [*cc, *more_cc]
    return to, cc


# --- back ---------------------------------------------------------------------------------------------------


def _channel_back(channel: dict[str, Any]) -> dict[str, Any]:
    email = channel.get("email") or {}
    to, cc = list(email.get("to") or []), list(email.get("cc") or [])
    subject, in_reply_to = email.get("subject"), email.get("in_reply_to")
    references = " ".join(email.get("references") or []) or None
    return {
        "email": {
            "address": to[0] if to else "",
            "additional_recipients": [{"address": a, "field": "to"} for a in to[1:]]
            + [{"address": a, "field": "cc"} for a in cc],
            "subject": subject,
            "experimental_subject_line": subject,
            "in_reply_to_message_id": in_reply_to,
            "experimental_in_reply_to_message_id": in_reply_to,
            "references_message_id": references,
            "experimental_references_message_id": references,
        }
    }


def _gateway(r: Request) -> hl.GatewayView:
    return hl.GatewayView(id=r.id, status=r.status, decided_by=r.decided_by, decided_via=r.decided_via)


def _when_closed(r: Request) -> str:
    when = r.decided_at or r.expires_at
    return f" at {when:%Y-%m-%d %H:%M} UTC" if when is not None else ""


def function_call_out(r: Request) -> hl.FunctionCallOut:
    """The SDKs wait until ``status.approved`` is true or false: every final state sets it, and a "no" always
    carries a comment saying why (the Python SDK refuses a rejection without one). Everything it says is on
    the request's own row."""
    approved: bool | None = None
    comment = r.comment
    if r.status == "approved":
        approved = True
    elif r.status == "rejected":
        approved = False
        comment = r.comment or f"Rejected by {r.decided_by or 'the approver'}, without a comment."
    elif r.status == "expired":
        approved = False
        comment = f"Not approved: the request expired{_when_closed(r)} before anyone decided."
    elif r.status == "cancelled":
        approved = False
        comment = f"Not approved: the request was cancelled{_when_closed(r)}."
    return hl.FunctionCallOut(
        run_id=r.run_id or "",
        call_id=r.call_id,
        spec={
            "fn": r.fn or "",
            "kwargs": r.kwargs or {},
            "channel": _channel_back(r.channel),
            "reject_options": r.options,
            "state": r.state,
        },
        status=hl.FunctionCallStatus(
            requested_at=r.created_at,
            responded_at=r.decided_at if r.status != "pending" else None,
            approved=approved,
            comment=comment,
            reject_option_name=r.option,
        ),
        gateway=_gateway(r),
    )


def human_contact_out(r: Request) -> hl.HumanContactOut:
    """The SDKs wait until ``status.response`` is set (TypeScript: not empty): an answer chosen by option alone
    reads as the option's title, and an expiry or a cancel as a sentence saying so."""
    response: str | None = None
    if r.status == "answered":
        option = next((o for o in r.options or [] if o.get("name") == r.option), None)
        chosen = (option.get("title") or option.get("name")) if option else r.option
        response = r.comment if (r.comment or "").strip() else chosen or "(an empty answer)"
    elif r.status == "expired":
        response = f"No answer: the request expired{_when_closed(r)} before anyone answered."
    elif r.status == "cancelled":
        response = f"No answer: the request was cancelled{_when_closed(r)}."
    return hl.HumanContactOut(
        run_id=r.run_id or "",
        call_id=r.call_id,
        spec={
            "msg": r.message or "",
            "subject": (r.channel.get("email") or {}).get("subject"),
            "channel": _channel_back(r.channel),
            "response_options": r.options,
            "state": r.state,
        },
        status=hl.HumanContactStatus(
            requested_at=r.created_at,
            responded_at=r.decided_at if r.status != "pending" else None,
            response=response,
            response_option_name=r.option,
        ),
        gateway=_gateway(r),
    )
