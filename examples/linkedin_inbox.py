"""An outer-loop agent: it reads a (canned) LinkedIn inbox, asks its human by email what to answer, sends a
message only once the human approves it, tells the human how it went, and listens between steps: a reply to its
updates ("stop, don't write to Terri") changes what it does next.

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
    {
        "thread_id": "t-103",
        "from": "Terri Lee (Sales, Widgets Inc.)",
        "text": "Quick question about your tooling budget for next year?",
    },
]
AGENT = "linkedin-assistant"
SENT: list[dict[str, str]] = []


def build_loop(gw: Gateway, human: str) -> tuple[Any, Any]:
    """The outer loop's two tools: tell the human how it goes, and hear what they say meanwhile."""
    gw.agent(AGENT, [human])  # the human can also write to this agent's own address
    inbox = gw.inbox(AGENT)
    inbox.poll()  # a new run listens from now on

    def notify_human(text: str) -> str:
        """Send the human a short update by email; their reply reaches check_messages."""
        return f"update #{gw.notify(text, human, agent=AGENT).ref} sent"

    def check_messages() -> str:
        """What the human wrote since the last check (call it between steps; do what it says)."""
        return json.dumps([{"from": m.sender, "text": m.text} for m in inbox.poll()])

    return notify_human, check_messages


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


def scripted(read_inbox: Any, send: Any, ask_human: Any, notify_human: Any, check_messages: Any) -> None:
    """What a model would do, without one: say it is starting; for each thread, first read what the human wrote
    meanwhile (a "stop" naming a sender skips that thread, a bare "stop" ends the run), then ask how to answer,
    draft, and send only if approved; at the end, report."""
    threads = json.loads(read_inbox())
    print(notify_human(f"Starting on your LinkedIn inbox: {len(threads)} threads. Reply to steer me."), flush=True)
    skip: set[str] = set()
    sent = skipped = 0
    for thread in threads:
        first = thread["from"].split()[0]
        for note in json.loads(check_messages()):
            print(f"message from {note['from']}: {note['text']}", flush=True)
            said = note["text"].lower()
            if "stop" in said:
                named = {t["from"].split()[0].lower() for t in threads} & set(said.replace(",", " ").split())
                skip |= named or {"*"}
        if "*" in skip or first.lower() in skip:
            skipped += 1
            print(f"[{thread['thread_id']}] skipped: the human said so", flush=True)
            continue
        answer = ask_human(f"{thread['from']} wrote on LinkedIn:\n\n{thread['text']}\n\nHow should I reply?")
        print(f"[{thread['thread_id']}] human says: {answer}", flush=True)
        result = send(thread["thread_id"], f"Hi {first}, {answer}")
        sent += result.startswith("sent")
        print(f"[{thread['thread_id']}] {result}", flush=True)
    print(notify_human(f"Done: {sent} sent, {len(threads) - sent - skipped} not sent, {skipped} skipped."), flush=True)


TASK = (
    "Handle my LinkedIn inbox. Ask me before you reply. Tell me when you start and when you are done "
    "(notify_human), and call check_messages before each thread: do what I say there."
)


def with_openai(*functions: Any) -> None:  # pragma: no cover - needs a key
    from openai import OpenAI

    client, tools = OpenAI(), {f.__name__: f for f in functions}
    messages: list[Any] = [{"role": "user", "content": TASK}]
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


def with_anthropic(*functions: Any) -> None:  # pragma: no cover - needs a key
    import anthropic

    client, tools = anthropic.Anthropic(), {f.__name__: f for f in functions}
    messages: list[Any] = [{"role": "user", "content": TASK}]
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
        tools = (*build_tools(gw, human), *build_loop(gw, human))
        if os.environ.get("OPENAI_API_KEY"):
            with_openai(*tools)
        elif os.environ.get("ANTHROPIC_API_KEY"):
            with_anthropic(*tools)
        else:
            scripted(*tools)
    print(f"messages sent: {len(SENT)}", flush=True)


if __name__ == "__main__":
    main()
