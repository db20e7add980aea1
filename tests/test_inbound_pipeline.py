"""The inbound pipeline with replies written like Gmail, Outlook and Apple Mail write them."""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage
from typing import Any

import pytest
from sqlmodel import select

from gateway.inbound import pipeline
from gateway.inbound.pipeline import auth_passes
from gateway.keys import create_key
from gateway.models import OutboxMessage
from tests import mailclients
from tests.conftest import Live, text_part


async def request_mail(live: Live, **overrides: Any) -> tuple[dict[str, Any], EmailMessage]:
    approval = await live.approval(**overrides)
    mails = await live.sink.wait_for(len(live.sink.received) + 1)  # type: ignore[union-attr]
    return approval, mails[-1]


async def request_mail_with_ref(live: Live, ref: str, timeout: float = 10) -> EmailMessage:
    for _ in range(int(timeout / 0.05)):
        for mail in live.sink.messages:  # type: ignore[union-attr]
            subject = str(mail["Subject"])
            if f"[#{ref}]" in subject and not subject.startswith("Re:"):
                return mail
        await asyncio.sleep(0.05)
    raise AssertionError(f"no request mail for #{ref}")


async def get(live: Live, approval: dict[str, Any], kind: str = "approvals") -> dict[str, Any]:
    return (await live.client.get(f"/v1/{kind}/{approval['id']}")).json()  # type: ignore[no-any-return]


async def events(live: Live, approval: dict[str, Any]) -> list[dict[str, Any]]:
    return (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()  # type: ignore[no-any-return]


async def mails_to(live: Live, address: str, count: int, timeout: float = 10) -> list[EmailMessage]:
    for _ in range(int(timeout / 0.05)):
        found = [m for m in live.sink.messages if str(m["To"]) == address]  # type: ignore[union-attr]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} mails to {address}")


async def test_gmail_approve_decides_wakes_the_waiter_and_confirms_in_thread(live: Live) -> None:
    approval, mail = await request_mail(live)
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30}))
    raw = mailclients.gmail(mail, "Approved, thanks!")
    outcome = await pipeline.process(live.services, raw, source="test")
    assert (outcome.outcome, outcome.reason, outcome.request_id) == ("decided", None, approval["id"])
    body = (await asyncio.wait_for(waiter, 5)).json()
    assert body["status"] == "approved"
    assert body["decided_via"] == "reply" and body["decided_by"] == "alice@example.com"
    assert body["comment"] == "thanks!"
    confirmation = (await mails_to(live, "alice@example.com", 2))[-1]
    assert confirmation["In-Reply-To"] == mailclients.message_id_of(raw)
    assert str(mail["Message-ID"]) in str(confirmation["References"])
    assert confirmation["Auto-Submitted"] == "auto-replied"
    assert "approval was recorded" in confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_outlook_reject_with_feedback(live: Live) -> None:
    approval, mail = await request_mail(live)
    feedback = "No – change the subject line first.\nAnd drop the attachment."
    outcome = await pipeline.process(live.services, mailclients.outlook(mail, feedback))
    assert outcome.outcome == "decided"
    body = await get(live, approval)
    assert body["status"] == "rejected"
    assert body["comment"] == feedback
    assert body["decided_via"] == "reply"


