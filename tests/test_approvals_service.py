"""Several approvers: each policy decided by link and by reply, the concurrent case, late answers, and the
notices everyone gets (a confirmation for the one who answered, a word to the others, a notice on cancel)."""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from gateway.inbound import pipeline
from tests import mailclients
from tests.conftest import Live, SmtpSink, link_ending, text_part
from tests.test_inbound_pipeline import mails_to
from tests.test_links_routes import csrf_from, form_url

TEAM = ["alice@example.com", "bob@example.com", "carol@example.com"]


async def team_approval(live: Live, policy: Any, **extra: Any) -> tuple[dict[str, Any], dict[str, EmailMessage]]:
    body: dict[str, Any] = {"channel": {"email": {"to": TEAM}}, "policy": policy, **extra}
    approval = await live.approval(**body)
    email = body["channel"]["email"]
    mails = {a: await request_mail_to(live.sink, approval["id"], a) for a in [*email["to"], *email.get("cc", [])]}
    return approval, mails


async def request_mail_to(sink: SmtpSink | None, request_id: str, address: str, timeout: float = 10) -> EmailMessage:
    """The request mail (not a notice or a reminder) a request sent to ``address``."""
    assert sink is not None
    for _ in range(int(timeout / 0.05)):
        for mail in sink.messages:
            tag = str(mail.get("X-Gateway-Request", ""))
            if str(mail["To"]) == address and tag.startswith(request_id) and not mail["In-Reply-To"]:
                return mail
        await asyncio.sleep(0.05)
    raise AssertionError(f"no request mail to {address}")


async def by_link(mail: EmailMessage, decision: str, comment: str = "") -> int | str:
    """The POST's status, or "closed" when the page (of a request no longer pending) offers no form."""
    link = link_ending(mail, f"/{decision}")
    async with httpx.AsyncClient() as browser:
        page = await browser.get(link)
        if 'name="csrf_token"' not in page.text:
            return "closed"
        fields = {"csrf_token": csrf_from(page.text), "decision": decision, "comment": comment}
        posted = await browser.post(form_url(link), data=fields)
    return posted.status_code


async def by_reply(live: Live, mail: EmailMessage, text: str) -> str:
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, text), source="test")
    return outcome.outcome if outcome.outcome != "ignored" else f"ignored: {outcome.reason} {outcome.detail}"


async def view(live: Live, approval: dict[str, Any]) -> dict[str, Any]:
    return (await live.client.get(f"/v1/approvals/{approval['id']}")).json()  # type: ignore[no-any-return]


async def test_all_needs_everyone_and_a_late_answer_changes_nothing(live: Live) -> None:
    approval, mails = await team_approval(live, "all")
    assert await by_link(mails["alice@example.com"], "approve") == 303
    assert await by_reply(live, mails["bob@example.com"], "Approve") == "recorded"
    assert (await view(live, approval))["status"] == "pending"
    assert await by_link(mails["carol@example.com"], "approve") == 303
    done = await view(live, approval)
    assert done["status"] == "approved" and done["decided_by"] == "carol@example.com"
    assert [r["approver"] for r in done["responses"]] == TEAM
    assert [r["via"] for r in done["responses"]] == ["link", "reply", "link"]


async def test_all_is_rejected_by_the_first_rejection(live: Live) -> None:
    approval, mails = await team_approval(live, "all")
    assert await by_link(mails["alice@example.com"], "approve") == 303
    assert await by_reply(live, mails["bob@example.com"], "No, the numbers are wrong.") == "decided"
    done = await view(live, approval)
    assert done["status"] == "rejected" and done["decided_by"] == "bob@example.com"
    assert done["comment"] == "No, the numbers are wrong."
    # Carol answers after the decision: kept for the agent to see, marked late, and changes nothing.
    outcome = await pipeline.process(live.services, mailclients.gmail(mails["carol@example.com"], "approve"))
    assert (outcome.outcome, outcome.reason) == ("recorded", "late_response")
    done = await view(live, approval)
    assert (done["status"], done["decided_by"]) == ("rejected", "bob@example.com")
    assert [(r["approver"], r["decision"], r["late"]) for r in done["responses"]] == [
        ("alice@example.com", "approve", False),
        ("bob@example.com", "reject", False),
        ("carol@example.com", "approve", True),
    ]
    told = (await mails_to(live, "carol@example.com", 3))[-1]  # request, "rejected by bob", this confirmation
    assert "had already been rejected by bob@example.com: it changes nothing" in text_part(told)


