"""``Gateway``: the blocking client. All logic lives in ``_base``; this module does the I/O."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import httpx

from gateway.client._base import (
    ApprovalOptions,
    Backoff,
    BaseGateway,
    Call,
    HandleBase,
    InboxBase,
    M,
    Recipients,
    Reconnect,
    Request,
    RunIt,
    TypedQuestionBase,
    WaitPlan,
    _jsonable,
    agent_call,
    apply_changes,
    bind_arguments,
    check_async,
    notification_call,
    question_options,
    with_changes,
)
from gateway.client._errors import InboxTimeoutError, WaitTimeoutError
from gateway.client._models import Approval, Message, Notification, Question
from gateway.client.tools import HumanTool

P = ParamSpec("P")
R = TypeVar("R")
RETRIES = 5


class Gateway(BaseGateway):
    """The gateway's HTTP API for a blocking agent. ``base_url`` and ``api_key`` default to ``GATEWAY_URL``
    and ``GATEWAY_API_KEY``; ``run_id`` (or ``GATEWAY_RUN_ID``) names the run, so a restart resumes it."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        run_id: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, run_id=run_id, timeout=timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers(), timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call) -> dict[str, Any]:
        backoff = Backoff()
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=call.params,
                    timeout=call.timeout if call.timeout is not None else self.timeout,
                )
                return self._read(response)
            except Exception as exc:
                if not (call.retry and self._retryable(exc)) or attempt == RETRIES:
                    error = self._connection_error(exc)
                    if error is exc:
                        raise
                    raise error from exc
                time.sleep(backoff.next())
        raise AssertionError("unreachable")

    def _wait(self, path: str, request_id: str, timeout: float | None) -> dict[str, Any]:
        """Long-poll until the request leaves pending; reconnect after drops, never busy-poll."""
        plan, backoff = WaitPlan(request_id, timeout), Backoff()
        while True:
            poll = plan.next_poll(path)
            if poll is None:
                raise plan.timed_out()
            try:
                data = self._send(poll)
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                time.sleep(plan.pause(backoff.next()))
                continue
            backoff.reset()
            if data.get("status") != "pending":
                return data

    # -- the outer loop ------------------------------------------------------------------------------------

    def notify(
        self,
        message: str,
        to: Recipients,
        *,
        agent: str | None = None,
        run_id: str | None = None,
        cc: Recipients | None = None,
        subject: str | None = None,
        call_id: str | None = None,
    ) -> Notification:
        """A one-way update to ``to``, in the run's thread; a reply to it reaches ``agent``'s inbox."""
        call = notification_call(self, message, to, agent=agent, run_id=run_id, cc=cc, subject=subject, call_id=call_id)
        return Notification.from_json(self._send(call))

    def agent(self, name: str, allowed_senders: Sequence[str], *, webhook_url: str | None = None) -> str:
        """Make (or update) the agent ``name`` humans can write to; returns its address."""
        return str(self._send(agent_call(name, allowed_senders, webhook_url))["address"])

    def inbox(self, agent: str, *, after: str | None = None) -> Inbox:
        """The messages humans send ``agent``, from ``after`` (a cursor kept from an earlier run) on."""
        return Inbox(self, agent, after)

    # -- explicit handles ------------------------------------------------------------------------------------

    def request_approval(
        self,
        fn: str | Callable[..., Any],
        kwargs: dict[str, Any],
        to: Recipients,
        *,
        call_id: str | None = None,
        run_id: str | None = None,
        cc: Recipients | None = None,
        subject: str | None = None,
        context: str | None = None,
        reject_options: Sequence[str | dict[str, Any]] | None = None,
        policy: str | dict[str, int] = "any",
        expires_in: int | None = None,
        state: Any = None,
        callback_url: str | None = None,
        editable: bool | Sequence[str] | None = None,
        kwargs_schema: dict[str, Any] | None = None,
    ) -> ApprovalHandle:
        """Ask for approval of ``fn(**kwargs)``; ``editable`` lets the approvers change those arguments (all with
        True) before they approve, typed and checked by ``kwargs_schema`` when given."""
        name = fn if isinstance(fn, str) else fn.__name__
        opts = ApprovalOptions(
            to, cc, subject, context, reject_options, policy, expires_in, editable=editable, kwargs_schema=kwargs_schema
        )
        call = self._approval_call(
            name, _jsonable(kwargs), opts, call_id=call_id, run_id=run_id, state=state, callback_url=callback_url
        )
        return ApprovalHandle(self, Approval.from_json(self._send(call)))

    def approval(self, request_id: str) -> ApprovalHandle:
        """A handle on an existing approval (say, one whose id a previous run stored)."""
        return ApprovalHandle(self, Approval.from_json(self._send(Call("GET", f"/v1/approvals/{request_id}"))))

    def ask(
        self,
        message: str,
        to: Recipients,
        *,
        response_options: Sequence[str | dict[str, Any]] | None = None,
        call_id: str | None = None,
        run_id: str | None = None,
        cc: Recipients | None = None,
        subject: str | None = None,
        context: str | None = None,
        expires_in: int | None = None,
        state: Any = None,
        callback_url: str | None = None,
        response_model: type[M] | None = None,
    ) -> Any:
        """Ask a question; the handle's ``wait()`` gives the answered Question, or, with ``response_model`` (a
        pydantic model), the answer as a validated instance of it (the human gets a form, or replies with
        ``Name: value`` lines)."""
        opts = question_options(to, cc, subject, context, response_options, expires_in, response_model=response_model)
        call = self._question_call(
            message, opts, call_id=call_id, run_id=run_id, state=state, callback_url=callback_url
        )
        handle = QuestionHandle(self, Question.from_json(self._send(call)))
        return handle if response_model is None else TypedQuestionHandle(handle, response_model)

    def question(self, request_id: str) -> QuestionHandle:
        return QuestionHandle(self, Question.from_json(self._send(Call("GET", f"/v1/questions/{request_id}"))))

    # -- the decorator and the tool -------------------------------------------------------------------------

    def require_approval(
        self,
        to: Recipients,
        *,
        cc: Recipients | None = None,
        subject: str | None = None,
        context: str | None = None,
        reject_options: Sequence[str | dict[str, Any]] | None = None,
        policy: str | dict[str, int] = "any",
        expires_in: int | None = None,
        timeout: float | None = None,
        raise_on_reject: bool = False,
        editable: bool | Sequence[str] | None = None,
        kwargs_schema: dict[str, Any] | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R | str]]:
        """Run the decorated function only once a human approves this call of it.

        Rejected, expired or cancelled: the function does not run and the call returns a message for the
        caller (``User denied fn with message: ...``), or raises ``NotApprovedError`` with
        ``raise_on_reject``. ``timeout`` bounds the wait; the request itself lives until ``expires_in``.
        """
        opts = ApprovalOptions(
            to,
            cc,
            subject,
            context,
            reject_options,
            policy,
            expires_in,
            timeout,
            raise_on_reject,
            editable,
            kwargs_schema,
        )

        def decorate(fn: Callable[P, R]) -> Callable[P, R | str]:
            check_async(fn, False, "Gateway")
            sig = inspect.signature(fn)

            @functools.wraps(fn)
            def gated(*args: P.args, **kwargs: P.kwargs) -> R | str:
                call, key = self._gate_call(fn.__name__, bind_arguments(sig, args, kwargs), opts)
                approval = Approval.from_json(self._send(call))
                if approval.pending:
                    try:
                        approval = Approval.from_json(self._wait(f"/v1/approvals/{approval.id}", approval.id, timeout))
                    except WaitTimeoutError as exc:
                        return self._gate_timeout(fn.__name__, exc, opts)
                self._consume(key)
                outcome = self._gate_outcome(fn.__name__, approval, opts)
                if isinstance(outcome, RunIt):
                    args_, kwargs_ = apply_changes(sig, args, kwargs, outcome.changes)
                    return with_changes(fn(*args_, **kwargs_), fn.__name__, outcome.changes)
                return outcome

            return gated

        return decorate

    def human_as_tool(
        self,
        to: Recipients,
        *,
        cc: Recipients | None = None,
        subject: str | None = None,
        context: str | None = None,
        response_options: Sequence[str | dict[str, Any]] | None = None,
        expires_in: int | None = None,
        timeout: float | None = None,
        raise_on_expiry: bool = False,
        name: str = "ask_human",
        description: str | None = None,
        response_model: type[Any] | None = None,
    ) -> HumanTool:
        """A tool an LLM can call to ask a human by email; it returns the human's answer as text."""
        opts = question_options(
            to,
            cc,
            subject,
            context,
            response_options,
            expires_in,
            timeout,
            raise_on_expiry,
            response_model=response_model,
        )

        def ask_human(message: str) -> Any:
            call, key = self._gate_question(message, opts)
            question = Question.from_json(self._send(call))
            if question.pending:
                try:
                    question = Question.from_json(self._wait(f"/v1/questions/{question.id}", question.id, timeout))
                except WaitTimeoutError as exc:
                    return self._answer_timeout(exc, opts)
            self._consume(key)
            return self._answer_text(question, opts)

        return HumanTool(ask_human, name=name, description=description)


