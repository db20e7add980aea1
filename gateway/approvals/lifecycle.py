"""Reminders, escalation and expiry over time: the plans a request carries and what is due when.

The plan functions are pure (times in, times out), so every schedule is tested without waiting; ``process_due``
does what is due for one request in one transaction, and the scheduler (``approvals.tasks``) decides when.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from gateway import addresses, audit
from gateway.approvals import effects
from gateway.approvals.schemas import Escalation, Reminders
from gateway.approvals.views import RECIPIENTS, RESPONSES
from gateway.audit import event
from gateway.mail.compose import compose_digest, compose_request_mail
from gateway.models import ApiKey, Recipient, Request, Response, build, new_id
from gateway.settings import Settings


def reminder_plan(asked: Reminders | bool | None, settings: Settings) -> dict[str, Any] | None:
    """The request's own schedule, else the default from settings; ``False`` turns reminders off."""
    if asked is False:
        return None
    if isinstance(asked, Reminders):
        first, every, most = asked.first_after, asked.every, asked.max
    elif settings.reminder_after:
        first, every, most = settings.reminder_after, settings.reminder_every, settings.reminder_max
    else:
        return None
    if most is None:
        most = 1 if every is None else 3
    if every is None:
        most = 1
    return {"first_after": first, "every": every, "max": most}


def escalation_plan(asked: Escalation | None, settings: Settings) -> dict[str, Any] | None:
    if asked is not None:
        return {"after": asked.after, "to": asked.to}
    if settings.escalate_after and settings.escalate_to_list:
        return {"after": settings.escalate_after, "to": settings.escalate_to_list}
    return None


def reminder_at(request: Request, index: int) -> datetime | None:
    """When reminder number ``index`` (from 0) is due, or None if the plan has no such reminder."""
    plan = request.reminders
    if not plan or index >= plan["max"] or (index > 0 and not plan.get("every")):
        return None
    return request.created_at + timedelta(seconds=plan["first_after"] + index * (plan.get("every") or 0))


def escalation_at(request: Request) -> datetime | None:
    if not request.escalation or request.escalated_at is not None:
        return None
    return request.created_at + timedelta(seconds=request.escalation["after"])


def next_due(request: Request) -> datetime | None:
    """The earliest time the scheduler must look at this request again (None: never)."""
    if request.status != "pending":
        return None
    times = [t for t in (request.expires_at, reminder_at(request, request.reminders_sent), escalation_at(request)) if t]
    if request.expires_at is not None:  # nothing after the end
        times = [t for t in times if t <= request.expires_at]
    return min(times) if times else None


def reminders_passed(request: Request, now: datetime) -> int:
    """How many reminders are due by ``now`` in all (one is sent however many were missed while down)."""
    count = request.reminders_sent
    while (at := reminder_at(request, count)) is not None and at <= now:
        count += 1
    return count


async def agent_name(session: Any, request: Request) -> str:
    """The asking agent as people know it: its API key's name."""
    return (await session.exec(select(ApiKey.name).where(ApiKey.id == request.api_key_id))).first() or "An agent"


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


async def escalate(svc: Any, session: Any, request: Request, now: datetime) -> list[Any]:
    """Add the fallback approvers, each with their own links; the original recipients stay valid."""
    plan = request.escalation or {}
    request.escalated_at = now
    return await add_recipients(
        svc,
        session,
        request,
        plan.get("to", []),
        [],
        lambda originals: (
            f"Escalated to you: this request has waited {_duration(int(plan.get('after', 0)))} without a decision. "
            f"It was first sent to {originals}, who can still answer too."
        ),
        after=plan.get("after"),
    )


