"""Approvals submitted per second over HTTP (each committed with its mail in the outbox), and latency.

python bench/submit.py [--seconds 10] [--concurrency 32] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, gateway_server, machine, percentile, rss_mib, smtp_sink, table

BODY = {
    "fn": "send_email",
    "kwargs": {"to": "customer@example.com", "subject": "Your refund", "body": "Hello,\nyour refund is on its way."},
    "channel": {"email": {"to": ["approver@example.com"], "context": "Refund over the auto-approve limit"}},
}


async def load(host: str, port: int, key: str, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    run = f"{time.time_ns():x}"

    async def worker(n: int) -> None:
        nonlocal errors
        conn = Connection(host, port)
        await conn.open()
        i = 0
        while time.perf_counter() < stop_at:
            body = dict(BODY, call_id=f"{run}-{n}-{i}")
            i += 1
            started = time.perf_counter()
            status, _ = await conn.json("POST", "/v1/approvals", key, body)
            latencies.append(time.perf_counter() - started)
            if status != 201:
                errors += 1
        conn.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return len(latencies), latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", default=None, help="a postgresql:// URL of an empty database")
    parser.add_argument("--no-sender", action="store_true", help="run the outbox sender elsewhere (serve --no-workers)")
    args = parser.parse_args()
    with smtp_sink() as sink, gateway_server(sink.port, args.postgres, workers=not args.no_sender) as server:
        asyncio.run(load(server.host, server.port, server.key, 2.0, args.concurrency))  # warm-up
        started = time.perf_counter()
        count, latencies, errors = asyncio.run(
            load(server.host, server.port, server.key, args.seconds, args.concurrency)
        )
        elapsed = time.perf_counter() - started
        rss, peak = rss_mib(server.proc.pid)
        mailed = sink.count
    rate = count / elapsed
    ms = [x * 1000 for x in latencies]
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        table(
            f"Submissions over HTTP ({backend}, {args.concurrency} concurrent clients, {args.seconds:.0f} s)"
            f" on {machine()}",
            [
                ("approvals / second", f"{rate:,.0f}", "target >= 1,000"),
                ("latency p50", f"{percentile(ms, 50):.1f} ms", ""),
                ("latency p99", f"{percentile(ms, 99):.1f} ms", "target < 100 ms"),
                ("errors", f"{errors}", "target 0"),
                ("mails delivered during the run", f"{mailed:,}", "(sender runs in the same process)"),
                ("server RSS now / peak", f"{rss:.0f} / {peak:.0f} MiB", ""),
            ],
        )
    )


if __name__ == "__main__":
    main()