async def test_apple_mail_answers_a_question_in_latin1(live: Live) -> None:
    q = await live.client.post(
        "/v1/questions",
        json={
            "message": "Which café?",
            "channel": {"email": {"to": ["alice@example.com"]}},
            "response_options": [{"name": "north", "title": "Café Nord"}, {"name": "south"}],
        },
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    outcome = await pipeline.process(live.services, mailclients.apple_mail(mail, "Café Nord, bien sûr."))
    assert outcome.outcome == "decided"
    body = (await live.client.get(f"/v1/questions/{q.json()['id']}")).json()
    assert body["status"] == "answered"
    assert body["response"] == "Café Nord, bien sûr."
    assert body["response_option"] == "north"
    assert body["responded_via"] == "reply"


async def outbox_to(live: Live, address: str) -> list[OutboxMessage]:
    """Every mail queued to ``address``: what ``process`` queued is in the outbox when it returns, so this is
    the whole answer, with no wait for a sender."""
    async with live.services.db.read() as session:
        rows = (await session.exec(select(OutboxMessage))).all()
    return [r for r in rows if address in r.rcpt_to]


async def test_forged_sender_decides_nothing_and_is_never_answered(live: Live) -> None:
    approval, mail = await request_mail(live)
    for n in range(3):
        forged = mailclients.gmail(mail, f"Approved {n}", sender="mallory@evil.example")
        outcome = await pipeline.process(live.services, forged)
        assert (outcome.outcome, outcome.reason) == ("ignored", "sender_mismatch")
    assert (await get(live, approval))["status"] == "pending"
    ignored = [e for e in await events(live, approval) if e["type"] == "reply_ignored"]
    assert [e["data"]["reason"] for e in ignored] == ["sender_mismatch"] * 3
    assert await outbox_to(live, "mallory@evil.example") == []  # no backscatter


async def test_a_forged_from_with_the_subject_reference_decides_nothing(live: Live) -> None:
    """The issue's attack: From the recipient (forgeable), to the untagged mailbox, no thread headers, the
    subject's [#REF]. Without a trusted DMARC pass it decides nothing, and nobody is mailed."""
    approval, mail = await request_mail(live)
    raw = mailclients.gmail(mail, "approve", to="replies@example.test")
    raw = raw.replace(b"In-Reply-To:", b"X-Old-In-Reply-To:").replace(b"References:", b"X-Old-References:")
    assert f"[#{approval['ref']}]".encode() in raw
    outcome = await pipeline.process(live.services, raw)
    assert (outcome.outcome, outcome.reason) == ("ignored", "sender_not_authenticated")
    assert (await get(live, approval))["status"] == "pending"
    assert len(await outbox_to(live, "alice@example.com")) == 1  # only the request mail itself


@pytest.mark.parametrize("route", ["thread", "subject"])
async def test_untagged_replies_decide_only_with_a_trusted_dmarc_pass(live: Live, route: str) -> None:
    live.services.settings.trusted_authserv_ids = "mx.example.test"
    approval, mail = await request_mail(live)

    def reply(text: str, results: str | None = None) -> bytes:
        raw = mailclients.gmail(mail, text, to="replies@example.test")
        if route == "subject":
            raw = raw.replace(b"In-Reply-To:", b"X-Old-In-Reply-To:").replace(b"References:", b"X-Old-References:")
        return raw if results is None else f"Authentication-Results: {results}\r\n".encode() + raw

    bare = await pipeline.process(live.services, reply("yes"))
    assert (bare.outcome, bare.reason) == ("ignored", "sender_not_authenticated")
    foreign = reply("yes!", "evil.example; dmarc=pass header.from=example.com")
    assert (await pipeline.process(live.services, foreign)).reason == "sender_not_authenticated"
    other_domain = reply("yes!!", "mx.example.test; dmarc=pass header.from=evil.example")
    assert (await pipeline.process(live.services, other_domain)).reason == "sender_not_authenticated"
    passed = reply("yes, go", "mx.example.test; dmarc=pass header.from=example.com")
    outcome = await pipeline.process(live.services, passed)
    assert (outcome.outcome, outcome.request_id) == ("decided", approval["id"])
    assert (await get(live, approval))["status"] == "approved"
    ignored = [e["data"]["reason"] for e in await events(live, approval) if e["type"] == "reply_ignored"]
    assert ignored == ["sender_not_authenticated"] * 3


async def test_a_bad_tag_does_not_stop_the_scan_for_a_good_one(live: Live) -> None:
    """A non-ASCII plus-tag in To (it made the tag check raise) must not hide the signed one in Cc."""
    approval, mail = await request_mail(live)
    tagged = str(mail["Reply-To"])
    raw = re.sub(rb"(?m)^To: .*\n", b"", mailclients.gmail(mail, "approve"), count=1)
    # Raw UTF-8 in To (RFC 6532), as an SMTPUTF8 client writes it; the signed tag only in Cc.
    raw = f"To: replies+abc-ünï@example.test\nCc: {tagged}\n".encode() + raw
    outcome = await pipeline.process(live.services, raw)
    assert (outcome.outcome, outcome.request_id) == ("decided", approval["id"])


async def test_a_charset_with_a_nul_byte_is_still_read(live: Live) -> None:
    approval, mail = await request_mail(live)
    raw = mailclients.gmail(mail, "Nein, zu teuer: bitte nur die Hälfte")
    raw = raw.replace(b'charset="utf-8"', b'charset="utf\x00-8"', 1).replace(b"charset=utf-8", b"charset=utf\x008", 1)
    assert b"\x00" in raw
    assert b"H=C3=A4lfte" in raw
    raw = raw.replace(b"H=C3=A4lfte", b"H=E4lfte")  # a body that is not UTF-8 either (Latin-1)
    outcome = await pipeline.process(live.services, raw)
    assert (outcome.outcome, outcome.reason) == ("decided", None)
    body = await get(live, approval)
    assert body["status"] == "rejected" and body["comment"].startswith("Nein, zu teuer")


async def test_a_huge_reply_is_cut_with_a_note_for_the_agent(live: Live) -> None:
    approval, mail = await request_mail(live)
    text = "No. " + "This is far too long. " * 48_000  # ~1 MB of new text
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, text))
    assert outcome.outcome == "decided"
    comment = (await get(live, approval))["comment"]
    assert len(comment) <= 20_000 and comment.startswith("No. This is far too long.")
    assert "the gateway cut this text" in comment and f"{len(text.strip()):,} characters" in comment