async def test_quorum_decides_at_n_and_rejects_when_out_of_reach(live: Live) -> None:
    approved, mails = await team_approval(live, {"quorum": 2})
    assert await by_reply(live, mails["alice@example.com"], "no") == "recorded"
    assert await by_link(mails["bob@example.com"], "approve") == 303
    assert (await view(live, approved))["status"] == "pending"
    assert await by_reply(live, mails["carol@example.com"], "LGTM") == "decided"
    done = await view(live, approved)
    assert (done["status"], done["decided_by"], done["decided_via"]) == ("approved", "carol@example.com", "reply")

    rejected, mails = await team_approval(live, {"quorum": 2}, fn="second")
    assert await by_link(mails["alice@example.com"], "reject", "no") == 303
    assert (await view(live, rejected))["status"] == "pending"
    assert await by_link(mails["carol@example.com"], "reject", "also no") == 303
    done = await view(live, rejected)
    assert (done["status"], done["decided_by"]) == ("rejected", "carol@example.com")


async def opened_link(mail: EmailMessage, decision: str, comment: str = "", on: str | None = None) -> Any:
    """A link's page opened now (on the server at ``on``, a replica, when given); returns the form's POST, to be
    sent later (so several land at once)."""
    link = link_ending(mail, f"/{decision}")
    if on is not None:
        link = re.sub(r"^https?://[^/]+", on, link)
    browser = httpx.AsyncClient()
    page = await browser.get(link)
    fields = {"csrf_token": csrf_from(page.text), "decision": decision, "comment": comment}

    async def submit() -> int:
        try:
            return (await browser.post(form_url(link), data=fields)).status_code
        finally:
            await browser.aclose()

    return submit


@pytest.mark.parametrize("policy", ["any", {"quorum": 1}])
async def test_concurrent_answers_give_exactly_one_decision(live: Live, policy: Any) -> None:
    """Three answers truly at once: both pages are open (forms in hand) before anyone submits, then two link
    POSTs and a reply go in together. Exactly one decision; every answer kept (the later ones as late)."""
    approval, mails = await team_approval(live, policy)
    alice = await opened_link(mails["alice@example.com"], "approve")
    bob = await opened_link(mails["bob@example.com"], "reject", "stop")
    results = await asyncio.gather(alice(), bob(), by_reply(live, mails["carol@example.com"], "approve"))
    assert all(r in (303, "recorded", "decided") for r in results), results
    done = await view(live, approval)
    assert done["status"] in ("approved", "rejected")
    decided = [e for e in (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()]
    assert sum(1 for e in decided if e["type"] == "decided") == 1
    assert len(done["responses"]) == 3  # all three answered: this was a race, and every answer is kept
    counted = [r for r in done["responses"] if not r["late"]]
    assert counted and counted[-1]["approver"] == done["decided_by"]
    if policy == "any":
        assert len(counted) == 1 and len([r for r in done["responses"] if r["late"]]) == 2


async def test_notices_confirmation_and_word_to_the_others(live: Live) -> None:
    approval, mails = await team_approval(live, "any", channel={"email": {"to": TEAM[:2], "cc": [TEAM[2]]}})
    assert await by_link(mails["alice@example.com"], "approve") == 303
    confirmation = (await mails_to(live, "alice@example.com", 2))[-1]
    assert "approval was recorded" in text_part(confirmation)
    assert confirmation["In-Reply-To"] == mails["alice@example.com"]["Message-ID"]
    for other in ("bob@example.com", "carol@example.com"):
        notice = (await mails_to(live, other, 2))[-1]
        body = text_part(notice)
        assert "was approved by alice@example.com" in body
        assert notice["In-Reply-To"] == mails[other]["Message-ID"]
        assert notice["Auto-Submitted"] == "auto-replied"
    assert (await view(live, approval))["status"] == "approved"


async def test_a_form_posted_after_the_decision_is_kept_as_late(live: Live) -> None:
    approval, mails = await team_approval(live, "any")
    link = link_ending(mails["bob@example.com"], "/reject")
    async with httpx.AsyncClient() as browser:
        form = await browser.get(link)  # Bob opens his page while the request is pending ...
        assert await by_link(mails["alice@example.com"], "approve") == 303  # ... Alice decides ...
        fields = {"csrf_token": csrf_from(form.text), "decision": "reject", "comment": "too late?"}
        posted = await browser.post(form_url(link), data=fields, follow_redirects=True)  # ... then Bob posts
    assert posted.status_code == 200
    assert "had already been decided: it changes nothing" in posted.text
    done = await view(live, approval)
    assert (done["status"], done["decided_by"]) == ("approved", "alice@example.com")
    assert [(r["approver"], r["late"]) for r in done["responses"]] == [
        ("alice@example.com", False),
        ("bob@example.com", True),
    ]


async def test_cancel_tells_every_recipient_and_stops_links_and_replies(live: Live) -> None:
    approval, mails = await team_approval(live, "all")
    cancelled = await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    for address in TEAM:
        notice = (await mails_to(live, address, 2))[-1]
        assert "withdrew this approval request" in text_part(notice)
    assert await by_link(mails["alice@example.com"], "approve") == "closed"
    assert (await by_reply(live, mails["bob@example.com"], "approve")).startswith("ignored")
    assert (await view(live, approval))["status"] == "cancelled"
