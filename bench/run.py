"""Every figure in one run and one table: `python -m bench` (or `python bench/run.py`).

Runs each benchmark of this folder in turn (never two at once: they share the machine's cores) against real
servers: `gateway serve` processes on SQLite and on a throwaway PostgreSQL database (one and two replicas), an
aiosmtpd sink, Dovecot for replies, the reply corpus in ../shared/corpus. Prints the machine, the date and one
table; `--quick` runs smaller sizes for a smoke test.

    python -m bench [--quick] [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--only submit,wake]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import inbound, outbox, replies, scheduler, submit, wake, webhooks
from bench.common import machine

Row = tuple[str, str, str]


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database for one benchmark, dropped after."""
    import asyncpg

    name = f"gw_bench_{secrets.token_hex(4)}"
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pick(rows: list[Row], label: str) -> str:
    return next(value for name, value, _ in rows if name.startswith(label))


def submissions(pg: str, seconds: float, rounds: int) -> list[Row]:
    """Each case ``rounds`` times, the cases interleaved (this machine's speed drifts over minutes, so a case
    run in a slow stretch would otherwise lose to one run in a fast one); the median run of each case."""
    cases: list[tuple[str, str | None, int, int]] = [
        ("SQLite", None, 1, 1),
        ("SQLite, serve --processes 2", None, 1, 2),
        ("PostgreSQL, 1 replica", "pg", 1, 1),
        ("PostgreSQL, 2 replicas", "pg", 2, 1),
    ]
    runs: dict[str, list[submit.SubmitFigures]] = {label: [] for label, *_ in cases}
    for _ in range(rounds):
        for label, backend, replicas, processes in cases:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(throwaway_database(pg)) if backend else None
                runs[label].append(
                    submit.measure(url, replicas, seconds, concurrency=16 * replicas, processes=processes)
                )
    out = []
    for label, backend, replicas, _ in cases:
        ordered = sorted(runs[label], key=lambda f: f.rate)
        f = ordered[len(ordered) // 2]
        spread = f" (runs {ordered[0].rate:,.0f}-{ordered[-1].rate:,.0f})" if len(ordered) > 1 else ""
        target = ">= 1,000/s, p99 < 100 ms" if backend is None else ("as many as SQLite" if replicas == 2 else "")
        out.append(
            (
                f"submissions/s ({label})",
                f"{f.rate:,.0f}/s{spread}, p50 {f.p50_ms:.0f} ms, p99 {f.p99_ms:.0f} ms, {f.errors} errors,"
                f" RSS {f.peak_mib:.0f} MiB, {f.mailed:,} mails sent meanwhile",
                target,
            )
        )
    return out


def wakeups(pg: str, sizes: list[int], samples: int) -> list[Row]:
    out = []
    for waiters in sizes:
        for across in (False, True):
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(throwaway_database(pg)) if across else None
                rows = asyncio.run(wake.run(waiters, samples, url, across))
            where = "across replicas, PostgreSQL" if across else "same process, SQLite"
            out.append(
                (
                    f"wake, {waiters:,} waiters ({where})",
                    f"p50 {_pick(rows, 'decision -> waiter woken p50')},"
                    f" p99 {_pick(rows, 'decision -> waiter woken p99')},"
                    f" RSS {_pick(rows, 'server RSS with all waiting')}",
                    "p99 < 100 ms" if across else "p99 < 50 ms, < 1 GiB",
                )
            )
    return out


def mail_out(mails: int) -> list[Row]:
    return [("outbox mails/s into aiosmtpd (SQLite)", f"{outbox.measure(mails):,.0f}/s", "")]


def replies_in(count: int, samples: int, rounds: int) -> list[Row]:
    """The throughput ``rounds`` times for one process and for `serve --processes 2`, interleaved (median and
    range: it is the noisiest figure here); the latency once, from the last single-process run."""
    rates: dict[int, list[int]] = {1: [], 2: []}
    for i in range(rounds):
        for processes in (2, 1):
            rows = asyncio.run(inbound.run(count, samples if i == rounds - 1 and processes == 1 else 1, processes))
            rates[processes].append(int(_pick(rows, "replies / second").replace(",", "")))
    out = []
    for processes, found in rates.items():
        found.sort()
        spread = f" (runs {found[0]}-{found[-1]})" if rounds > 1 else ""
        label = "" if processes == 1 else ", serve --processes 2"
        median = f"{found[len(found) // 2]}/s{spread}"
        out.append((f"inbound replies/s (Dovecot -> decisions{label})", median, ">= 200/s"))
    return [
        *out,
        (
            "reply APPEND -> waiting agent answered",
            f"p50 {_pick(rows, 'APPEND -> waiting agent answered p50')}, "
            f"p99 {_pick(rows, 'APPEND -> waiting agent answered p99')}",
            "< 650 ms (Dovecot pushes after ~500 ms)",
        ),
    ]


def webhooks_in(count: int, samples: int) -> list[Row]:
    rows = asyncio.run(webhooks.run(count, samples))
    return [
        ("inbound webhooks/s (/inbound/raw -> decisions)", f"{_pick(rows, 'webhook replies / second')}/s", ">= 300/s"),
        (
            "POST /inbound/raw -> waiting agent answered",
            f"p50 {_pick(rows, 'POST /inbound/raw -> waiting agent answered p50')},"
            f" p99 {_pick(rows, 'POST /inbound/raw -> waiting agent answered p99')}",
            "p50 <= 20 ms, p99 <= 50 ms",
        ),
    ]


def reading() -> list[Row]:
    rows = replies.measure()
    out: list[Row] = []
    for name in replies.SETS:
        out.append(
            (
                f"extract_reply on {name}",
                f"{_pick(rows, f'{name} lenient')} lenient, {_pick(rows, f'{name} quoted history leaked')} leaks,"
                f" {_pick(rows, f'{name} extract_reply speed')}",
                ">= 95 %, 0 leaks, >= 10,000 msg/s",
            )
        )
    out.append(("automated_kind", f"{_pick(rows, 'automated_kind right')} right", "all"))
    return out


def scheduling(requests: int) -> list[Row]:
    rows = asyncio.run(scheduler.measure(scheduler.arguments(["--requests", str(requests)])))
    return [
        (
            f"scheduler, {requests:,} pending (SQLite)",
            f"idle CPU {_pick(rows, 'idle CPU')}, {_pick(rows, 'SQL statements')} statements idle, "
            f"lateness p99 {_pick(rows, 'lateness p99')}",
            "flat, < 1 s",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark and print one table.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    parser.add_argument(
        "--only", default="", help="comma-separated: submit,wake,outbox,inbound,webhooks,replies,scheduler"
    )
    args = parser.parse_args()
    quick = args.quick
    steps: dict[str, Callable[[], list[Row]]] = {
        "submit": lambda: submissions(args.postgres, 3 if quick else 10, 1 if quick else 3),
        "wake": lambda: wakeups(args.postgres, [200] if quick else [1_000, 10_000], 20 if quick else 200),
        "outbox": lambda: mail_out(200 if quick else 2_000),
        "inbound": lambda: replies_in(100 if quick else 1_000, 5 if quick else 20, 1 if quick else 3),
        "webhooks": lambda: webhooks_in(200 if quick else 2_000, 20 if quick else 200),
        "replies": reading,
        "scheduler": lambda: scheduling(10_000 if quick else 100_000),
    }
    only = [s for s in args.only.split(",") if s] or list(steps)
    rows: list[Row] = []
    started = time.perf_counter()
    for name in only:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows += steps[name]()
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"gateway benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"command: python -m bench{' --quick' if quick else ''}; took {time.perf_counter() - started:.0f} s")
    print()
    print(f"{'figure':<{width}}  {'measured':<{vwidth}}  target")
    print(f"{'-' * width}  {'-' * vwidth}  ------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {target}")


if __name__ == "__main__":
    main()
