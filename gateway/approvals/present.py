"""RequestView -> the contract's Approval and Question shapes."""

from __future__ import annotations

from typing import Any

from gateway.approvals.schemas import (
    ApprovalOut,
    QuestionOut,
    QuestionResponseOut,
    RecipientOut,
    ResponseOut,
)
from gateway.approvals.views import RequestView


def recipients_out(view: RequestView) -> list[RecipientOut]:
    answered = {r.recipient_id for r in view.responses}
    out = []
    for rcp in view.recipients:
        mail = view.mail.get(rcp.id)
        out.append(
            RecipientOut(
                address=rcp.address,
                role=rcp.role,
                mail_status=mail.status if mail else None,
                mail_error=mail.last_error if mail and mail.status != "sent" else None,
                responded=rcp.id in answered,
            )
        )
    return out


def _policy(policy: dict[str, Any]) -> Any:
    return {"quorum": policy["quorum"]} if policy.get("kind") == "quorum" else policy.get("kind", "any")


def approval_out(view: RequestView) -> ApprovalOut:
    r = view.request
    return ApprovalOut(
        id=r.id,
        call_id=r.call_id,
        run_id=r.run_id,
        fn=r.fn or "",
        kwargs=r.kwargs or {},
        status=r.status,
        comment=r.comment,
        reject_option=r.option,
        decided_by=r.decided_by,
        decided_via=r.decided_via,
        created_at=r.created_at,
        decided_at=r.decided_at,
        expires_at=r.expires_at,
        responses=[
            ResponseOut(
                approver=x.approver,
                decision=x.decision,
                comment=x.comment,
                via=x.via,
                at=x.at,
                reject_option=x.option,
                late=x.late,
                edits=x.data,
                superseded=x.round < r.round,
            )
            for x in view.responses
        ],
        state=r.state,
        ref=r.ref,
        policy=_policy(r.policy),
        recipients=recipients_out(view),
        edited_kwargs=r.edited_kwargs,
        editable=r.editable,
    )


def question_out(view: RequestView) -> QuestionOut:
    r = view.request
    return QuestionOut(
        id=r.id,
        call_id=r.call_id,
        run_id=r.run_id,
        message=r.message or "",
        status=r.status,
        response=r.comment,
        response_option=r.option,
        responded_by=r.decided_by,
        responded_via=r.decided_via,
        created_at=r.created_at,
        responded_at=r.decided_at,
        expires_at=r.expires_at,
        state=r.state,
        ref=r.ref,
        responses=[
            QuestionResponseOut(
                approver=x.approver,
                response=x.comment,
                response_option=x.option,
                via=x.via,
                at=x.at,
                late=x.late,
                response_data=x.data,
            )
            for x in view.responses
        ],
        recipients=recipients_out(view),
        response_data=r.data,
        response_schema=r.input_schema,
    )
