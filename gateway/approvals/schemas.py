"""The API's request and response bodies, exactly as in CONTRACT.md (extended, never renamed)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway import addresses, forms

MAX_RECIPIENTS = 50
MAX_JSON_BYTES = 256 * 1024
MAX_EXPIRES_IN = 365 * 24 * 3600

Name = Annotated[str, Field(min_length=1, max_length=200)]
# Typed for clients (format "email"); the validator below is what decides.
EmailAddress = Annotated[str, Field(min_length=3, max_length=1000, json_schema_extra={"format": "email"})]


def unique_addresses(value: list[str]) -> list[str]:
    """Valid bare addresses, each once (compared case-insensitively), in the order given."""
    seen: dict[str, str] = {}
    for raw in value:
        try:
            bare = addresses.validate(raw)
        except addresses.InvalidAddressError as exc:
            raise ValueError(exc.message) from None
        seen.setdefault(bare.lower(), bare)
    return list(seen.values())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailChannel(_Strict):
    to: list[EmailAddress] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    cc: list[EmailAddress] = Field(default_factory=list, max_length=MAX_RECIPIENTS)
    subject: str | None = Field(default=None, max_length=300)
    context: str | None = Field(default=None, max_length=20_000)
    in_reply_to: str | None = Field(default=None, max_length=998)
    references: list[str] | None = Field(default=None, max_length=100)

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to", "cc")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return unique_addresses(value)

    @field_validator("subject", "in_reply_to")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or "\r" in value):
            raise ValueError("must be a single line")
        return value

    @field_validator("references")
    @classmethod
    def _refs_one_line(cls, value: list[str] | None) -> list[str] | None:
        for ref in value or ():
            if "\n" in ref or "\r" in ref or not ref.strip():
                raise ValueError("each reference must be a non-empty single line")
        return value

    @model_validator(mode="after")
    def _cc_not_to(self) -> EmailChannel:
        to = {a.lower() for a in self.to}
        self.cc = [a for a in self.cc if a.lower() not in to]
        return self


class Channel(_Strict):
    email: EmailChannel


class Option(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class Quorum(_Strict):
    quorum: int = Field(ge=1, le=MAX_RECIPIENTS)


Policy = Literal["any", "all"] | Quorum


class Reminders(_Strict):
    """Reminders to the recipients who have not answered: the first after ``first_after`` seconds, then every
    ``every`` seconds, at most ``max`` in all (1 without ``every``, else 3 unless given)."""

    first_after: int = Field(ge=1, le=MAX_EXPIRES_IN)
    every: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN)
    max: int | None = Field(default=None, ge=1, le=100)


class Escalation(_Strict):
    """After ``after`` seconds without a decision, ``to`` are added as approvers with their own links."""

    after: int = Field(ge=1, le=MAX_EXPIRES_IN)
    to: list[EmailAddress] = Field(min_length=1, max_length=MAX_RECIPIENTS)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return unique_addresses(value)


def _json_size(value: Any, what: str) -> Any:
    if value is not None and len(json.dumps(value, default=str)) > MAX_JSON_BYTES:
        raise ValueError(f"{what} is larger than {MAX_JSON_BYTES // 1024} KiB")
    return value


class _CreateBase(_Strict):
    channel: Channel
    call_id: str | None = Field(default=None, min_length=1, max_length=200)
    run_id: str | None = Field(default=None, max_length=200)
    expires_in: int | None = Field(default=None, ge=1, le=MAX_EXPIRES_IN)
    callback_url: str | None = Field(default=None, max_length=2000)
    callback_responses: bool = False
    state: dict[str, Any] | None = None
    reminders: Reminders | Literal[False] | None = None
    escalation: Escalation | None = None

    @field_validator("state")
    @classmethod
    def _state_size(cls, value: Any) -> Any:
        return _json_size(value, "state")

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @staticmethod
    def _unique_options(options: list[Option] | None) -> list[Option] | None:
        if options is not None and len({o.name for o in options}) != len(options):
            raise ValueError("option names must be unique")
        return options


def _schema_size(value: dict[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value, default=str)) > 64 * 1024:
        raise ValueError(f"{what} is larger than 64 KiB")
    return value


class ApprovalCreate(_CreateBase):
    fn: Name
    kwargs: dict[str, Any] = Field(default_factory=dict)
    reject_options: list[Option] | None = Field(default=None, max_length=20)
    policy: Policy = "any"
    editable: (
        bool | Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] | None
    ) = Field(
        default=None,
        description="Arguments approvers may change before approving: true for all, or their names.",
    )
    kwargs_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of kwargs: types the edit form's fields and checks edits."
    )

    @field_validator("kwargs_schema")
    @classmethod
    def _kwargs_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _schema_size(value, "kwargs_schema")
            try:
                forms.check_schema(value, "kwargs_schema")
            except forms.SchemaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _editable(self) -> ApprovalCreate:
        try:
            if self.kwargs_schema is not None:
                forms.validate(self.kwargs_schema, self.kwargs)
            forms.editable_names(self.kwargs, self.editable, self.kwargs_schema)
        except forms.FieldErrors as exc:
            raise ValueError(f"kwargs do not match kwargs_schema: {exc}") from None
        except forms.SchemaError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("kwargs")
    @classmethod
    def _kwargs_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _json_size(value, "kwargs")

    @field_validator("reject_options")
    @classmethod
    def _reject_unique(cls, value: list[Option] | None) -> list[Option] | None:
        return cls._unique_options(value)

    @model_validator(mode="after")
    def _quorum_reachable(self) -> ApprovalCreate:
        if isinstance(self.policy, Quorum) and self.policy.quorum > len(self.channel.email.to):
            count = len(self.channel.email.to)
            raise ValueError(f"a quorum of {self.policy.quorum} can never be reached with {count} recipient(s)")
        return self

    def policy_dict(self) -> dict[str, Any]:
        if isinstance(self.policy, Quorum):
            return {"kind": "quorum", "quorum": self.policy.quorum}
        return {"kind": self.policy}


class QuestionCreate(_CreateBase):
    message: str = Field(min_length=1, max_length=20_000)
    response_options: list[Option] | None = Field(default=None, max_length=20)
    response_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema of the answer (an object of string, number, integer, boolean and string-array"
        " properties): the answer page becomes a form and response_data the validated answer.",
    )

    @field_validator("response_options")
    @classmethod
    def _response_unique(cls, value: list[Option] | None) -> list[Option] | None:
        return cls._unique_options(value)

    @field_validator("response_schema")
    @classmethod
    def _response_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _schema_size(value, "response_schema")
            try:
                forms.check_response_schema(value)
            except forms.SchemaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _options_or_schema(self) -> QuestionCreate:
        if self.response_options and self.response_schema:
            raise ValueError(
                "give response_options or a response_schema, not both (a property with an enum offers choices)"
            )
        return self


class ApprovalAnswer(_Strict):
    """An answer given over the API by a responder key, on behalf of one of the approval's recipients."""

    approver: EmailAddress
    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=100_000)
    reject_option: str | None = Field(default=None, max_length=100)
    edited_kwargs: dict[str, Any] | None = None


