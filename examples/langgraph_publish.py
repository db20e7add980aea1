"""A LangGraph agent whose publish tool a human approves by email, in either of two ways: waiting in the tool
call, or interrupting the graph and resuming it from the gateway's webhook (for graphs that must not hold a
worker while a human takes days).

    gateway dev                                   # prints the URL and an API key
    export GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_API_KEY=gw_...
    python examples/langgraph_publish.py you@example.com

The model is LangChain's GenericFakeChatModel, so it runs offline: open the dev mailbox, then approve, edit the
title before approving, or reject with feedback; the graph prints the tool's result.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode

from gateway.client import Gateway
from gateway.client.langgraph import gated_tool

PUBLISHED: list[dict[str, str]] = []


def publish_post(title: str, body: str) -> str:
    """Publish a blog post."""
    PUBLISHED.append({"title": title, "body": body})
    return f"Published {title!r}."


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def scripted_model() -> GenericFakeChatModel:
    call = {"name": "publish_post", "args": {"title": "Q3 recap", "body": "We shipped."}, "id": "call-1"}
    return GenericFakeChatModel(messages=iter([AIMessage("", tool_calls=[call]), AIMessage("That is all.")]))


def build_graph(gateway: Gateway, to: str, *, wait: bool = True, model: Any = None, **options: Any) -> Any:
    llm = model or scripted_model()
    tool = gated_tool(publish_post, gateway, to, wait=wait, **options)

    def think(state: State) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(State)
    graph.add_node("model", think)
    graph.add_node("tools", ToolNode([tool]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=InMemorySaver())


def tool_results(state: dict[str, Any]) -> list[str]:
    return [str(m.content) for m in state["messages"] if isinstance(m, ToolMessage)]


def main(to: str) -> list[str]:
    with Gateway() as gateway:
        graph = build_graph(gateway, to)
        state = graph.invoke({"messages": [("user", "Publish the Q3 recap.")]}, {"configurable": {"thread_id": "t1"}})
        return tool_results(state)


if __name__ == "__main__":
    print("\n".join(main(sys.argv[1] if len(sys.argv) > 1 else "you@example.com")))
