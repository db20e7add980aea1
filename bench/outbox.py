"""Outbox mails a second into a real SMTP server (aiosmtpd).

N approvals are submitted to `gateway serve --no-workers` (their mails wait in the outbox); then a separate
`gateway worker` starts and the clock runs until the SMTP server has accepted all N mails.

    python bench/outbox.py [--mails 2000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Connection, gateway_server, machine, smtp_sink, table
from bench.submit import BODY


async def submit(host: str, port: int, key: str, count: int) -> None:
    async def worker(k: int) -> None:
        conn = Connection(host, port)
        for i in range(k, count, 16):
            status, body = await conn.json("POST", "/v1/approvals", key, dict(BODY, call_id=f"outbox-{i}"))
            assert status == 201, body
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(16)))


def measure(mails: int = 2000, database_url: str | None = None) -> float:
    """Mails a second from the outbox into aiosmtpd."""
    with smtp_sink() as sink, gateway_server(sink.port, database_url, workers=False) as server:
        asyncio.run(submit(server.host, server.port, server.key, mails))
        assert sink.count == 0
        started = time.perf_counter()
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway", "worker"],
            env=server.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = started + 600
            while sink.count < mails and time.perf_counter() < deadline:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            worker.terminate()
            worker.wait(15)
    return mails / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--postgres", default=None, help="a postgresql:// URL of an empty database")
    args = parser.parse_args()
    rate = measure(args.mails, args.postgres)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    rows = [("mails / second into aiosmtpd", f"{rate:,.0f}", f"{args.mails:,} mails, worker start included")]
    print(table(f"Outbox sender ({backend}) on {machine()}", rows))


if __name__ == "__main__":
    main()
