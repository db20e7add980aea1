"""Shared fixtures: a real SMTP server (aiosmtpd), a real gateway over HTTP, SQLite and PostgreSQL.

PostgreSQL runs when GATEWAY_TEST_POSTGRES_URL is set (``.ci/run`` sets it). In CI a missing server is a
failure, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.app import Server, create_app
from gateway.keys import create_key
from gateway.runtime import Runtime
from gateway.services import Services
from gateway.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
SECRET = "test-secret-key-0123456789abcdef"
LINK_RE = re.compile(r"https?://[^\s<>\"]+/r/[A-Za-z0-9_\-.]+(?:/[A-Za-z0-9_\-./]+)?")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- SMTP -------------------------------------------------------------------------------------------


class SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        if self.sink.mode == "tempfail":
            return "451 4.3.0 Try again later"
        if self.sink.mode == "permfail":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        with self.sink.lock:
            self.sink.received.append((list(envelope.rcpt_tos), raw))
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)  # a slow server: the 250 comes late
        return "250 Message accepted"


@dataclass
class SmtpSink:
    """A real SMTP server that records what it accepts; ``mode`` makes it refuse, and stop()/start() take
    it down and up on the same port."""

    port: int = field(default_factory=free_port)
    mode: str = "accept"
    delay: float = 0.0
    received: list[tuple[list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(SinkHandler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raws = [raw for _, raw in self.received]
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raws]  # type: ignore[misc]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.received)} in {timeout}s")
            await asyncio.sleep(0.02)
        return self.messages


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None, "mail has no text part"
    return str(part.get_content())


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None, "mail has no HTML part"
    return str(part.get_content())


def links_in(msg: EmailMessage) -> list[str]:
    return list(dict.fromkeys(LINK_RE.findall(text_part(msg))))


def link_ending(msg: EmailMessage, suffix: str) -> str:
    found = [link for link in links_in(msg) if link.endswith(suffix)]
    assert found, f"no link ending in {suffix!r} in {links_in(msg)}"
    return found[0]


# --- databases --------------------------------------------------------------------------------------


def _backends() -> list[Any]:
    backends: list[Any] = ["sqlite"]
    if POSTGRES_URL:
        backends.append("postgres")
    elif IN_CI:
        backends.append(pytest.param("postgres", marks=pytest.mark.xfail(strict=True, reason="no PostgreSQL in CI")))
    return backends


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for the whole run, dropped at the end."""
    if not POSTGRES_URL:
        if IN_CI:
            pytest.fail("GATEWAY_TEST_POSTGRES_URL is not set in CI")
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    name = f"gateway_test_{secrets.token_hex(4)}"
    admin = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")

    async def run(sql: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    def in_thread(sql: str) -> None:  # may be first requested from inside a running loop
        worker = threading.Thread(target=asyncio.run, args=(run(sql),))
        worker.start()
        worker.join()

    in_thread(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    in_thread(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TABLES = [
    "agent_messages",
    "inbound_messages",
    "events",
    "responses",
    "outbox",
    "recipients",
    "requests",
    "agents",
    "api_keys",
    "kv",
]


@pytest.fixture(params=_backends())
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/gateway.sqlite3"
    return await empty_postgres(request.getfixturevalue("postgres_database"))


async def empty_postgres(url: str) -> str:
    """The throwaway PostgreSQL database with every table emptied."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        exists = (await conn.execute(text("SELECT to_regclass('public.requests')"))).scalar()
        if exists:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    await engine.dispose()
    return url


# --- a live gateway -----------------------------------------------------------------------------------


@dataclass
class Live:
    base_url: str
    key: str
    services: Services
    sink: SmtpSink | None
    client: httpx.AsyncClient
    runtime: Runtime | None = None

    async def new_key(self, name: str = "other-agent") -> str:
        _, plaintext = await create_key(self.services.db, name)
        return plaintext

    async def approval(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "fn": "send_email",
            "kwargs": {"to": "ceo@example.com", "subject": "Q3 numbers"},
            "channel": {"email": {"to": ["alice@example.com"]}},
        }
        body.update(overrides)
        response = await self.client.post("/v1/approvals", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def make_settings(database_url: str, port: int, smtp_port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_url": f"http://127.0.0.1:{port}",
        "secret_keys": SECRET,
        "from_address": "gateway@example.test",
        "reply_address": "replies@example.test",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_security": "none",
        "smtp_timeout": 5.0,
        "outbox_backoff_base": 0.2,
        "outbox_backoff_max": 1.0,
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def run_gateway(settings: Settings, port: int, runtime: Runtime | None = None) -> AsyncIterator[Services]:
    runtime = runtime or Runtime(settings)
    app = create_app(runtime)
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("gateway did not start")
        if time.monotonic() > deadline:
            raise AssertionError("gateway did not start in 15 s")
        await asyncio.sleep(0.01)
    try:
        assert runtime.services is not None
        yield runtime.services
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live(database_url: str, smtp_sink: SmtpSink) -> AsyncIterator[Live]:
    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port)
    async with run_gateway(settings, port) as svc:
        _, key = await create_key(svc.db, "test-agent")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield Live(base_url=base, key=key, services=svc, sink=smtp_sink, client=client)


# --- Dovecot ------------------------------------------------------------------------------------------------


@pytest.fixture
def dovecot(request: pytest.FixtureRequest) -> Iterator[Any]:
    from tests import dovecot as dc

    if not dc.available():
        if IN_CI:
            pytest.fail("Dovecot is not installed (apt-get install dovecot-imapd)")
        pytest.skip("Dovecot is not installed")
    server = dc.Dovecot(idle=getattr(request, "param", True))
    server.setup()
    server.start()
    yield server
    server.cleanup()


def imap_settings(server: Any, **extra: Any) -> dict[str, Any]:
    from tests import dovecot as dc

    values = {
        "imap_host": "127.0.0.1",
        "imap_port": server.imap_port,
        "imap_username": dc.USER,
        "imap_password": dc.PASSWORD,
        "imap_security": "starttls",
        "imap_ca_file": server.cert,
    }
    values.update(extra)
    return values


@pytest.fixture
async def live_imap(database_url: str, smtp_sink: SmtpSink, dovecot: Any) -> AsyncIterator[Live]:
    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, **imap_settings(dovecot))
    runtime = Runtime(settings)
    async with run_gateway(settings, port, runtime) as svc:
        _, key = await create_key(svc.db, "test-agent")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield Live(base_url=base, key=key, services=svc, sink=smtp_sink, client=client, runtime=runtime)


@pytest.fixture
def dev_gateway(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real `gateway dev` process (its own SQLite, SMTP capture and dev mailbox) on a free port."""
    from tests.processes import dev_process

    with dev_process(tmp_path) as running:
        yield running
