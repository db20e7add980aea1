"""PydanticAI: tools that need approval (``requires_approval=True``, ``ApprovalRequired``) answered by a human by
email through the gateway.

    from gateway.client import AsyncGateway
    from gateway.client.pydantic_ai import gateway_approvals

    gw = AsyncGateway()
    agent = Agent(model, tools=[Tool(send_email, requires_approval=True)],
                  capabilities=[gateway_approvals(gw, to="boss@example.com")])

The run waits for the human and goes on: an approved call runs (with the arguments as the human edited them), a
rejected one returns the human's feedback to the model. For runs that must not wait, leave the capability out:
the run ends with ``DeferredToolRequests``; :func:`resolve` answers them from the gateway later (another process,
after a restart: the same call ids find the same requests), and the next run takes the results.

Needs ``pydantic-ai-slim`` (``pip install 'gateway[pydantic-ai]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai.capabilities import HandleDeferredToolCalls
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, RunContext, ToolApproved, ToolDenied

from gateway.client._async import AsyncGateway
from gateway.client._base import ApprovalOptions, RunIt, derive_call_id
from gateway.client._errors import WaitTimeoutError


async def decide(
    gateway: AsyncGateway,
    call: ToolCallPart,
    args: dict[str, Any],
    to: str | Sequence[str],
    *,
    editable: bool | Sequence[str] | None = True,
    wait_for: float | None = None,
    **options: Any,
) -> ToolApproved | ToolDenied:
    """One tool call put to a human: approved (with their edits as ``override_args``) or denied with their words."""
    call_id = derive_call_id(gateway.run_id, call.tool_name, {"tool_call_id": call.tool_call_id, "args": args})
    handle = await gateway.request_approval(call.tool_name, args, to, call_id=call_id, editable=editable, **options)
    try:
        approval = await handle.wait(wait_for)
    except WaitTimeoutError as exc:
        return ToolDenied(gateway._gate_timeout(call.tool_name, exc, ApprovalOptions(to)))
    outcome = gateway._gate_outcome(call.tool_name, approval, ApprovalOptions(to))
    if isinstance(outcome, RunIt):
        return ToolApproved(override_args=approval.approved_kwargs if outcome.changes else None)
    return ToolDenied(str(outcome))


async def resolve(
    gateway: AsyncGateway, requests: DeferredToolRequests, to: str | Sequence[str], **options: Any
) -> DeferredToolResults:
    """Every approval in ``requests`` decided by a human (each asked once, whoever calls this and how often)."""
    approvals: dict[str, bool | ToolApproved | ToolDenied] = {}
    for call in requests.approvals:
        args = requests.validated_args.get(call.tool_call_id) or call.args_as_dict()
        approvals[call.tool_call_id] = await decide(gateway, call, args, to, **options)
    return requests.build_results(approvals=approvals)


def gateway_approvals(gateway: AsyncGateway, to: str | Sequence[str], **options: Any) -> HandleDeferredToolCalls[Any]:
    """A capability that answers the run's approval requests through the gateway, in the run. ``options`` go to
    :meth:`AsyncGateway.request_approval` (``subject``, ``context``, ``policy``, ``expires_in``…), plus
    ``editable`` (default: every argument) and ``wait_for`` (seconds)."""

    async def handler(ctx: RunContext[Any], requests: DeferredToolRequests) -> DeferredToolResults | None:
        if not requests.approvals:
            return None  # external calls are someone else's
        return await resolve(gateway, requests, to, **options)

    return HandleDeferredToolCalls(handler=handler)