class _Handle(HandleBase[Request]):
    def __init__(self, gateway: Gateway, request: Request) -> None:
        super().__init__(request)
        self._gateway = gateway

    def refresh(self) -> Request:
        return self._update(self._gateway._send(self._refresh_call()))

    def wait(self, timeout: float | None = None) -> Request:
        """The request once it leaves pending; ``WaitTimeoutError`` if ``timeout`` seconds pass first."""
        if self._request.pending:
            self._update(self._gateway._wait(self.path, self.id, timeout))
        return self._request

    def cancel(self) -> Request:
        return self._update(self._gateway._send(self._cancel_call()))


class ApprovalHandle(_Handle[Approval]):
    _model, _collection = Approval, "/v1/approvals"

    @property
    def approval(self) -> Approval:
        return self._request


class QuestionHandle(_Handle[Question]):
    _model, _collection = Question, "/v1/questions"

    @property
    def question(self) -> Question:
        return self._request


class Inbox(InboxBase):
    """An agent's messages (``Gateway.inbox``): ``wait()`` for the next, ``poll()`` for what has arrived, or
    iterate for each in turn. ``cursor`` is where it has read to: give it back as ``after`` to resume."""

    def __init__(self, gateway: Gateway, agent: str, after: str | None = None) -> None:
        super().__init__(agent, after)
        self._gateway = gateway

    def poll(self) -> list[Message]:
        """The messages that have arrived, without waiting (between an agent's steps)."""
        self._take(self._gateway._send(self._poll()))
        return self._drain()

    def wait(self, timeout: float | None = None) -> Message:
        """The next message, waiting for it (up to ``timeout`` seconds, else InboxTimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        reconnect = Reconnect(self._gateway, RETRIES)
        while (found := self._next()) is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise InboxTimeoutError(self.agent, timeout or 0)
            try:
                delay = 0.0 if self._listen(left, reconnect) else reconnect.ended(left)
            except Exception as exc:
                delay = reconnect.pause(exc, left)
            if delay:
                time.sleep(delay)
        return found

    def _listen(self, left: float | None, reconnect: Reconnect) -> bool:
        """Hold the stream until a message comes (True), or until it ends (the gateway's deadline at ``left``)."""
        call = self._stream_call(left)
        timeout = httpx.Timeout(call.timeout, connect=10.0)
        with self._gateway._http.stream("GET", call.path, params=call.params, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                self._gateway._read(response)  # raises the gateway's error
            reconnect.opened()
            for line in response.iter_lines():
                if self._feed(line):
                    return True
        return False

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield self.wait()


class TypedQuestionHandle(TypedQuestionBase[M]):
    """A question asked with a response model: ``wait()`` gives the answer as that model, validated (or raises
    RequestExpiredError / RequestCancelledError when nobody answered)."""

    def __init__(self, handle: QuestionHandle, model: type[M]) -> None:
        super().__init__(model)
        self.handle = handle

    @property
    def id(self) -> str:
        return self.handle.id

    @property
    def question(self) -> Question:
        return self.handle.question

    def wait(self, timeout: float | None = None) -> M:
        return self._value(self.handle.wait(timeout))

    def cancel(self) -> Question:
        return self.handle.cancel()