async def test_a_reused_message_id_does_not_hide_a_genuine_reply(live: Live) -> None:
    approval, mail = await request_mail(live)
    first = mailclients.gmail(mail, "approve", sender="mallory@evil.example")
    genuine = mailclients.gmail(mail, "No, wait for Monday")
    reused = mailclients.message_id_of(first).encode()
    genuine = genuine.replace(mailclients.message_id_of(genuine).encode(), reused)
    assert mailclients.message_id_of(genuine) == mailclients.message_id_of(first)
    assert (await pipeline.process(live.services, first)).reason == "sender_mismatch"
    outcome = await pipeline.process(live.services, genuine)
    assert (outcome.outcome, outcome.request_id) == ("decided", approval["id"])
    assert (await get(live, approval))["status"] == "rejected"
    assert (await pipeline.process(live.services, genuine)).outcome == "duplicate"  # the same mail again


async def test_a_copied_recipient_is_told_they_cannot_decide(live: Live) -> None:
    approval, _ = await request_mail(
        live, channel={"email": {"to": ["alice@example.com"], "cc": ["carol@example.com"]}}
    )
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    to_carol = next(m for m in mails if str(m["To"]) == "carol@example.com")
    outcome = await pipeline.process(live.services, mailclients.gmail(to_carol, "approve", sender="carol@example.com"))
    assert (outcome.outcome, outcome.reason) == ("ignored", "not_an_approver")
    assert (await get(live, approval))["status"] == "pending"
    notices = [m for m in await outbox_to(live, "carol@example.com") if not m.kind.endswith("_request")]
    assert len(notices) == 1  # she passed the sender checks: she is told why


async def test_an_internal_error_is_recorded_as_one(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    approval, mail = await request_mail(live)

    def broken(_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "read", broken)
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, "approve"))
    assert (outcome.outcome, outcome.reason) == ("ignored", "refused")
    assert outcome.detail == "internal error: RuntimeError"
    ignored = [e["data"] for e in await events(live, approval) if e["type"] == "reply_ignored"]
    assert ignored and ignored[-1]["detail"] == "internal error: RuntimeError"


@pytest.mark.parametrize("make", [mailclients.out_of_office, mailclients.bounce])
async def test_automatic_mail_decides_nothing_and_gets_no_answer(live: Live, make: Any) -> None:
    approval, mail = await request_mail(live)
    outcome = await pipeline.process(live.services, make(mail))
    assert (outcome.outcome, outcome.reason) == ("ignored", "automated")
    assert (await get(live, approval))["status"] == "pending"
    assert len(await outbox_to(live, "alice@example.com")) == 1  # only the request itself: nothing queued


async def test_reply_to_a_decided_request(live: Live) -> None:
    approval, mail = await request_mail(live)
    await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, "approve"))
    assert (outcome.outcome, outcome.reason) == ("ignored", "request_not_pending")
    assert (await get(live, approval))["status"] == "cancelled"
    await mails_to(live, "alice@example.com", 3)  # the request, the cancel notice, one explanation
    again = await pipeline.process(live.services, mailclients.gmail(mail, "approve!!"))
    assert again.reason == "request_not_pending"
    queued = await outbox_to(live, "alice@example.com")  # what process() queued is there when it returns
    assert len(queued) == 3 and [m.kind for m in queued].count("reply_refused") == 1
    to_alice = [m for m in live.sink.messages if str(m["To"]) == "alice@example.com"]  # type: ignore[union-attr]
    assert sum("Your reply was not recorded" in text_part(m) for m in to_alice) == 1


