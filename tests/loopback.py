"""A stand-in server on loopback (uvicorn): the tests' webhook receivers, token server and SNS host share how
they start and stop; each only says what its ``app`` answers."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from tests.conftest import free_port


class LoopbackServer:
    """Subclasses set ``self.port`` (a free one) and define ``async def app(scope, receive, send)``."""

    port: int
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(1000):
            if self._server.started:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{type(self).__name__} did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class WebhookReceiver(LoopbackServer):
    """A real HTTP endpoint (uvicorn) that records every delivery."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], str]] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append((headers, body.decode()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    async def wait_for(self, count: int, timeout: float = 15) -> list[tuple[dict[str, str], str]]:
        for _ in range(int(timeout / 0.05)):
            if len(self.received) >= count:
                return self.received
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {count} deliveries, got {len(self.received)}")
