"""Event streams: an agent's messages as Server-Sent Events on a live gateway (the backlog, then each message the
moment it commits, resumable by Last-Event-ID, heartbeats, a revoked key, the client's deadline, shutdown), and
the stream's own machinery with a stand-in for the server's send."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.inbound import pipeline
from gateway.keys import create_key, revoke_key
from gateway.streams import EventStream, Streams, sse
from tests import test_agents
from tests.conftest import SmtpSink, free_port
from tests.processes import clean_env, gateway_process
from tests.test_agents import human_mail, make_agent

loop = test_agents.loop  # the live gateway that trusts our receiving server, as the outer loop's tests use


class Reader:
    """The client side of one stream: its lines, read as they come, grouped into events and comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def event(self, timeout: float = 10) -> dict[str, str]:
        """The next event (its fields), or the stream's end as {}."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":"):
                    self.comments.append(line)
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    return fields
        return {}

    async def comment(self, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":"):
                    return line
        raise AssertionError("the stream ended")


@asynccontextmanager
async def stream(client: httpx.AsyncClient, name: str = "researcher", **params: Any) -> AsyncIterator[Reader]:
    headers = params.pop("headers", {})
    async with client.stream("GET", f"/v1/agents/{name}/messages/stream", params=params, headers=headers) as r:
        assert r.status_code == 200, (await r.aread()).decode()
        yield Reader(r)


def text(event: dict[str, str]) -> str:
    return json.loads(event["data"])["text"]  # type: ignore[no-any-return]


async def test_the_backlog_then_each_message_as_it_commits_resumable_by_last_event_id(loop: Any) -> None:
    live, _ = loop
    agent = await make_agent(live)
    await pipeline.process(live.services, human_mail(agent["address"], "First, written before the stream."))
    async with stream(live.client) as events:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-cache"
        first = await events.event()
        assert first["event"] == "message" and text(first) == "First, written before the stream."
        assert json.loads(first["data"])["from"] == "alice@example.com"
        committed = time.monotonic()
        await pipeline.process(live.services, human_mail(agent["address"], "Second: stop after this step."))
        second = await events.event()
        assert time.monotonic() - committed < 2  # woken by the commit, not found by a poll
        assert text(second) == "Second: stop after this step." and int(second["id"]) > int(first["id"])
        assert events.comments == [": connected"]
    for n in (3, 4):
        # A pasted line separator (U+2028) stays in the text, and the event stays whole for line readers.
        await pipeline.process(live.services, human_mail(agent["address"], f"Message\u2028{n}."))
    async with stream(live.client, headers={"Last-Event-ID": second["id"]}, after="0") as events:  # the header wins
        assert [text(await events.event()), text(await events.event())] == ["Message\u20283.", "Message\u20284."]
        page = (await live.client.get("/v1/agents/researcher/messages", params={"after": second["id"]})).json()
        assert [m["text"] for m in page["messages"]] == ["Message\u20283.", "Message\u20284."]  # as pages


async def test_refusals_before_the_stream_and_the_clients_own_deadline(loop: Any) -> None:
    live, _ = loop
    await make_agent(live)
    path = "/v1/agents/researcher/messages/stream"
    assert (await live.client.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await live.client.get("/v1/agents/nobody/messages/stream")).status_code == 404
    other = await live.new_key()
    hidden = await live.client.get(path, headers={"Authorization": f"Bearer {other}"})
    assert hidden.status_code == 404 and hidden.json()["error"]["code"]
    assert (await live.client.get(path, params={"after": "x"})).status_code == 422
    assert (await live.client.get(path, params={"timeout": "0"})).status_code == 422
    started = time.monotonic()
    async with stream(live.client, timeout="0.5") as events:
        assert await events.event() == {}  # ended by the gateway at the deadline, nothing in it
    assert time.monotonic() - started < 5
    assert live.services.notifier.waiting == 0  # and no longer registered


async def test_a_revoked_key_gets_nothing_more(loop: Any) -> None:
    live, _ = loop
    record, key = await create_key(live.services.db, "short-lived")
    auth = {"Authorization": f"Bearer {key}"}
    agent = (
        await live.client.post("/v1/agents", json={"name": "temp", "allowed_senders": ["@example.com"]}, headers=auth)
    ).json()
    async with stream(live.client, "temp", headers=auth) as events:
        await revoke_key(live.services.db, record.id)
        live.services.keys._cache.clear()  # another process's revocation, seen at once (not after REVALIDATE)
        assert (
            await pipeline.process(live.services, human_mail(agent["address"], "Secret plans."))
        ).outcome == "delivered"
        assert await events.event() == {}  # the stream ended, without the message
    assert (await live.client.get("/v1/agents/temp/messages", headers=auth)).status_code == 401


async def test_a_quiet_stream_gets_heartbeats(heartbeat_loop: Any) -> None:
    live = heartbeat_loop
    await make_agent(live)
    async with stream(live.client) as events:
        assert await events.comment() == ": connected"
        assert await events.comment(timeout=5) == ":"  # the heartbeat, every second here
        assert await events.comment(timeout=5) == ":"


@pytest.fixture
async def heartbeat_loop(database_url: str, smtp_sink: SmtpSink) -> AsyncIterator[Any]:
    from tests.conftest import Live, make_settings, run_gateway

    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, stream_heartbeat=1)
    async with run_gateway(settings, port) as svc:
        _, key = await create_key(svc.db, "beats")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            yield Live(base_url=base, key=key, services=svc, sink=smtp_sink, client=c)


def test_a_stopping_gateway_ends_its_streams(tmp_path: Path) -> None:
    """SIGTERM with streams open: they end (their clients reconnect elsewhere) and the process exits at once,
    not after uvicorn's graceful wait for responses that never finish."""
    port = free_port()
    key = "gw_dev_streams_" + "k" * 32
    env = clean_env(GATEWAY_DEV_API_KEY=key)
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "dev.sqlite3")]
    with gateway_process(tmp_path, args, port, env) as (base, proc):
        auth = {"Authorization": f"Bearer {key}"}
        httpx.post(f"{base}/v1/agents", json={"name": "ops", "allowed_senders": ["@example.com"]}, headers=auth)
        with httpx.stream("GET", f"{base}/v1/agents/ops/messages/stream", headers=auth, timeout=30) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert list(lines) == [": connected", ""]  # the rest of the opening, then the end
        proc.wait(timeout=20)
        assert time.monotonic() - stopped < 10


