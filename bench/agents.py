"""The outer loop: how fast a human's mail reaches the agent waiting on its inbox, with many agents waiting.

N agents are made; N connections each hold the agent's message stream (`GET /v1/agents/{name}/messages/stream`,
with the server's heartbeats), or with --poll its long-poll (`?wait=60`, renewed each minute); then, one at a
time, a sample of them gets a human's mail through the inbound webhook (`POST /inbound/raw`, as a mail provider
would post it, with our receiving server's DMARC pass). The latency is from just before the POST is sent to the
moment the waiting agent's answer arrives. The idle CPU is measured over --idle seconds once all wait (past a
round of heartbeats, every --heartbeat seconds: GATEWAY_STREAM_HEARTBEAT, 45 by default).

    python bench/agents.py [--agents 10000] [--samples 200] [--poll] [--idle 95] [--heartbeat 45]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, Server, gateway_server, machine, percentile, rss_mib, smtp_sink, table
from bench.wake import cpu_rate, held

TRUSTED = "mx.bench.test"
INBOUND_SECRET = "bench-inbound-secret-0123456789"
STEP = 1000  # waits taken on at a time (the listen backlog is 2048)


def human_mail(address: str, n: int) -> bytes:
    return (
        f"Authentication-Results: {TRUSTED}; dmarc=pass header.from=bench.test\r\n"
        f"From: Human <human@bench.test>\r\nTo: {address}\r\nSubject: step {n}\r\n"
        f"Message-ID: <bench-{n}-{time.time_ns()}@bench.test>\r\n\r\nStop after this step, please.\r\n"
    ).encode()


async def make_agents(server: Server, n: int) -> list[tuple[str, str]]:
    """(name, address) of n agents."""
    out: list[tuple[str, str]] = []

    async def worker(k: int) -> None:
        conn = Connection(server.host, server.port)
        for i in range(k, n, 32):
            status, body = await conn.json(
                "POST", "/v1/agents", server.key, {"name": f"agent{i}", "allowed_senders": ["@bench.test"]}
            )
            assert status == 201, body
            out.append((body["name"], body["address"]))
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(32)))
    return out


async def run(agents: int, samples: int, stream: bool, idle_s: float, heartbeat: int) -> list[tuple[str, str, str]]:
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(smtp_sink())
        server = stack.enter_context(
            gateway_server(
                sink.port,
                trusted_authserv_ids=TRUSTED,
                inbound_secret=INBOUND_SECRET,
                stream_heartbeat=str(heartbeat),
            )
        )
        return await _run(server, agents, samples, stream, idle_s)


async def _run(server: Server, count: int, samples: int, stream: bool, idle_s: float) -> list[tuple[str, str, str]]:
    started = time.perf_counter()
    agents = await make_agents(server, count)
    create_s = time.perf_counter() - started
    base_rss, _ = rss_mib(server.proc.pid)
    arrived: dict[str, float] = {}
    woken = {name: asyncio.Event() for name, _ in agents}

    async def connect() -> Connection:
        conn = Connection(server.host, server.port)
        while True:  # a burst of connects can overflow the listen backlog: retry, as a client would
            try:
                await conn.open()
                return conn
            except OSError:
                await asyncio.sleep(0.2)

    async def wait_on(name: str) -> None:
        """The long-poll: renewed each minute, as the API allows."""
        conn = await connect()
        cursor = "0"
        while True:
            try:
                _, body = await conn.json("GET", f"/v1/agents/{name}/messages?after={cursor}&wait=60", server.key)
            except (OSError, asyncio.IncompleteReadError):
                conn.close()
                await asyncio.sleep(0.2)
                continue
            cursor = body["next"]
            if body["messages"]:
                arrived[name] = time.perf_counter()
                woken[name].set()
                conn.close()
                return

    async def stream_on(name: str) -> None:
        """The stream: asked for once, held with the server's heartbeats until the message comes."""
        conn = await connect()
        assert conn.reader is not None and conn.writer is not None
        conn.writer.write(
            f"GET /v1/agents/{name}/messages/stream HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Bearer {server.key}\r\n\r\n".encode()
        )
        head = await conn.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        seen = b""
        while b"event: message" not in seen:
            data = await conn.reader.read(65536)
            if not data:
                raise RuntimeError(f"the stream of {name} ended")
            seen = seen[-64:] + data
        arrived[name] = time.perf_counter()
        woken[name].set()
        conn.close()

    tasks: list[asyncio.Task[Any]] = []
    holding = time.perf_counter()
    for i in range(0, count, STEP):
        tasks += [asyncio.create_task((stream_on if stream else wait_on)(name)) for name, _ in agents[i : i + STEP]]
        await held(server, len(tasks))
    hold_s = time.perf_counter() - holding
    settle_deadline = time.perf_counter() + 120
    while await cpu_rate(server.proc.pid, 1.0) > 0.05 and time.perf_counter() < settle_deadline:
        pass
    rss_waiting, _ = rss_mib(server.proc.pid)
    idle_cpu = await cpu_rate(server.proc.pid, idle_s)

    latencies = []
    step = max(1, count // samples)
    provider = Connection(server.host, server.port)
    headers = {"Authorization": f"Bearer {INBOUND_SECRET}", "Content-Type": "message/rfc822"}
    for n, (name, address) in enumerate(agents[::step][:samples]):
        raw = human_mail(address, n)
        sent = time.perf_counter()
        status, _, body = await provider.request("POST", "/inbound/raw", raw, headers)
        assert status == 200 and b'"delivered"' in body, body
        await woken[name].wait()
        latencies.append((arrived[name] - sent) * 1000)
    _, peak = rss_mib(server.proc.pid)
    for task in tasks:
        task.cancel()
    provider.close()
    ms = latencies
    return [
        ("agents waiting at once", f"{count:,}", ""),
        ("human mails sampled", f"{len(ms)}", "POST /inbound/raw, one at a time"),
        ("mail -> waiting agent answered p50", f"{percentile(ms, 50):.1f} ms", "target <= 20 ms"),
        ("mail -> waiting agent answered p99", f"{percentile(ms, 99):.1f} ms", ""),
        ("mail -> waiting agent answered max", f"{max(ms):.1f} ms", ""),
        ("server CPU while all wait", f"{idle_cpu * 100:.2f} %", f"target < 1 % (over {idle_s:.0f} s)"),
        ("server RSS before waiters", f"{base_rss:.0f} MiB", ""),
        ("server RSS with all waiting", f"{rss_waiting:.0f} MiB", "target < 1 GiB"),
        ("server RSS peak", f"{peak:.0f} MiB", ""),
        ("setup: agents made", f"{count / create_s:,.0f} / s", ""),
        ("setup: waits taken on", f"{count / hold_s:,.0f} / s", f"a GET each, in steps of {STEP}"),
        ("how agents wait", "stream" if stream else "long-poll", "" if stream else "renewed every 60 s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--poll", action="store_true", help="long-poll (renewed each minute) instead of streams")
    parser.add_argument(
        "--idle", type=float, default=95.0, help="seconds the idle CPU is measured over (past a heartbeat round)"
    )
    parser.add_argument("--heartbeat", type=int, default=45, help="the server's GATEWAY_STREAM_HEARTBEAT")
    args = parser.parse_args()
    rows = asyncio.run(run(args.agents, args.samples, not args.poll, args.idle, args.heartbeat))
    print(table(f"Human mail to {args.agents:,} waiting agents (SQLite) on {machine()}", rows))


if __name__ == "__main__":
    main()
