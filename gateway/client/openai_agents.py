"""The OpenAI Agents SDK: tools with ``needs_approval`` answered by a human by email through the gateway.

    from agents import Agent, Runner, function_tool
    from gateway.client import AsyncGateway
    from gateway.client.openai_agents import run_with_approvals

    @function_tool(needs_approval=True)
    def send_email(to: str, subject: str) -> str: ...

    result = await run_with_approvals(agent, "Email the Q3 numbers to the CEO", AsyncGateway(), to="boss@example.com")

The run pauses on its interruptions; each becomes an approval mail; the run resumes with the decisions: an
approved call runs (with the human's edits to its arguments, through :func:`with_edits`; a tool that cannot take
them is not run, and the model is told what the human approved), a rejected one reaches the model as the human's
feedback. :func:`resolve_interruptions` does one round on a result you hold (say, restored from a stored
``RunState`` after a restart: the same call ids find the same requests, no second mail).

Needs ``openai-agents`` (``pip install 'gateway[openai-agents]'``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from agents import Agent, FunctionTool, Runner, RunResult, RunState, Tool, ToolApprovalItem
from agents.tool_context import ToolContext

from gateway.client._async import AsyncGateway
from gateway.client._base import ApprovalOptions, RunIt, changes_note, derive_call_id, with_changes
from gateway.client._errors import WaitTimeoutError


def _arguments(item: ToolApprovalItem) -> dict[str, Any]:
    try:
        value = json.loads(item.arguments or "{}")
    except ValueError:
        return {"arguments": item.arguments}
    return value if isinstance(value, dict) else {"arguments": value}


# The SDK runs an approved call with the arguments the model gave (and refuses a call whose arguments changed
# under its id), so edits reach the tool through its invoker: tool call id -> (arguments as approved, changes).
_EDITED: dict[str, tuple[str, dict[str, tuple[Any, Any]]]] = {}
_MARK = "__gateway_edits__"


def accept_edits(tool: Tool) -> Tool:
    """``tool`` running with the arguments the human approved, when they edited them (other tools unchanged)."""
    if not isinstance(tool, FunctionTool) or getattr(tool.on_invoke_tool, _MARK, False):
        return tool
    original = tool.on_invoke_tool

    async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        edited = _EDITED.pop(getattr(ctx, "tool_call_id", ""), None)
        if edited is None:
            return await original(ctx, arguments)
        return with_changes(await original(ctx, edited[0]), tool.name, edited[1])

    setattr(invoke, _MARK, True)
    return dataclasses.replace(tool, on_invoke_tool=invoke)


def with_edits(agent: Agent[Any]) -> Agent[Any]:
    """``agent`` with every function tool able to run with a human's edits (:func:`run_with_approvals` does it)."""
    return agent.clone(tools=[accept_edits(t) for t in agent.tools])


def _takes_edits(item: ToolApprovalItem) -> bool:
    tools = getattr(item.agent, "tools", None) or []
    tool = next((t for t in tools if getattr(t, "name", None) == item.tool_name), None)
    return tool is not None and getattr(getattr(tool, "on_invoke_tool", None), _MARK, False)


async def resolve_interruptions(
    gateway: AsyncGateway,
    result: RunResult,
    to: str | Sequence[str],
    *,
    editable: bool | Sequence[str] | None = True,
    wait_for: float | None = None,
    **options: Any,
) -> RunState[Any]:
    """The run's state with every interruption decided by a human: pass it to ``Runner.run`` to go on."""
    state = result.to_state()
    for item in result.interruptions:
        name = item.tool_name or "tool"
        args = _arguments(item)
        call_id = derive_call_id(gateway.run_id, name, {"call_id": item.call_id, "args": args})
        handle = await gateway.request_approval(name, args, to, call_id=call_id, editable=editable, **options)
        try:
            approval = await handle.wait(wait_for)
        except WaitTimeoutError as exc:
            state.reject(item, rejection_message=gateway._gate_timeout(name, exc, ApprovalOptions(to)))
            continue
        outcome = gateway._gate_outcome(name, approval, ApprovalOptions(to))
        if isinstance(outcome, RunIt) and outcome.changes and not _takes_edits(item):
            # Never run what the human did not approve: the model is told what they did approve.
            edited = json.dumps(approval.approved_kwargs, ensure_ascii=False)
            state.reject(
                item, rejection_message=f"{changes_note(name, outcome.changes)} Call {name} again with {edited}."
            )
        elif isinstance(outcome, RunIt):
            if outcome.changes:
                _EDITED[str(item.call_id)] = (json.dumps(approval.approved_kwargs), outcome.changes)
            state.approve(item)
        else:
            state.reject(item, rejection_message=str(outcome))
    return state


async def run_with_approvals(
    agent: Agent[Any], input: Any, gateway: AsyncGateway, to: str | Sequence[str], **options: Any
) -> RunResult:
    """``Runner.run`` to the end, every tool approval on the way put to a human through the gateway."""
    agent = with_edits(agent)
    result = await Runner.run(agent, input)
    while result.interruptions:
        state = await resolve_interruptions(gateway, result, to, **options)
        result = await Runner.run(agent, state)
    return result
