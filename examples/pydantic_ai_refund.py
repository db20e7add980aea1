"""A PydanticAI agent whose refund tool needs a human's approval, asked by email through the gateway.

    gateway dev                                   # prints the URL and an API key
    export GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_API_KEY=gw_...
    python examples/pydantic_ai_refund.py you@example.com

The model is scripted (PydanticAI's FunctionModel), so it runs offline: open the dev mailbox, then approve, change
the amount before approving, or reject with a word of feedback; the agent prints what happened. Set
PYDANTIC_AI_MODEL (say, openai:gpt-4o, with its key) to let a real model drive the same tool.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from pydantic_ai import Agent, Tool
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from gateway.client import AsyncGateway
from gateway.client.pydantic_ai import gateway_approvals


def refund(customer: str, amount: int) -> str:
    """Refund a customer's order, in euros."""
    return f"Refunded {amount} EUR to {customer}."


def scripted_model() -> FunctionModel:
    """Calls the refund tool once, then reports what the tool (or the human) said."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        said = [p.content for p in getattr(last, "parts", []) if isinstance(p, ToolReturnPart)]
        if isinstance(last, ModelRequest) and said:
            return ModelResponse(parts=[TextPart(f"Done. {said[0]}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"customer": "ann@example.com", "amount": 40}, "call-1")])

    return FunctionModel(respond)


def build_agent(gateway: AsyncGateway, to: str, model: Any = None, **options: Any) -> Agent[None, str]:
    return Agent(
        model or os.environ.get("PYDANTIC_AI_MODEL") or scripted_model(),
        tools=[Tool(refund, requires_approval=True)],
        capabilities=[gateway_approvals(gateway, to, subject="Refund Ann's order?", **options)],
    )


async def main(to: str, **options: Any) -> str:
    async with AsyncGateway() as gateway:
        result = await build_agent(gateway, to, **options).run("Ann's order arrived broken: refund her.")
        return result.output


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "you@example.com")))
