"""Which worker a change wakes: a sender woken for nothing costs queries, one not woken leaves work waiting."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.bus import OUTBOX, REQUEST, SCHEDULER, WEBHOOKS
from gateway.inbound import pipeline
from gateway.services import Services
from gateway.settings import Settings
from tests import mailclients
from tests.conftest import Live
from tests.test_approvals_service import request_mail_to


def bare_services() -> Services:
    return Services(settings=Settings(_env_file=None), db=None, signer=None, templates=None)  # type: ignore[arg-type]


def woken(svc: Services) -> set[str]:
    events = {"mail": svc.outbox_wakeup, "webhooks": svc.webhook_wakeup, "scheduler": svc.scheduler_wakeup}
    return {name for name, ev in events.items() if ev.is_set()}


@pytest.mark.parametrize(
    ("webhooks", "expected"), [(True, {"mail", "webhooks"}), (False, {"mail"})], ids=["with", "without"]
)
def test_wake_outbox_wakes_the_webhook_sender_only_when_asked(webhooks: bool, expected: set[str]) -> None:
    svc = bare_services()
    svc.wake_outbox(webhooks=webhooks)
    assert woken(svc) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (OUTBOX, {"mail"}),
        (WEBHOOKS, {"webhooks"}),
        (SCHEDULER, {"scheduler"}),
        (REQUEST, set()),
        ("*", {"mail", "webhooks", "scheduler"}),
    ],
)
def test_a_signal_from_another_process_wakes_its_own_worker(kind: str, expected: set[str]) -> None:
    svc = bare_services()
    svc.deliver(kind, None)
    assert woken(svc) == expected


def record_wakes(live: Live, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every wake_outbox call from now on (still waking), by its arguments."""
    calls: list[dict[str, Any]] = []
    wake = live.services.wake_outbox

    def recording(**kwargs: Any) -> None:
        calls.append(kwargs)
        wake(**kwargs)

    monkeypatch.setattr(live.services, "wake_outbox", recording)
    return calls


async def test_a_submission_wakes_the_mail_sender_alone(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = record_wakes(live, monkeypatch)
    await live.approval()
    assert calls == [{"webhooks": False}]


async def test_a_decision_wakes_the_webhook_sender_only_when_it_queued_one(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    approval = await live.approval()
    mail = await request_mail_to(live.sink, approval["id"], "alice@example.com")
    calls = record_wakes(live, monkeypatch)
    outcome = await pipeline.process(live.services, mailclients.gmail(mail, "approve"), source="test")
    assert outcome.outcome == "decided"
    assert calls and all(c == {"webhooks": False} for c in calls)  # no callback_url: no webhook was queued
