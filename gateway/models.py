"""The tables. One module, so Alembic sees the whole schema and every domain shares the same rows.

Times are stored as UTC and always come back timezone-aware, whatever the database does with zones.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import configure_mappers
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# In ASCII order, so the ids sort as strings exactly as their values do (digits before letters).
_B32 = "234567abcdefghijklmnopqrstuvwxyz"


def utcnow() -> datetime:
    return datetime.now(UTC)


_last_id = 0


def new_id(prefix: str) -> str:
    """Time-ordered, lowercase-only ids: sortable in indexes and safe in case-folding mail systems.

    Monotonic within a process (as ULIDs are): two ids made in the same millisecond still sort in the order
    they were made, so "newest first" listings and their cursors agree."""
    global _last_id
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    if value <= _last_id:
        value = _last_id + 1
    _last_id = value
    chars = []
    for _ in range(26):
        chars.append(_B32[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


_Row = TypeVar("_Row", bound=SQLModel)


def build(cls: type[_Row], **values: Any) -> _Row:
    """A row object from values the caller already validated, without SQLModel's per-object validation.

    On the submit path SQLModel's constructor cost more than the rest of the row's life (it re-validates and
    introspects every default factory each time). The object is a normal transient ORM instance: a session
    can add it, and the group commit reads its column values from ``__dict__``.
    """
    obj: _Row = cls._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    state = obj.__dict__
    for name, field in cls.model_fields.items():
        if name in values:
            state[name] = values[name]
        elif field.default_factory is not None:
            state[name] = field.default_factory()  # type: ignore[call-arg]
        else:
            state[name] = field.default
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def from_row(cls: type[_Row], row: Any) -> _Row:
    """A read-only copy of a stored row from a Core result that selected ``cls``'s table (among others): cheaper
    than loading it through a session. It is transient: never ``session.add`` it (that would INSERT it again)."""
    mapping = row._mapping
    return build(cls, **{c.name: mapping[c] for c in cls.__table__.columns})  # type: ignore[attr-defined]


def column_values(row: SQLModel) -> dict[str, Any]:
    """A row's column values for a Core INSERT, leaving out an unset autoincrement key."""
    state = row.__dict__
    values = {name: state[name] for name in _column_names(type(row)) if name in state}
    if values.get("id", 0) is None:
        del values["id"]
    return values


@functools.cache
def _column_names(model: type[SQLModel]) -> tuple[str, ...]:
    return tuple(c.name for c in model.__table__.columns)  # type: ignore[attr-defined]


