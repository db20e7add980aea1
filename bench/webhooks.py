"""Replies delivered by webhook (`POST /inbound/raw`), end to end on `gateway serve` (SQLite, one process).

Throughput: N approvals, each to its own recipient; their N replies (Gmail-style, quoted original) are posted by
16 connections at once; the clock runs until every POST has answered, and each answers only once its reply is
stored and decided. Latency: one approval at a time, an agent waiting with `?wait=30`; the clock runs from the
POST's first byte to the agent's answer (no IDLE push on this route).

    python bench/webhooks.py [--replies 2000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, gateway_server, machine, percentile, smtp_sink, table
from bench.inbound import cpu_by_process, create
from tests import mailclients

SECRET = "bench-inbound-secret-0123456789"
HEADERS = {"Authorization": f"Bearer {SECRET}", "Content-Type": "message/rfc822"}


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


async def run(n: int, samples: int) -> list[tuple[str, str, str]]:
    with smtp_sink(keep=True) as sink, gateway_server(sink.port, inbound_secret=SECRET) as gw:
        port, key = gw.port, gw.key
        recipients = [f"approver{i}@bench.test" for i in range(n)]
        approvals = await create(port, key, recipients)
        while sink.count < n:
            await asyncio.sleep(0.05)
        replies = [mailclients.gmail(parsed(sink.mails[r]), "Approved, thanks.") for r in recipients]
        outcomes: list[str] = []

        async def worker(k: int) -> None:
            conn = Connection("127.0.0.1", port)
            for i in range(k, n, 16):
                status, _, body = await conn.request("POST", "/inbound/raw", replies[i], HEADERS)
                assert status == 200, body
                outcomes.append(body.decode())
            conn.close()

        profiler = None
        if os.environ.get("BENCH_PROFILE"):  # py-spy on the gateway for the measured window only
            profiler = subprocess.Popen(  # noqa: ASYNC220 (a harness: starting it blocks for microseconds)
                ["py-spy", "record", "-p", str(gw.proc.pid), "-o", os.environ["BENCH_PROFILE"], "--format", "raw"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
        cpu_before = cpu_by_process(gw.proc.pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(16)))
        elapsed = time.perf_counter() - started
        cpu_after = cpu_by_process(gw.proc.pid)
        busy = {k: (cpu_after.get(k, 0) - v) / elapsed for k, v in cpu_before.items() if k != "dovecot"}
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        decided = sum('"decided"' in o for o in outcomes)

        latencies = []
        for i in range(samples):
            rcpt = f"latency{i}@bench.test"
            (approval,) = await create(port, key, [rcpt])
            while rcpt not in sink.mails:
                await asyncio.sleep(0.005)
            waiter_conn = Connection("127.0.0.1", port)
            waiter = asyncio.create_task(waiter_conn.json("GET", f"/v1/approvals/{approval['id']}?wait=30", key))
            await asyncio.sleep(0.02)  # the waiter is parked
            raw = mailclients.gmail(parsed(sink.mails[rcpt]), "approve")
            poster = Connection("127.0.0.1", port)
            posted = time.perf_counter()
            await poster.request("POST", "/inbound/raw", raw, HEADERS)
            _, body = await waiter
            latencies.append((time.perf_counter() - posted) * 1000)
            assert body["status"] == "approved", body
            waiter_conn.close()
            poster.close()
    return [
        ("webhook replies posted", f"{n:,}", f"{decided:,} decided ({len(approvals):,} approvals)"),
        ("webhook replies / second (POST -> stored and decided)", f"{n / elapsed:,.0f}", "target >= 300"),
        ("POST /inbound/raw -> waiting agent answered p50", f"{percentile(latencies, 50):.1f} ms", "target <= 20 ms"),
        (
            "POST /inbound/raw -> waiting agent answered p99",
            f"{percentile(latencies, 99):.1f} ms",
            f"target <= 50 ms ({samples} samples)",
        ),
        *[(f"CPU busy during throughput: {k}", f"{v * 100:.0f} %", "of one core") for k, v in sorted(busy.items())],
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    rows = asyncio.run(run(args.replies, args.samples))
    print(table(f"Replies by webhook (/inbound/raw) to decisions, SQLite, one process, on {machine()}", rows))


if __name__ == "__main__":
    main()
