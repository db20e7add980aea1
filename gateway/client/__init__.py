"""The agent's side of the gateway: gate functions on human approval, ask humans questions, wait durably.

from gateway.client import Gateway

gw = Gateway()  # GATEWAY_URL, GATEWAY_API_KEY (and GATEWAY_RUN_ID, to resume after a restart)

@gw.require_approval("boss@example.com")
def send_email(to: str, subject: str, body: str) -> str: ...

ask_human = gw.human_as_tool("boss@example.com")
"""

from gateway.client._async import (
    AsyncApprovalHandle,
    AsyncGateway,
    AsyncInbox,
    AsyncQuestionHandle,
    AsyncTypedQuestionHandle,
)
from gateway.client._base import derive_call_id
from gateway.client._errors import (
    APIError,
    ApprovalRejectedError,
    AuthenticationError,
    ConflictError,
    GatewayConnectionError,
    GatewayError,
    InboxTimeoutError,
    InvalidRequestError,
    NotApprovedError,
    NotFoundError,
    RequestCancelledError,
    RequestExpiredError,
    ServerError,
    WaitTimeoutError,
)
from gateway.client._models import Approval, Message, Notification, Question, Response
from gateway.client._schema import ResponseModelError, response_schema
from gateway.client._sync import ApprovalHandle, Gateway, Inbox, QuestionHandle, TypedQuestionHandle
from gateway.client.tools import HumanTool, anthropic_tool, anthropic_tools, openai_tool, openai_tools

__all__ = [
    "APIError",
    "Approval",
    "ApprovalHandle",
    "ApprovalRejectedError",
    "AsyncApprovalHandle",
    "AsyncGateway",
    "AsyncInbox",
    "AsyncQuestionHandle",
    "AsyncTypedQuestionHandle",
    "AuthenticationError",
    "ConflictError",
    "Gateway",
    "GatewayConnectionError",
    "GatewayError",
    "HumanTool",
    "Inbox",
    "InboxTimeoutError",
    "InvalidRequestError",
    "Message",
    "NotApprovedError",
    "NotFoundError",
    "Notification",
    "Question",
    "QuestionHandle",
    "RequestCancelledError",
    "RequestExpiredError",
    "Response",
    "ResponseModelError",
    "ServerError",
    "TypedQuestionHandle",
    "WaitTimeoutError",
    "anthropic_tool",
    "anthropic_tools",
    "derive_call_id",
    "openai_tool",
    "openai_tools",
    "response_schema",
]