async def add_recipients(
    svc: Any,
    session: Any,
    request: Request,
    to: list[str],
    cc: list[str],
    note: Callable[[str], str],
    **detail: Any,
) -> list[Any]:
    """New approvers (``to``) and copied recipients (``cc``), each with their own mail carrying ``note(the
    original approvers)``; addresses already on the request are left as they are. The rows to write."""
    present = list((await session.exec(RECIPIENTS, params={"rid": request.id})).all())
    known = {addresses.normalise(r.address) for r in present}
    added: list[Recipient] = []
    for role, wanted in (("to", to), ("cc", cc)):
        for address in wanted:
            if addresses.normalise(address) not in known:
                known.add(addresses.normalise(address))
                added.append(
                    build(
                        Recipient, id=new_id("rcp"), request_id=request.id, address=address, role=role, escalated=True
                    )
                )
    session.add_all(added)
    await session.flush()  # the recipients first: the mails and events below refer to them
    originals = ", ".join(r.address for r in present if r.role == "to" and not r.escalated)
    agent = await agent_name(session, request)
    approvers = sum(1 for r in present if r.role == "to") + sum(1 for r in added if r.role == "to")
    mails = [compose_request_mail(svc, request, r, approvers, agent, note=note(originals)) for r in added]
    rows: list[Any] = [*mails]
    rows.append(
        event(
            request.id,
            "escalated",
            None,
            to=[r.address for r in added if r.role == "to"],
            **({"cc": [r.address for r in added if r.role == "cc"]} if cc else {}),
            **detail,
        )
    )
    rows += audit.mails_queued(request.id, mails)
    return rows


def _reminder_note(request: Request, now: datetime) -> str:
    return f"Reminder: this is still waiting for your answer (sent {_duration(_age(request, now))} ago)."


async def remind(svc: Any, session: Any, request: Request, now: datetime) -> list[Any]:
    """One reminder, in each thread, to every approver who has not answered."""
    sent_before = request.reminders_sent
    request.reminders_sent = reminders_passed(request, now)
    rows, waiting = await to_waiting(svc, session, request, _reminder_note(request, now))
    if not waiting:
        return []
    return [*rows, event(request.id, "reminder", None, number=sent_before + 1, to=waiting)]


async def to_waiting(
    svc: Any, session: Any, request: Request, note: str | Callable[[Recipient], str], kind: str = "reminder"
) -> tuple[list[Any], list[str]]:
    """The request again, in each thread, with ``note`` on top, to every approver who has not answered (in this
    round: an edit starts the approval over): the mails, and who they go to."""
    recipients, waiting = (await rosters(session, [request]))[request.id]
    if not waiting:
        return [], []
    agent = await agent_name(session, request)
    mails = await _mail_again(svc, session, request, recipients, waiting, agent, note, kind)
    return mails, [r.address for r in waiting]


async def _mail_again(
    svc: Any,
    session: Any,
    request: Request,
    recipients: list[Recipient],
    to: list[Recipient],
    agent: str,
    note: str | Callable[[Recipient], str],
    kind: str,
) -> list[Any]:
    """The request mail again to ``to`` (some of its ``recipients``), each in their own thread, ``note`` on top."""
    mail_threads = await effects.threads(session, request.id)
    approvers = sum(1 for r in recipients if r.role == "to")
    return [
        compose_request_mail(
            svc,
            request,
            r,
            approvers,
            agent,
            note=note(r) if callable(note) else note,
            thread=mail_threads.get(r.id),
            kind=kind,
        )
        for r in to
    ]


async def after_edit(svc: Any, session: Any, request: Request, editor: Recipient, names: list[str]) -> list[Any]:
    """An approver changed arguments and the request is still open: everyone else who may decide gets it again,
    as it is now, in their thread; whoever had approved is told their approval no longer counts."""
    responses = (await session.exec(RESPONSES, params={"rid": request.id})).all()
    approved_before = {r.recipient_id for r in responses if r.round < request.round and r.decision == "approve"}
    changed = ", ".join(names)

    def note(recipient: Recipient) -> str:
        again = (
            "Your earlier approval no longer counts: please look at the arguments as they are now."
            if recipient.id in approved_before
            else "Please decide on the arguments as they are now."
        )
        return f"{editor.address} changed {changed} before approving. {again}"

    mails, waiting = await to_waiting(svc, session, request, note, kind="edited")
    return [*mails, *audit.mails_queued(request.id, mails)] if waiting else []