class QuestionAnswer(_Strict):
    """An answer to a question over the API by a responder key, on behalf of one of its recipients."""

    responder: EmailAddress
    response: str | None = Field(default=None, max_length=100_000)
    response_option: str | None = Field(default=None, max_length=100)
    response_data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something(self) -> QuestionAnswer:
        if not (self.response or "").strip() and self.response_option is None and self.response_data is None:
            raise ValueError("give a response, a response_option or response_data")
        return self


class ResponseOut(BaseModel):
    approver: str
    decision: Literal["approve", "reject"]
    comment: str | None
    via: str
    at: datetime
    reject_option: str | None = None
    late: bool = False  # given after the decision: recorded, changes nothing
    edits: dict[str, Any] | None = None  # what this approver changed: {name: {"before": …, "after": …}}
    superseded: bool = False  # given on arguments a later edit changed: no longer counts


class RecipientOut(BaseModel):
    """Extension: who the request went to and how their mail is doing."""

    address: str
    role: Literal["to", "cc"]
    mail_status: Literal["pending", "sent", "failed"] | None
    mail_error: str | None = None
    responded: bool


class ApprovalOut(BaseModel):  # type: ignore[no-redef]
    id: str
    call_id: str
    run_id: str | None
    fn: str
    kwargs: dict[str, Any]
    status: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    comment: str | None
    reject_option: str | None
    decided_by: str | None
    decided_via: Literal["link", "reply", "api"] | None
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    responses: list[ResponseOut]
    state: dict[str, Any] | None
    ref: str
    policy: Any
    recipients: list[RecipientOut]
    edited_kwargs: dict[str, Any] | None = None
    editable: list[str] | None = None


class QuestionResponseOut(BaseModel):
    approver: str
    response: str | None
    response_option: str | None
    via: str
    at: datetime
    late: bool = False
    response_data: dict[str, Any] | None = None


class QuestionOut(BaseModel):
    id: str
    call_id: str
    run_id: str | None
    message: str
    status: Literal["pending", "answered", "expired", "cancelled"]
    response: str | None
    response_option: str | None
    responded_by: str | None
    responded_via: Literal["link", "reply", "api"] | None
    created_at: datetime
    responded_at: datetime | None
    expires_at: datetime | None
    state: dict[str, Any] | None
    ref: str
    responses: list[QuestionResponseOut]
    recipients: list[RecipientOut]
    response_data: dict[str, Any] | None = None
    response_schema: dict[str, Any] | None = None


class EventOut(BaseModel):
    id: int
    at: datetime
    type: str
    actor: str | None
    data: dict[str, Any] | None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
