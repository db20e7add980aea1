"""Tool definitions for OpenAI and Anthropic from functions, gated functions and the human tool."""

from __future__ import annotations

from typing import Literal

from gateway.client import Gateway, HumanTool, anthropic_tool, anthropic_tools, openai_tool, openai_tools
from gateway.client.tools import parameters_schema


def send_email(
    to: str, subject: str, body: str, priority: Literal["low", "high"] = "low", cc: list[str] | None = None
) -> str:
    """Send an email on the user's behalf."""
    return "sent"


def test_schema_from_the_signature() -> None:
    schema = parameters_schema(send_email)
    assert schema["type"] == "object"
    assert schema["required"] == ["to", "subject", "body"]
    assert schema["properties"]["to"] == {"type": "string"}
    assert schema["properties"]["priority"]["enum"] == ["low", "high"]
    assert schema["properties"]["priority"]["default"] == "low"
    assert schema["additionalProperties"] is False


def test_a_gated_function_describes_itself_like_the_original() -> None:
    gw = Gateway("http://gw.test", "gw_key")
    gated = gw.require_approval("boss@example.com")(send_email)
    assert openai_tool(gated) == openai_tool(send_email)
    tool = anthropic_tool(gated)
    assert tool["name"] == "send_email"
    assert tool["description"] == "Send an email on the user's behalf."
    assert tool["input_schema"]["required"] == ["to", "subject", "body"]


def test_the_human_tool_in_both_formats() -> None:
    tool = HumanTool(lambda message: "ok", name="ask_boss", description="Ask the boss.")
    assert tool("anything") == "ok"
    assert tool.openai() == openai_tool(tool)
    assert tool.anthropic() == anthropic_tool(tool)
    assert tool.anthropic()["input_schema"]["properties"]["message"]["type"] == "string"
    assert [t["function"]["name"] for t in openai_tools(tool, send_email)] == ["ask_boss", "send_email"]
    assert [t["name"] for t in anthropic_tools(tool, send_email)] == ["ask_boss", "send_email"]
