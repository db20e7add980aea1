"""One root, ``GatewayError``; every error carries the data a caller needs to act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.client._models import Approval, Question


class GatewayError(Exception):
    """Anything the client raises."""


class APIError(GatewayError):
    """The gateway answered with an error: ``status`` (HTTP), ``code`` and ``message`` from its error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class AuthenticationError(APIError):
    """401: the API key is missing or not valid."""


class NotFoundError(APIError):
    """404: no such request for this key."""


class ConflictError(APIError):
    """409: the ``call_id`` was used before with other content (or the request is no longer pending)."""


class InvalidRequestError(APIError):
    """400/413/422: the gateway refused the input; ``message`` says which field and why."""


class ServerError(APIError):
    """5xx: the gateway failed; safe to retry (creation is idempotent by ``call_id``)."""


class GatewayConnectionError(GatewayError):
    """The gateway could not be reached (after retrying)."""


class WaitTimeoutError(GatewayError, TimeoutError):
    """No decision within the wait's timeout. The request stays pending; waiting again resumes it."""

    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(f"no decision on {request_id} within {timeout:g} s; it is still pending")
        self.request_id, self.timeout = request_id, timeout


class InboxTimeoutError(GatewayError, TimeoutError):
    """No message for the agent within the wait's timeout; waiting again goes on from the same cursor."""

    def __init__(self, agent: str, timeout: float) -> None:
        super().__init__(f"no message for agent {agent} within {timeout:g} s")
        self.agent, self.timeout = agent, timeout


class NotApprovedError(GatewayError):
    """The gated function did not run. ``request`` is the final Approval (or Question)."""

    def __init__(self, message: str, fn: str, request: Approval | Question) -> None:
        super().__init__(message)
        self.fn, self.request = fn, request


class ApprovalRejectedError(NotApprovedError):
    """A human said no; ``comment`` is their feedback (and ``option`` the reject option they chose)."""

    def __init__(self, message: str, fn: str, request: Approval) -> None:
        super().__init__(message, fn, request)
        self.comment, self.option = request.comment, request.reject_option


class RequestExpiredError(NotApprovedError):
    """Nobody answered before the request expired."""


class RequestCancelledError(NotApprovedError):
    """The request was cancelled through the API."""
