"""An outer-loop agent: it reads a (canned) LinkedIn inbox, asks its human by email what to answer, and sends a
message only once the human approves it.

    gateway dev                      # in one terminal: prints the URL and an API key
    export GATEWAY_URL=http://127.0.0.1:8000 GATEWAY_API_KEY=gw_...
    python examples/linkedin_inbox.py you@example.com

With no model key the agent's "model" is scripted, so the whole loop runs offline: open the dev mailbox
(http://127.0.0.1:8000/dev/mailbox), answer the question, approve (or reject with feedback) the message.
With OPENAI_API_KEY (and the openai package) or ANTHROPIC_API_KEY (and the anthropic package) a real model
drives the same three tools. Set GATEWAY_RUN_ID to make a restarted agent resume its pending requests.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from gateway.client import Gateway, anthropic_tools, openai_tools

INBOX = [
    {
        "thread_id": "t-101",
        "from": "Dana Reyes (Talent, Acme Robotics)",
        "text": "Hi! We're hiring a Staff Engineer for our planning team. Open to a quick call next week?",
    },
    {
        "thread_id": "t-102",
        "from": "Sam Okafor (former colleague)",
        "text": "Long time! I'm in town on Thursday, coffee?",
    },
]
SENT: list[dict[str, str]] = []


def build_tools(gw: Gateway, human: str) -> tuple[Any, Any, Any]:
    def read_inbox() -> str:
        """List the unread LinkedIn messages (thread id, sender, text)."""
        return json.dumps(INBOX)

    @gw.require_approval(human, subject="LinkedIn: OK to send this message?", context="From your inbox assistant")
    def send_linkedin_message(thread_id: str, text: str) -> str:
        """Send a LinkedIn message in a thread. A human approves each message first."""
        SENT.append({"thread_id": thread_id, "text": text})
        return f"sent to {thread_id}"

    ask_human = gw.human_as_tool(human, context="Your inbox assistant needs a decision")
    return read_inbox, send_linkedin_message, ask_human


def scripted(read_inbox: Any, send: Any, ask_human: Any) -> None:
    """What a model would do, without one: ask how to answer each thread, draft, and send only if approved."""
    for thread in json.loads(read_inbox()):
        first = thread["from"].split()[0]
        answer = ask_human(f"{thread['from']} wrote on LinkedIn:\n\n{thread['text']}\n\nHow should I reply?")
        print(f"[{thread['thread_id']}] human says: {answer}", flush=True)
        result = send(thread["thread_id"], f"Hi {first}, {answer}")
        print(f"[{thread['thread_id']}] {result}", flush=True)


def with_openai(read_inbox: Any, send: Any, ask_human: Any) -> None:  # pragma: no cover - needs a key
    from openai import OpenAI

    client, tools = OpenAI(), {f.__name__: f for f in (read_inbox, send, ask_human)}
    messages: list[Any] = [{"role": "user", "content": "Handle my LinkedIn inbox. Ask me before you reply."}]
    for _ in range(20):
        reply = (
            client.chat.completions.create(
                model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
                messages=messages,
                tools=openai_tools(*tools.values()),
            )
            .choices[0]
            .message
        )
        messages.append(reply)
        if not reply.tool_calls:
            print(reply.content)
            return
        for call in reply.tool_calls:
            output = tools[call.function.name](**json.loads(call.function.arguments or "{}"))
            print(f"{call.function.name} -> {output}", flush=True)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": str(output)})


def with_anthropic(read_inbox: Any, send: Any, ask_human: Any) -> None:  # pragma: no cover - needs a key
    import anthropic

    client, tools = anthropic.Anthropic(), {f.__name__: f for f in (read_inbox, send, ask_human)}
    messages: list[Any] = [{"role": "user", "content": "Handle my LinkedIn inbox. Ask me before you reply."}]
    for _ in range(20):
        reply = client.messages.create(
            model=os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-5"),
            max_tokens=1024,
            messages=messages,
            tools=anthropic_tools(*tools.values()),
        )
        messages.append({"role": "assistant", "content": reply.content})
        calls = [block for block in reply.content if block.type == "tool_use"]
        if not calls:
            print("".join(block.text for block in reply.content if block.type == "text"))
            return
        results = []
        for call in calls:
            output = tools[call.name](**call.input)
            print(f"{call.name} -> {output}", flush=True)
            results.append({"type": "tool_result", "tool_use_id": call.id, "content": str(output)})
        messages.append({"role": "user", "content": results})


def main() -> None:
    human = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HUMAN_EMAIL", "you@example.com")
    with Gateway() as gw:
        tools = build_tools(gw, human)
        if os.environ.get("OPENAI_API_KEY"):
            with_openai(*tools)
        elif os.environ.get("ANTHROPIC_API_KEY"):
            with_anthropic(*tools)
        else:
            scripted(*tools)
    print(f"messages sent: {len(SENT)}", flush=True)


if __name__ == "__main__":
    main()
