"""Replies by email, end to end through a real Dovecot and `gateway serve`.

Throughput: N approvals, each to its own recipient; N replies (Gmail-style, quoted original) are appended to
a staging folder, then moved into the inbox with one command; the clock runs until the poller has committed
and moved the last one. Latency: one approval at a time, an agent waiting with `?wait=30`; the clock runs
from the end of the reply's APPEND to the agent's answer (Dovecot holds its IDLE push ~500 ms).

    python bench/inbound.py [--replies 1000] [--samples 20]
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
from tests import dovecot as dc
from tests import mailclients


async def create(port: int, key: str, recipients: list[str]) -> list[dict]:
    out: list[dict] = []

    async def worker(k: int) -> None:
        conn = Connection("127.0.0.1", port)
        for i in range(k, len(recipients), 16):
            status, body = await conn.json(
                "POST",
                "/v1/approvals",
                key,
                {"fn": "refund", "kwargs": {"order": i}, "channel": {"email": {"to": [recipients[i]]}}},
            )
            assert status == 201, body
            out.append(body)
        conn.close()

    await asyncio.gather(*(worker(k) for k in range(16)))
    return out


def cpu_by_process(gateway_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the gateway, this benchmark process, and Dovecot's processes together."""

    def seconds(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    dovecot = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in ("dovecot", "imap", "imap-login", "auth", "anvil", "log", "config", "stats"):
                dovecot += seconds(int(entry.name))
    children = Path(f"/proc/{gateway_pid}/task/{gateway_pid}/children").read_text().split()
    gateway = seconds(gateway_pid) + sum(seconds(int(c)) for c in children)  # `serve --processes N`: all of them
    found = {"gateway": gateway, "benchmark": seconds(os.getpid()), "dovecot": dovecot}
    for child in children:  # and each of them
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        role = argv[argv.index(b"--roles") + 1].decode() if b"--roles" in argv else "http only"
        found[f"gateway process {child} ({role})"] = seconds(int(child))
    return found


def poller_pid(gateway_pid: int) -> int:
    """The process that runs the IMAP poller: the gateway, or under `serve --processes N` its child that does."""
    for child in Path(f"/proc/{gateway_pid}/task/{gateway_pid}/children").read_text().split():
        if b"poller" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    return gateway_pid


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


async def run(n: int, samples: int, processes: int = 1) -> list[tuple[str, str, str]]:
    server = dc.Dovecot()
    server.setup()
    server.start()
    imap_settings = {
        "reply_address": "replies@bench.test",
        "imap_host": "127.0.0.1",
        "imap_port": str(server.imap_port),
        "imap_username": dc.USER,
        "imap_password": dc.PASSWORD,
        "imap_security": "starttls",
        "imap_ca_file": str(server.cert),
    }
    try:
        with smtp_sink(keep=True) as sink, gateway_server(sink.port, processes=processes, **imap_settings) as gw:
            port, key = gw.port, gw.key
            # --- throughput ---
            recipients = [f"approver{i}@bench.test" for i in range(n)]
            approvals = await create(port, key, recipients)
            while sink.count < n:
                await asyncio.sleep(0.05)
            imap = server.client()
            imap.create("Staging")
            for rcpt in recipients:
                imap.append("Staging", None, None, mailclients.gmail(parsed(sink.mails[rcpt]), "Approved, thanks."))
            imap.select("Staging")
            cpu_before = cpu_by_process(gw.proc.pid)
            profiler = None
            if os.environ.get("BENCH_PROFILE"):  # py-spy on the gateway for the measured window only
                target = poller_pid(gw.proc.pid)
                profiler = subprocess.Popen(  # noqa: ASYNC220 (a harness: starting it blocks for microseconds)
                    [
                        *("py-spy", "record", "-p", str(target), "-o", os.environ["BENCH_PROFILE"]),
                        *("--format", "raw", "--rate", "400", "--threads"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
            started = time.perf_counter()
            imap.uid("MOVE", "1:*", "INBOX")
            while server.count("Processed") < n:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu_after = cpu_by_process(gw.proc.pid)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            busy = {k: (cpu_after.get(k, 0) - v) / elapsed for k, v in cpu_before.items()}
            conn = Connection("127.0.0.1", port)
            decided = 0
            for a in approvals:
                _, body = await conn.json("GET", f"/v1/approvals/{a['id']}", key)
                decided += body["status"] == "approved"
            # --- latency ---
            latencies = []
            for i in range(samples):
                rcpt = f"latency{i}@bench.test"
                (approval,) = await create(port, key, [rcpt])
                while rcpt not in sink.mails:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # the poller is back in IDLE
                waiter_conn = Connection("127.0.0.1", port)
                waiter = asyncio.create_task(waiter_conn.json("GET", f"/v1/approvals/{approval['id']}?wait=30", key))
                await asyncio.sleep(0.05)
                raw = mailclients.gmail(parsed(sink.mails[rcpt]), "approve")
                await asyncio.to_thread(imap.append, "INBOX", None, None, raw)
                appended = time.perf_counter()
                _, body = await waiter
                latencies.append((time.perf_counter() - appended) * 1000)
                assert body["status"] == "approved", body
                waiter_conn.close()
            imap.logout()
    finally:
        server.cleanup()
    return [
        ("replies processed", f"{n:,}", f"{decided:,} decided"),
        ("replies / second (mailbox -> decisions)", f"{n / elapsed:,.0f}", "target >= 200"),
        ("APPEND -> waiting agent answered p50", f"{percentile(latencies, 50):.0f} ms", "target < 650 ms"),
        ("APPEND -> waiting agent answered p99", f"{percentile(latencies, 99):.0f} ms", f"{samples} samples"),
        ("APPEND -> waiting agent answered min", f"{min(latencies):.0f} ms", "Dovecot's IDLE push ~500 ms"),
        *[(f"CPU busy during throughput: {k}", f"{v * 100:.0f} %", "of one core") for k, v in sorted(busy.items())],
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--processes", type=int, default=1, help="serve --processes N")
    args = parser.parse_args()
    rows = asyncio.run(run(args.replies, args.samples, args.processes))
    print(
        table(
            f"Replies from Dovecot (IMAP IDLE, STARTTLS) to decisions, SQLite, {args.processes} process(es),"
            f" on {machine()}",
            rows,
        )
    )


if __name__ == "__main__":
    main()
