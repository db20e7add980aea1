"""An OpenAI Agents SDK agent whose send_email tool needs a human's approval (``needs_approval``), asked by email
through the gateway.

    gateway dev                                   # prints the URL and an API key
    export GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_API_KEY=gw_...
    python examples/openai_agents_email.py you@example.com

The model is the SDK's own ScriptedModel, so it runs offline: open the dev mailbox, then approve, edit the
subject before approving, or reject with feedback; the agent prints what happened. With OPENAI_API_KEY set and
OPENAI_AGENTS_MODEL (say, gpt-4.1), a real model drives the same tool.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from agents import Agent, function_tool
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from gateway.client import AsyncGateway
from gateway.client.openai_agents import run_with_approvals

SENT: list[dict[str, str]] = []


@function_tool(needs_approval=True)
def send_email(to: str, subject: str) -> str:
    """Send an email with the quarterly numbers."""
    SENT.append({"to": to, "subject": subject})
    return f"Sent {subject!r} to {to}."


def scripted_model() -> ScriptedModel:
    """Calls send_email once, then says what the tool (or the human) answered."""

    def report(call: Any) -> Any:
        said = [i.get("output") for i in call.input if isinstance(i, dict) and i.get("type") == "function_call_output"]
        return [assistant_message(f"Done. {said[-1] if said else 'nothing happened'}")]

    return ScriptedModel(
        [
            [function_call("send_email", {"to": "ceo@example.com", "subject": "Q3 numbers"}, call_id="call-1")],
            ModelStep.respond(report),
        ]
    )


def build_agent(model: Any = None) -> Agent[Any]:
    return Agent(
        name="mailer",
        instructions="Send the quarterly numbers to the CEO.",
        tools=[send_email],
        model=model or os.environ.get("OPENAI_AGENTS_MODEL") or scripted_model(),
    )


async def main(to: str, model: Any = None, **options: Any) -> str:
    async with AsyncGateway() as gateway:
        result = await run_with_approvals(
            build_agent(model), "Email the Q3 numbers to the CEO.", gateway, to, **options
        )
        return str(result.final_output)


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "you@example.com")))
