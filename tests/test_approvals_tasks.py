"""The scheduler in real time: the running gateway's own scheduler sends a reminder and expires a request on
time, and a new request due sooner wakes it from a long sleep."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from tests.conftest import Live, text_part
from tests.test_approvals_service import request_mail_to, view
from tests.test_inbound_pipeline import mails_to


async def test_reminder_and_expiry_fire_on_time(live: Live) -> None:
    # Something due in an hour: the scheduler goes to sleep for its maximum (a minute).
    await live.approval(fn="later", expires_in=3600)
    await asyncio.sleep(0.2)
    sleeps_until = live.services.scheduler_sleeps_until
    assert sleeps_until is not None and (sleeps_until - datetime.now(UTC)).total_seconds() > 50

    started = time.monotonic()
    # Three seconds between the reminder and the expiry: a loaded CI machine once woke the scheduler more than one
    # second late, and the expiry (rightly) took the reminder's place.
    approval = await live.approval(reminders={"first_after": 1}, expires_in=4)
    created = datetime.fromisoformat(approval["created_at"])
    original = await request_mail_to(live.sink, approval["id"], "alice@example.com")

    reminder = (await mails_to(live, "alice@example.com", 3, timeout=5))[-1]  # "later", the request, the reminder
    reminded_after = time.monotonic() - started
    assert reminder["In-Reply-To"] == original["Message-ID"]
    assert "Reminder" in text_part(reminder)
    # Woken early: it was asleep for up to a minute. (The upper bound only has to tell that minute apart; a tight
    # one measured the machine's load, and failed under a loaded CI run at 3.2 s.)
    assert 0.9 <= reminded_after < 10.0, reminded_after

    # No API reads until then (a read expires a request lazily): the notice shows the scheduler did it.
    notice = (await mails_to(live, "alice@example.com", 4, timeout=8))[-1]
    expired_after = time.monotonic() - started
    assert "expired before it was decided" in text_part(notice)
    assert 3.9 <= expired_after < 14.0, expired_after
    body = await view(live, approval)
    assert body["status"] == "expired"
    assert datetime.fromisoformat(body["decided_at"]) == datetime.fromisoformat(body["expires_at"])
    assert (datetime.fromisoformat(body["expires_at"]) - created).total_seconds() == 4
    events = [e["type"] for e in (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()]
    assert events.index("reminder") < events.index("expired")
