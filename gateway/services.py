"""What every domain needs, built once by the app factory and handed around (no globals)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from jinja2 import Environment

from gateway.bus import OUTBOX, REQUEST, SCHEDULER, WEBHOOKS, Bus, SocketBus
from gateway.db import Database, GroupCommit, GroupWrite
from gateway.keys import KeyStore
from gateway.links.tokens import Signer
from gateway.models import utcnow
from gateway.notifier import Notifier
from gateway.oauth import TokenSource
from gateway.settings import Settings
from gateway.streams import Streams


@dataclass
class Services:
    settings: Settings
    db: Database
    signer: Signer
    templates: Environment
    notifier: Notifier = field(default_factory=Notifier)
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    scheduler_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    scheduler_sleeps_until: datetime | None = None  # set by the scheduler while it sleeps
    bus: Bus | SocketBus | None = None  # the other processes on this database hear of every signal
    oauth: TokenSource | None = None  # the mail logins' OAuth tokens (SMTP_AUTH/IMAP_AUTH=oauth2), one per process
    agent_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (key id, agent name) -> agent id
    keys: KeyStore = field(init=False)
    group_commit: GroupCommit = field(init=False)
    group_write: GroupWrite = field(init=False)
    streams: Streams = field(init=False)  # the event streams held open by this process

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.db)
        self.streams = Streams(self.settings.stream_heartbeat)
        self.group_commit = GroupCommit(self.db)
        self.group_write = GroupWrite(self.db)

    def request_changed(self, request_id: str) -> None:
        """A change to this request committed: wake its waiters here and in every other process."""
        self.notifier.notify(request_id)
        if self.bus is not None:
            self.bus.publish(REQUEST, request_id)

    def wake_outbox(self, webhooks: bool = True) -> None:
        """Mail was queued, and webhooks too unless ``webhooks`` is False: a sender woken for nothing costs three
        queries, and a flood of submissions (which never queue webhooks) would wake the webhook sender each time."""
        self.outbox_wakeup.set()
        if webhooks:
            self.webhook_wakeup.set()
        if self.bus is not None:
            self.bus.publish(OUTBOX)
            if webhooks:
                self.bus.publish(WEBHOOKS)

    def deliver(self, kind: str, key: str | None) -> None:
        """A signal from another process (see gateway.bus); ``"*"``: wake everything to re-check."""
        if kind in (REQUEST, "*"):
            if key is not None:
                self.notifier.notify(key)
            else:
                self.notifier.notify_all()
        if kind in (OUTBOX, "*"):
            self.outbox_wakeup.set()
        if kind in (WEBHOOKS, "*"):
            self.webhook_wakeup.set()
        if kind in (SCHEDULER, "*"):
            self.scheduler_wakeup.set()

    def wake_scheduler(self, due: datetime | None) -> None:
        """A request is due at ``due``: wake the scheduler only if it would otherwise sleep past that."""
        if due is None:
            return
        until = self.scheduler_sleeps_until
        if until is None or due < until:
            self.scheduler_wakeup.set()
        if self.bus is not None and (due - utcnow()).total_seconds() < self.settings.scheduler_max_sleep:
            self.bus.publish(SCHEDULER)  # later than that, every scheduler finds it on its own
