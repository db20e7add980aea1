"""LangGraph: tools a human approves by email before they run (accept, edit, or reject with feedback).

    from gateway.client import Gateway
    from gateway.client.langgraph import gated_tool

    gw = Gateway()
    send = gated_tool(send_email, gw, to="boss@example.com", editable=["subject", "body"])
    graph = ...  ToolNode([send]) ...                     # the graph as usual

Two ways to wait. ``wait=True`` (the default) holds the tool call until the human decides: simple, and right for a
graph run by a worker that may wait. ``wait=False`` interrupts the graph instead (``langgraph.types.interrupt``,
with a checkpointer): nothing waits while the human thinks, the approval carries the graph's thread id in its
``state``, and the gateway's ``approval.decided`` webhook resumes it with :func:`resume` (days later, on another
worker). Either way the tool runs with the arguments as approved, edits included; a rejection is the tool's
result, so the model reads the human's feedback and can try again.

Needs ``langgraph`` (``pip install 'gateway[langgraph]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tools import tool as as_tool
from langgraph.config import get_config
from langgraph.types import Command, interrupt

from gateway.client._base import ApprovalOptions, RunIt, derive_call_id, with_changes
from gateway.client._errors import WaitTimeoutError
from gateway.client._models import Approval
from gateway.client._sync import Gateway

THREAD_KEY = "langgraph_thread_id"  # where the approval's state keeps the graph thread to resume


def _thread_id() -> str | None:
    try:
        return str(get_config().get("configurable", {}).get("thread_id") or "") or None
    except RuntimeError:  # called outside a graph run
        return None


def gated_tool(
    tool: BaseTool | Callable[..., Any],
    gateway: Gateway,
    to: str | Sequence[str],
    *,
    wait: bool = True,
    editable: bool | Sequence[str] | None = True,
    kwargs_schema: dict[str, Any] | None = None,
    callback_url: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> BaseTool:
    """``tool`` (a LangChain tool or a plain function) that runs only once a human approves its call by email.

    ``options`` go to :meth:`Gateway.request_approval` (``subject``, ``context``, ``policy``, ``expires_in``…);
    ``callback_url`` is where the gateway's webhook goes (for ``wait=False``).
    """
    base = tool if isinstance(tool, BaseTool) else as_tool(tool)
    name = base.name
    schema = kwargs_schema
    if schema is None and isinstance(base.args_schema, dict):
        schema = base.args_schema
    elif schema is None and base.args_schema is not None and hasattr(base.args_schema, "model_json_schema"):
        schema = base.args_schema.model_json_schema()

    def run(**kwargs: Any) -> Any:
        thread = _thread_id()
        call_id = derive_call_id(thread or gateway.run_id, name, kwargs)
        handle = gateway.request_approval(
            name,
            kwargs,
            to,
            call_id=call_id,
            editable=editable,
            kwargs_schema=_usable(schema),
            callback_url=callback_url,
            state={THREAD_KEY: thread} if thread else None,
            **options,
        )
        approval = handle.approval
        while approval.pending and not wait:
            # Resumed (the node runs again from the top: the same call id finds the same request), the decision
            # is read from the gateway, never taken from the resume value: an early or forged event pauses again.
            interrupt({"gateway_approval": approval.id, "tool": name, "args": kwargs})
            approval = handle.refresh()
        if approval.pending:
            try:
                approval = handle.wait(timeout)
            except WaitTimeoutError as exc:
                return gateway._gate_timeout(name, exc, ApprovalOptions(to))
        return decided(gateway, base, approval, to)

    return StructuredTool.from_function(
        func=run, name=name, description=base.description, args_schema=base.args_schema, infer_schema=False
    )


def decided(gateway: Gateway, tool: BaseTool, approval: Approval, to: str | Sequence[str]) -> Any:
    """The tool's result for a decided approval: it ran with the approved arguments, or the human's word why not."""
    outcome = gateway._gate_outcome(tool.name, approval, ApprovalOptions(to))
    if not isinstance(outcome, RunIt):
        return outcome
    return with_changes(tool.invoke(approval.approved_kwargs), tool.name, outcome.changes)


def _usable(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A tool's argument schema as kwargs_schema: only when it is self-contained (no $defs to resolve)."""
    if not schema or "$defs" in schema or schema.get("type", "object") != "object":
        return None
    return {k: v for k, v in schema.items() if k in ("type", "properties", "required")}


def resume(graph: Any, event: dict[str, Any]) -> Any:
    """Resume the graph an ``approval.decided`` webhook event belongs to (``wait=False``); returns what the
    graph returns, or None for an event that names no LangGraph thread."""
    data = event.get("data") or {}
    thread = (data.get("state") or {}).get(THREAD_KEY)
    if not thread or data.get("status") == "pending":
        return None
    return graph.invoke(Command(resume={"gateway_approval": data.get("id")}), {"configurable": {"thread_id": thread}})
