"""Everything the sync and async clients share: all but the I/O.

Building request bodies, deriving call ids, reading answers and mapping errors, planning long-poll waits and
turning an outcome into what a gated function returns are written once, here. ``Gateway`` and
``AsyncGateway`` only move bytes and sleep.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import inspect
import json
import os
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

import httpx

from gateway.client._errors import (
    APIError,
    ApprovalRejectedError,
    AuthenticationError,
    ConflictError,
    GatewayConnectionError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RequestCancelledError,
    RequestExpiredError,
    ServerError,
    WaitTimeoutError,
)
from gateway.client._models import Approval, Message, Question
from gateway.client._schema import parse_answer, response_schema

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_WAIT = 60  # the server holds a long-poll at most this long; the client renews
WAIT_SLACK = 15.0  # read timeout beyond the long-poll's own length
Recipients = str | Sequence[str]


def _jsonable(value: Any) -> Any:
    """Arguments as JSON: what a human reads in the email, and what the call id is derived from."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if hasattr(value, "model_dump"):  # pydantic
        return _jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Decimal | UUID | PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_call_id(run_id: str, fn: str, kwargs: dict[str, Any], occurrence: int = 0) -> str:
    """The same run calling the same function with the same arguments gets the same call id, so a restarted
    agent finds its request (and its decision) instead of sending a second email."""
    digest = hashlib.sha256(canonical([run_id, fn, kwargs, occurrence]).encode()).hexdigest()
    return f"auto-{digest[:40]}"


