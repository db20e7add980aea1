"""Event streams (Server-Sent Events), for clients that wait for hours (an agent on its messages).

A long-poll is held a minute at most (what proxies allow a quiet response), so 10,000 waiting agents renew 167
times a second and keep an otherwise idle server busy. A stream is asked for once: what it carries is written to
it the moment it commits (woken by the notifier, as a long-poll is, here or from another replica), each event
with its cursor as id, so a reconnecting client (``Last-Event-ID``) resumes where it stopped. A comment line every
``GATEWAY_STREAM_HEARTBEAT`` seconds keeps proxies from closing a quiet stream. One ticker writes the heartbeats
of all streams, a slot of them each second: a held stream has no timer and no task of its own, only its request
waiting for the client to go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from typing import Any, cast

from starlette.responses import Response
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

PAGE = 100  # messages read at a time
REAUTH_EVERY = 600.0  # seconds: a quiet stream's key is checked again this often (and before each delivery)
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on as it comes
]
_OPENING = b"retry: 2000\n: connected\n\n"  # reconnect after 2 s; the comment tells the client it is open
_BEAT: AsgiMessage = {"type": "http.response.body", "body": b":\n\n", "more_body": True}
_END: AsgiMessage = {"type": "http.response.body", "body": b"", "more_body": False}


# What a stream reads: the events after a cursor, at most so many, each as (its cursor, its bytes).
Read = Callable[[int, int], Awaitable[list[tuple[int, bytes]]]]


# Characters JSON may leave as they are that line readers split on (Python's str.splitlines, and so httpx's and
# requests' iter_lines): escaped, a human's text with a pasted line separator would break the event in two.
_LINE_BREAKING = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def sse(cursor: int, kind: str, data: str) -> bytes:
    """One event. ``data`` is JSON text (one line: JSON escapes line feeds and returns, the rest is escaped
    here)."""
    return f"id: {cursor}\nevent: {kind}\ndata: {data.translate(_LINE_BREAKING)}\n\n".encode()


class Streams:
    """The streams open in this process, in as many slots as the heartbeat has seconds; each second the ticker
    writes a heartbeat to one slot's streams."""

    def __init__(self, heartbeat: int) -> None:
        self._slots: list[set[EventStream]] = [set() for _ in range(max(1, heartbeat))]
        self._turn = 0
        self._ticker: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots)

    def add(self, stream: EventStream) -> None:
        self._turn += 1
        self._slots[self._turn % len(self._slots)].add(stream)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="stream heartbeats")

    def discard(self, stream: EventStream) -> None:
        for slot in self._slots:
            slot.discard(stream)

    def end_all(self) -> None:
        """End every stream (the server is stopping: its clients reconnect, to another replica or to this one
        once it is back)."""
        for slot in self._slots:
            for stream in list(slot):
                stream.end()

    async def stop(self) -> None:
        self.end_all()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        started, n = loop.time(), 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, started + n - loop.time()))
            for stream in list(self._slots[n % len(self._slots)]):
                stream.beat()


class EventStream(Response):
    """The response that is the stream. The request's own task waits for the client to go; deliveries and
    heartbeats each run as a short task, one at a time per stream."""

    media_type = "text/event-stream"

    def __init__(
        self,
        streams: Streams,
        read: Read,
        allowed: Callable[[], Awaitable[bool]],  # the caller's key is still valid
        watch: Callable[[EventStream], AbstractContextManager[Any]],  # registers it with the notifier
        after: int,
        until: float | None,
    ) -> None:
        self.streams, self.read, self.allowed, self.watch = streams, read, allowed, watch
        self.cursor = after
        self.until = until  # loop time at which the stream ends (the client's own deadline), if any
        self.background = None
        self._send: Send | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._ended = False
        self._checked = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        loop = asyncio.get_running_loop()
        self._checked = loop.time()
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _OPENING, "more_body": True})
        deadline = loop.call_at(self.until, self.end) if self.until is not None else None
        self.streams.add(self)
        try:
            with self.watch(self):  # before the first read: a message committed meanwhile is not missed
                self.set()  # what arrived before the stream opened
                while (await receive())["type"] != "http.disconnect":
                    pass
        finally:
            self._ended = True
            self.streams.discard(self)
            if deadline is not None:
                deadline.cancel()
            if self._task is not None:
                self._task.cancel()

    # -- called by the notifier and the ticker (never awaited) -----------------------------------------------

    def set(self) -> None:
        """A message committed for this agent (the notifier's wake-up, as for a long-poll's event)."""
        if self._ended:
            return
        if self._task is None:
            self._start(self._deliver())
        else:
            self._again = True

    def beat(self) -> None:
        if self._ended or self._task is not None:
            return  # a delivery under way says the stream is alive
        if asyncio.get_running_loop().time() - self._checked >= REAUTH_EVERY:
            self._start(self._recheck())
        else:
            self._write_now(_BEAT)

    def end(self) -> None:
        """Finish the response: the client sees the stream end (and the request's task, its disconnect)."""
        if self._ended or self._send is None:
            return
        self._ended = True
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.ensure_future(self._send(_END))

    # -- inside -------------------------------------------------------------------------------------------

    def _write_now(self, message: AsgiMessage) -> None:
        """Write without a task of its own (a heartbeat is a few bytes into a socket buffer: the send completes
        without waiting, and a task would cost more than the write). A send that would wait is a client that is
        not reading: it has bytes waiting already and needs no heartbeat, so that one is dropped."""
        assert self._send is not None
        step = cast(Coroutine[Any, Any, None], self._send(message))
        try:
            step.send(None)
        except StopIteration:
            return
        except Exception as exc:
            log.warning("agent stream: a heartbeat failed: %s", exc)
            self.end()
            return
        step.close()

    def _start(self, work: Awaitable[None]) -> None:
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled() or self._ended:
            return
        error = task.exception()
        if error is not None:
            log.warning("agent stream: ended after an error: %s", error, exc_info=error)
            self.end()
        elif self._again:
            self._again = False
            self._start(self._deliver())

    async def _recheck(self) -> None:
        """A quiet stream's key, checked now and then (the key store caches it: one look-up per key, however
        many streams use it), so a revoked key's streams end even if nothing arrives for them."""
        self._checked = asyncio.get_running_loop().time()
        if not await self.allowed():
            self.end()
            return
        assert self._send is not None
        await self._send(_BEAT)

    async def _deliver(self) -> None:
        assert self._send is not None
        self._checked = asyncio.get_running_loop().time()
        if not await self.allowed():
            self.end()  # the key was revoked: nothing more is delivered with it
            return
        while True:
            events = await self.read(self.cursor, PAGE)
            if events:
                body = b"".join(data for _, data in events)
                await self._send({"type": "http.response.body", "body": body, "more_body": True})
                self.cursor = events[-1][0]
            if len(events) < PAGE:
                return
