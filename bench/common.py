"""Benchmark plumbing: a `gateway serve` process, an SMTP sink, and a lean HTTP/1.1 client.

The client is raw asyncio streams rather than httpx so that, on a 2-core machine, the load generator costs
as little CPU as possible and the figures describe the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process and its children (`serve --processes N`), in MiB."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for each in [pid, *map(int, children)]:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] += int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Sink:
    """Accepts every mail; keeps the raw bytes when asked (the wake benchmark needs the links)."""

    keep: bool = False
    port: int = field(default_factory=free_port)
    count: int = 0
    mails: dict[str, bytes] = field(default_factory=dict)  # first recipient -> raw
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            if self.keep:
                self.mails[envelope.rcpt_tos[0]] = envelope.original_content
        return "250 OK"


@contextmanager
def smtp_sink(keep: bool = False) -> Iterator[Sink]:
    sink = Sink(keep=keep)
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class Server:
    base: str
    key: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def gateway_server(
    smtp_port: int, database_url: str | None = None, workers: bool = True, processes: int = 1, **settings: str
) -> Iterator[Server]:
    """A `gateway serve` on SQLite in a temp dir (or ``database_url``), in ``processes`` processes; ``settings``
    are extra GATEWAY_* variables, named without the prefix (imap_host="127.0.0.1")."""
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_DATABASE_URL=database_url or f"sqlite:///{tmp}/bench.sqlite3",
            GATEWAY_PUBLIC_URL=base,
            GATEWAY_SECRET_KEYS="bench-secret-key-0123456789abcdef",
            GATEWAY_FROM_ADDRESS="gateway@bench.test",
            GATEWAY_SMTP_HOST="127.0.0.1",
            GATEWAY_SMTP_PORT=str(smtp_port),
            GATEWAY_SMTP_SECURITY="none",
            GATEWAY_LOG_LEVEL="WARNING",
        )
        env.update({f"GATEWAY_{name.upper()}": value for name, value in settings.items()})
        key = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "create", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port)]
            + ([] if workers else ["--no-workers"])
            + ([] if processes == 1 else ["--processes", str(processes)]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gateway did not start")
                time.sleep(0.1)
            yield Server(base=base, key=key, proc=proc, host="127.0.0.1", port=port, env=env)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


class Connection:
    """One keep-alive HTTP/1.1 connection: enough protocol for JSON requests and form posts."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; if the server had closed the idle keep-alive connection (EOF before any answer), once
        more on a new connection, as HTTP clients do."""
        try:
            return await self._request(method, path, body, headers)
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            self.close()
            return await self._request(method, path, body, headers)

    async def _request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        parsed = {}
        for line in header_lines:
            if ":" in line:
                k, _, v = line.partition(":")
                parsed[k.strip().lower()] = v.strip()
        payload = await self.reader.readexactly(int(parsed.get("content-length", "0")))
        return status, parsed, payload

    async def json(self, method: str, path: str, key: str, data: Any = None) -> tuple[int, Any]:
        body = json.dumps(data).encode() if data is not None else b""
        headers = {"Authorization": f"Bearer {key}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        status, _, payload = await self.request(method, path, body, headers)
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def table(title: str, rows: list[tuple[str, str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    out = [title, "-" * len(title)]
    for name, value, target in rows:
        out.append(f"{name:<{width}}  {value:>{vwidth}}  {target}")
    return "\n".join(out)
