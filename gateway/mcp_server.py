"""`gateway mcp`: the gateway's tools for any MCP client, over stdio: ask before acting (request_approval), ask
when stuck (ask_human), tell how it goes (notify_human) and hear what the humans say meanwhile (check_messages).

Recipients are the operator's choice (``--to``), never the model's: a tool that mails whatever address an LLM
picks would let a prompt injection mail anyone. Those same people are the only ones whose messages reach the
agent. Many MCP clients end a tool call after 60 s, and humans take hours: the asking tools wait at most
``tool_wait`` seconds (``--timeout``), then answer that the request is still pending, with its id, and
``check_request`` resumes the wait as often as needed.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer

from gateway.client import (
    AsyncApprovalHandle,
    AsyncGateway,
    AsyncInbox,
    AsyncQuestionHandle,
    Message,
    NotFoundError,
    WaitTimeoutError,
)
from gateway.client._base import ApprovalOptions, QuestionOptions, RunIt

INSTRUCTIONS = (
    "Before any action with consequences (sending messages, changing records, spending money), call "
    "request_approval and act only if it says approved (if it says still waiting, call check_request later). When "
    "stuck or unsure, call ask_human. Tell the humans "
    "how the work goes with notify_human, and call check_messages between steps: they may ask you to stop or "
    "change course."
)
CHECK_WAIT_MAX = 30.0  # seconds check_messages may wait (many MCP clients end a tool call after 60)
TOOL_WAIT = 50.0  # seconds an asking tool waits before it answers "still pending" (under those clients' 60)


def still_pending(kind: str, request_id: str, what: str) -> str:
    return (
        f"No answer yet: the {kind} {request_id} ({what}) is still waiting for a human. Call check_request with "
        f'request_id "{request_id}" to keep waiting; do not act on it before it is answered.'
    )


def describe(messages: list[Message]) -> str:
    if not messages:
        return "No new messages."
    parts = []
    for m in messages:
        about = f" (a reply to your update {m.notification_id})" if m.notification_id else ""
        parts.append(f"From {m.sender}{about}, subject {m.subject!r}:\n{m.text}")
    return "\n\n".join(parts)


def build_server(
    gateway: AsyncGateway,
    to: list[str],
    *,
    tool_wait: float = TOOL_WAIT,
    expires_in: int | None = None,
    agent: str = "mcp-agent",
    inbox: AsyncInbox | None = None,
) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(name="approval-gateway", instructions=INSTRUCTIONS)
    approval_opts = ApprovalOptions(to, expires_in=expires_in, timeout=tool_wait)
    question_opts = QuestionOptions(to, expires_in=expires_in, timeout=tool_wait)

    async def approval_result(handle: AsyncApprovalHandle) -> str:
        fn = handle.approval.fn
        try:
            approval = await handle.wait(tool_wait)
        except WaitTimeoutError:
            return still_pending("approval", handle.id, fn)
        outcome = gateway._gate_outcome(fn, approval, approval_opts)
        if isinstance(outcome, RunIt):
            edited = f" with these arguments: {json.dumps(approval.approved_kwargs)}" if approval.changes else ""
            return f"Approved by {approval.decided_by}: go ahead with {fn}{edited}."
        return str(outcome)

    async def answer_result(handle: AsyncQuestionHandle) -> str:
        try:
            question = await handle.wait(tool_wait)
        except WaitTimeoutError:
            return still_pending("question", handle.id, handle.question.message[:60])
        return str(gateway._answer_text(question, question_opts))

    @server.tool(
        name="request_approval",
        description=(
            "Ask a human, by email, to approve an action before you take it. Give the function you want to call "
            "and its arguments; say why in `reason`. Returns whether it was approved, or the human's feedback."
        ),
    )
    async def request_approval(fn: str, kwargs: dict[str, Any], reason: str | None = None) -> str:
        return await approval_result(
            await gateway.request_approval(fn, kwargs, to, context=reason, expires_in=expires_in)
        )

    @server.tool(
        name="ask_human",
        description=(
            "Ask a human a question by email and wait for the answer. Use it when stuck, when a judgement call "
            "is needed, or for information only the human has."
        ),
    )
    async def ask_human(message: str) -> str:
        return await answer_result(await gateway.ask(message, to, expires_in=expires_in))

    @server.tool(
        name="check_request",
        description=(
            "Keep waiting for a request_approval or ask_human that answered 'still waiting': give its request_id. "
            "Returns the decision or answer, or says it is still waiting (call again later)."
        ),
    )
    async def check_request(request_id: str) -> str:
        try:
            if request_id.startswith("apr_"):
                return await approval_result(await gateway.approval(request_id))
            if request_id.startswith("qst_"):
                return await answer_result(await gateway.question(request_id))
        except NotFoundError:
            pass
        return f"No request {request_id!r} of yours: give the request_id a still-waiting answer named."

    inbox = inbox or gateway.inbox(agent)

    @server.tool(
        name="notify_human",
        description=(
            "Send the humans a short update by email (what you did, what you found, what is next). It asks "
            "nothing and returns at once; if they reply, check_messages will show it."
        ),
    )
    async def notify_human(message: str) -> str:
        sent = await gateway.notify(message, to, agent=agent)
        return f"Update sent to {', '.join(to)} (#{sent.ref})."

    @server.tool(
        name="check_messages",
        description=(
            "Read what the humans wrote to you since you last checked: replies to your updates and mails to your "
            "address. Call it between steps; follow what they say (stop, change course). `wait_seconds` (up to "
            f"{CHECK_WAIT_MAX:g}) waits for a message when there is none yet."
        ),
    )
    async def check_messages(wait_seconds: float = 0) -> str:
        found = await inbox.poll()
        if not found and wait_seconds > 0:
            try:
                found = [await inbox.wait(min(wait_seconds, CHECK_WAIT_MAX))]
                found += await inbox.poll()
            except TimeoutError:
                found = []
        return describe(found)

    return server


async def serve_stdio(
    to: list[str],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    wait_for: float | None = None,
    expires_in: int | None = None,
    agent: str = "mcp-agent",
) -> None:
    """``wait_for``: seconds an asking tool waits before answering "still waiting" (default TOOL_WAIT)."""
    async with AsyncGateway(base_url, api_key) as gateway:
        await gateway.agent(agent, to)  # the people it asks are the people it hears from
        inbox = gateway.inbox(agent)
        await inbox.poll()  # a new session hears what is said from now on, not yesterday's "stop"
        server = build_server(
            gateway, to, tool_wait=wait_for or TOOL_WAIT, expires_in=expires_in, agent=agent, inbox=inbox
        )
        await server.run_stdio_async()
