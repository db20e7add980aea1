"""The scheduler: one task for every expiry, reminder and escalation.

It sleeps until the earliest ``next_due_at`` of any pending request (one indexed query), is woken early by a
new request that is due sooner, and scans nothing in between. Each due request is handled in its own
transaction under the request's lock, so two schedulers (two replicas) never do the same thing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import type_coerce
from sqlmodel import col, func, select

from gateway.approvals import service
from gateway.models import Request, UTCDateTime, utcnow
from gateway.services import Services

log = logging.getLogger("gateway.scheduler")

BATCH = 200


class Scheduler:
    def __init__(self, svc: Services, clock: Callable[[], datetime] = utcnow) -> None:
        self.svc = svc
        self.clock = clock

    async def due(self, now: datetime, limit: int = BATCH) -> list[str]:
        query = (
            select(Request.id)
            .where(Request.status == "pending", col(Request.next_due_at) <= now)
            .order_by(col(Request.next_due_at))
            .limit(limit)
        )
        async with self.svc.db.read() as session:
            return list((await session.exec(query)).all())

    async def next_due_at(self) -> datetime | None:
        earliest = type_coerce(func.min(Request.next_due_at), UTCDateTime())
        async with self.svc.db.read() as session:
            return (await session.exec(select(earliest).where(Request.status == "pending"))).first()

    async def tick(self, now: datetime | None = None) -> tuple[int, datetime | None]:
        """Handle everything due at ``now``; returns (requests handled, when the next one is due)."""
        now = now or self.clock()
        handled = 0
        try:  # reminders that go together first: what they leave is handled one request at a time below
            handled += await service.remind_in_digests(self.svc, now)
        except Exception:
            log.exception("scheduler: digest reminders failed; sending them one by one")
        while True:
            ids = await self.due(now)
            for request_id in ids:
                try:
                    if await service.process_due(self.svc, request_id, now):
                        handled += 1
                except Exception:  # one bad request must not stop the others; it is retried next time
                    log.exception("scheduler: failed on %s", request_id)
            if len(ids) < BATCH:
                break
        return handled, await self.next_due_at()

    async def run(self) -> None:
        svc = self.svc
        cap = svc.settings.scheduler_max_sleep
        while True:
            svc.scheduler_wakeup.clear()
            try:
                handled, next_at = await self.tick()
                if next_at is not None and next_at <= self.clock() and not handled:
                    # Still due but not ours to handle now (another replica holds it): look again shortly.
                    next_at = self.clock() + timedelta(seconds=0.2)
            except Exception:
                log.exception("scheduler: database error; retrying in 5 s")
                next_at = self.clock() + timedelta(seconds=5)
            now = self.clock()
            until = min(next_at, now + timedelta(seconds=cap)) if next_at else now + timedelta(seconds=cap)
            svc.scheduler_sleeps_until = until
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, (until - now).total_seconds())):  # not wait_for (see bus)
                    await svc.scheduler_wakeup.wait()
            svc.scheduler_sleeps_until = None