def _age(request: Request, now: datetime) -> int:
    return max(1, int((now - request.created_at).total_seconds()))


def reminder_only_due(request: Request, now: datetime, horizon: datetime) -> datetime | None:
    """When ``request``'s next reminder is due, if that is by ``horizon`` and nothing else (an expiry, an
    escalation) is due first: such a reminder may go out with others in one digest. None otherwise."""
    remind_at = reminder_at(request, request.reminders_sent)
    if request.status != "pending" or remind_at is None or remind_at > horizon:
        return None
    if request.expires_at is not None and request.expires_at <= max(now, remind_at):
        return None
    escalate_at = escalation_at(request)
    if escalate_at is not None and escalate_at <= max(now, remind_at):
        return None
    return remind_at


async def rosters(session: Any, requests: list[Request]) -> dict[str, tuple[list[Recipient], list[Recipient]]]:
    """Per request: all its recipients, and the approvers who have not answered it in its current round (two
    statements, however many requests)."""
    ids = [r.id for r in requests]
    rounds = {r.id: r.round for r in requests}
    recipients = (
        await session.exec(select(Recipient).where(col(Recipient.request_id).in_(ids)).order_by(col(Recipient.id)))
    ).all()
    answers = (
        await session.exec(
            select(Response.request_id, Response.recipient_id, Response.round).where(col(Response.request_id).in_(ids))
        )
    ).all()
    answered = {(rid, rcp) for rid, rcp, round_ in answers if round_ == rounds[rid]}
    out: dict[str, tuple[list[Recipient], list[Recipient]]] = {i: ([], []) for i in ids}
    for recipient in recipients:
        everyone, waiting = out[recipient.request_id]
        everyone.append(recipient)
        if recipient.role == "to" and (recipient.request_id, recipient.id) not in answered:
            waiting.append(recipient)
    return out


async def remind_together(
    svc: Any, session: Any, requests: list[Request], digested: set[str], now: datetime
) -> list[Any]:
    """The reminders of ``requests`` (locked by the caller) at once: one digest mail for each address in
    ``digested`` listing every request waiting for it, and the usual reminder in its thread to anyone else."""
    mails: list[Any] = []
    rows: list[Any] = []
    buckets: dict[str, list[tuple[Request, Recipient, str]]] = {}
    everyone = await rosters(session, requests)
    for request in requests:
        recipients, waiting = everyone[request.id]
        agent = await agent_name(session, request)
        sent_before = request.reminders_sent
        request.reminders_sent = max(reminders_passed(request, now), sent_before + 1)  # a digest may send it early
        request.next_due_at = next_due(request)
        session.add(request)
        singles = [r for r in waiting if addresses.normalise(r.address) not in digested]
        if singles:
            note = _reminder_note(request, now)
            own = await _mail_again(svc, session, request, recipients, singles, agent, note, "reminder")
            mails += own
            rows += audit.mails_queued(request.id, own)
        for r in waiting:
            if addresses.normalise(r.address) in digested:
                buckets.setdefault(addresses.normalise(r.address), []).append((request, r, agent))
        if waiting:
            rows.append(
                event(
                    request.id,
                    "reminder",
                    None,
                    number=sent_before + 1,
                    to=[r.address for r in waiting],
                    digest=[r.address for r in waiting if addresses.normalise(r.address) in digested],
                )
            )
    for items in buckets.values():
        digest = compose_digest(svc, items)
        mails.append(digest)
        for request, _, _ in items:
            rows.append(event(request.id, "digest_queued", None, to=digest.rcpt_to[0], message_id=digest.message_id))
    return [*mails, *rows]
