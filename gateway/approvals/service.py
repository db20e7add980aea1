"""Creating requests, reading them, and recording responses: the one place where state changes.

Every change is one transaction; waiters are woken only after it commits, so nobody is woken to read a
decision that is not yet visible.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import addresses, audit, forms
from gateway.approvals import effects, lifecycle
from gateway.approvals.policy import Outcome, evaluate
from gateway.approvals.schemas import ApprovalCreate, QuestionCreate
from gateway.approvals.views import (
    RESPONSES,
    MailState,
    RequestView,
    load_view,
    load_views,
    read_request,
    read_view,
)
from gateway.audit import event
from gateway.db import insert_rows, write_rows
from gateway.errors import (
    AlreadyRespondedError,
    AnswerRefusedError,
    ArgumentsChangedError,
    CallIdConflictError,
    EditsRefusedError,
    InvalidInputError,
    NotAnApproverError,
    NotFoundError,
    NotPendingError,
)
from gateway.keys import Principal
from gateway.mail.compose import current_kwargs, queue_request_mail
from gateway.models import (
    ApiKey,
    Event,
    OutboxMessage,
    Recipient,
    Request,
    Response,
    build,
    new_id,
    random_token,
    utcnow,
)
from gateway.services import Services
from gateway.webhooks.service import KIND as WEBHOOK
from gateway.webhooks.transport import is_public

MAX_COMMENT = 20_000  # characters of a comment or answer kept, whatever the route (link, reply, API)


def cap_comment(text: str | None) -> str | None:
    """The text as kept: stripped, and cut to MAX_COMMENT with a note saying so (the agent must know it did not
    get all of it)."""
    text = (text or "").strip()
    if len(text) <= MAX_COMMENT:
        return text or None
    note = f"\n\n[the gateway cut this text: it was {len(text):,} characters; the first {{kept:,}} are kept]"
    kept = MAX_COMMENT - len(note.format(kept=MAX_COMMENT))
    return text[:kept].rstrip() + note.format(kept=kept)


FINAL = frozenset({"approved", "rejected", "answered", "expired", "cancelled"})
REF_ALPHABET_LEN = 8


def content_hash(body: ApprovalCreate | QuestionCreate, *, with_run_id: bool = False) -> str:
    """What makes two submissions of one call_id the same call. ``run_id`` is a label, not content (a
    restarted agent sends a new one); ``with_run_id`` gives the hash requests stored before that was so."""
    data = body.model_dump(mode="json", exclude={"call_id"} if with_run_id else {"call_id", "run_id"})
    # Added later: absent means what it did before, so a request stored earlier hashes as it did.
    for name in ("reminders", "escalation", "callback_responses", "editable", "kwargs_schema", "response_schema"):
        if data.get(name) in (None, False):
            data.pop(name, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _existing(session: AsyncSession, key_id: str, call_id: str) -> Request | None:
    query = select(Request).where(Request.api_key_id == key_id, Request.call_id == call_id)
    return (await session.exec(query)).first()


def check_sendable(svc: Services, wanted: Sequence[str]) -> None:
    """An address our SMTP server cannot take is refused now, not accepted and lost at delivery."""
    if svc.settings.smtp_utf8:
        return
    for address in wanted:
        if addresses.needs_smtputf8(address):
            raise InvalidInputError(
                f"{address!r}: an address with non-ASCII letters before the @ needs an SMTP server with SMTPUTF8;"
                " this gateway is not set up for it (GATEWAY_SMTP_UTF8)"
            )


def _same(existing: Request, kind: str, digest: str, body: ApprovalCreate | QuestionCreate) -> Request:
    same = existing.content_hash == digest or existing.content_hash == content_hash(body, with_run_id=True)
    if existing.kind != kind or not same:
        raise CallIdConflictError(existing.call_id, existing.id)
    return existing


async def create_request(
    svc: Services, principal: Principal, body: ApprovalCreate | QuestionCreate
) -> tuple[RequestView, bool]:
    """Store the request, its recipients and their mails in one transaction.

    Returns (view, True) for a new request, or (the existing request's view, False) for a repeated call_id.
    """
    kind = "approval" if isinstance(body, ApprovalCreate) else "question"
    email = body.channel.email
    check_sendable(svc, [*email.to, *email.cc, *(body.escalation.to if body.escalation else ())])
    digest = content_hash(body)
    call_id = body.call_id or new_id("call")
    now = utcnow()
    expires_in = body.expires_in or svc.settings.default_expires_in
    email = body.channel.email
    request = build(
        Request,
        id=new_id("apr" if kind == "approval" else "qst"),
        kind=kind,
        api_key_id=principal.key_id,
        call_id=call_id,
        run_id=body.run_id,
        ref=random_token(REF_ALPHABET_LEN).upper(),
        channel=body.channel.model_dump(mode="json"),
        policy={"kind": "any"},
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        state=body.state,
        callback_url=body.callback_url,
        callback_responses=body.callback_responses,
        content_hash=digest,
        reminders=lifecycle.reminder_plan(body.reminders, svc.settings),
        escalation=lifecycle.escalation_plan(body.escalation, svc.settings),
    )
    if body.callback_url:
        check_callback(svc, body.callback_url)
    request.next_due_at = lifecycle.next_due(request)
    if isinstance(body, ApprovalCreate):
        request.fn = body.fn
        request.kwargs = body.kwargs
        request.policy = body.policy_dict()
        request.options = [o.model_dump() for o in body.reject_options] if body.reject_options else None
        request.editable = forms.editable_names(body.kwargs, body.editable, body.kwargs_schema) or None
        request.input_schema = body.kwargs_schema
    else:
        request.message = body.message
        request.options = [o.model_dump() for o in body.response_options] if body.response_options else None
        request.input_schema = body.response_schema

    recipients = [build(Recipient, id=new_id("rcp"), request_id=request.id, address=a, role="to") for a in email.to]
    recipients += [build(Recipient, id=new_id("rcp"), request_id=request.id, address=a, role="cc") for a in email.cc]
    mails = [queue_request_mail(svc, request, r) for r in recipients]  # written by the sender (mail.compose)
    events = [event(request.id, "created", principal.name, kind=kind, call_id=call_id, ref=request.ref)]
    events += audit.mails_queued(request.id, mails)

    audit.seal(events)  # a new request's chain starts here
    try:
        # No SELECT first: a repeated call_id is rare, and the unique constraint finds it for free. Tiers
        # follow the foreign keys; concurrent submissions share one transaction (see GroupCommit).
        await svc.group_commit.insert([[request], recipients, [*mails, *events]])
    except IntegrityError:
        async with svc.db.read() as session:
            existing = await _existing(session, principal.key_id, call_id)
            if existing is None:
                raise
            return await load_view(session, _same(existing, kind, digest, body)), False
    svc.wake_outbox(webhooks=False)  # a new request's only rows to send are its mails
    svc.wake_scheduler(request.next_due_at)
    states = {m.recipient_id: MailState(m.status, m.last_error) for m in mails if m.recipient_id}
    return RequestView(request, recipients, [], states), True


def check_callback(svc: Services, url: str) -> None:
    if not svc.settings.webhook_secret:
        raise InvalidInputError("callback_url needs GATEWAY_WEBHOOK_SECRET set on the gateway (it signs webhooks)")
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: checked against its addresses at every delivery
    if not svc.settings.webhook_allow_private and not is_public(str(literal)):
        raise InvalidInputError(f"callback_url points at the non-public address {host}")


def is_due_to_expire(request: Request, now: datetime | None = None) -> bool:
    return request.status == "pending" and request.expires_at is not None and request.expires_at <= (now or utcnow())


async def _expire_in(svc: Services, session: AsyncSession, request: Request) -> None:
    """End a pending request as expired, with its notices and webhooks (the caller holds the request's lock)."""
    request.status = "expired"
    request.decided_at = request.expires_at
    request.next_due_at = None
    session.add(request)
    session.add(
        event(
            request.id,
            "expired",
            None,
            expires_at=request.expires_at.isoformat() if request.expires_at else None,
        )
    )
    session.add_all(await effects.after_close(svc, session, request))


async def expire_if_due(svc: Services, request_id: str) -> bool:
    """Move a pending request past its expiry to ``expired`` (once, whoever gets there first)."""
    async with svc.db.write() as session:
        request = await _lock_request(svc, session, request_id)
        if request is None or not is_due_to_expire(request):
            return False
        await _expire_in(svc, session, request)
    svc.request_changed(request_id)
    svc.wake_outbox()
    return True


async def process_due(svc: Services, request_id: str, now: datetime) -> str | None:
    """Do what is due for one request at ``now``: expire it, or escalate it and/or send a reminder. One
    transaction; a request another scheduler already handled (or that was decided meanwhile) is left alone.
    Returns what was done ("expired", "escalated", "reminded", "escalated+reminded") or None."""
    done: list[str] = []
    async with svc.db.write() as session:
        request = await _lock_request(svc, session, request_id, skip_locked=True)
        if request is None or request.status != "pending" or request.next_due_at is None or request.next_due_at > now:
            return None
        if is_due_to_expire(request, now):
            await _expire_in(svc, session, request)
            done.append("expired")
        else:
            escalate_at = lifecycle.escalation_at(request)
            if escalate_at is not None and escalate_at <= now:
                session.add_all(await lifecycle.escalate(svc, session, request, now))
                done.append("escalated")
            remind_at = lifecycle.reminder_at(request, request.reminders_sent)
            if remind_at is not None and remind_at <= now:
                session.add_all(await lifecycle.remind(svc, session, request, now))
                done.append("reminded")
            request.next_due_at = lifecycle.next_due(request)
            session.add(request)
    if "expired" in done:
        svc.request_changed(request_id)
    if done:
        svc.wake_outbox()
    return "+".join(done) or None


DIGEST_BATCH = 200


async def remind_in_digests(svc: Services, now: datetime) -> int:
    """Reminders to approvers with several requests waiting: those due now, and those due within the digest
    window, go out as one mail per approver listing them all (the reminders of the requests involved go to
    everyone else as usual, in the same transaction). Returns the requests whose reminders went; reminders this
    leaves alone are sent one by one by :func:`process_due`."""
    window = svc.settings.reminder_digest_window
    if window <= 0:
        return 0
    horizon = now + timedelta(seconds=window)
    query = (
        select(Request)
        .where(Request.status == "pending", col(Request.next_due_at) <= horizon)
        .order_by(col(Request.next_due_at))
        .limit(DIGEST_BATCH)
    )
    async with svc.db.read() as session:
        rows = list((await session.exec(query)).all())
        due = {r.id: at for r in rows if (at := lifecycle.reminder_only_due(r, now, horizon)) is not None}
        if len(due) < 2:
            return 0
        by_address: dict[str, set[str]] = {}
        for request_id, (_, waiting) in (await lifecycle.rosters(session, [r for r in rows if r.id in due])).items():
            for recipient in waiting:
                by_address.setdefault(addresses.normalise(recipient.address), set()).add(request_id)
    # An approver gets a digest when several of their reminders fall in the window and one of them is due now.
    digested = {a for a, ids in by_address.items() if len(ids) > 1 and any(due[i] <= now for i in ids)}
    involved = sorted({i for a in digested for i in by_address[a]})
    if not involved:
        return 0
    async with svc.db.write() as session:
        locked = []
        for request_id in involved:
            held = await _lock_request(svc, session, request_id, skip_locked=True)
            if held is not None and lifecycle.reminder_only_due(held, now, horizon) is not None:
                locked.append(held)
        session.add_all(await lifecycle.remind_together(svc, session, locked, digested, now))
    svc.wake_outbox(webhooks=False)
    return len(locked)


async def _lock_request(
    svc: Services, session: AsyncSession, request_id: str, skip_locked: bool = False
) -> Request | None:
    """The request, locked for this transaction. ``skip_locked``: None at once if another transaction holds it
    (a scheduler on another replica is already handling it)."""
    query = select(Request).where(Request.id == request_id)
    if not svc.db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
        # FOR NO KEY UPDATE: inserts that reference the request (events, responses) are not blocked by it.
        query = query.with_for_update(key_share=True, skip_locked=skip_locked)
    return (await session.exec(query)).first()


async def _current_view(svc: Services, request_id: str, visible: Callable[[Request], bool]) -> RequestView | None:
    """The request's view as of now: a pending request past its expiry is expired first (once, by whoever gets
    there first). None when there is no such request or ``visible`` says the caller may not see it."""
    while True:
        async with svc.db.reading() as conn:
            request = await read_request(conn, request_id)
            if request is None or not visible(request):
                return None
            if not is_due_to_expire(request):
                return await read_view(conn, request)
        await expire_if_due(svc, request_id)


async def get_view(svc: Services, principal: Principal, kind: str, request_id: str) -> RequestView:
    view = await _current_view(svc, request_id, lambda r: r.api_key_id == principal.key_id and r.kind == kind)
    if view is None:
        raise NotFoundError(kind, request_id)
    return view


async def view_for_recipient(svc: Services, recipient_id: str) -> tuple[RequestView, Recipient] | None:
    """The request behind a link or reply token, with lazy expiry applied."""
    async with svc.db.read() as session:
        recipient = await session.get(Recipient, recipient_id)
    if recipient is None:
        return None
    view = await _current_view(svc, recipient.request_id, lambda _: True)
    return (view, recipient) if view is not None else None


@dataclass(frozen=True)
class Waiting:
    """One request waiting for an approver's answer (their inbox page)."""

    request: Request
    recipient: Recipient
    agent: str


async def waiting_for(svc: Services, address: str, limit: int = 100) -> list[Waiting]:
    """Every request still waiting for ``address``'s answer, newest first: pending, not past its expiry, and not
    answered by them in its current round. Only requests they are an approver of: nothing of anyone else's."""
    answered = (
        select(Response.id)
        .where(
            col(Response.request_id) == col(Request.id),
            col(Response.recipient_id) == col(Recipient.id),
            col(Response.round) == col(Request.round),
        )
        .exists()
    )
    now = utcnow()
    query = (
        select(Request, Recipient, ApiKey.name)
        .join(Recipient, col(Recipient.request_id) == col(Request.id))
        .join(ApiKey, col(ApiKey.id) == col(Request.api_key_id))
        .where(
            func.lower(Recipient.address) == address.lower(),
            col(Recipient.role) == "to",
            col(Request.status) == "pending",
            col(Request.kind).in_(("approval", "question")),
            (col(Request.expires_at).is_(None)) | (col(Request.expires_at) > now),
            ~answered,
        )
        .order_by(col(Request.id).desc())
        .limit(limit)
    )
    async with svc.db.read() as session:
        rows = (await session.exec(query)).all()
    return [Waiting(request, recipient, name) for request, recipient, name in rows]


@dataclass
class Decision:
    request: Request
    response: Response
    decided: bool
    late: bool = False


DECIDED = frozenset({"approved", "rejected", "answered"})
# The responder's request with all its recipients, in one statement (the policy and the notices need them all).
_REQUEST_OF = select(Recipient.request_id).where(Recipient.id == bindparam("rcp")).scalar_subquery()
_WITH_RECIPIENTS = (
    select(Request, Recipient)
    .join(Recipient, col(Recipient.request_id) == col(Request.id))
    .where(col(Request.id) == _REQUEST_OF)
    .order_by(col(Recipient.id))
)
# PostgreSQL: FOR NO KEY UPDATE OF requests (inserts that reference the request are not blocked by it).
_WITH_RECIPIENTS_LOCKED = _WITH_RECIPIENTS.with_for_update(key_share=True, of=Request)
# Built once (composing a statement per call cost more than running it).
_REQUESTS = Request.__table__  # type: ignore[attr-defined]
_DECIDE = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id == bindparam("rid"))
    .values(
        {
            name: bindparam(name, type_=_REQUESTS.c[name].type)
            for name in (
                "status",
                "decided_by",
                "decided_via",
                "decided_at",
                "comment",
                "option",
                "next_due_at",
                "data",
            )
        }
    )
)
_EDIT = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id == bindparam("rid"))
    .values(round=bindparam("round"), edited_kwargs=bindparam("edited", type_=_REQUESTS.c.edited_kwargs.type))
)


