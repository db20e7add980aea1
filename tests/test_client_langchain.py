"""The LangChain adapter: tools keep the function's name, description and arguments, and call through."""

from __future__ import annotations

from gateway.client import Gateway, HumanTool
from gateway.client.langchain import as_langchain_tool


def archive(thread_id: str, reason: str = "done") -> str:
    """Archive a conversation thread."""
    return f"archived {thread_id} ({reason})"


def test_a_plain_function_becomes_a_structured_tool() -> None:
    tool = as_langchain_tool(archive)
    assert (tool.name, tool.description) == ("archive", "Archive a conversation thread.")
    assert set(tool.args) == {"thread_id", "reason"}
    assert tool.invoke({"thread_id": "t1"}) == "archived t1 (done)"


def test_a_gated_function_keeps_its_signature() -> None:
    gated = Gateway("http://gw.test", "gw_key").require_approval("boss@example.com")(archive)
    tool = as_langchain_tool(gated)
    assert tool.name == "archive" and set(tool.args) == {"thread_id", "reason"}
    assert tool.func is gated  # calling the tool goes through the gate


async def test_the_human_tool_sync_and_async() -> None:
    asked: list[str] = []
    sync_tool = as_langchain_tool(HumanTool(lambda m: asked.append(m) or "yes", name="ask_boss"))
    assert sync_tool.name == "ask_boss" and set(sync_tool.args) == {"message"}
    assert sync_tool.invoke({"message": "Ship?"}) == "yes"

    async def answer(message: str) -> str:
        return f"re: {message}"

    async_tool = as_langchain_tool(HumanTool(answer))
    assert await async_tool.ainvoke({"message": "Budget?"}) == "re: Budget?"
    assert asked == ["Ship?"]