def bind_arguments(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments by name (positional ones bound through the signature, ``**extra`` merged in)."""
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update({k: _jsonable(v) for k, v in value.items()})
        else:
            named[name] = _jsonable(value)
    return named


def _recipients(to: Recipients) -> list[str]:
    return [to] if isinstance(to, str) else list(to)


def _options(options: Sequence[str | dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not options:
        return None
    return [{"name": o} if isinstance(o, str) else dict(o) for o in options]


def _optional(body: dict[str, Any], **fields: Any) -> None:
    """Add the fields that are set; the gateway's defaults stand for the rest."""
    body.update({name: value for name, value in fields.items() if value is not None})


@dataclass
class Call:
    """One HTTP exchange to make. ``retry``: safe to repeat after a dropped connection (reads, and creation,
    which the call id makes idempotent)."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    timeout: float | None = None
    retry: bool = True


@dataclass(frozen=True)
class ApprovalOptions:
    to: Recipients
    cc: Recipients | None = None
    subject: str | None = None
    context: str | None = None
    reject_options: Sequence[str | dict[str, Any]] | None = None
    policy: str | dict[str, int] = "any"
    expires_in: int | None = None
    timeout: float | None = None
    raise_on_reject: bool = False
    editable: bool | Sequence[str] | None = None
    kwargs_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class QuestionOptions:
    to: Recipients
    cc: Recipients | None = None
    subject: str | None = None
    context: str | None = None
    response_options: Sequence[str | dict[str, Any]] | None = None
    expires_in: int | None = None
    timeout: float | None = None
    raise_on_expiry: bool = False
    response_model: Any = None  # a pydantic model class: the answer is a form, and comes back as the model
    response_schema: dict[str, Any] | None = None  # the model as the gateway's schema (see _schema)


def question_options(
    to: Recipients,
    cc: Recipients | None,
    subject: str | None,
    context: str | None,
    response_options: Sequence[str | dict[str, Any]] | None,
    expires_in: int | None,
    timeout: float | None = None,
    raise_on_expiry: bool = False,
    *,
    response_model: Any = None,
) -> QuestionOptions:
    """The options of a question; a response model becomes its schema now, so what a form cannot ask for is an
    error at the call, not a request the human cannot answer."""
    schema = response_schema(response_model) if response_model is not None else None
    if schema is not None and response_options:
        raise InvalidRequestError(422, "invalid_request", "give response_options or a response_model, not both")
    return QuestionOptions(
        to, cc, subject, context, response_options, expires_in, timeout, raise_on_expiry, response_model, schema
    )


class Backoff:
    """Delays between reconnection attempts: 0.1 s doubling to 5 s. Never a busy loop."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap, self.delay = first, cap, first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class WaitPlan:
    """When to stop, and how long each long-poll may be held, for one ``.wait(timeout)``."""

    def __init__(self, request_id: str, timeout: float | None) -> None:
        self.request_id, self.timeout = request_id, timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def next_poll(self, path: str) -> Call | None:
        """The next long-poll, or None when the timeout is spent (the caller raises ``timed_out()``).

        Not retried inside ``_send``: the wait loop reconnects itself, within the wait's own deadline."""
        left = self.remaining()
        if left is not None and left <= 0:
            return None
        # The last poll holds exactly what is left (tenths of a second), so the end is one request, not a
        # burst of ``wait=0`` polls.
        hold: float = MAX_WAIT if left is None else max(0.1, min(MAX_WAIT, round(left, 1)))
        return Call("GET", path, params={"wait": hold}, timeout=hold + WAIT_SLACK, retry=False)

    def pause(self, delay: float) -> float:
        left = self.remaining()
        return delay if left is None else max(0.0, min(delay, left))

    def timed_out(self) -> WaitTimeoutError:
        return WaitTimeoutError(self.request_id, self.timeout or 0.0)


@dataclass(frozen=True)
class RunIt:
    """The gated function may run, with the approvers' changes to its arguments (name -> (before, after))."""

    changes: dict[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)


def apply_changes(
    sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any], changes: dict[str, tuple[Any, Any]]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with the approved values put in their places (a ``**extra`` one into its dict)."""
    if not changes:
        return args, kwargs
    bound = sig.bind(*args, **kwargs)
    extra = next((n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    for name, (_, after) in changes.items():
        param = sig.parameters.get(name)
        if param is not None and param.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            bound.arguments[name] = after
        elif extra is not None:
            bound.arguments.setdefault(extra, {})[name] = after
    return bound.args, bound.kwargs


def changes_note(fn_name: str, changes: dict[str, tuple[Any, Any]]) -> str:
    parts = [f"{name} from {json.dumps(before)} to {json.dumps(after)}" for name, (before, after) in changes.items()]
    return f"The human changed {', '.join(parts)} before approving {fn_name}; it ran with the changed values."


def with_changes(result: Any, fn_name: str, changes: dict[str, tuple[Any, Any]]) -> Any:
    """What the caller (often an LLM) is told: a text result says what the human changed; others are kept."""
    if not changes:
        return result
    if result is None:
        return changes_note(fn_name, changes)
    if isinstance(result, str):
        return f"{result}\n\n{changes_note(fn_name, changes)}"
    return result


class BaseGateway:
    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, *, run_id: str | None = None, timeout: float
    ) -> None:
        self.base_url = (base_url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("GATEWAY_API_KEY")
        if not key:
            raise GatewayError("no API key: pass api_key=... or set GATEWAY_API_KEY")
        self.api_key = key
        # Without a stable run id (GATEWAY_RUN_ID or run_id=...), every process is a new run: a restart then
        # asks again rather than reusing another run's decisions. With one, it resumes.
        self.run_id = run_id or os.environ.get("GATEWAY_RUN_ID") or f"run-{secrets.token_hex(8)}"
        self.timeout = timeout
        self._decided: Counter[str] = Counter()  # call key -> decisions already handed out in this process
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": "gateway-client"}

    # -- bodies -------------------------------------------------------------------------------------------

    def _channel(
        self, to: Recipients, cc: Recipients | None, subject: str | None, context: str | None
    ) -> dict[str, Any]:
        email: dict[str, Any] = {"to": _recipients(to)}
        if cc:
            email["cc"] = _recipients(cc)
        if subject is not None:
            email["subject"] = subject
        if context is not None:
            email["context"] = context
        return {"email": email}

    def _approval_call(
        self,
        fn: str,
        kwargs: dict[str, Any],
        opts: ApprovalOptions,
        *,
        call_id: str | None,
        run_id: str | None = None,
        state: Any = None,
        callback_url: str | None = None,
    ) -> Call:
        run = run_id or self.run_id
        body: dict[str, Any] = {
            "fn": fn,
            "kwargs": kwargs,
            "channel": self._channel(opts.to, opts.cc, opts.subject, opts.context),
            "call_id": call_id or derive_call_id(run, fn, kwargs),
            "run_id": run,
            "policy": opts.policy,
        }
        editable = list(opts.editable) if opts.editable not in (None, True, False) else opts.editable  # type: ignore[arg-type]
        _optional(body, editable=editable or None, kwargs_schema=opts.kwargs_schema)
        _optional(body, reject_options=_options(opts.reject_options), expires_in=opts.expires_in, state=state)
        _optional(body, callback_url=callback_url)
        return Call("POST", "/v1/approvals", json=body)

    def _question_call(
        self,
        message: str,
        opts: QuestionOptions,
        *,
        call_id: str | None,
        run_id: str | None = None,
        state: Any = None,
        callback_url: str | None = None,
    ) -> Call:
        run = run_id or self.run_id
        body: dict[str, Any] = {
            "message": message,
            "channel": self._channel(opts.to, opts.cc, opts.subject, opts.context),
            "call_id": call_id or derive_call_id(run, "ask", {"message": message}),
            "run_id": run,
        }
        _optional(body, response_options=_options(opts.response_options), expires_in=opts.expires_in, state=state)
        _optional(body, response_schema=opts.response_schema)
        _optional(body, callback_url=callback_url)
        return Call("POST", "/v1/questions", json=body)

    # -- answers ------------------------------------------------------------------------------------------

    @staticmethod
    def _read(response: httpx.Response) -> dict[str, Any]:
        if response.is_success:
            data = response.json()
            if not isinstance(data, dict):
                raise GatewayError(f"unexpected answer from the gateway: {response.text[:200]!r}")
            return data
        code, message = "error", response.text[:500] or response.reason_phrase
        try:
            error = response.json().get("error") or {}
            code, message = str(error.get("code", code)), str(error.get("message", message))
        except (ValueError, AttributeError):
            pass
        status = response.status_code
        cls: type[APIError] = APIError
        if status == 401:
            cls = AuthenticationError
        elif status == 404:
            cls = NotFoundError
        elif status == 409:
            cls = ConflictError
        elif status in (400, 413, 422):
            cls = InvalidRequestError
        elif status >= 500:
            cls = ServerError
        raise cls(status, code, message)

    @staticmethod
    def _retryable(exc: Exception) -> bool:
        return isinstance(exc, httpx.TransportError | GatewayConnectionError) or (
            isinstance(exc, ServerError) and exc.status in (502, 503, 504)
        )

    def _connection_error(self, exc: Exception) -> Exception:
        if isinstance(exc, httpx.TransportError):
            return GatewayConnectionError(f"cannot reach the gateway at {self.base_url}: {exc}")
        return exc

    # -- gating -------------------------------------------------------------------------------------------

    def _gate_call(self, fn_name: str, named: dict[str, Any], opts: ApprovalOptions) -> tuple[Call, str]:
        """The approval to ask for one call of a gated function, and the key that numbers its occurrences.

        Identical calls in one run share a call id until one of them is decided; the next identical call then
        asks again. So a call that timed out resumes the same request when made again, and a restarted agent
        replaying its calls finds the same requests in the same order.
        """
        call_id, key = self._numbered_call_id(fn_name, named)
        return self._approval_call(fn_name, named, opts, call_id=call_id), key

    def _gate_question(self, message: str, opts: QuestionOptions) -> tuple[Call, str]:
        """As ``_gate_call``, for the human tool: the same question asked again resumes until answered."""
        call_id, key = self._numbered_call_id("ask", {"message": message})
        return self._question_call(message, opts, call_id=call_id), key

    def _numbered_call_id(self, fn: str, named: dict[str, Any]) -> tuple[str, str]:
        key = canonical([fn, named])
        with self._lock:
            occurrence = self._decided[key]
        return derive_call_id(self.run_id, fn, named, occurrence), key

    def _consume(self, key: str) -> None:
        with self._lock:
            self._decided[key] += 1

    def _gate_outcome(self, fn_name: str, approval: Approval, opts: ApprovalOptions) -> RunIt | str:
        """Run the function, or the message its caller (often an LLM) gets instead, or raise when asked to."""
        if approval.status == "approved":
            return RunIt(approval.changes)
        if approval.status == "rejected":
            comment = approval.comment or ""
            if approval.reject_option and not comment:
                comment = approval.reject_option
            message = f"User denied {fn_name} with message: {comment}"
            if opts.raise_on_reject:
                raise ApprovalRejectedError(message, fn_name, approval)
            return message
        if approval.status == "expired":
            message = f"The request to run {fn_name} expired before anyone approved it; {fn_name} was not run."
            if opts.raise_on_reject:
                raise RequestExpiredError(message, fn_name, approval)
            return message
        message = f"The request to run {fn_name} was cancelled; {fn_name} was not run."
        if opts.raise_on_reject:
            raise RequestCancelledError(message, fn_name, approval)
        return message

    @staticmethod
    def _gate_timeout(fn_name: str, exc: WaitTimeoutError, opts: ApprovalOptions) -> str:
        if opts.raise_on_reject:
            raise exc
        return (
            f"No decision on {fn_name} within {exc.timeout:g} s; {fn_name} was not run. The request is still "
            f"pending: calling {fn_name} again with the same arguments resumes it."
        )

    @staticmethod
    def _answer_text(question: Question, opts: QuestionOptions) -> Any:
        """The human's answer as text, or as the response model; else what the caller is told instead."""
        if question.status == "answered" and opts.response_model is not None:
            return parse_answer(opts.response_model, question.response_data)
        if question.status == "answered":
            # An option's answer carries the option's title as its text; a free answer, the human's words.
            return question.response or question.response_option or ""
        message = f"No human answered: the question was {question.status}."
        if opts.raise_on_expiry:
            cls = RequestExpiredError if question.status == "expired" else RequestCancelledError
            raise cls(message, "ask_human", question)
        return message

    @staticmethod
    def _answer_timeout(exc: WaitTimeoutError, opts: QuestionOptions) -> str:
        if opts.raise_on_expiry:
            raise exc
        return f"No human answer within {exc.timeout:g} s. The question is still open: asking it again resumes it."


Request = TypeVar("Request", bound=Approval | Question)


class HandleBase(Generic[Request]):
    """What a handle is, for either client: the request as last seen, and the calls that refresh it."""

    _model: type[Request]
    _collection: str  # "/v1/approvals" or "/v1/questions"

    def __init__(self, request: Request) -> None:
        self._request: Request = request

    @property
    def id(self) -> str:
        return self._request.id

    @property
    def call_id(self) -> str:
        return self._request.call_id

    @property
    def path(self) -> str:
        return f"{self._collection}/{self.id}"

    def _refresh_call(self) -> Call:
        return Call("GET", self.path)

    def _cancel_call(self) -> Call:
        # Not retried: a cancel that landed before the connection dropped would come back as a conflict.
        return Call("POST", f"{self.path}/cancel", retry=False)

    def _update(self, data: dict[str, Any]) -> Request:
        self._request = cast(Request, self._model.from_json(data))
        return self._request


M = TypeVar("M")


class TypedQuestionBase(Generic[M]):
    """A question asked with a response model: its answer is that model, validated."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def _value(self, question: Question) -> M:
        if question.status == "answered":
            return cast(M, parse_answer(self.model, question.response_data))  # type: ignore[type-var]
        message = f"No human answered: the question was {question.status}."
        cls = RequestExpiredError if question.status == "expired" else RequestCancelledError
        raise cls(message, "ask", question)


class InboxBase:
    """An agent's messages, for either client: the cursor (where the agent has read to), what has arrived but
    not been handed out yet, and the stream that brings more. Resumable: give ``after`` the last ``cursor`` (a
    restarted agent loses nothing and sees nothing twice).

    Waiting holds the agent's message stream (Server-Sent Events) open until a message comes: one request per
    message however long the wait, where a long-poll is renewed every minute (10,000 agents renewing cost the
    gateway a sixth of a core; streams cost it next to nothing)."""

    STREAM_READ = 150.0  # seconds without a byte before a stream is taken for dead (heartbeats: at most 120 s)

    def __init__(self, agent: str, after: str | None = None) -> None:
        self.agent = agent
        self.cursor: str | None = after
        self._pending: deque[Message] = deque()
        self._event: dict[str, str] = {}

    def _poll(self) -> Call:
        """The messages after the cursor, without waiting (waits hold the stream)."""
        params = {"after": self.cursor} if self.cursor is not None else None
        return Call("GET", f"/v1/agents/{self.agent}/messages", params=params)

    def _stream_call(self, left: float | None) -> Call:
        """The stream from the cursor; ``left``: the gateway ends it then (the wait's own deadline)."""
        params: dict[str, Any] = {}
        if self.cursor is not None:
            params["after"] = self.cursor
        if left is not None:
            params["timeout"] = round(max(0.1, left), 3)
        self._event = {}
        return Call("GET", f"/v1/agents/{self.agent}/messages/stream", params=params, timeout=self.STREAM_READ)

    def _take(self, data: dict[str, Any]) -> None:
        self._pending.extend(Message.from_json(m) for m in data.get("messages") or [])
        self.cursor = data.get("next") or self.cursor

    def _feed(self, line: str) -> bool:
        """One line of the stream (the SSE format); True once it completed a message, now pending."""
        if not line:  # an event ends
            event, self._event = self._event, {}
            if event.get("event") != "message" or "data" not in event:
                return False
            self._pending.append(Message.from_json(json.loads(event["data"])))
            self.cursor = event.get("id") or self.cursor
            return True
        if line.startswith(":"):  # a comment: the heartbeat
            return False
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        self._event[name] = self._event[name] + "\n" + value if name == "data" and name in self._event else value
        return False

    def _next(self) -> Message | None:
        return self._pending.popleft() if self._pending else None

    def _drain(self) -> list[Message]:
        out = list(self._pending)
        self._pending.clear()
        return out


class Reconnect:
    """When a wait's connection fails: how long to pause before the next try, or the error to give up with.
    Until the gateway has answered once, RETRIES failures in a row end the wait (a wrong URL fails fast); after,
    a waiting agent rides out a restart or a deploy, reconnecting until its own deadline. An error that is not
    the network's (a revoked key) ends it at once."""

    def __init__(self, gateway: BaseGateway, retries: int) -> None:
        self.gateway, self.retries, self.failures, self.backoff = gateway, retries, 0, Backoff()
        self.answered = False

    def opened(self) -> None:
        self.answered = True
        self.failures = 0

    def ended(self, left: float | None) -> float:
        """The stream ended without a message (the gateway stopping, a proxy cutting it): reopen after a pause
        that grows if it keeps happening, never in a busy loop."""
        return self._delay(left)

    def pause(self, exc: Exception, left: float | None) -> float:
        self.failures += 1
        if not self.gateway._retryable(exc) or (not self.answered and self.failures > self.retries):
            error = self.gateway._connection_error(exc)
            if error is exc:
                raise exc
            raise error from exc
        return self._delay(left)

    def _delay(self, left: float | None) -> float:
        delay = self.backoff.next()
        return delay if left is None else max(0.0, min(delay, left))


def notification_call(
    gateway: BaseGateway,
    message: str,
    to: Recipients,
    *,
    agent: str | None,
    run_id: str | None,
    cc: Recipients | None,
    subject: str | None,
    call_id: str | None,
) -> Call:
    # A call id of its own: a retry after a dropped connection is the same notification, never a second mail.
    body: dict[str, Any] = {
        "message": message,
        "channel": gateway._channel(to, cc, subject, None),
        "run_id": run_id or gateway.run_id,
        "call_id": call_id or f"ntf-{secrets.token_hex(8)}",
    }
    _optional(body, agent=agent)
    return Call("POST", "/v1/notifications", json=body)


def agent_call(name: str, allowed_senders: Sequence[str], webhook_url: str | None) -> Call:
    body: dict[str, Any] = {"name": name, "allowed_senders": list(allowed_senders)}
    _optional(body, webhook_url=webhook_url)
    return Call("POST", "/v1/agents", json=body)


def check_async(fn: Callable[..., Any], want_async: bool, client: str) -> None:
    if inspect.iscoroutinefunction(fn) != want_async:
        kind = "an async" if inspect.iscoroutinefunction(fn) else "a plain"
        other = "Gateway" if client == "AsyncGateway" else "AsyncGateway"
        raise TypeError(f"{client} cannot gate {kind} function ({fn.__qualname__}); use {other}")
