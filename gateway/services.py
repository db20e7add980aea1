"""What every domain needs, built once by the app factory and handed around (no globals)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from jinja2 import Environment

from gateway.db import Database, GroupCommit
from gateway.keys import KeyStore
from gateway.links.tokens import Signer
from gateway.notifier import Notifier
from gateway.settings import Settings


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
    keys: KeyStore = field(init=False)
    group_commit: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.keys = KeyStore(self.db)
        self.group_commit = GroupCommit(self.db)

    def wake_outbox(self) -> None:
        """Mail and webhooks were queued (both senders look; each finds only its own rows)."""
        self.outbox_wakeup.set()
        self.webhook_wakeup.set()

    def wake_scheduler(self, due: datetime | None) -> None:
        """A request is due at ``due``: wake the scheduler only if it would otherwise sleep past that."""
        if due is None:
            return
        until = self.scheduler_sleeps_until
        if until is None or due < until:
            self.scheduler_wakeup.set()
