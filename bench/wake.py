"""How fast a decision wakes the agent waiting on it, with many agents waiting at once.

N approvals are created; N connections each hold `GET /v1/approvals/{id}?wait=60`; then, one at a time, a
sample of them is decided through the emailed link (page GET for the CSRF field, then the form POST). The
latency is from just before the POST is sent to the moment the waiter's answer arrives.

    python bench/wake.py [--waiters 10000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, Server, gateway_server, machine, percentile, rss_mib, smtp_sink, table

LINK_RE = re.compile(r"https?://\S+/r/[A-Za-z0-9_\-.]+/approve")
CSRF_RE = re.compile(rb'name="csrf_token" value="([^"]+)"')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split()
    return (int(fields[13]) + int(fields[14])) / 100


async def cpu_rate(pid: int, seconds: float) -> float:
    """CPU seconds per second the process used over the next ``seconds``."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def create(server, n: int) -> list[tuple[str, str]]:
    """(approval id, recipient address) for n approvals, each to its own recipient."""
    out: list[tuple[str, str]] = []

    async def worker(k: int) -> None:
        conn = Connection(server.host, server.port)
        for i in range(k, n, 32):
            rcpt = f"approver{i}@bench.test"
            status, body = await conn.json(
                "POST",
                "/v1/approvals",
                server.key,
                {"fn": "transfer", "kwargs": {"amount": i}, "channel": {"email": {"to": [rcpt]}}},
            )
            assert status == 201, body
            out.append((body["id"], rcpt))
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(32)))
    return out


async def run(
    waiters: int, samples: int, database_url: str | None = None, across: bool = False
) -> list[tuple[str, str]]:
    """Waiters on one server; decisions through the same server, or with ``across`` through a second replica on
    the same PostgreSQL (the waiter is woken by LISTEN/NOTIFY)."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(smtp_sink(keep=True))
        server = stack.enter_context(gateway_server(sink.port, database_url))
        other = stack.enter_context(gateway_server(sink.port, database_url)) if across else server
        return await _run(server, other, sink, waiters, samples)


async def held(server: Server, waiters: int, limit: float = 300) -> None:
    """Until the server says it holds ``waiters`` waits (its /healthz counts them)."""
    conn = Connection(server.host, server.port)
    deadline = time.perf_counter() + limit
    while True:
        _, body = await conn.json("GET", "/healthz", server.key)
        if body.get("waiters", 0) >= waiters:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the server holds {body.get('waiters')} of {waiters} waits after {limit:.0f} s")
        await asyncio.sleep(0.1)
    conn.close()


async def _run(server: Server, other: Server, sink: Any, waiters: int, samples: int) -> list[tuple[str, str]]:
    started = time.perf_counter()
    approvals = await create(server, waiters)
    create_s = time.perf_counter() - started
    while sink.count < waiters:  # the sink counts in another thread
        await asyncio.sleep(0.1)
    base_rss, _ = rss_mib(server.proc.pid)

    arrived: dict[str, float] = {}
    woken = {approval_id: asyncio.Event() for approval_id, _ in approvals}
    ready = asyncio.Event()
    connected = 0

    async def wait_on(approval_id: str) -> None:
        nonlocal connected
        conn = Connection(server.host, server.port)
        while True:  # a burst of connects can overflow the listen backlog: retry, as a client would
            try:
                await conn.open()
                break
            except OSError:
                await asyncio.sleep(0.2)
        connected += 1
        if connected == waiters:
            ready.set()
        while True:
            try:
                _, body = await conn.json("GET", f"/v1/approvals/{approval_id}?wait=60", server.key)
            except (OSError, asyncio.IncompleteReadError):
                conn.close()
                await asyncio.sleep(0.2)
                continue
            if body["status"] != "pending":
                arrived[approval_id] = time.perf_counter()
                woken[approval_id].set()
                conn.close()
                return

    tasks = []
    holding = time.perf_counter()
    # In steps the server takes in before the next: a connect that overflows the listen backlog looks open to the
    # client before the server has accepted it (the handshake completes on a SYN-ACK retry seconds on), and such
    # stragglers would still be arriving while the decisions are sampled. The server's /healthz counts the waits
    # it holds.
    for i in range(0, waiters, 500):
        tasks += [asyncio.create_task(wait_on(a)) for a, _ in approvals[i : i + 500]]
        await held(server, len(tasks))
    await ready.wait()
    hold_s = time.perf_counter() - holding
    # Let the initial GETs (and the outbox) finish: wait until the server is quiet.
    settle_deadline = time.perf_counter() + 180
    while await cpu_rate(server.proc.pid, 1.0) > 0.05 and time.perf_counter() < settle_deadline:
        pass
    rss_waiting, _ = rss_mib(server.proc.pid)
    idle_cpu = await cpu_rate(server.proc.pid, 5.0)

    latencies = []
    step = max(1, waiters // samples)
    decider = Connection(other.host, other.port)
    for approval_id, rcpt in approvals[::step][:samples]:
        raw = sink.mails[rcpt]
        text = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content()
        link = urlsplit(LINK_RE.search(text).group(0))
        _, _, page = await decider.request("GET", link.path)
        csrf = CSRF_RE.search(page).group(1).decode()
        form = urlencode({"csrf_token": csrf, "decision": "approve"}).encode()
        token_path = link.path.rsplit("/", 1)[0]
        sent = time.perf_counter()
        status, _, _ = await decider.request(
            "POST", token_path, form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303, status
        await woken[approval_id].wait()
        latencies.append((arrived[approval_id] - sent) * 1000)
    _, peak = rss_mib(server.proc.pid)
    for task in tasks:
        task.cancel()
    decider.close()

    ms = latencies
    return [
        ("waiters held at once", f"{waiters:,}", ""),
        ("decisions sampled", f"{len(ms)}", "link POST, one at a time"),
        ("decision -> waiter woken p50", f"{percentile(ms, 50):.1f} ms", ""),
        ("decision -> waiter woken p99", f"{percentile(ms, 99):.1f} ms", "target < 50 ms"),
        ("decision -> waiter woken max", f"{max(ms):.1f} ms", ""),
        ("server CPU while all wait", f"{idle_cpu * 100:.1f} %", "no polling"),
        ("server RSS before waiters", f"{base_rss:.0f} MiB", ""),
        ("server RSS with all waiting", f"{rss_waiting:.0f} MiB", "target < 1 GiB"),
        ("server RSS peak", f"{peak:.0f} MiB", ""),
        ("setup: approvals created", f"{waiters / create_s:,.0f} / s", ""),
        ("setup: waits taken on", f"{waiters / hold_s:,.0f} / s", "a GET each, in steps of 500"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--postgres", default=None, help="a postgresql:// URL of an empty database")
    parser.add_argument("--across", action="store_true", help="decide on a second replica (needs --postgres)")
    args = parser.parse_args()
    if args.across and not args.postgres:
        parser.error("--across needs --postgres")
    rows = asyncio.run(run(args.waiters, args.samples, args.postgres, args.across))
    where = "PostgreSQL, decided on another replica" if args.across else ("PostgreSQL" if args.postgres else "SQLite")
    print(table(f"Wake latency with {args.waiters:,} waiting agents ({where}) on {machine()}", rows))


if __name__ == "__main__":
    main()
