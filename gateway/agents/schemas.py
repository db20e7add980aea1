"""The outer loop's bodies (CONTRACT.md): agents humans write to, notifications, and the agent's messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from gateway import addresses
from gateway.approvals.schemas import Channel, RecipientOut, _Strict

AGENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


def allowed_sender(entry: str) -> str:
    """An address, or "@domain" for anyone at that domain (exactly that domain, not its subdomains)."""
    entry = entry.strip()
    if entry.startswith("@"):
        try:
            return "@" + addresses.validate(f"x{entry}").split("@", 1)[1].lower()
        except addresses.InvalidAddressError:
            raise ValueError(f"{entry!r} is not a domain (write it as @example.com)") from None
    try:
        return addresses.validate(entry).lower()
    except addresses.InvalidAddressError as exc:
        raise ValueError(exc.message) from None


class AgentCreate(_Strict):
    name: str = Field(pattern=AGENT_NAME)
    allowed_senders: list[str] = Field(min_length=1, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)

    @field_validator("allowed_senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(allowed_sender(v) for v in value))


class AgentOut(BaseModel):
    name: str
    address: str  # where a human writes to reach this agent
    allowed_senders: list[str]
    webhook_url: str | None
    created_at: datetime


class NotificationCreate(_Strict):
    message: str = Field(min_length=1, max_length=20_000)
    channel: Channel
    agent: str | None = Field(default=None, pattern=AGENT_NAME)
    run_id: str | None = Field(default=None, max_length=200)
    call_id: str | None = Field(default=None, min_length=1, max_length=200)


class NotificationOut(BaseModel):
    id: str
    call_id: str
    run_id: str | None
    agent: str | None
    message: str
    created_at: datetime
    ref: str
    recipients: list[RecipientOut]


class MessageOut(BaseModel):
    id: str
    from_: str = Field(serialization_alias="from")
    subject: str
    text: str  # the new text: quotes, signatures and forwarded messages stripped
    message_id: str
    received_at: datetime
    run_id: str | None
    notification_id: str | None


class MessagesPage(BaseModel):
    messages: list[MessageOut]
    next: str  # give it back as ``after`` for the messages that follow


def message_out(row: Any) -> MessageOut:
    return MessageOut(
        id=row.id,
        from_=row.sender,
        subject=row.subject,
        text=row.text,
        message_id=row.message_id,
        received_at=row.received_at,
        run_id=row.run_id,
        notification_id=row.notification_id,
    )
