"""Errors that carry their data. Each maps to an HTTP status and a stable ``code`` for the API."""

from __future__ import annotations


class GatewayError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidInputError(GatewayError):
    status = 422
    code = "invalid_request"


class FieldsRefusedError(InvalidInputError):
    """Typed input that did not validate: one message per field (the page shows each beside its input)."""

    what = "input"

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        listed = "; ".join(f"{name} {text}" if name else text for name, text in errors.items())
        super().__init__(f"{self.what}: {listed}")


class EditsRefusedError(FieldsRefusedError):
    what = "edited_kwargs"


class AnswerRefusedError(FieldsRefusedError):
    what = "response_data"


class ArgumentsChangedError(GatewayError):
    """An approval of arguments an approver has changed since they were shown: nobody approves what they did
    not see."""

    status = 409
    code = "arguments_changed"

    def __init__(self, request_id: str, ref: str) -> None:
        self.request_id = request_id
        self.ref = ref
        super().__init__(
            f"the arguments of request #{ref} were changed by another approver after you saw them;"
            " look at them as they are now and decide again"
        )


class UnauthorizedError(GatewayError):
    """No credentials, or ones that are not valid: an API key, an inbound webhook's secret or signature."""

    status = 401
    code = "unauthorized"


class ForbiddenError(GatewayError):
    """A valid key used for what its role does not allow."""

    status = 403
    code = "forbidden"


class NotFoundError(GatewayError):
    status = 404
    code = "not_found"

    def __init__(self, kind: str, request_id: str) -> None:
        self.kind = kind
        self.request_id = request_id
        super().__init__(f"no {kind} with id {request_id!r}")


class CallIdConflictError(GatewayError):
    status = 409
    code = "call_id_conflict"

    def __init__(self, call_id: str, existing_id: str) -> None:
        self.call_id = call_id
        self.existing_id = existing_id
        super().__init__(f"call_id {call_id!r} is already used by {existing_id} with different content")


class NotPendingError(GatewayError):
    """The request is no longer pending: cancelling, or answering, it changes nothing."""

    status = 409
    code = "not_pending"

    def __init__(self, request_id: str, status: str) -> None:
        self.request_id = request_id
        self.request_status = status
        super().__init__(f"{request_id} is already {status}")


class AlreadyRespondedError(GatewayError):
    """This recipient has answered already; each recipient's answer counts once."""

    status = 409
    code = "already_responded"

    def __init__(self, request_id: str, approver: str) -> None:
        self.request_id = request_id
        self.approver = approver
        super().__init__(f"{approver} has already answered {request_id}")


class NotAnApproverError(GatewayError):
    status = 403
    code = "not_an_approver"

    def __init__(self, request_id: str, address: str) -> None:
        self.request_id = request_id
        self.address = address
        super().__init__(f"{address} was copied on {request_id} for information and cannot decide it")
