"""The outbox sender: delivers stored mails, retrying temporary failures with exponential backoff.

A mail is a row before it is a packet: the request and its mails commit together, so a process killed after
the commit sends the mail after it restarts. Delivery is at least once: a crash between the server's 250 and
our update sends those mails again (outcomes are committed in small groups while sending goes on, see
``OutboxSender.run_once``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Text, bindparam, or_, type_coerce, update
from sqlalchemy import select as sa_select
from sqlmodel import col, func, select

from gateway import audit
from gateway.audit import event
from gateway.mail.compose import ComposeError, compose_queued
from gateway.mail.smtp import DeliveryError, ServerProblemError
from gateway.models import OutboxMessage, UTCDateTime, utcnow
from gateway.services import Services

log = logging.getLogger("gateway.mail.outbox")

IDLE_CHECK = 60.0


@dataclass(frozen=True)
class Outcome:
    mail_id: str
    status: str  # sent | pending | failed
    event: str  # mail_sent | mail_deferred | mail_failed
    error: str | None
    next_attempt_at: datetime


class Transport(Protocol):
    async def send(self, mail: OutboxMessage) -> None: ...
    async def close(self) -> None: ...


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped, with ±20% jitter."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.8, 1.2)


WEBHOOK = "webhook"

_OUTBOX = OutboxMessage.__table__.c  # type: ignore[attr-defined]
# Built once (it runs after every delivery attempt).
_RECORD = (
    update(OutboxMessage.__table__)  # type: ignore[attr-defined]
    .where(_OUTBOX.id == bindparam("b_id"), _OUTBOX.status == "pending")
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_error=bindparam("last_error"),
        sent_at=func.coalesce(bindparam("sent_at", type_=UTCDateTime()), _OUTBOX.sent_at),
        raw=func.coalesce(bindparam("b_raw", type_=Text()), _OUTBOX.raw),  # a message composed for this attempt
        lease_until=None,
    )
)

_STILL_PENDING = sa_select(_OUTBOX.id).where(
    _OUTBOX.id.in_(bindparam("ids", expanding=True)), _OUTBOX.status == "pending"
)
_STILL_PENDING_LOCKED = _STILL_PENDING.with_for_update()
RECORD_AHEAD = 32  # outcomes a sender may hold uncommitted while it goes on sending


def _event(request_id: str, mail: OutboxMessage, outcome: Outcome) -> Any:
    data: dict[str, object] = {"to": mail.rcpt_to[0], "message_id": mail.message_id, "attempt": mail.attempts + 1}
    if outcome.error:
        data["error"] = outcome.error
    if outcome.event.endswith("_deferred"):
        data["next_attempt_at"] = outcome.next_attempt_at.isoformat()
    return event(request_id, outcome.event, None, **data)


class OutboxSender:
    """Delivers one channel's rows: ``mail`` (everything but webhooks, over SMTP) or ``webhook`` (HTTP), so a
    slow webhook endpoint never holds mail back."""

    def __init__(self, svc: Services, lanes: Transport | Sequence[Transport], channel: str = "mail") -> None:
        """``lanes``: one transport, or several that send side by side (one SMTP connection each), so one slow
        round trip does not hold every other mail back; one recipient's mails always share a lane, in order."""
        self.svc = svc
        self.lanes: list[Transport] = list(lanes) if isinstance(lanes, Sequence) else [lanes]
        if not self.lanes:
            raise ValueError("an outbox sender needs at least one transport")
        self.channel = channel
        self.wakeup = svc.webhook_wakeup if channel == WEBHOOK else svc.outbox_wakeup
        self._unrecorded: list[tuple[OutboxMessage, Outcome, bool]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._recording = 0  # outcomes in the commit under way
        self._record_error: Exception | None = None
        # The server's own problem (login refused, unreachable): named on /healthz, and while it lasts the
        # batch's other mails wait with the one that met it instead of each trying the server again.
        self.trouble: str | None = None
        self._trouble_count = 0
        self._trouble_until: datetime | None = None
        # Claimed rows whose outcome is not committed yet: their lease is renewed while this sender lives, so
        # the lease can be short (a dead sender's mail is taken over within seconds) and yet never run out
        # under a live one, however slow its server.
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None

    def _mine(self) -> Any:
        kind = col(OutboxMessage.kind)
        return kind == WEBHOOK if self.channel == WEBHOOK else kind != WEBHOOK

    async def claim(self, limit: int) -> list[OutboxMessage]:
        """Take up to ``limit`` due rows for this sender alone, for the lease's length.

        On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets every replica's sender claim at once without waiting on
        or taking each other's rows; a row whose lease ran out (its sender died mid-batch) is due again.
        """
        now = utcnow()
        pick = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == "pending",
                OutboxMessage.next_attempt_at <= now,
                self._mine(),
                or_(col(OutboxMessage.lease_until).is_(None), col(OutboxMessage.lease_until) < now),
            )
            .order_by(col(OutboxMessage.next_attempt_at))
            .limit(limit)
        )
        async with self.svc.db.read() as session:  # most wake-ups find nothing: no write lock for those
            if not (await session.exec(pick.limit(1))).first():
                return []
        if not self.svc.db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        async with self.svc.db.write() as session:
            ids = list((await session.exec(pick)).all())
            if not ids:
                return []
            lease = now + timedelta(seconds=self.svc.settings.outbox_lease)
            conn = await session.connection()
            await conn.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids)).values(lease_until=lease))
            rows = (await session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids)))).all()
        by_id = {row.id: row for row in rows}
        self._held.update(by_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_leases(), name=f"{self.channel}-leases")
        return [by_id[i] for i in ids if i in by_id]

    async def _renew_leases(self) -> None:
        """Extend the lease of every held row, a third of a lease apart, until none is held."""
        period = self.svc.settings.outbox_lease / 3
        while self._held:
            await asyncio.sleep(period)
            held = list(self._held)
            if not held:
                return
            try:
                async with self.svc.db.write() as session:
                    conn = await session.connection()
                    until = utcnow() + timedelta(seconds=self.svc.settings.outbox_lease)
                    await conn.execute(
                        update(OutboxMessage)
                        .where(col(OutboxMessage.id).in_(held), col(OutboxMessage.status) == "pending")
                        .values(lease_until=until)
                    )
            except Exception:  # the lease may run out: at worst another sender sends it too (at least once)
                log.warning("outbox: could not renew the lease of %d mail(s)", len(held), exc_info=True)

    def _release(self, ids: Sequence[str]) -> None:
        self._held.difference_update(ids)

    async def next_due_at(self) -> datetime | None:
        # Typed as the column is, so SQLite's untyped aggregate comes back as an aware datetime too.
        # Two indexed minimums, no scan: unclaimed rows are due at their next attempt, claimed ones when their
        # lease runs out (their sender may have died).
        free = type_coerce(func.min(OutboxMessage.next_attempt_at), UTCDateTime())
        leased = type_coerce(func.min(OutboxMessage.lease_until), UTCDateTime())
        pending = (OutboxMessage.status == "pending", self._mine())
        async with self.svc.db.read() as session:
            first = (await session.exec(select(free).where(*pending, col(OutboxMessage.lease_until).is_(None)))).first()
            claimed = (
                await session.exec(select(leased).where(*pending, col(OutboxMessage.lease_until).is_not(None)))
            ).first()
        times = [t for t in (first, claimed) if t is not None]
        return min(times) if times else None

    async def attempt(self, mail: OutboxMessage, transport: Transport) -> Outcome:
        """Try once. Never raises: an unexpected error is a deferral like any other."""
        settings = self.svc.settings
        if self._trouble_until is not None and utcnow() < self._trouble_until:
            assert self.trouble is not None
            return Outcome(mail.id, "pending", f"{self.channel}_deferred", self.trouble, self._trouble_until)
        try:
            await transport.send(mail)
        except ServerProblemError as exc:  # never the mail's failure, however long it lasts
            self._trouble_count += 1
            delay = backoff(self._trouble_count, settings.outbox_backoff_base, min(settings.outbox_backoff_max, 300))
            self.trouble = str(exc)
            self._trouble_until = utcnow() + timedelta(seconds=delay)
            log.warning("outbox: %s; mail held, trying again in %.0f s", exc, delay)
            return Outcome(mail.id, "pending", f"{self.channel}_deferred", str(exc), self._trouble_until)
        except DeliveryError as exc:
            self._clear_trouble()  # the server took us in; this is the mail's own problem
            attempts = mail.attempts + 1
            if exc.permanent or attempts >= settings.outbox_max_attempts:
                log.warning("mail %s to %s failed: %s", mail.id, mail.rcpt_to, exc)
                return Outcome(mail.id, "failed", f"{self.channel}_failed", str(exc), mail.next_attempt_at)
            delay = backoff(attempts, settings.outbox_backoff_base, settings.outbox_backoff_max)
            log.info("mail %s to %s deferred: %s", mail.id, mail.rcpt_to, exc)
            retry_at = utcnow() + timedelta(seconds=delay)
            return Outcome(mail.id, "pending", f"{self.channel}_deferred", str(exc), retry_at)
        except Exception:
            log.exception("outbox: unexpected error on %s; retrying later", mail.id)
            retry_at = utcnow() + timedelta(seconds=60)
            return Outcome(mail.id, "pending", f"{self.channel}_deferred", "internal error", retry_at)
        self._clear_trouble()
        return Outcome(mail.id, "sent", f"{self.channel}_sent", None, mail.next_attempt_at)

    def _clear_trouble(self) -> None:
        if self.trouble is not None:
            log.info("outbox: the %s server works again", self.channel)
        self.trouble, self._trouble_count, self._trouble_until = None, 0, None

    async def record(self, outcomes: Sequence[tuple[OutboxMessage, Outcome, bool]]) -> None:
        """Outcomes, committed together: which of the rows are still pending (one SELECT; a row another sender
        took after our lease ran out is left alone), their UPDATEs (one executemany; the claimed rows are in hand)
        and their audit events. Each item: (mail, outcome, composed), where ``composed`` says the message was
        written for this attempt and is stored with its outcome."""
        async with self.svc.db.write() as session:
            conn = await session.connection()
            query = _STILL_PENDING if self.svc.db.is_sqlite else _STILL_PENDING_LOCKED
            pending = set((await conn.execute(query, {"ids": [m.id for m, _, _ in outcomes]})).scalars())
            mine = [(m, o, c) for m, o, c in outcomes if m.id in pending]
            if not mine:
                return
            now = utcnow()
            await conn.execute(
                _RECORD,
                [
                    {
                        "b_raw": mail.raw if composed else None,
                        "b_id": mail.id,
                        "status": outcome.status,
                        "attempts": mail.attempts + 1,
                        "next_attempt_at": outcome.next_attempt_at,
                        "last_error": outcome.error,
                        "sent_at": now if outcome.status == "sent" else None,
                    }
                    for mail, outcome, composed in mine
                ],
            )
            events = [
                _event(request_id, m, outcome)
                for m, outcome, _ in mine
                for request_id in ([m.request_id] if m.request_id else []) + (m.for_requests or [])
            ]
            if events:
                await audit.append(conn, events)

    async def run_once(self) -> int:
        """Send everything due now; returns how many mails were tried.

        Outcomes are committed while the lanes go on sending, each commit taking every outcome known by then, so
        a sender killed mid-batch sends again at most the mails whose outcomes were not yet committed (about
        RECORD_AHEAD, one more per lane); its other claimed mails go to another sender when their lease runs out.
        """
        tried = 0
        try:
            while True:
                batch = await self.claim(self.svc.settings.outbox_batch_size)
                if not batch:
                    return tried
                tried += len(batch)
                queued = {m.id for m in batch if m.raw is None}
                unwritable = await compose_queued(self.svc, batch)  # {} when nothing was queued
                by_lane: dict[int, list[OutboxMessage]] = {}
                for mail in batch:
                    lane = zlib.crc32(",".join(mail.rcpt_to).lower().encode()) % len(self.lanes)
                    by_lane.setdefault(lane, []).append(mail)

                await asyncio.gather(
                    *(self._send_lane(self.lanes[lane], mails, unwritable, queued) for lane, mails in by_lane.items())
                )
                await self._recorded()  # the next claim must not see this batch's rows as still theirs
        finally:
            with contextlib.suppress(Exception):  # what was sent is recorded even when the sender is stopped
                await asyncio.shield(self._recorded())
            self._held.clear()  # anything still claimed had no outcome (an error cut the batch short): let its
            # lease run out, so it is tried again

    async def _send_lane(
        self, transport: Transport, mails: list[OutboxMessage], unwritable: dict[str, ComposeError], queued: set[str]
    ) -> None:
        for mail in mails:
            problem = unwritable.get(mail.id)
            if problem is not None:  # no attempt can help: it fails, and the request shows why
                outcome = Outcome(mail.id, "failed", f"{self.channel}_failed", str(problem), mail.next_attempt_at)
            else:
                outcome = await self.attempt(mail, transport)
            await self._note(mail, outcome, composed=mail.id in queued and problem is None)

    async def _note(self, mail: OutboxMessage, outcome: Outcome, composed: bool) -> None:
        """Queue an outcome for the recorder; wait for it only when too many are unrecorded."""
        self._unrecorded.append((mail, outcome, composed))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_queued(), name=f"{self.channel}-outcomes")
        if len(self._unrecorded) + self._recording >= RECORD_AHEAD:
            await asyncio.shield(self._recorder)

    async def _record_queued(self) -> None:
        while self._unrecorded:
            outcomes, self._unrecorded = self._unrecorded, []
            self._recording = len(outcomes)
            try:
                await self.record(outcomes)
            except Exception as exc:  # the rows stay claimed: they go out again when their lease runs out
                self._record_error = exc
            finally:
                self._recording = 0
                self._release([m.id for m, _, _ in outcomes])

    async def _recorded(self) -> None:
        """Wait until every outcome so far is committed; raise the error of one that could not be."""
        while self._recorder is not None and not self._recorder.done():
            await asyncio.shield(self._recorder)
        error, self._record_error = self._record_error, None
        if error is not None:
            raise error

    async def run(self) -> None:
        wakeup = self.wakeup
        try:
            while True:
                wakeup.clear()
                try:
                    await self.run_once()
                    next_at = await self.next_due_at()
                except Exception:
                    log.exception("outbox: database error; retrying in 5 s")
                    next_at = utcnow() + timedelta(seconds=5)
                timeout = IDLE_CHECK
                if next_at is not None:
                    timeout = max(0.0, min(timeout, (next_at - utcnow()).total_seconds()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancel
                        await wakeup.wait()
        finally:
            if self._renewer is not None:
                self._renewer.cancel()
            for transport in self.lanes:
                await transport.close()
