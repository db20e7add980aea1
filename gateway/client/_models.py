"""The contract's Approval and Question, as read by the client (unknown fields kept in ``raw``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FINAL = frozenset({"approved", "rejected", "answered", "expired", "cancelled"})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Response:
    approver: str
    decision: str
    comment: str | None
    via: str
    at: datetime | None


@dataclass(frozen=True)
class Approval:
    id: str
    call_id: str
    run_id: str | None
    fn: str
    kwargs: dict[str, Any]
    status: str
    comment: str | None
    reject_option: str | None
    decided_by: str | None
    decided_via: str | None
    created_at: datetime | None
    decided_at: datetime | None
    expires_at: datetime | None
    responses: list[Response]
    state: Any
    raw: dict[str, Any] = field(repr=False, compare=False)
    edited_kwargs: dict[str, Any] | None = None

    @property
    def pending(self) -> bool:
        return self.status not in FINAL

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def approved_kwargs(self) -> dict[str, Any]:
        """The arguments as approved: with the approvers' edits, when they made any."""
        return dict(self.edited_kwargs if self.edited_kwargs is not None else self.kwargs)

    @property
    def changes(self) -> dict[str, tuple[Any, Any]]:
        """What the approvers changed: name -> (as the agent asked, as approved)."""
        if self.edited_kwargs is None:
            return {}
        names = list(self.kwargs) + [n for n in self.edited_kwargs if n not in self.kwargs]
        return {
            n: (self.kwargs.get(n), self.edited_kwargs.get(n))
            for n in names
            if self.kwargs.get(n) != self.edited_kwargs.get(n)
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        return cls(
            id=data["id"],
            call_id=data.get("call_id", ""),
            run_id=data.get("run_id"),
            fn=data.get("fn", ""),
            kwargs=data.get("kwargs") or {},
            status=data["status"],
            comment=data.get("comment"),
            reject_option=data.get("reject_option"),
            decided_by=data.get("decided_by"),
            decided_via=data.get("decided_via"),
            created_at=_time(data.get("created_at")),
            decided_at=_time(data.get("decided_at")),
            expires_at=_time(data.get("expires_at")),
            responses=[
                Response(
                    r.get("approver", ""), r.get("decision", ""), r.get("comment"), r.get("via", ""), _time(r.get("at"))
                )
                for r in data.get("responses") or []
            ],
            state=data.get("state"),
            raw=data,
            edited_kwargs=data.get("edited_kwargs"),
        )


@dataclass(frozen=True)
class Question:
    id: str
    call_id: str
    run_id: str | None
    message: str
    status: str
    response: str | None
    response_option: str | None
    responded_by: str | None
    responded_via: str | None
    created_at: datetime | None
    responded_at: datetime | None
    expires_at: datetime | None
    state: Any
    raw: dict[str, Any] = field(repr=False, compare=False)
    response_data: dict[str, Any] | None = None  # a typed question's validated answer

    @property
    def pending(self) -> bool:
        return self.status not in FINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Question:
        return cls(
            id=data["id"],
            call_id=data.get("call_id", ""),
            run_id=data.get("run_id"),
            message=data.get("message", ""),
            status=data["status"],
            response=data.get("response"),
            response_option=data.get("response_option"),
            responded_by=data.get("responded_by"),
            responded_via=data.get("responded_via"),
            created_at=_time(data.get("created_at")),
            responded_at=_time(data.get("responded_at")),
            expires_at=_time(data.get("expires_at")),
            state=data.get("state"),
            raw=data,
            response_data=data.get("response_data"),
        )


@dataclass(frozen=True)
class Message:
    """A human's mail to an agent: the new text (quotes and signature stripped), who sent it, and the run or
    notification it answers, if any."""

    id: str
    sender: str
    subject: str
    text: str
    message_id: str
    received_at: datetime | None
    run_id: str | None
    notification_id: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=data["id"],
            sender=data.get("from") or "",
            subject=data.get("subject") or "",
            text=data.get("text") or "",
            message_id=data.get("message_id") or "",
            received_at=_time(data.get("received_at")),
            run_id=data.get("run_id"),
            notification_id=data.get("notification_id"),
            raw=data,
        )


@dataclass(frozen=True)
class Notification:
    id: str
    call_id: str
    run_id: str | None
    agent: str | None
    message: str
    ref: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(
            id=data["id"],
            call_id=data.get("call_id") or "",
            run_id=data.get("run_id"),
            agent=data.get("agent"),
            message=data.get("message") or "",
            ref=data.get("ref") or "",
            raw=data,
        )