async def test_the_same_message_twice_decides_once(live: Live) -> None:
    approval, mail = await request_mail(live)
    raw = mailclients.gmail(mail, "approve")
    first, second = await asyncio.gather(pipeline.process(live.services, raw), pipeline.process(live.services, raw))
    assert sorted([first.outcome, second.outcome]) == ["decided", "duplicate"]
    third = await pipeline.process(live.services, raw)
    assert third.outcome == "duplicate"
    body = await get(live, approval)
    assert body["status"] == "approved" and len(body["responses"]) == 1


async def test_unmatched_own_and_empty(live: Live) -> None:
    approval, mail = await request_mail(live)
    stray = (
        mailclients.gmail(mail, "approve", to="replies@example.test")
        .replace(str(mail["Message-ID"]).encode(), b"<unknown@x>")
        .replace(f"[#{approval['ref']}]".encode(), b"")
    )
    assert (await pipeline.process(live.services, stray)).reason == "no_matching_request"
    own = mailclients.gmail(mail, "approve", sender="gateway@example.test")
    assert (await pipeline.process(live.services, own)).reason == "own_message"
    empty = mailclients.gmail(mail, "")
    assert (await pipeline.process(live.services, empty)).reason == "empty_reply"
    assert (await pipeline.process(live.services, b"\xff\xfe garbage")).reason == "no_matching_request"
    assert (await get(live, approval))["status"] == "pending"


async def test_a_forwarded_message_is_not_the_reply_but_is_noted(live: Live) -> None:
    approval, mail = await request_mail(live)
    forward = (
        "No: the client already said no, see their mail.\n\n---------- Forwarded message ---------\n"
        "From: Client <client@example.org>\nDate: Mon, 16 Nov 2026 at 09:00\nSubject: Offer\n\nApprove it, please.\n"
    )
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, forward))
    assert outcome.outcome == "decided"
    body = await get(live, approval)
    assert body["status"] == "rejected"
    assert body["comment"] == "No: the client already said no, see their mail."
    decided = [e for e in await events(live, approval) if e["type"] == "response"]
    assert decided and decided[-1]["data"]["note"] == pipeline.FORWARD_NOTE

    approval = await live.approval()
    mail = await request_mail_with_ref(live, approval["ref"])  # not the first reply's confirmation, if later
    only = "\n---------- Forwarded message ---------\nFrom: Client <client@example.org>\n\nApproved!\n"
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, only))
    assert (outcome.outcome, outcome.reason) == ("ignored", "empty_reply")
    assert "only a forwarded message" in (outcome.detail or "")
    assert (await get(live, approval))["status"] == "pending"


async def test_required_dkim_dmarc(live: Live) -> None:
    live.services.settings.inbound_require_auth = True
    live.services.settings.trusted_authserv_ids = "mx.example.test"
    approval, mail = await request_mail(live)
    unsigned = mailclients.gmail(mail, "approve")
    assert (await pipeline.process(live.services, unsigned)).reason == "sender_not_authenticated"
    spoofed = b"Authentication-Results: evil.example; dmarc=pass\r\n" + mailclients.gmail(mail, "approve")
    assert (await pipeline.process(live.services, spoofed)).reason == "sender_not_authenticated"
    signed = (
        b"Authentication-Results: mx.example.test; dkim=pass header.d=example.com; spf=pass\r\n"
        + mailclients.gmail(mail, "approve")
    )
    assert (await pipeline.process(live.services, signed)).outcome == "decided"
    assert (await get(live, approval))["status"] == "approved"


