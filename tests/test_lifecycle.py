"""Reminder, escalation and expiry plans (pure), and what the scheduler does at chosen times (a controllable
clock: ``Scheduler.tick(now)``) against a live gateway."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from gateway.approvals import lifecycle
from gateway.approvals.schemas import Escalation, Reminders
from gateway.approvals.tasks import Scheduler
from gateway.models import Request, build, utcnow
from gateway.settings import Settings
from tests.conftest import Live, links_in, text_part
from tests.test_approvals_service import by_link, by_reply, request_mail_to, view
from tests.test_inbound_pipeline import mails_to

T0 = utcnow()


def _request(**values: Any) -> Request:
    base: dict[str, Any] = {"status": "pending", "created_at": T0, "reminders_sent": 0}
    base.update(values)
    return build(Request, **base)


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_reminder_plan_from_the_request_or_the_settings() -> None:
    assert lifecycle.reminder_plan(None, _settings()) is None
    assert lifecycle.reminder_plan(Reminders(first_after=60), _settings()) == {
        "first_after": 60,
        "every": None,
        "max": 1,
    }
    assert lifecycle.reminder_plan(Reminders(first_after=60, every=30), _settings())["max"] == 3  # type: ignore[index]
    defaults = _settings(reminder_after=100, reminder_every=50, reminder_max=2)
    assert lifecycle.reminder_plan(None, defaults) == {"first_after": 100, "every": 50, "max": 2}
    assert lifecycle.reminder_plan(False, defaults) is None  # the request turns the default off
    assert lifecycle.escalation_plan(None, _settings(escalate_after=10, escalate_to="boss@example.com")) == {
        "after": 10,
        "to": ["boss@example.com"],
    }
    assert lifecycle.escalation_plan(Escalation(after=5, to=["x@example.com"]), _settings()) == {
        "after": 5,
        "to": ["x@example.com"],
    }


def test_next_due_is_the_earliest_of_reminder_escalation_and_expiry() -> None:
    plan = {"first_after": 60, "every": 30, "max": 3}
    r = _request(
        reminders=plan, escalation={"after": 100, "to": ["b@example.com"]}, expires_at=T0 + timedelta(seconds=200)
    )
    assert lifecycle.next_due(r) == T0 + timedelta(seconds=60)
    r.reminders_sent = 1
    assert lifecycle.next_due(r) == T0 + timedelta(seconds=90)
    r.reminders_sent = 3  # all sent
    assert lifecycle.next_due(r) == T0 + timedelta(seconds=100)
    r.escalated_at = T0 + timedelta(seconds=100)
    assert lifecycle.next_due(r) == T0 + timedelta(seconds=200)
    r.status = "approved"
    assert lifecycle.next_due(r) is None
    # Nothing is scheduled past the expiry.
    late = _request(reminders={"first_after": 500, "every": None, "max": 1}, expires_at=T0 + timedelta(seconds=100))
    assert lifecycle.next_due(late) == T0 + timedelta(seconds=100)
    assert lifecycle.next_due(_request()) is None


def test_missed_reminders_are_sent_once() -> None:
    r = _request(reminders={"first_after": 60, "every": 30, "max": 5})
    assert lifecycle.reminders_passed(r, T0 + timedelta(seconds=59)) == 0
    assert lifecycle.reminders_passed(r, T0 + timedelta(seconds=60)) == 1
    assert lifecycle.reminders_passed(r, T0 + timedelta(seconds=125)) == 3  # down for a while: one mail, count 3
    assert lifecycle.reminders_passed(r, T0 + timedelta(days=1)) == 5


async def _events(live: Live, approval: dict[str, Any]) -> list[str]:
    return [e["type"] for e in (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()]


async def test_reminders_in_the_thread_only_to_who_has_not_answered(live: Live) -> None:
    approval = await live.approval(
        channel={"email": {"to": ["alice@example.com", "bob@example.com"]}},
        policy="all",
        reminders={"first_after": 3600, "every": 1800, "max": 2},
    )
    mails = {a: await request_mail_to(live.sink, approval["id"], a) for a in ("alice@example.com", "bob@example.com")}
    created = T0.fromisoformat(approval["created_at"])
    assert await by_link(mails["alice@example.com"], "approve") == 303
    await mails_to(live, "alice@example.com", 2)  # her confirmation
    scheduler = Scheduler(live.services)

    handled, next_at = await scheduler.tick(created + timedelta(seconds=3599))
    assert handled == 0 and next_at == created + timedelta(seconds=3600)

    handled, next_at = await scheduler.tick(created + timedelta(seconds=3600))
    assert handled == 1 and next_at == created + timedelta(seconds=5400)
    reminder = (await mails_to(live, "bob@example.com", 2))[-1]
    assert reminder["Subject"].startswith("Re: ")
    assert reminder["In-Reply-To"] == mails["bob@example.com"]["Message-ID"]
    assert "Reminder: this is still waiting for your answer" in text_part(reminder)
    # The reminder carries working links and a Reply-To that still routes to Bob's answer.
    assert await by_reply(live, reminder, "approve") == "decided"
    assert (await view(live, approval))["status"] == "approved"
    assert len([m for m in live.sink.messages if str(m["To"]) == "alice@example.com"]) == 2  # type: ignore[union-attr]
    assert (await _events(live, approval)).count("reminder") == 1
    # Decided: nothing more is due.
    assert (await scheduler.tick(created + timedelta(seconds=5400)))[0] == 0


async def test_escalation_adds_approvers_with_their_own_links(live: Live) -> None:
    approval = await live.approval(
        fn="pay_invoice", escalation={"after": 600, "to": ["boss@example.com", "alice@example.com"]}
    )
    created = T0.fromisoformat(approval["created_at"])
    scheduler = Scheduler(live.services)
    assert (await scheduler.tick(created + timedelta(seconds=599)))[0] == 0
    handled, next_at = await scheduler.tick(created + timedelta(seconds=600))
    assert handled == 1 and next_at is None
    escalated = await request_mail_to(live.sink, approval["id"], "boss@example.com")
    body = text_part(escalated)
    assert "Escalated to you: this request has waited 10 minutes" in body and "alice@example.com" in body
    body_view = await view(live, approval)
    assert [r["address"] for r in body_view["recipients"]] == ["alice@example.com", "boss@example.com"]
    assert "escalated" in await _events(live, approval)
    assert await by_link(escalated, "approve") == 303
    done = await view(live, approval)
    assert (done["status"], done["decided_by"]) == ("approved", "boss@example.com")
    # Alice's link stayed valid until then, and she learns who decided.
    notice = (await mails_to(live, "alice@example.com", 2))[-1]
    assert "approved by boss@example.com" in text_part(notice)


async def test_expiry_by_the_scheduler_tells_everyone_and_ends_links(live: Live) -> None:
    approval = await live.approval(
        expires_in=7200, channel={"email": {"to": ["alice@example.com"], "cc": ["c@example.com"]}}
    )
    mail = await request_mail_to(live.sink, approval["id"], "alice@example.com")
    created = T0.fromisoformat(approval["created_at"])
    scheduler = Scheduler(live.services)
    assert (await scheduler.tick(created + timedelta(seconds=7199)))[0] == 0
    # The scheduler is given a future "now"; the request's expiry is judged by the same clock.
    handled, _ = await scheduler.tick(created + timedelta(seconds=7200))
    assert handled == 1
    assert (await view(live, approval))["status"] == "expired"
    for address in ("alice@example.com", "c@example.com"):
        notice = (await mails_to(live, address, 2))[-1]
        assert "expired before it was decided" in text_part(notice)
    assert "expired" in await _events(live, approval)
    assert await by_link(mail, "approve") == "closed"


# --- digest reminders ----------------------------------------------------------------------------------------


async def test_three_due_reminders_to_one_approver_are_one_mail(live: Live) -> None:
    made = [
        await live.approval(
            fn=f"step_{n}",
            # Step 1 also waits for Dave, who has nothing else waiting: his reminder stays in its own thread.
            channel={
                "email": {
                    "to": ["alice@example.com", *(["dave@example.com"] if n == 1 else [])],
                    "subject": f"Step {n}?",
                }
            },
            policy="all",
            reminders={"first_after": 3600 + 60 * n},  # due within five minutes of each other
        )
        for n in range(3)
    ]
    other = await live.approval(
        fn="solo", channel={"email": {"to": ["bob@example.com"]}}, reminders={"first_after": 3600}
    )
    await live.sink.wait_for(5)  # type: ignore[union-attr]
    # From the last request made (on a loaded machine the four creations can take over a second).
    created = T0.fromisoformat(other["created_at"])
    scheduler = Scheduler(live.services)
    handled, _ = await scheduler.tick(created + timedelta(seconds=3601))
    assert handled == 4  # three in Alice's digest (two early), Bob's alone

    digest = next(
        m for m in await mails_to(live, "alice@example.com", 4) if "Reminder: 3 requests" in str(m["Subject"])
    )
    text = text_part(digest)
    for approval in made:
        assert f"[#{approval['ref']}]" in text
    links = [u for u in links_in(digest) if u.endswith("/approve")]
    assert len(links) == 3 and len(set(links)) == 3  # each with its own links
    assert text.index("Step 2?") < text.index("Step 0?")  # newest first
    to_alice = await mails_to(live, "alice@example.com", 4)
    assert len(to_alice) == 4  # three requests, one digest: no single reminders
    dave = (await mails_to(live, "dave@example.com", 2))[-1]
    assert dave["Subject"].startswith("Re: ") and "Reminder: this is still waiting" in text_part(dave)
    solo = (await mails_to(live, "bob@example.com", 2))[-1]
    assert solo["Subject"].startswith("Re: ") and "Reminder: this is still waiting" in text_part(solo)

    # Each request's own trail says it was reminded in a digest, and that the digest went out; the next tick
    # sends nothing again.
    events = (await live.client.get(f"/v1/approvals/{made[2]['id']}/events")).json()
    assert [e["data"]["digest"] for e in events if e["type"] == "reminder"] == [["alice@example.com"]]
    sent = str(digest["Message-ID"]).strip("<>")
    async with asyncio.timeout(10):
        for approval in made:
            trail: list[dict[str, Any]] = []
            while not any(e["type"] == "mail_sent" and e["data"]["message_id"].strip("<>") == sent for e in trail):
                trail = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
                await asyncio.sleep(0.05)
    handled, _ = await scheduler.tick(created + timedelta(seconds=3700))
    assert handled == 0
    assert (await live.client.get(f"/v1/approvals/{other['id']}")).json()["status"] == "pending"

    # A link from the digest decides like the request's own.
    assert await by_link(digest, "approve") == 303


async def test_digests_can_be_turned_off(live: Live) -> None:
    live.services.settings.reminder_digest_window = 0
    made = [
        await live.approval(fn=f"f{n}", channel={"email": {"to": ["carol@example.com"]}}, reminders={"first_after": 60})
        for n in range(2)
    ]
    await live.sink.wait_for(2)  # type: ignore[union-attr]
    created = T0.fromisoformat(made[-1]["created_at"])
    handled, _ = await Scheduler(live.services).tick(created + timedelta(seconds=61))
    assert handled == 2
    mails = await mails_to(live, "carol@example.com", 4)
    assert sum(str(m["Subject"]).startswith("Re: ") for m in mails) == 2 and not any(
        "requests are waiting" in str(m["Subject"]) for m in mails
    )
