"""The app's server: it ticks once a second, yet stops the moment it is asked, and keeps its Date header fresh."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import uvicorn

from gateway.app import Server
from tests.conftest import free_port


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_the_server_stops_at_once_and_keeps_its_date_header_fresh() -> None:
    port = free_port()
    server = Server(uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn has no event for it)
            await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        first = (await client.get("/")).headers["date"]
        async with asyncio.timeout(5):  # refreshed each second by the tick, as uvicorn's own does
            while (await client.get("/")).headers["date"] == first:  # noqa: ASYNC110 (a header to watch)
                await asyncio.sleep(0.05)
    asked = time.monotonic()
    server.should_exit = True  # as a signal's handler does
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - asked < 0.6  # not held to the next tick, a second away
