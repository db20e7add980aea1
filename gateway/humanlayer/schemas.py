"""HumanLayer's v1 agent API on the wire, as its SDKs (PyPI `humanlayer`, npm `@humanlayer/sdk`, 0.7.x) send and
read it: snake_case JSON; Python sends every field (null where empty), TypeScript leaves undefined ones out, so
every field but the identifying ones is optional, and fields this gateway does not know are ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EmailRecipient(_Lenient):
    address: str = Field(max_length=1000)
    context_about_user: str | None = None
    field: Literal["to", "cc", "bcc"] | None = None


class EmailContactChannel(_Lenient):
    address: str = Field(max_length=1000)
    context_about_user: str | None = None
    additional_recipients: list[EmailRecipient] | None = Field(default=None, max_length=50)
    subject: str | None = None
    references_message_id: str | None = None
    in_reply_to_message_id: str | None = None
    experimental_subject_line: str | None = None
    experimental_references_message_id: str | None = None
    experimental_in_reply_to_message_id: str | None = None
    template: str | None = None


class ContactChannel(_Lenient):
    slack: dict[str, Any] | None = None
    sms: dict[str, Any] | None = None
    whatsapp: dict[str, Any] | None = None
    email: EmailContactChannel | None = None


class ResponseOption(_Lenient):
    name: str
    title: str | None = None
    description: str | None = None
    prompt_fill: str | None = None
    interactive: bool | None = None


class FunctionCallSpec(_Lenient):  # type: ignore[no-redef]  # the plugin's __init__ has **kwargs too
    fn: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    channel: ContactChannel | None = None
    reject_options: list[ResponseOption] | None = None
    state: dict[str, Any] | None = None


class FunctionCall(_Lenient):
    run_id: str = Field(max_length=200)
    call_id: str = Field(min_length=1, max_length=200)
    spec: FunctionCallSpec


class HumanContactSpec(_Lenient):
    msg: str
    subject: str | None = None  # Python SDK only
    channel: ContactChannel | None = None
    response_options: list[ResponseOption] | None = None
    state: dict[str, Any] | None = None


class HumanContact(_Lenient):
    run_id: str = Field(max_length=200)
    call_id: str = Field(min_length=1, max_length=200)
    spec: HumanContactSpec


class Escalation(_Lenient):
    escalation_msg: str = Field(min_length=1, max_length=20_000)
    additional_recipients: list[EmailRecipient] | None = Field(default=None, max_length=50)
    channel: ContactChannel | None = None


class FunctionCallStatusIn(_Lenient):
    """A human's answer, sent by a responder to `/agent/function_calls/{call_id}/respond`. ``approver`` (an
    extension) says on whose behalf; by default the channel's own address."""

    approved: bool | None = None
    comment: str | None = None
    reject_option_name: str | None = None
    approver: str | None = None


class HumanContactStatusIn(_Lenient):
    response: str | None = None
    response_option_name: str | None = None
    responder: str | None = None


# --- what the gateway answers -------------------------------------------------------------------------------


class FunctionCallStatus(BaseModel):
    requested_at: datetime
    responded_at: datetime | None
    approved: bool | None
    comment: str | None
    reject_option_name: str | None
    slack_message_ts: None = None


class HumanContactStatus(BaseModel):
    requested_at: datetime
    responded_at: datetime | None
    response: str | None
    response_option_name: str | None


class GatewayView(BaseModel):
    """Extension: the request behind the call, as the gateway's own API names it."""

    id: str
    status: str
    decided_by: str | None
    decided_via: str | None


class FunctionCallOut(BaseModel):
    run_id: str
    call_id: str
    spec: dict[str, Any]
    status: FunctionCallStatus
    gateway: GatewayView


class HumanContactOut(BaseModel):
    run_id: str
    call_id: str
    spec: dict[str, Any]
    status: HumanContactStatus
    gateway: GatewayView
