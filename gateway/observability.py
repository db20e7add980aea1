"""What an operator watches: /healthz (with a stuck outbox and a lost mailbox called out) and /metrics
(Prometheus text format). Figures read from the database (requests, outbox, inbound) are the whole deployment's,
the same on every replica; the rest (waiters, poller, signal bus) are this process's."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import case, func, type_coerce
from sqlmodel import col, select

from gateway.mail.outbox import WEBHOOK
from gateway.models import InboundMessage, OutboxMessage, Request, UTCDateTime, utcnow
from gateway.runtime import SENDERS, Runtime

POLLER_LOST_AFTER = 120.0


def poller_state(runtime: Runtime) -> dict[str, Any] | None:
    poller = runtime.poller
    if poller is None:
        return None
    role = "single" if runtime.leadership is None else "leading" if runtime.leadership.leading else "standby"
    status = poller.status
    age = time.time() - status.last_check if status.last_check else None
    # Lag: since the mailbox was last read to the end, or, before any read, since the poller started.
    since = status.last_check or status.started
    return {
        "role": role,
        "connected": status.connected,
        "processed": status.processed,
        "last_check_age_seconds": round(age, 1) if age is not None else None,
        "lag_seconds": round(time.time() - since, 1) if since else 0.0,
        "login_refused": status.login_refused,
        "ever_connected": status.ever_connected,
        "last_error": status.last_error,
    }


async def outbox_state(runtime: Runtime) -> dict[str, dict[str, Any]]:
    assert runtime.services is not None
    channel = case((col(OutboxMessage.kind) == WEBHOOK, "webhook"), else_="mail")
    oldest = type_coerce(func.min(OutboxMessage.created_at), UTCDateTime())
    query = (
        select(channel, OutboxMessage.status, func.count(), oldest)
        .where(col(OutboxMessage.status).in_(["pending", "failed"]))
        .group_by(channel, OutboxMessage.status)
    )
    out = {"mail": {"pending": 0, "failed": 0, "oldest_pending_seconds": 0.0}}
    out["webhook"] = dict(out["mail"])
    now = utcnow()
    async with runtime.services.db.read() as session:
        for name, status, count, first in (await session.exec(query)).all():
            entry = out[name]
            entry[status] = count
            if status == "pending" and first is not None:
                entry["oldest_pending_seconds"] = max(0.0, round((now - first).total_seconds(), 1))
    for entry in out.values():
        entry["stuck"] = entry["oldest_pending_seconds"] > runtime.settings.outbox_stuck_after
    return out


async def health(runtime: Runtime) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 only when the database is unreachable; a stuck outbox or a poller that lost its
    mailbox makes the status "degraded" (the replica still serves the API and the links)."""
    svc = runtime.services
    assert svc is not None
    try:
        await svc.db.ping()
    except Exception as exc:
        return 503, {"status": "unavailable", "database": str(exc)[:200]}
    body: dict[str, Any] = {"status": "ok", "gateway": svc.signer.fingerprint, "waiters": svc.notifier.waiting}
    problems = []
    if SENDERS in (runtime.roles or ()):
        outbox = await outbox_state(runtime)
        body["outbox"] = outbox
        problems += [f"{name} outbox stuck" for name, entry in outbox.items() if entry["stuck"]]
    poller = poller_state(runtime)
    if poller is not None:
        body["poller"] = poller
        if poller["role"] != "standby" and not poller["connected"]:
            if poller["login_refused"]:
                problems.append(f"the IMAP poller cannot log in: {poller['last_error']}")
            elif poller["lag_seconds"] > POLLER_LOST_AFTER or (not poller["ever_connected"] and poller["last_error"]):
                what = "lost its mailbox" if poller["ever_connected"] else "cannot reach its mailbox"
                problems.append(f"the IMAP poller {what}: {poller['last_error']}")
    for sender in runtime.senders:
        if sender.trouble:
            problems.append(f"{sender.channel} held: {sender.trouble}")
    if svc.bus is not None:
        body["bus"] = {"connected": svc.bus.connected.is_set(), "reconnects": svc.bus.reconnects}
    if problems:
        body["status"] = "degraded"
        body["problems"] = problems
    return 200, body


def _line(name: str, value: float, **labels: Any) -> str:
    if labels:
        inner = ",".join(
            f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
            for k, v in labels.items()
        )
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


async def metrics(runtime: Runtime) -> str:
    svc = runtime.services
    assert svc is not None
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    async with svc.db.read() as session:
        by_status = (
            await session.exec(
                select(Request.kind, Request.status, func.count()).group_by(Request.kind, Request.status)
            )
        ).all()
        inbound = (
            await session.exec(
                select(InboundMessage.outcome, InboundMessage.reason, func.count()).group_by(
                    col(InboundMessage.outcome), col(InboundMessage.reason)
                )
            )
        ).all()
    family("gateway_requests", "gauge", "Requests by kind and status (the whole deployment).")
    lines += [_line("gateway_requests", n, kind=k, status=s) for k, s, n in by_status]

    outbox = await outbox_state(runtime)
    family("gateway_outbox_pending", "gauge", "Mails and webhooks waiting to be delivered.")
    lines += [_line("gateway_outbox_pending", e["pending"], channel=c) for c, e in outbox.items()]
    family("gateway_outbox_failed", "gauge", "Mails and webhooks that failed for good.")
    lines += [_line("gateway_outbox_failed", e["failed"], channel=c) for c, e in outbox.items()]
    family("gateway_outbox_oldest_pending_seconds", "gauge", "Age of the oldest delivery not yet made.")
    lines += [
        _line("gateway_outbox_oldest_pending_seconds", e["oldest_pending_seconds"], channel=c)
        for c, e in outbox.items()
    ]

    family("gateway_inbound_messages", "counter", "Inbound mail by outcome and reason (the whole deployment).")
    lines += [_line("gateway_inbound_messages", n, outcome=o, reason=r or "") for o, r, n in inbound]

    family("gateway_waiters", "gauge", "Agents waiting (?wait) on this process.")
    lines.append(_line("gateway_waiters", svc.notifier.waiting))
    poller = poller_state(runtime)
    if poller is not None:
        family("gateway_poller_leading", "gauge", "1 when this process reads the mailbox.")
        lines.append(_line("gateway_poller_leading", int(poller["role"] in ("leading", "single"))))
        family("gateway_poller_connected", "gauge", "1 while the poller is connected to its mailbox.")
        lines.append(_line("gateway_poller_connected", int(poller["connected"])))
        family("gateway_poller_lag_seconds", "gauge", "Seconds since the mailbox was last read to the end.")
        lines.append(_line("gateway_poller_lag_seconds", poller["lag_seconds"]))
        family("gateway_poller_processed", "counter", "Messages this process's poller has processed.")
        lines.append(_line("gateway_poller_processed", poller["processed"]))
    if svc.bus is not None:
        family("gateway_bus_connected", "gauge", "1 while this process hears the other replicas' signals.")
        lines.append(_line("gateway_bus_connected", int(svc.bus.connected.is_set())))
        family("gateway_bus_reconnects", "counter", "Times the signal connection was re-established.")
        lines.append(_line("gateway_bus_reconnects", svc.bus.reconnects))
    return "\n".join(lines) + "\n"
