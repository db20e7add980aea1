"""The operator's view in a terminal: `gateway requests list` and `gateway requests show ID`.

Reads the database directly (every agent's requests, unlike the API), and prints plain aligned tables that read
well in a terminal and in a log. Agent-written text is cut to one line: a terminal must not be steered by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from gateway.approvals.service import Filters, list_views
from gateway.approvals.views import RequestView, load_view
from gateway.db import Database
from gateway.models import ApiKey, Event, Request


def cell(value: Any, width: int = 40) -> str:
    """One line of at most ``width`` printable characters."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(str(value).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _what(request: Request) -> str:
    return request.fn or "" if request.kind == "approval" else (request.message or "")


def _approvers(view: RequestView) -> str:
    return ", ".join(r.address for r in view.recipients if r.role == "to")


async def _agents(db: Database) -> dict[str, str]:
    async with db.read() as session:
        return {k: n for k, n in (await session.exec(select(ApiKey.id, ApiKey.name))).all()}


async def list_text(db: Database, filters: Filters) -> str:
    async with db.read() as session:
        views, next_cursor = await list_views(session, filters)
    agents = await _agents(db)
    rows = [
        [
            v.request.id,
            v.request.status,
            cell(agents.get(v.request.api_key_id), 16),
            cell(_what(v.request), 32),
            cell(_approvers(v), 40),
            cell(v.request.created_at),
            cell(v.request.decided_by, 28),
        ]
        for v in views
    ]
    out = table(["id", "status", "agent", "fn / message", "to", "created (UTC)", "decided by"], rows)
    if not rows:
        out = "no requests match"
    if next_cursor:
        out += f"\n(more: --before {next_cursor})"
    return out


async def show_text(db: Database, request_id: str) -> str | None:
    async with db.read() as session:
        request = await session.get(Request, request_id)
        if request is None:
            return None
        view = await load_view(session, request)
        events = (await session.exec(select(Event).where(Event.request_id == request_id).order_by(col(Event.id)))).all()
    agents = await _agents(db)
    r = view.request
    policy = r.policy.get("kind", "any") + (f" {r.policy['quorum']}" if r.policy.get("kind") == "quorum" else "")
    fields = [
        ("id", r.id),
        ("kind", r.kind),
        ("status", r.status),
        ("agent", agents.get(r.api_key_id)),
        ("call / run", f"{r.call_id} / {r.run_id or '-'}"),
        ("fn" if r.kind == "approval" else "message", _what(r)),
        ("policy", policy),
        ("created", r.created_at),
        ("expires", r.expires_at),
        ("decided", f"{cell(r.decided_at)} by {r.decided_by or '-'} via {r.decided_via or '-'}"),
        ("comment", r.comment),
        ("reference", f"#{r.ref}"),
    ]
    out = [table(["field", "value"], [[k, cell(v, 80)] for k, v in fields])]
    if r.kwargs:
        out.append(table(["argument", "value"], [[cell(k, 30), cell(v, 80)] for k, v in r.kwargs.items()]))
    answered = {x.recipient_id: x for x in view.responses}
    recipient_rows = []
    for rcp in view.recipients:
        mail = view.mail.get(rcp.id)
        rsp = answered.get(rcp.id)
        recipient_rows.append(
            [
                cell(rcp.address),
                rcp.role + (" (escalated)" if rcp.escalated else ""),
                mail.status if mail else "-",
                f"{rsp.decision} via {rsp.via} at {cell(rsp.at)}" if rsp else "-",
                cell(rsp.comment if rsp else None, 40),
            ]
        )
    out.append(table(["recipient", "role", "mail", "answer", "comment"], recipient_rows))
    event_rows = [
        [str(e.seq or "-"), cell(e.at), e.type, cell(e.actor, 28), cell(_event_data(e.data), 70)] for e in events
    ]
    out.append(table(["#", "at (UTC)", "event", "actor", "data"], event_rows))
    return "\n\n".join(out)


def _event_data(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    return " ".join(f"{k}={v}" for k, v in data.items() if v is not None)
