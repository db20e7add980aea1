"""The emailed links end to end: mail through real SMTP, the link taken from the message, GET shows, POST decides."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.conftest import Live, link_ending, links_in, text_part

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def form_url(link: str) -> str:
    return re.sub(r"/(approve|reject|answer|option/[^/]+)$", "", link)


async def open_and_submit(link: str, **fields: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link)
        assert page.status_code == 200, page.text
        data = {"csrf_token": csrf_from(page.text), **fields}
        return await browser.post(form_url(link), data=data)


async def test_approve_by_link_end_to_end(live: Live) -> None:
    approval = await live.approval()
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30}))
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    approve = link_ending(mail, "/approve")

    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(approve)
        assert page.status_code == 200
        assert "send_email" in page.text and "Q3 numbers" in page.text
        assert 'value="approve"' in page.text
        still = await live.client.get(f"/v1/approvals/{approval['id']}")
        assert still.json()["status"] == "pending"
        assert not waiter.done()

        posted = await browser.post(form_url(approve), data={"csrf_token": csrf_from(page.text), "decision": "approve"})
        assert posted.status_code == 303
        after = await browser.get(urljoin(approve, posted.headers["location"]))
        assert "You approved this request." in after.text

    woken = await asyncio.wait_for(waiter, 5)
    body = woken.json()
    assert body["status"] == "approved"
    assert body["decided_by"] == "alice@example.com"
    assert body["decided_via"] == "link"
    assert body["responses"][0]["decision"] == "approve"
    assert body["decided_at"] is not None


async def test_reject_with_comment_and_option(live: Live) -> None:
    approval = await live.approval(reject_options=[{"name": "tone", "title": "Wrong tone"}])
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    result = await open_and_submit(
        link_ending(mail, "/reject"),
        decision="reject",
        comment="Make it shorter, please.",
        reject_option="tone",
    )
    assert result.status_code == 303
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "rejected"
    assert body["comment"] == "Make it shorter, please."
    assert body["reject_option"] == "tone"
    assert body["decided_via"] == "link"


async def test_question_answered_by_option_and_free_text(live: Live) -> None:
    q = await live.client.post(
        "/v1/questions",
        json={
            "message": "Which draft should I send?",
            "channel": {"email": {"to": ["bob@example.com", "carol@example.com"]}},
            "response_options": [{"name": "a", "title": "Draft A"}, {"name": "b", "title": "Draft B"}],
        },
    )
    assert q.status_code == 201, q.text
    question = q.json()
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    by_rcpt = {str(m["To"]): m for m in mails}
    option_b = link_ending(by_rcpt["bob@example.com"], "/option/b")
    assert link_ending(by_rcpt["bob@example.com"], "/answer")

    carol_answer = link_ending(by_rcpt["carol@example.com"], "/answer")
    async with httpx.AsyncClient(timeout=10) as browser:  # Carol opens her page before Bob answers
        carol_csrf = csrf_from((await browser.get(carol_answer)).text)

    waiter = asyncio.create_task(live.client.get(f"/v1/questions/{question['id']}", params={"wait": 30}))
    await asyncio.sleep(0.05)
    assert (await open_and_submit(option_b, option="b")).status_code == 303
    body = (await asyncio.wait_for(waiter, 5)).json()
    assert body["status"] == "answered"
    assert body["response_option"] == "b"
    assert body["response"] == "Draft B"
    assert body["responded_by"] == "bob@example.com"
    assert body["responded_via"] == "link"

    # The other recipient's free answer comes too late: kept as a late response, and the answer stays.
    async with httpx.AsyncClient(timeout=10) as browser:
        late = await browser.post(
            form_url(carol_answer),
            data={"csrf_token": carol_csrf, "response": "A is better"},
            follow_redirects=True,
        )
    assert late.status_code == 200
    assert "had already been decided: it changes nothing" in late.text
    assert "Answered by bob@example.com" in late.text
    after = (await live.client.get(f"/v1/questions/{question['id']}")).json()
    assert (after["response_option"], after["responded_by"]) == ("b", "bob@example.com")
    assert [(r["approver"], r["response"], r["late"]) for r in after["responses"]] == [
        ("bob@example.com", "Draft B", False),
        ("carol@example.com", "A is better", True),
    ]


async def test_free_text_answer(live: Live) -> None:
    q = await live.client.post(
        "/v1/questions", json={"message": "What budget?", "channel": {"email": {"to": "dan@example.com"}}}
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    await open_and_submit(link_ending(mail, "/answer"), response="  Up to 500 EUR.  ")
    body = (await live.client.get(f"/v1/questions/{q.json()['id']}")).json()
    assert body["status"] == "answered"
    assert body["response"] == "Up to 500 EUR."
    assert body["response_option"] is None


async def test_get_and_head_storm_decides_nothing(live: Live) -> None:
    approval = await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    async with httpx.AsyncClient(timeout=10) as scanner:
        for link in links_in(mail):
            results = await asyncio.gather(*(scanner.get(link) for _ in range(25)))
            assert all(r.status_code == 200 for r in results)
            head = await scanner.head(link)
            assert head.status_code == 200 and head.content == b""
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "pending"
    assert body["responses"] == []
    events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
    opened = [e for e in events if e["type"] == "link_opened"]
    assert len(opened) == 50  # every GET is audited; HEAD is not


async def test_tampered_token_is_refused_with_a_page(live: Live) -> None:
    await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    link = link_ending(mail, "/approve")
    token = form_url(link).rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(f"{live.base_url}/r/{tampered}/approve")
        assert page.status_code == 400
        assert "not valid" in page.text
        assert page.headers["content-type"].startswith("text/html")
        post = await browser.post(f"{live.base_url}/r/{tampered}", data={"csrf_token": "x", "decision": "approve"})
        assert post.status_code == 400


async def test_a_form_altered_in_the_browser_gets_a_page_not_json(live: Live) -> None:
    approval = await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    link = link_ending(mail, "/approve")
    async with httpx.AsyncClient(timeout=10) as browser:
        done = await browser.get(form_url(link), params={"done": "yes please"})
        assert done.status_code == 200 and done.headers["content-type"].startswith("text/html")
    altered = await open_and_submit(link, decision="approve", round="two")
    assert altered.status_code == 400 and altered.headers["content-type"].startswith("text/html")
    assert "not one we sent" in altered.text
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "pending"
    assert (await open_and_submit(link, decision="approve", round="0")).status_code == 303


async def test_foreign_key_token_is_refused(live: Live) -> None:
    from gateway.links.tokens import Signer

    await live.approval()
    forged = Signer(["another-gateway-secret-key-xyz"], 3600).sign_link("rcp_whatever", None)
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(f"{live.base_url}/r/{forged}")
    assert page.status_code == 400


async def test_expired_link(live: Live) -> None:
    approval = await live.approval(expires_in=3)
    expires_at = datetime.fromisoformat(approval["expires_at"])
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    link = link_ending(mail, "/approve")
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link)
        csrf = csrf_from(page.text)
        await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.2)
        expired = await browser.get(link)
        assert expired.status_code == 410
        assert "This link has expired" in expired.text and "expired at" in expired.text  # says what expired
        assert f"#{approval['ref']}" in expired.text and "Run send_email?" in expired.text
        assert 'name="decision"' not in expired.text
        post = await browser.post(form_url(link), data={"csrf_token": csrf, "decision": "approve"})
        assert post.status_code == 410
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "expired"
    assert body["responses"] == []


async def test_replayed_post_decides_once(live: Live) -> None:
    approval = await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    link = link_ending(mail, "/approve")
    async with httpx.AsyncClient(timeout=10) as browser:
        csrf = csrf_from((await browser.get(link)).text)
        first = await browser.post(form_url(link), data={"csrf_token": csrf, "decision": "approve"})
        again = await browser.post(form_url(link), data={"csrf_token": csrf, "decision": "reject", "comment": "no"})
    assert first.status_code == 303
    assert again.status_code == 409
    assert "not recorded" in again.text
    # In a person's words and by reference: never an internal id.
    assert f"you have already answered this request (#{approval['ref']})" in again.text
    assert approval["id"] not in again.text
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "approved"
    assert len(body["responses"]) == 1


async def test_concurrent_posts_give_one_decision(live: Live) -> None:
    approval = await live.approval()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    link = link_ending(mail, "/approve")
    async with httpx.AsyncClient(timeout=10) as browser:
        csrf = csrf_from((await browser.get(link)).text)
        results = await asyncio.gather(
            *(browser.post(form_url(link), data={"csrf_token": csrf, "decision": d}) for d in ["approve", "reject"] * 5)
        )
    assert sorted(r.status_code for r in results) == [303] + [409] * 9
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert len(body["responses"]) == 1
    assert body["status"] in ("approved", "rejected")


async def test_csrf_field_is_required_and_bound(live: Live) -> None:
    approval = await live.approval(channel={"email": {"to": ["alice@example.com", "bob@example.com"]}})
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    alice, bob = sorted(mails, key=lambda m: str(m["To"]))
    async with httpx.AsyncClient(timeout=10) as browser:
        bob_csrf = csrf_from((await browser.get(link_ending(bob, "/approve"))).text)
        alice_form = form_url(link_ending(alice, "/approve"))
        missing = await browser.post(alice_form, data={"decision": "approve"})
        foreign = await browser.post(alice_form, data={"csrf_token": bob_csrf, "decision": "approve"})
    assert missing.status_code == 403
    assert foreign.status_code == 403
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "pending"


async def test_cc_is_informed_but_cannot_decide(live: Live) -> None:
    approval = await live.approval(channel={"email": {"to": ["alice@example.com"], "cc": ["boss@example.com"]}})
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    cc_mail = next(m for m in mails if str(m["To"]) == "boss@example.com")
    assert links_in(cc_mail) == []
    assert "copied for information" in cc_mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    roles = {r["address"]: r["role"] for r in body["recipients"]}
    assert roles == {"alice@example.com": "to", "boss@example.com": "cc"}


async def test_page_escapes_agent_content(live: Live) -> None:
    await live.approval(
        fn="<img src=x onerror=alert(1)>",
        kwargs={"html": "<script>alert('x')</script>"},
        channel={"email": {"to": ["alice@example.com"], "context": "<b>bold?</b>"}},
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link_ending(mail, "/approve"))
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "<img src=x" not in page.text
    assert "<b>bold?</b>" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_decided_page_shows_state(live: Live) -> None:
    await live.approval(channel={"email": {"to": ["alice@example.com", "bob@example.com"]}})
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    alice, bob = sorted(mails, key=lambda m: str(m["To"]))
    await open_and_submit(link_ending(alice, "/approve"), decision="approve")
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link_ending(bob, "/approve"))
    assert page.status_code == 200
    assert "Approved by alice@example.com" in page.text
    assert 'name="decision"' not in page.text  # no form once decided


# --- edits and typed answers --------------------------------------------------------------------------------


async def _submit(link: str, fields: dict[str, str]) -> tuple[httpx.Response, str]:
    """Open the page, send its form with ``fields``; the answer and the page as first shown."""
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(link)
        assert page.status_code == 200, page.text
        posted = await browser.post(form_url(link), data={"csrf_token": csrf_from(page.text), **fields})
        return posted, page.text


async def test_an_approver_edits_arguments_on_the_page_and_the_agent_gets_them(live: Live) -> None:
    approval = await live.approval(
        kwargs={"to": "ceo@example.com", "subject": "Q3 numbers", "copies": 1},
        editable=["subject", "copies"],
        kwargs_schema={"type": "object", "properties": {"copies": {"type": "integer", "minimum": 1, "maximum": 5}}},
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    assert "you may change subject, copies before approving" in text_part(mail)

    # Out of range: refused beside its field, with what was typed kept.
    refused, page = await _submit(
        link_ending(mail, "/approve"),
        {"decision": "approve", "kwargs.subject": "Q3 numbers (final)", "kwargs.copies": "9", "round": "0"},
    )
    assert 'name="kwargs.subject"' in page and 'name="kwargs.to"' not in page  # only what may be edited
    assert refused.status_code == 422
    assert "copies must be at most 5." in refused.text
    assert 'value="Q3 numbers (final)"' in refused.text and 'value="9"' in refused.text
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "pending"

    done, _ = await _submit(
        link_ending(mail, "/approve"),
        {"decision": "approve", "kwargs.subject": "Q3 numbers (final)", "kwargs.copies": "1", "round": "0"},
    )
    assert done.status_code == 303
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "approved"
    assert body["kwargs"]["subject"] == "Q3 numbers"  # what the agent asked stays as it was
    assert body["edited_kwargs"] == {"to": "ceo@example.com", "subject": "Q3 numbers (final)", "copies": 1}
    assert body["responses"][0]["edits"] == {"subject": {"before": "Q3 numbers", "after": "Q3 numbers (final)"}}
    events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
    edited = next(e for e in events if e["type"] == "kwargs_edited")
    assert edited["actor"] == "alice@example.com"
    assert edited["data"]["changes"] == {"subject": {"before": "Q3 numbers", "after": "Q3 numbers (final)"}}
    confirmation = (await live.sink.wait_for(2))[-1]  # type: ignore[union-attr]
    assert "You changed:\n  subject: Q3 numbers -> Q3 numbers (final)" in text_part(confirmation).replace("\r\n", "\n")


async def test_an_edit_under_all_starts_the_approval_over(live: Live) -> None:
    approval = await live.approval(
        kwargs={"amount": 100},
        editable=True,
        policy="all",
        channel={"email": {"to": ["alice@example.com", "bob@example.com"]}},
    )
    mails = await live.sink.wait_for(2)  # type: ignore[union-attr]
    alice, bob = sorted(mails, key=lambda m: str(m["To"]))
    async with httpx.AsyncClient(timeout=10) as browser:  # Bob opens his page before anything changes
        bob_page = (await browser.get(link_ending(bob, "/approve"))).text

    assert (await _submit(link_ending(alice, "/approve"), {"decision": "approve", "round": "0"}))[0].status_code == 303
    edited, _ = await _submit(
        link_ending(bob, "/approve"), {"decision": "approve", "kwargs.amount": "80", "round": "0"}
    )
    assert edited.status_code == 303
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "pending"  # Alice approved 100, not 80
    assert body["edited_kwargs"] == {"amount": 80}
    assert [(r["approver"], r["superseded"]) for r in body["responses"]] == [
        ("alice@example.com", True),
        ("bob@example.com", False),
    ]
    again = next(
        m
        for m in await live.sink.wait_for(5)  # type: ignore[union-attr]
        if str(m["To"]) == "alice@example.com" and "changed amount" in text_part(m)
    )
    assert "Your earlier approval no longer counts" in text_part(again)
    assert "80" in text_part(again) and ".r1." in str(again["Message-ID"])

    # Bob's page from before the edit cannot approve the old amount a second time; Alice's fresh page can.
    async with httpx.AsyncClient(timeout=10) as browser:
        stale = await browser.post(
            form_url(link_ending(bob, "/approve")),
            data={"csrf_token": csrf_from(bob_page), "decision": "approve", "round": "0"},
        )
    assert stale.status_code == 409
    done, page = await _submit(link_ending(alice, "/approve"), {"decision": "approve", "round": "1"})
    assert "your earlier answer no longer counts" in page and 'value="80"' in page
    assert done.status_code == 303
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "approved" and body["edited_kwargs"] == {"amount": 80}


async def test_a_typed_question_is_a_form_checked_per_field(live: Live) -> None:
    schema = {
        "type": "object",
        "properties": {
            "start": {"type": "string", "format": "date", "title": "Start date"},
            "budget": {"type": "integer", "minimum": 1, "description": "In euros"},
            "tier": {"enum": ["basic", "pro"]},
        },
        "required": ["start", "budget"],
    }
    created = await live.client.post(
        "/v1/questions",
        json={
            "message": "When and how much?",
            "channel": {"email": {"to": ["bob@example.com"]}},
            "response_schema": schema,
        },
    )
    assert created.status_code == 201, created.text
    question = created.json()
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    text = text_part(mail)
    assert "Start date: YYYY-MM-DD (required)" in text and "tier: one of basic, pro" in text

    refused, page = await _submit(link_ending(mail, "/answer"), {"start": "2027-01-04", "budget": "0", "tier": "pro"})
    assert 'type="date"' in page and "In euros" in page and "(required)" in page
    assert refused.status_code == 422
    assert "budget must be at least 1." in refused.text and 'value="2027-01-04"' in refused.text
    done, _ = await _submit(link_ending(mail, "/answer"), {"start": "2027-01-04", "budget": "1500", "tier": "pro"})
    assert done.status_code == 303
    body = (await live.client.get(f"/v1/questions/{question['id']}")).json()
    assert body["status"] == "answered"
    assert body["response_data"] == {"start": "2027-01-04", "budget": 1500, "tier": "pro"}
    assert body["response"] == "Start date: 2027-01-04\nbudget: 1500\ntier: pro"


# --- the approver's inbox ------------------------------------------------------------------------------------


def _inbox_link(mail: Any) -> str:
    return next(u for u in links_in(mail) if "/r/inbox/" in u)


async def test_the_inbox_shows_only_what_waits_for_that_approver(live: Live) -> None:
    first = await live.approval(channel={"email": {"to": ["alice@example.com"], "subject": "Send the Q3 numbers?"}})
    await live.approval(fn="pay_invoice", channel={"email": {"to": ["bob@example.com"], "subject": "Pay ACME?"}})
    question = await live.client.post(
        "/v1/questions", json={"message": "Which venue?", "channel": {"email": {"to": ["ALICE@example.com"]}}}
    )
    done = await live.approval(fn="archive", channel={"email": {"to": ["alice@example.com"], "subject": "Archive it?"}})
    copied = await live.approval(
        fn="notify", channel={"email": {"to": ["carol@example.com"], "cc": ["alice@example.com"], "subject": "FYI"}}
    )
    mails = await live.sink.wait_for(6)  # type: ignore[union-attr]
    to_alice = [m for m in mails if str(m["To"]).lower() == "alice@example.com"]
    archive_mail = next(m for m in to_alice if "Archive it?" in str(m["Subject"]))
    assert (await open_and_submit(link_ending(archive_mail, "/approve"), decision="approve")).status_code == 303
    cc_mail = next(m for m in to_alice if "FYI" in str(m["Subject"]))
    assert not any("/r/inbox/" in u for u in links_in(cc_mail))  # copied: nothing waits for them

    inbox = _inbox_link(next(m for m in to_alice if "Q3" in str(m["Subject"])))
    assert "Everything waiting for you: " in text_part(to_alice[0])
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(inbox)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        text = page.text
        assert "2 waiting for you" in text
        assert text.index("Which venue?") < text.index("Send the Q3 numbers?")  # newest first
        assert "Pay ACME?" not in text and "Archive it?" not in text and "FYI" not in text
        assert first["id"] not in text and question.json()["id"] not in text and done["id"] not in text
        assert copied["id"] not in text

        # Each entry opens the request's own page: looking decides nothing, its form does.
        approve = re.search(r'href="([^"]+/approve)"', text).group(1)  # type: ignore[union-attr]
        shown = await browser.get(approve)
        assert "Send the Q3 numbers?" in shown.text
        assert (await live.client.get(f"/v1/approvals/{first['id']}")).json()["status"] == "pending"
        posted = await browser.post(
            form_url(approve), data={"csrf_token": csrf_from(shown.text), "decision": "approve"}
        )
        assert posted.status_code == 303
        assert (await live.client.get(f"/v1/approvals/{first['id']}")).json()["decided_by"] == "alice@example.com"
        assert "1 waiting for you" in (await browser.get(inbox)).text

        tampered = await browser.get(inbox[:-3] + ("aaa" if not inbox.endswith("aaa") else "bbb"))
        assert tampered.status_code == 400 and "Which venue?" not in tampered.text


async def test_an_expired_inbox_link_is_refused(live: Live) -> None:
    signer = live.services.signer
    old = signer.sign_inbox("alice@example.com", now=0)
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(f"{live.base_url}/r/inbox/{old}")
    assert page.status_code == 410 and "This link has expired" in page.text