def proposed_edits(request: Request, edits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``edits`` would change: ({name: {"before", "after"}} for the values that differ, the arguments after
    them). Refuses a name that is not editable and arguments the kwargs_schema does not accept."""
    if request.kind != "approval":
        raise InvalidInputError("edited_kwargs: only an approval's arguments can be edited")
    allowed = set(request.editable or ())
    refused = sorted(set(edits) - allowed)
    if refused:
        if not allowed:
            raise InvalidInputError("edited_kwargs: this approval does not allow edits")
        raise InvalidInputError(f"edited_kwargs: {', '.join(map(repr, refused))} may not be edited")
    before = current_kwargs(request)
    changes = {k: {"before": before.get(k), "after": v} for k, v in edits.items() if before.get(k) != v}
    after = {**before, **{k: c["after"] for k, c in changes.items()}}
    if changes and request.input_schema is not None:
        try:
            forms.validate(request.input_schema, after)
        except forms.FieldErrors as exc:
            raise EditsRefusedError(exc.errors) from None
    return changes, after


def check_answer_data(request: Request, data: dict[str, Any]) -> dict[str, Any]:
    """A typed question's answer, checked against its response_schema (the agent never sees one that is not)."""
    if request.kind != "question" or request.input_schema is None:
        raise InvalidInputError("response_data: this question has no response_schema; answer with response text")
    try:
        forms.validate(request.input_schema, data)
    except forms.FieldErrors as exc:
        raise AnswerRefusedError(exc.errors) from None
    return data


async def respond(
    svc: Services,
    recipient_id: str,
    *,
    decision: str,
    via: str,
    comment: str | None = None,
    option: str | None = None,
    meta: dict[str, Any] | None = None,
    also: Callable[[Request, Response, bool], list[Any]] | None = None,
    edits: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seen_round: int | None = None,
) -> Decision:
    """Record one recipient's answer and apply the policy. Exactly one answer can decide a request.

    ``edits``: an approval's arguments as this approver wants them (only changed values count; a change starts
    the approval over for everyone else, see :func:`_edit`). ``data``: a typed question's answer, validated here.
    ``seen_round``: the round of the arguments the approver was shown (the page's form, the mail a reply
    answers); an approval of arguments that were changed since is refused.

    ``also(request, response, decided)``: rows to commit in the same transaction (the inbound pipeline's record
    of the mail, the confirmation to send), so an answer and what follows from it stand or fall together.

    The hot path of every link and reply: the new rows go in as Core INSERTs and a decision as one Core UPDATE
    (the ORM's unit of work cost more than the statements).
    """
    if decision not in ("approve", "reject", "answer"):
        raise InvalidInputError(f"unknown decision {decision!r}")
    comment = cap_comment(comment)

    async def unit(session: AsyncSession) -> tuple[Request, Response | None, bool, bool]:
        """(request, response, decided, webhooks queued); no response when the request was found expired."""
        query = _WITH_RECIPIENTS if svc.db.is_sqlite else _WITH_RECIPIENTS_LOCKED  # SQLite: BEGIN IMMEDIATE
        rows = (await session.exec(query, params={"rcp": recipient_id})).all()
        recipients = [rcp for _, rcp in rows]
        recipient = next((r for r in recipients if r.id == recipient_id), None)
        if recipient is None:
            raise NotFoundError("recipient", recipient_id)
        request = rows[0][0]
        if recipient.role != "to":
            raise NotAnApproverError(request.id, recipient.address)
        _check_option(request, decision, option)
        if is_due_to_expire(request):
            await _expire_in(svc, session, request)
            return request, None, False, True  # an expiry may queue webhooks
        # After a decision an answer is still kept (the agent sees every response) but changes nothing;
        # after an expiry or a cancel, nothing counts any more.
        late = request.status in DECIDED
        if request.status != "pending" and not late:
            raise NotPendingError(request.id, request.status)
        if decision == "approve" and not late and seen_round is not None and seen_round < request.round:
            raise ArgumentsChangedError(request.id, request.ref)
        changes: dict[str, Any] = {}
        if edits and not late:
            if decision != "approve":
                raise InvalidInputError("edits go with an approval: reject with a comment that says what to change")
            changes, after = proposed_edits(request, edits)
        answer = comment
        if data is None and request.kind == "question" and request.input_schema is not None:
            raise InvalidInputError("response_data: this question asks for typed fields; answer with response_data")
        if data is not None:
            check_answer_data(request, data)
            answer = comment or cap_comment(forms.as_text(forms.fields_from_schema(request.input_schema or {}), data))
        response = build(
            Response,
            id=new_id("rsp"),
            request_id=request.id,
            recipient_id=recipient.id,
            approver=recipient.address,
            decision=decision,
            option=option,
            comment=answer,
            via=via,
            late=late,
            round=request.round + (1 if changes else 0),
            data=changes or data,
        )
        conn = await session.connection()
        try:  # each recipient answers once a round: under the request's lock the unique triple decides it exactly
            await insert_rows(conn, [response])
        except IntegrityError as exc:
            raise AlreadyRespondedError(request.id, recipient.address) from exc
        rows_after: list[Any] = []
        if changes:
            rows_after += await _edit(svc, session, request, recipients, recipient, changes, after)
        rows_after += [
            event(
                request.id,
                "response",
                recipient.address,
                decision=decision,
                via=via,
                option=option,
                comment=answer,
                **({"data": data} if data is not None else {}),
                **({"late": True} if late else {}),
                **(meta or {}),
            )
        ]
        decided = False if late else await _apply_policy(session, request, response, recipients, rows_after)
        if changes and not decided:
            rows_after += await lifecycle.after_edit(svc, session, request, recipient, list(changes))
        if also is not None:
            rows_after += also(request, response, decided)
        rows_after += await effects.after_response(svc, session, request, recipients, recipient, response, decided)
        await write_rows(conn, rows_after)
        webhooks = any(isinstance(r, OutboxMessage) and r.kind == WEBHOOK for r in rows_after)
        return request, response, decided, webhooks

    # One answer's transaction, shared on SQLite with the answers that arrive meanwhile (see GroupWrite).
    request, response, decided, webhooks = await svc.group_write.run(unit)
    svc.wake_outbox(webhooks=webhooks)
    # Every response wakes waiters (they hold a view that is now stale); only decisions end their wait.
    svc.request_changed(request.id)
    if response is None:
        raise NotPendingError(request.id, "expired")
    return Decision(request=request, response=response, decided=decided, late=response.late)


async def _edit(
    svc: Services,
    session: AsyncSession,
    request: Request,
    recipients: list[Recipient],
    editor: Recipient,
    changes: dict[str, Any],
    after: dict[str, Any],
) -> list[Any]:
    """An approver changed arguments: they stand as edited, and a new round of answers begins (only the answers
    given on these arguments count, the editor's own approval first among them). The audit keeps who changed
    what, before and after."""
    new_round = request.round + 1
    await (await session.connection()).execute(_EDIT, {"rid": request.id, "round": new_round, "edited": after})
    set_committed_value(request, "round", new_round)
    set_committed_value(request, "edited_kwargs", after)
    return [event(request.id, "kwargs_edited", editor.address, round=new_round, changes=changes)]


def _check_option(request: Request, decision: str, option: str | None) -> None:
    if request.kind == "approval" and decision == "answer":
        raise InvalidInputError("an approval is answered with approve or reject")
    if request.kind == "question" and decision != "answer":
        raise InvalidInputError("a question is answered with a response")
    if option is None:
        return
    if request.kind == "approval" and decision != "reject":
        raise InvalidInputError("a reject option goes with a rejection")
    names = {o["name"] for o in request.options or []}
    if option not in names:
        raise InvalidInputError(f"{option!r} is not one of this request's options")


async def _apply_policy(
    session: AsyncSession, request: Request, latest: Response, recipients: list[Recipient], events: list[Any]
) -> bool:
    """Decide the request if the policy says so (its event joins ``events``)."""
    if request.kind == "question" or request.policy.get("kind", "any") == "any":
        # The first answer decides, and a pending request has none before this one: nothing to read.
        responses: Sequence[Response] = [latest]
        outcome: Outcome | None = evaluate(request.kind, request.policy, 1, responses)
    else:
        # Only this round's answers count: an edit starts the approval over (nobody approves what they did not see).
        responses = [
            r for r in (await session.exec(RESPONSES, params={"rid": request.id})).all() if r.round == request.round
        ]
        approvers = [r for r in recipients if r.role == "to"]
        original = sum(1 for r in approvers if not r.escalated)
        outcome = evaluate(request.kind, request.policy, len(approvers), responses, original=original)
    if outcome is None:
        return False
    decider = responses[outcome.deciding_index]
    changes = {
        "status": outcome.status,
        "decided_by": decider.approver,
        "decided_via": decider.via,
        "decided_at": decider.at,
        "comment": decider.comment,
        "option": decider.option,
        "next_due_at": None,
        "data": decider.data if request.kind == "question" else request.data,
    }
    # One Core UPDATE; the loaded object takes the values as committed, so no ORM flush writes them again.
    await (await session.connection()).execute(_DECIDE, {"rid": request.id, **changes})
    for name, value in changes.items():
        set_committed_value(request, name, value)
    events.append(
        event(
            request.id,
            "decided",
            decider.approver,
            status=outcome.status,
            via=decider.via,
            responses=len(responses),
        )
    )
    return True


async def _own_locked(
    svc: Services, session: AsyncSession, principal: Principal, kind: str, request_id: str
) -> Request:
    """The agent's own request, locked for this transaction, and expired first if it is due."""
    request = await _lock_request(svc, session, request_id)
    if request is None or request.api_key_id != principal.key_id or request.kind != kind:
        raise NotFoundError(kind, request_id)
    if is_due_to_expire(request):
        await _expire_in(svc, session, request)
    return request


async def cancel(svc: Services, principal: Principal, kind: str, request_id: str) -> RequestView:
    async with svc.db.write() as session:
        request = await _own_locked(svc, session, principal, kind, request_id)
        if request.status == "pending":
            request.status = "cancelled"
            request.decided_at = utcnow()
            request.decided_via = "api"
            request.next_due_at = None
            session.add(request)
            session.add(event(request.id, "cancelled", principal.name))
            session.add_all(await effects.after_close(svc, session, request))
    svc.request_changed(request_id)
    svc.wake_outbox()
    if request.status != "cancelled":
        raise NotPendingError(request.id, request.status)
    async with svc.db.read() as session:
        return await load_view(session, request)


async def list_events(svc: Services, principal: Principal, kind: str, request_id: str) -> list[Event]:
    async with svc.db.read() as session:
        request = await session.get(Request, request_id)
        if request is None or request.api_key_id != principal.key_id or request.kind != kind:
            raise NotFoundError(kind, request_id)
        query = select(Event).where(Event.request_id == request_id).order_by(col(Event.id))
        return list((await session.exec(query)).all())


@dataclass(frozen=True)
class Filters:
    """What a listing asks for; every field optional. ``before``: the cursor (ids are time-ordered)."""

    api_key_id: str | None = None
    kind: str | None = None
    status: str | None = None
    run_id: str | None = None
    call_id: str | None = None
    recipient: str | None = None
    before: str | None = None
    limit: int = 50


async def list_views(session: AsyncSession, filters: Filters) -> tuple[list[RequestView], str | None]:
    """Newest first, one page (``limit``) and the cursor of the next page (None on the last one)."""
    query = select(Request).order_by(col(Request.id).desc()).limit(filters.limit + 1)
    for name in ("api_key_id", "kind", "status", "run_id", "call_id"):
        value = getattr(filters, name)
        if value is not None:
            query = query.where(getattr(Request, name) == value)
    if filters.before:
        query = query.where(col(Request.id) < filters.before)
    if filters.recipient:
        wanted = addresses.normalise(filters.recipient)
        holders = select(Recipient.request_id).where(func.lower(Recipient.address) == wanted.lower())
        query = query.where(col(Request.id).in_(holders))
    rows = list((await session.exec(query)).all())
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    return await load_views(session, rows), (rows[-1].id if more and rows else None)


async def list_for_agent(
    svc: Services, principal: Principal, kind: str, filters: Filters
) -> tuple[list[RequestView], str | None]:
    async with svc.db.read() as session:
        return await list_views(session, replace(filters, api_key_id=principal.key_id, kind=kind))


async def request_by_call_id(svc: Services, principal: Principal, kind: str, call_id: str) -> Request:
    """An agent's request by the call_id it chose: one lookup on the (key, call_id) unique index (HumanLayer's
    SDKs poll with it every 3 seconds), and a second read only when the poll finds it due to expire."""
    async with svc.db.read() as session:
        request = await _existing(session, principal.key_id, call_id)
    if request is None or request.kind != kind:
        raise NotFoundError(kind, call_id)
    if is_due_to_expire(request):
        await expire_if_due(svc, request.id)
        async with svc.db.read() as session:
            request = await session.get(Request, request.id)
        assert request is not None
    return request


async def answer_for(
    svc: Services,
    responder: Principal,
    kind: str,
    request_id: str,
    approver: str | None,
    *,
    decision: str,
    comment: str | None = None,
    option: str | None = None,
    edits: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> RequestView:
    """A responder key answers on behalf of one of the request's approvers, under the rules a link follows (one
    answer each, the policy, expiry), recorded with ``via: "api"`` and the key's name. Without ``approver``:
    the first approver who has not answered (the one address HumanLayer's channel names comes first)."""
    async with svc.db.read() as session:
        request = await session.get(Request, request_id)
        if request is None or request.kind != kind:
            raise NotFoundError(kind, request_id)
        recipients = list((await session.exec(select(Recipient).where(Recipient.request_id == request_id))).all())
        answered = {
            r.recipient_id
            for r in (await session.exec(RESPONSES, params={"rid": request_id})).all()
            if r.round == request.round
        }
    approvers = sorted((r for r in recipients if r.role == "to"), key=lambda r: (r.escalated, r.id))
    if approver is None:
        chosen = next((r for r in approvers if r.id not in answered), approvers[0] if approvers else None)
    else:
        wanted = addresses.normalise(approver)
        chosen = next((r for r in recipients if addresses.normalise(r.address) == wanted), None)
        if chosen is None:
            raise InvalidInputError(f"{approver!r} is not a recipient of {request_id}")
    if chosen is None:
        raise InvalidInputError(f"{request_id} has no approver to answer for")
    await respond(
        svc,
        chosen.id,
        decision=decision,
        via="api",
        comment=comment,
        option=option,
        meta={"responder_key": responder.name},
        edits=edits,
        data=data,
    )
    view = await _current_view(svc, request_id, lambda _: True)
    assert view is not None
    return view


async def escalate_now(
    svc: Services, principal: Principal, kind: str, request_id: str, to: list[str], cc: list[str], note: str
) -> RequestView:
    """The agent adds approvers (``to``) and copied recipients (``cc``) with ``note`` in their mail; with no new
    address, the approvers who have not answered get the request again, in their thread, with the note."""
    try:
        to, cc = [addresses.validate(a) for a in to], [addresses.validate(a) for a in cc]
    except addresses.InvalidAddressError as exc:
        raise InvalidInputError(exc.message) from None
    check_sendable(svc, [*to, *cc])
    async with svc.db.write() as session:
        request = await _own_locked(svc, session, principal, kind, request_id)
        if request.status != "pending":
            raise NotPendingError(request.id, request.status)
        present = {
            addresses.normalise(r.address)
            for r in (await session.exec(select(Recipient).where(Recipient.request_id == request_id))).all()
        }
        if any(addresses.normalise(a) not in present for a in [*to, *cc]):
            rows = await lifecycle.add_recipients(
                svc, session, request, to, cc, lambda originals: note, by=principal.name, via="api"
            )
        else:
            mails, waiting = await lifecycle.to_waiting(svc, session, request, note)
            rows = [*mails, event(request.id, "escalated", principal.name, to=[], renotified=waiting, via="api")]
            rows += audit.mails_queued(request.id, mails)
        session.add_all(rows)
    svc.wake_outbox(webhooks=False)
    svc.request_changed(request_id)
    view = await _current_view(svc, request_id, lambda _: True)
    assert view is not None
    return view


async def record_event(svc: Services, request_id: str, type_: str, actor: str | None, **data: Any) -> None:
    async with svc.db.write() as session:
        session.add(event(request_id, type_, actor, **data))