def test_auth_results_parsing() -> None:
    trusted = ["mx.example.test"]
    assert auth_passes(["mx.example.test; dmarc=pass (p=none) header.from=example.com"], trusted, "a@example.com")
    assert auth_passes(["mx.example.test; dkim=pass header.i=@example.com"], trusted, "a@example.com")
    assert not auth_passes(["mx.example.test; dkim=pass header.d=other.com"], trusted, "a@example.com")
    assert auth_passes(["mx.example.test; dkim=pass header.d=example.com"], trusted, "a@mail.example.com")
    assert not auth_passes(["mx.example.test; dkim=pass header.d=com"], trusted, "a@example.com")
    assert not auth_passes(["mx.example.test; dkim=pass header.d=ample.com"], trusted, "a@example.com")
    assert not auth_passes(["mx.example.test; dkim=fail header.d=example.com"], trusted, "a@example.com")
    assert not auth_passes(["mx.example.test; dmarc=fail"], trusted, "a@example.com")
    assert not auth_passes(["other.example; dmarc=pass"], trusted, "a@example.com")
    assert not auth_passes([], trusted, "a@example.com")
    assert not auth_passes(["mx.example.test; dmarc=pass header.from=evil.example"], trusted, "a@example.com")
    assert not auth_passes(["; dmarc=pass", "", ";;;", "mx.example.test"], trusted, "a@example.com")  # no raise
    assert auth_passes(["MX.example.test;\r\n dmarc=pass header.from=Example.COM"], trusted, "a@example.com")


# --- typed answers and edited arguments by reply -------------------------------------------------------------


async def test_a_typed_question_is_answered_by_name_value_lines(live: Live) -> None:
    schema = {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date", "title": "Start date"},
            "budget": {"type": "integer"},
        },
        "required": ["start", "budget"],
    }
    created = await live.client.post(
        "/v1/questions",
        json={
            "message": "When, how much?",
            "channel": {"email": {"to": ["alice@example.com"]}},
            "response_schema": schema,
        },
    )
    question = created.json()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]

    missing = await pipeline.process(live.services, mailclients.gmail(mail, "Budget: 4000\n\nCheers"))
    assert (missing.outcome, missing.reason) == ("ignored", "incomplete_answer")
    notice = (await mails_to(live, "alice@example.com", 2))[-1]
    told = text_part(notice).replace("\r\n", " ")
    assert "Start date is required" in told and "/answer" in told
    assert (await get(live, question, "questions"))["status"] == "pending"
    trail = (await live.client.get(f"/v1/questions/{question['id']}/events")).json()
    ignored = next(e for e in trail if e["type"] == "reply_ignored")
    assert ignored["data"]["reason"] == "incomplete_answer" and "/r/" not in str(trail)  # no signed link in the audit

    answered = await pipeline.process(
        live.services, mailclients.outlook(mail, "start date: 2027-03-01\nbudget: 4,000\n\nThanks")
    )
    assert answered.outcome == "decided", answered
    body = await get(live, question, "questions")
    assert body["response_data"] == {"start": "2027-03-01", "budget": 4000}
    assert body["responded_via"] == "reply"


async def test_a_reply_approves_only_the_arguments_its_mail_showed(live: Live) -> None:
    approval = await live.approval(
        kwargs={"amount": 100},
        editable=True,
        policy="all",
        channel={"email": {"to": ["alice@example.com", "bob@example.com"]}},
    )
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    first_alice = next(m for m in mails if str(m["To"]) == "alice@example.com")
    _, responder = await create_key(live.services.db, "portal", role="responder")
    edited = await live.client.post(
        f"/v1/approvals/{approval['id']}/responses",
        json={"approver": "bob@example.com", "decision": "approve", "edited_kwargs": {"amount": 80}},
        headers={"Authorization": f"Bearer {responder}"},
    )
    assert edited.status_code == 200 and edited.json()["status"] == "pending"

    stale = await pipeline.process(live.services, mailclients.gmail(first_alice, "approve"))
    assert (stale.outcome, stale.reason) == ("ignored", "arguments_changed")
    newer = next(m for m in await mails_to(live, "alice@example.com", 3) if "changed amount" in text_part(m))
    fresh = await pipeline.process(live.services, mailclients.gmail(newer, "approve"))
    assert fresh.outcome == "decided"
    body = await get(live, approval)
    assert body["status"] == "approved" and body["edited_kwargs"] == {"amount": 80}
    confirmation = [m for m in await mails_to(live, "alice@example.com", 4) if "approval was recorded" in text_part(m)]
    assert confirmation and "Arguments cannot be changed by reply" in text_part(confirmation[-1])
