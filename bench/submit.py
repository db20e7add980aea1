"""Approvals submitted per second over HTTP (each committed with its mail in the outbox), and latency.

python bench/submit.py [--seconds 10] [--concurrency 32] [--postgres URL [--replicas 2]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, Server, gateway_server, machine, percentile, rss_mib, smtp_sink, table

BODY = {
    "fn": "send_email",
    "kwargs": {"to": "customer@example.com", "subject": "Your refund", "body": "Hello,\nyour refund is on its way."},
    "channel": {"email": {"to": ["approver@example.com"], "context": "Refund over the auto-approve limit"}},
}


async def load(servers: list[Server], key: str, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    """``concurrency`` keep-alive clients, spread evenly over the servers (a load balancer's round robin)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    run = f"{time.time_ns():x}"

    async def worker(n: int) -> None:
        nonlocal errors
        server = servers[n % len(servers)]
        conn = Connection(server.host, server.port)
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


@dataclass
class SubmitFigures:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    mailed: int
    rss_mib: float
    peak_mib: float


def measure(
    database_url: str | None = None,
    replicas: int = 1,
    seconds: float = 10.0,
    concurrency: int = 32,
    workers: bool = True,
    processes: int = 1,
) -> SubmitFigures:
    """Submissions a second into ``replicas`` `gateway serve` (more than one needs PostgreSQL), each in
    ``processes`` processes."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(smtp_sink())
        servers = [
            stack.enter_context(gateway_server(sink.port, database_url, workers=workers, processes=processes))
            for _ in range(replicas)
        ]
        key = servers[0].key
        asyncio.run(load(servers, key, 2.0, concurrency))  # warm-up
        started = time.perf_counter()
        count, latencies, errors = asyncio.run(load(servers, key, seconds, concurrency))
        elapsed = time.perf_counter() - started
        memory = [rss_mib(s.proc.pid) for s in servers]
        mailed = sink.count
    ms = [x * 1000 for x in latencies]
    return SubmitFigures(
        rate=count / elapsed,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        errors=errors,
        mailed=mailed,
        rss_mib=max(m[0] for m in memory),
        peak_mib=max(m[1] for m in memory),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", default=None, help="a postgresql:// URL of an empty database")
    parser.add_argument("--replicas", type=int, default=1, help="gateway serve processes (PostgreSQL for > 1)")
    parser.add_argument("--processes", type=int, default=1, help="serve --processes N")
    parser.add_argument("--no-sender", action="store_true", help="run the outbox sender elsewhere (serve --no-workers)")
    args = parser.parse_args()
    if args.replicas > 1 and not args.postgres:
        parser.error("--replicas > 1 needs --postgres")
    f = measure(
        args.postgres,
        args.replicas,
        args.seconds,
        args.concurrency,
        workers=not args.no_sender,
        processes=args.processes,
    )
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        table(
            f"Submissions over HTTP ({backend}, {args.replicas} replica(s) of {args.processes} process(es),"
            f" {args.concurrency} concurrent clients,"
            f" {args.seconds:.0f} s) on {machine()}",
            [
                ("approvals / second", f"{f.rate:,.0f}", "target >= 1,000"),
                ("latency p50", f"{f.p50_ms:.1f} ms", ""),
                ("latency p99", f"{f.p99_ms:.1f} ms", "target < 100 ms"),
                ("errors", f"{f.errors}", "target 0"),
                ("mails delivered during the run", f"{f.mailed:,}", "(senders run in the same processes)"),
                (
                    "server RSS now / peak (largest replica, its processes summed)",
                    f"{f.rss_mib:.0f} / {f.peak_mib:.0f} MiB",
                    "",
                ),
            ],
        )
    )


if __name__ == "__main__":
    main()