def random_token(length: int) -> str:
    """``length`` random characters of lowercase base32."""
    raw = base64.b32encode(secrets.token_bytes((length * 5 + 7) // 8)).decode("ascii").lower()
    return raw[:length]


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dt(index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str
    prefix: str = Field(index=True, unique=True)
    key_hash: str = Field(unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = _dt()
    last_used_at: datetime | None = _dt()  # to the minute or so: written when a process first sees the key in use
    # "agent": makes requests and reads its own; "responder": answers requests on behalf of their recipients
    # (a chat bot, a portal, HumanLayer's respond routes), never makes any.
    role: str = Field(default="agent", sa_column_kwargs={"server_default": "agent"})


class Request(SQLModel, table=True):  # type: ignore[no-redef]
    """An approval or a question. ``comment``/``option`` hold the rejection comment and reject option of an
    approval, or the response text and chosen option of a question."""

    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("api_key_id", "call_id", name="uq_requests_key_call"),
        Index("ix_requests_key_created", "api_key_id", "created_at"),
        Index("ix_requests_due", "status", "next_due_at"),
    )

    id: str = Field(primary_key=True)
    kind: str  # "approval" | "question"
    api_key_id: str = Field(foreign_key="api_keys.id")
    call_id: str
    run_id: str | None = None
    ref: str = Field(unique=True)
    fn: str | None = None
    kwargs: dict[str, Any] | None = _json()
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    channel: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    options: list[dict[str, Any]] | None = _json()
    policy: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending")  # looked up with next_due_at: ix_requests_due serves both
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    option: str | None = None
    decided_by: str | None = None
    decided_via: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    decided_at: datetime | None = _dt()
    expires_at: datetime | None = _dt()  # the scheduler finds expiries by next_due_at
    state: dict[str, Any] | None = _json()
    callback_url: str | None = None
    content_hash: str
    # The lifecycle: when the scheduler must next look at this request (the earliest of its expiry, next
    # reminder and escalation), and what it has done so far.
    next_due_at: datetime | None = _dt()
    reminders: dict[str, Any] | None = _json()  # {"first_after": s, "every": s | None, "max": n}
    reminders_sent: int = 0
    escalation: dict[str, Any] | None = _json()  # {"after": s, "to": [address]}
    escalated_at: datetime | None = _dt()
    callback_responses: bool = False
    # A notification (kind "notification") names the agent its replies reach.
    agent_id: str | None = Field(default=None, foreign_key="agents.id")
    # Typed input: an approval's kwargs_schema (with ``editable``, the argument names approvers may change) or a
    # question's response_schema. ``edited_kwargs``: the arguments as they stand after an approver's edit;
    # ``data``: a typed question's validated answer (response_data).
    editable: list[str] | None = _json()
    input_schema: dict[str, Any] | None = _json()
    edited_kwargs: dict[str, Any] | None = _json()
    data: dict[str, Any] | None = _json()
    # Each edit starts the approval over: only answers given in the current round count (see approvals.policy).
    round: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Recipient(SQLModel, table=True):
    """One person a request was sent to. ``role`` "to" can decide; "cc" is informed only."""

    __tablename__ = "recipients"
    # An approver's inbox finds their requests by address, whatever its case.
    __table_args__ = (Index("ix_recipients_address_lower", text("lower(address)")),)

    id: str = Field(primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True)
    address: str = Field(index=True)
    role: str = "to"
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    escalated: bool = False  # added by escalation: decides like the others, but an ``all`` does not wait for it


class Response(SQLModel, table=True):
    """What one recipient answered. The unique triple makes every link and reply single-use (once per round: an
    edit to an approval's arguments asks those who answered before to look again)."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("request_id", "recipient_id", "round", name="uq_responses_request_recipient_round"),
    )

    id: str = Field(primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True)
    recipient_id: str = Field(foreign_key="recipients.id")
    approver: str
    decision: str  # "approve" | "reject" | "answer"
    option: str | None = None
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    via: str
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    late: bool = False  # given after the request was decided: kept, shown, and changes nothing
    round: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # the request's round it answered in
    # An approval's edits ({name: {"before", "after"}}) or a typed question's validated answer.
    data: dict[str, Any] | None = _json()


class OutboxMessage(SQLModel, table=True):
    """A mail waiting to go out, written in the same transaction as the request it belongs to."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_kind_due", "kind", "status", "next_attempt_at"),  # the webhook sender's own queue
    )

    id: str = Field(primary_key=True)
    request_id: str | None = Field(default=None, foreign_key="requests.id", index=True)
    recipient_id: str | None = Field(default=None, foreign_key="recipients.id", index=True)
    kind: str
    mail_from: str
    rcpt_to: list[str] = Field(sa_column=Column(JSON, nullable=False))
    message_id: str = Field(unique=True)
    # The whole message; None for a request mail queued at submit, until the sender composes it (mail.compose).
    raw: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: str = "pending"  # pending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = _dt()
    # Claimed by one sender until then (several replicas): if that sender dies, another takes the row after.
    lease_until: datetime | None = _dt()
    # A mail about several requests (a digest of reminders): its delivery is recorded in each one's trail.
    for_requests: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Event(SQLModel, table=True):
    """The audit trail: appended, never updated. Each request's events form a hash chain (see gateway.audit):
    ``seq`` counts from 1, ``prev_hash`` is the hash of event ``seq - 1``, so an edited or removed row shows."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("request_id", "seq", name="uq_events_request_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    type: str
    actor: str | None = None
    data: dict[str, Any] | None = _json()
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


class KeyValue(SQLModel, table=True):
    """Small pieces of service state (the dev secret, later the poller's UID marks)."""

    __tablename__ = "kv"

    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


class Agent(SQLModel, table=True):
    """An agent humans write to: its address is the reply mailbox plus ``tag`` (public: the address proves
    nothing, so a mail to it is delivered only from an allowed sender who passes DMARC)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("api_key_id", "name", name="uq_agents_key_name"),)

    id: str = Field(primary_key=True)
    api_key_id: str = Field(foreign_key="api_keys.id")
    name: str
    tag: str = Field(unique=True)
    allowed_senders: list[str] = Field(sa_column=Column(JSON, nullable=False))
    webhook_url: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class AgentMessage(SQLModel, table=True):
    """A human's mail to an agent, delivered in order: ``seq`` is the agent's cursor."""

    __tablename__ = "agent_messages"
    __table_args__ = (Index("ix_agent_messages_agent_seq", "agent_id", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    agent_id: str = Field(foreign_key="agents.id")
    message_id: str
    sender: str
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    run_id: str | None = None
    notification_id: str | None = Field(default=None, foreign_key="requests.id")
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    raw: str = Field(default="", sa_column=Column(Text, nullable=False))  # the whole mail, for the audit


class InboundMessage(SQLModel, table=True):
    """Every mail that reached the inbound pipeline, once: a re-delivered or re-read message (the same Message-ID
    and the same content) decides nothing the second time. The content's digest is part of the key, so a
    Message-ID reused on another mail (a forger's, or a careless client's) never hides that mail."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("message_id", "digest", name="uq_inbound_messages_message_digest"),)

    id: str = Field(primary_key=True)
    message_id: str = Field(index=True)
    digest: str = Field(default="", sa_column_kwargs={"server_default": ""})
    received_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    sender: str | None = None
    subject: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    source: str  # imap | dev | api
    request_id: str | None = Field(default=None, foreign_key="requests.id", index=True)
    recipient_id: str | None = Field(default=None, foreign_key="recipients.id")
    outcome: str  # decided | recorded | delivered | ignored
    reason: str | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    agent_id: str | None = Field(default=None, foreign_key="agents.id", index=True)  # mail to an agent


# Configure the mappers now, so rows made by ``build`` work before any session has touched the schema.
configure_mappers()
