"""The operator's hands on the outbox: see the mail that failed, and send it again once the cause is fixed.

Run from the `gateway outbox` command, beside (not inside) a running gateway: the rows change in the database,
and the running senders are told over the same signal paths the gateway's processes use (PostgreSQL NOTIFY, or
the sockets beside a shared SQLite file); without a signal they find the mail within their idle check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text, update
from sqlmodel import col, select

from gateway import audit
from gateway.db import Database, sqlite_file
from gateway.models import OutboxMessage, utcnow

_SIGNAL = "gateway_signals"


async def list_mail(db: Database, status: str, limit: int) -> list[OutboxMessage]:
    async with db.read() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.status == status)
            .order_by(col(OutboxMessage.created_at).desc())
            .limit(limit)
        )
        return list((await session.exec(query)).all())


async def retry_failed(db: Database, ids: Sequence[str] | None) -> int:
    """Put failed mails (those named, or every one) back in the queue, due now, with a fresh count of attempts;
    each gets a ``mail_requeued`` event in its request's audit trail. Returns how many were queued."""
    async with db.write() as session:
        query = select(OutboxMessage).where(OutboxMessage.status == "failed")
        if ids is not None:
            query = query.where(col(OutboxMessage.id).in_(list(ids)))
        rows = list((await session.exec(query)).all())
        if not rows:
            return 0
        conn = await session.connection()
        await conn.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_([r.id for r in rows]), col(OutboxMessage.status) == "failed")
            .values(status="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None)
        )
        events = [
            audit.event(
                r.request_id,
                f"{'webhook' if r.kind == 'webhook' else 'mail'}_requeued",
                "operator",
                to=r.rcpt_to[0] if r.rcpt_to else None,
                outbox_id=r.id,
                last_error=r.last_error,
            )
            for r in rows
            if r.request_id
        ]
        if events:
            await audit.append(conn, events)
        if not db.is_sqlite:
            await conn.execute(text(f"NOTIFY {_SIGNAL}, 'o:'"))
            await conn.execute(text(f"NOTIFY {_SIGNAL}, 'w:'"))
    if db.is_sqlite:
        await _poke_sqlite_peers(db)
    return len(rows)


async def _poke_sqlite_peers(db: Database) -> None:
    """Wake the senders of processes sharing this SQLite file (their sockets beside it); best effort."""
    path = sqlite_file(db.url)
    if path is None:
        return
    directory = Path(f"{path}-gateway")
    try:
        entries = list(os.scandir(directory))  # a handful of sockets: not worth a thread
    except OSError:
        return
    for entry in entries:
        if not entry.name.endswith(".sock") or len(entry.path.encode()) >= 100:
            continue
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                _, writer = await asyncio.open_unix_connection(entry.path)
                writer.write(b"o:\nw:\n")
                await writer.drain()
                writer.close()
