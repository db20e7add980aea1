"""What a running gateway owns: the database, the shared services and the background workers.

The app factory's lifespan and `gateway worker` both start one of these, so the workers run the same way
with or without the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import make_url

from gateway import migrate
from gateway.approvals.tasks import Scheduler
from gateway.bus import Bus, SocketBus
from gateway.db import Database, sqlite_file
from gateway.dev.mailbox import DevMailbox
from gateway.inbound.poller import ImapPoller
from gateway.leader import Leadership, lock_key
from gateway.links.tokens import Signer
from gateway.mail.outbox import WEBHOOK, OutboxSender
from gateway.mail.smtp import SmtpTransport
from gateway.models import KeyValue
from gateway.oauth import token_source
from gateway.services import Services
from gateway.settings import Settings
from gateway.templating import make_environment
from gateway.webhooks.signing import new_secret
from gateway.webhooks.transport import WebhookTransport

log = logging.getLogger("gateway")

DEV_SECRET = "dev_secret_key"
DEV_WEBHOOK_SECRET = "dev_webhook_secret"


async def _kept(db: Database, key: str, make: Callable[[], str]) -> str:
    async with db.write() as session:
        row = await session.get(KeyValue, key)
        if row is None:
            row = KeyValue(key=key, value=make())
            session.add(row)
        return row.value


async def dev_secret(db: Database) -> str:
    """`gateway dev` without GATEWAY_SECRET_KEYS: one random key, kept in the database across restarts."""
    return await _kept(db, DEV_SECRET, lambda: secrets.token_urlsafe(32))


async def upgrade_schema(db: Database) -> None:
    """Apply migrations; on PostgreSQL under an advisory lock so replicas starting together take turns."""
    if db.is_sqlite:
        await migrate.upgrade(db)
        return
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(727274)"))
        try:
            await migrate.upgrade(db)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(727274)"))


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a plain libpq DSN for a raw asyncpg connection (the LISTEN one)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


SENDERS, SCHEDULER, POLLER = "senders", "scheduler", "poller"
ROLES = (SENDERS, SCHEDULER, POLLER)  # the workers; one process runs all of them unless told otherwise


@dataclass
class Runtime:
    settings: Settings
    workers: bool = True
    # Which workers this process runs (default: all when ``workers``, none otherwise). `serve --processes N`
    # shares them out (see gateway.supervisor).
    roles: frozenset[str] | None = None
    poller_part: tuple[int, int] = (0, 1)  # this process's share of the mailbox (see gateway.inbound.poller)
    migrate_on_start: bool = True
    # Signals to other processes on a SQLite file (`serve --processes`, `serve --no-workers` beside `worker`);
    # `gateway dev` is one process by definition and leaves no socket directory beside its database.
    share_signals: bool = True
    dev_mailbox: DevMailbox | None = None
    on_ready: Callable[[Services], Awaitable[None]] | None = None
    services: Services | None = None
    poller: ImapPoller | None = None
    scheduler: Scheduler | None = None
    leadership: Leadership | None = None
    senders: list[OutboxSender] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.roles is None:
            self.roles = frozenset(ROLES if self.workers else ())
        self.workers = bool(self.roles)

    async def start(self) -> Services:
        settings = self.settings
        roles = self.roles or frozenset()
        # Processes sharing a SQLite file signal each other through sockets in a directory beside it.
        sqlite = sqlite_file(settings.async_database_url) if self.share_signals else None
        shared = None if sqlite is None else f"{sqlite}-gateway"  # made by the bus when it starts
        db = Database(settings.async_database_url, background_checkpoints=True)
        try:
            if self.migrate_on_start:
                await upgrade_schema(db)
            keys = settings.secret_key_list or [await dev_secret(db)]
        except Exception:
            await db.dispose()
            raise
        if self.dev_mailbox is not None and not settings.webhook_secret:
            # `gateway dev` signs webhooks too, with a kept random secret (printed at start).
            settings.webhook_secret = await _kept(db, DEV_WEBHOOK_SECRET, new_secret)
        if self.dev_mailbox is not None:
            port = await self.dev_mailbox.start()
            settings.smtp_host, settings.smtp_port, settings.smtp_security = "127.0.0.1", port, "none"
            settings.smtp_username = settings.smtp_password = None
        svc = Services(
            settings=settings,
            db=db,
            signer=Signer(keys, settings.link_max_age),
            templates=make_environment(settings.templates_dir),
        )
        svc.oauth = token_source(settings)
        self.services = svc
        if not db.is_sqlite:
            svc.bus = Bus(asyncpg_dsn(settings.async_database_url), svc.deliver)
        elif shared is not None:
            svc.bus = SocketBus(shared, svc.deliver)
        if svc.bus is not None:
            await svc.bus.start()
        if SENDERS in roles:
            connections = [SmtpTransport(settings, svc.oauth) for _ in range(settings.smtp_connections)]
            sender = OutboxSender(svc, connections)
            self.senders = [sender]
            self._tasks.append(asyncio.create_task(sender.run(), name="outbox-sender"))
            hooks = OutboxSender(svc, WebhookTransport(settings), channel=WEBHOOK)
            self.senders.append(hooks)
            self._tasks.append(asyncio.create_task(hooks.run(), name="webhook-sender"))
        if SCHEDULER in roles:
            self.scheduler = Scheduler(svc)
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        if POLLER in roles and settings.imap_host:
            self.poller = ImapPoller(svc, part=self.poller_part)
            if db.is_sqlite:
                self._tasks.append(asyncio.create_task(self.poller.run(), name="imap-poller"))
            else:  # one poller per mailbox (and part) across replicas
                mailbox = (settings.imap_host, settings.imap_username or "", settings.imap_mailbox)
                part = () if self.poller_part[1] == 1 else (f"{self.poller_part[0]}/{self.poller_part[1]}",)
                self.leadership = Leadership(
                    asyncpg_dsn(settings.async_database_url),
                    lock_key("imap", *mailbox, *part),
                    self.poller.run,
                    retry=settings.leader_retry,
                )
                self._tasks.append(asyncio.create_task(self.leadership.run(), name="imap-poller-election"))
        if self.on_ready is not None:
            await self.on_ready(svc)
        return svc

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.dev_mailbox is not None:
            await self.dev_mailbox.stop()
        if self.services is not None and self.services.bus is not None:
            await self.services.bus.stop()
        if self.services is not None:
            await self.services.streams.stop()
            await self.services.group_commit.close()
            await self.services.group_write.close()
            await self.services.db.dispose()