# -- the machinery, with a stand-in for the server's send ---------------------------------------------------


class Client:
    """What an ASGI server gives a response: send (recording, or stuck as for a client that does not read) and
    receive (the disconnect, when told)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.finished = asyncio.Event()
        self.gone = asyncio.Event()
        self.stuck = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.stuck:
            await asyncio.Event().wait()
        if message["type"] == "http.response.body":
            self.sent.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.finished.set()
                self.gone.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


class Feed:
    def __init__(self) -> None:
        self.items: list[tuple[int, bytes]] = []
        self.allowed = True
        self.reads = 0

    async def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        return [item for item in self.items if item[0] > after][:limit]

    async def allow(self) -> bool:
        return self.allowed


def open_stream(streams: Streams, feed: Feed, after: int = 0, until: float | None = None) -> tuple[EventStream, Client]:
    @contextmanager
    def watch(s: EventStream) -> Iterator[EventStream]:
        yield s

    return EventStream(streams, feed.read, feed.allow, watch, after, until), Client()


async def until(condition: Any, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a condition of the code under test, which has no event for it)
            await asyncio.sleep(0.01)


async def test_events_in_order_from_the_cursor_and_each_wake_up_reads_once_more() -> None:
    streams, feed = Streams(heartbeat=30), Feed()
    feed.items = [(1, sse(1, "message", '"a"')), (2, sse(2, "message", '"b"'))]
    response, client = open_stream(streams, feed, after=1)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await until(lambda: len(client.sent) == 2)
    assert client.sent[1] == b'id: 2\nevent: message\ndata: "b"\n\n' and response.cursor == 2
    feed.items.append((3, sse(3, "message", '"c"')))
    response.set()
    response.set()  # twice while the first read runs: one more read after it, not two
    await until(lambda: len(client.sent) == 3)
    assert client.sent[2].startswith(b"id: 3\n") and len(streams) == 1
    client.gone.set()
    await task
    assert len(streams) == 0
    await streams.stop()


async def test_a_heartbeat_is_written_without_a_task_and_dropped_for_a_client_that_does_not_read() -> None:
    streams, feed = Streams(heartbeat=30), Feed()
    response, client = open_stream(streams, feed)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await until(lambda: len(client.sent) == 1 and response._task is None)
    response.beat()
    assert client.sent[-1] == b":\n\n"  # written there and then
    client.stuck = True
    response.beat()  # would wait for the client: dropped, the stream stays
    assert len(client.sent) == 2 and response._task is None and not client.finished.is_set()
    client.stuck = False
    response.end()
    await asyncio.wait_for(task, 5)
    assert client.finished.is_set()
    await streams.stop()


async def test_the_key_is_checked_again_before_delivering_and_the_deadline_ends_the_stream() -> None:
    streams, feed = Streams(heartbeat=30), Feed()
    response, client = open_stream(streams, feed, until=asyncio.get_running_loop().time() + 0.3)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await asyncio.wait_for(task, 5)  # the deadline
    assert client.finished.is_set()

    response, client = open_stream(streams, feed)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await until(lambda: response._task is None and feed.reads >= 1)
    feed.allowed = False
    feed.items.append((1, sse(1, "message", '"secret"')))
    response.set()
    await asyncio.wait_for(task, 5)
    assert not any(b"secret" in chunk for chunk in client.sent)
    await streams.stop()


async def test_one_ticker_beats_each_stream_once_a_heartbeat() -> None:
    streams, feed = Streams(heartbeat=2), Feed()
    pairs = [open_stream(streams, feed) for _ in range(4)]
    tasks = [asyncio.create_task(r({"type": "http"}, c.receive, c.send)) for r, c in pairs]
    await until(lambda: all(c.sent for _, c in pairs))
    await until(lambda: all(c.sent.count(b":\n\n") >= 1 for _, c in pairs), timeout=5)
    streams.end_all()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(c.finished.is_set() for _, c in pairs)
    await streams.stop()


async def test_a_quiet_streams_key_is_checked_now_and_then_without_reading_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("gateway.streams.REAUTH_EVERY", 0.0)
    streams, feed = Streams(heartbeat=30), Feed()
    response, client = open_stream(streams, feed)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await until(lambda: response._task is None and feed.reads == 1)
    response.beat()  # due for a check: the key is still good, so a heartbeat, and no read
    await until(lambda: response._task is None)
    assert client.sent[-1] == b":\n\n" and feed.reads == 1
    feed.allowed = False
    response.beat()
    await asyncio.wait_for(task, 5)  # revoked: the stream ends
    assert client.finished.is_set() and feed.reads == 1
    await streams.stop()
