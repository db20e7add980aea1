"""`gateway mcp`: the gateway's two tools for any MCP client, over stdio.

Recipients are the operator's choice (``--to``), never the model's: a tool that mails whatever address an LLM
picks would let a prompt injection mail anyone. The tools block until a human decides (or ``--timeout``).
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from gateway.client import AsyncGateway, WaitTimeoutError
from gateway.client._base import ApprovalOptions, QuestionOptions, RunIt

INSTRUCTIONS = (
    "Before any action with consequences (sending messages, changing records, spending money), call "
    "request_approval and act only if it says approved. When stuck or unsure, call ask_human."
)


def build_server(
    gateway: AsyncGateway, to: list[str], *, timeout: float | None = None, expires_in: int | None = None
) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(name="approval-gateway", instructions=INSTRUCTIONS)
    approval_opts = ApprovalOptions(to, expires_in=expires_in, timeout=timeout)
    question_opts = QuestionOptions(to, expires_in=expires_in, timeout=timeout)

    @server.tool(
        name="request_approval",
        description=(
            "Ask a human, by email, to approve an action before you take it. Give the function you want to call "
            "and its arguments; say why in `reason`. Returns whether it was approved, or the human's feedback."
        ),
    )
    async def request_approval(fn: str, kwargs: dict[str, Any], reason: str | None = None) -> str:
        handle = await gateway.request_approval(fn, kwargs, to, context=reason, expires_in=expires_in)
        try:
            approval = await handle.wait(timeout)
        except WaitTimeoutError as exc:
            return gateway._gate_timeout(fn, exc, approval_opts)
        outcome = gateway._gate_outcome(fn, approval, approval_opts)
        if isinstance(outcome, RunIt):
            return f"Approved by {approval.decided_by}: go ahead with {fn}."
        return outcome

    @server.tool(
        name="ask_human",
        description=(
            "Ask a human a question by email and wait for the answer. Use it when stuck, when a judgement call "
            "is needed, or for information only the human has."
        ),
    )
    async def ask_human(message: str) -> str:
        handle = await gateway.ask(message, to, expires_in=expires_in)
        try:
            question = await handle.wait(timeout)
        except WaitTimeoutError as exc:
            return gateway._answer_timeout(exc, question_opts)
        return gateway._answer_text(question, question_opts)

    return server


async def serve_stdio(
    to: list[str],
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    wait_for: float | None = None,
    expires_in: int | None = None,
) -> None:
    async with AsyncGateway(base_url, api_key) as gateway:
        await build_server(gateway, to, timeout=wait_for, expires_in=expires_in).run_stdio_async()
