"""The durable outbox against a real SMTP server that goes down, defers and refuses."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import select

from gateway.approvals import service
from gateway.approvals.schemas import ApprovalCreate
from gateway.keys import Principal, create_key
from gateway.mail.outbox import OutboxSender, backoff
from gateway.mail.smtp import PermanentDeliveryError
from gateway.models import OutboxMessage
from gateway.runtime import Runtime
from tests.conftest import Live, free_port, make_settings


async def _approval_view(live: Live, approval_id: str) -> dict[str, Any]:
    return (await live.client.get(f"/v1/approvals/{approval_id}")).json()  # type: ignore[no-any-return]


async def _events(live: Live, approval_id: str) -> list[str]:
    return [e["type"] for e in (await live.client.get(f"/v1/approvals/{approval_id}/events")).json()]


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_smtp_down_at_submit_then_back_delivers_every_mail_once(live: Live) -> None:
    sink = live.sink
    assert sink is not None
    sink.stop()
    ids = [(await live.approval(fn=f"task_{i}"))["id"] for i in range(3)]

    async def deferred() -> bool:
        return all(["mail_deferred" in await _events(live, i) for i in ids])

    await _until(deferred)
    view = await _approval_view(live, ids[0])
    assert view["recipients"][0]["mail_status"] == "pending"
    assert "connect" in view["recipients"][0]["mail_error"]

    sink.start()
    mails = await sink.wait_for(3, timeout=15)
    await asyncio.sleep(1.5)  # room for any duplicate to show up
    assert len(sink.received) == 3
    assert len({m["Message-ID"] for m in mails}) == 3
    assert sorted(m["Subject"].split(": ")[1].split(" ")[0] for m in mails) == ["task_0", "task_1", "task_2"]

    async def all_sent() -> bool:
        return all([(await _approval_view(live, i))["recipients"][0]["mail_status"] == "sent" for i in ids])

    await _until(all_sent)


async def test_temporary_refusal_is_retried(live: Live) -> None:
    sink = live.sink
    assert sink is not None
    sink.mode = "tempfail"
    approval = await live.approval()

    async def deferred_twice() -> bool:
        return (await _events(live, approval["id"])).count("mail_deferred") >= 2

    await _until(deferred_twice)
    events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
    deferral = next(e for e in events if e["type"] == "mail_deferred")
    assert "451" in deferral["data"]["error"]
    assert "next_attempt_at" in deferral["data"]
    sink.mode = "accept"
    await sink.wait_for(1, timeout=10)
    assert len(sink.received) == 1


async def test_permanent_refusal_fails_and_is_recorded(live: Live) -> None:
    sink = live.sink
    assert sink is not None
    sink.mode = "permfail"
    approval = await live.approval()

    async def failed() -> bool:
        return "mail_failed" in await _events(live, approval["id"])

    await _until(failed)
    await asyncio.sleep(0.6)  # a failed mail is not tried again
    types = await _events(live, approval["id"])
    assert types.count("mail_failed") == 1 and "mail_deferred" not in types
    recipient = (await _approval_view(live, approval["id"]))["recipients"][0]
    assert recipient["mail_status"] == "failed"
    assert "550" in recipient["mail_error"]


class FlakyTransport:
    """Raises an unexpected error for one message, then behaves."""

    def __init__(self, bad_subject: str) -> None:
        self.bad_subject = bad_subject
        self.sent: list[str] = []

    async def send(self, mail: OutboxMessage) -> None:
        raw = mail.raw
        if self.bad_subject in raw:
            raise RuntimeError("boom")
        if "refuse_me" in raw:
            raise PermanentDeliveryError("no", 550)
        self.sent.append(raw)

    async def close(self) -> None:
        pass


async def test_one_bad_message_never_stops_the_sender(database_url: str) -> None:
    runtime = Runtime(make_settings(database_url, free_port(), free_port()), workers=False)
    svc = await runtime.start()
    try:
        key, _ = await create_key(svc.db, "agent")
        who = Principal(key.id, key.name)
        ids = {}
        for fn in ("explode_here", "fine_one", "refuse_me"):
            body = ApprovalCreate(fn=fn, channel={"email": {"to": ["a@example.com"]}})  # type: ignore[arg-type]
            ids[fn] = (await service.create_request(svc, who, body))[0].request.id
        transport = FlakyTransport("explode_here")
        tried = await OutboxSender(svc, transport).run_once()
        assert tried == 3
        assert len(transport.sent) == 1 and "fine_one" in transport.sent[0]
        async with svc.db.read() as session:
            rows = {r.request_id: r for r in (await session.exec(select(OutboxMessage))).all()}
        assert rows[ids["fine_one"]].status == "sent"
        assert rows[ids["refuse_me"]].status == "failed"
        assert rows[ids["explode_here"]].status == "pending"
        assert rows[ids["explode_here"]].last_error == "internal error"
        assert rows[ids["explode_here"]].next_attempt_at > rows[ids["explode_here"]].created_at
    finally:
        await runtime.stop()


def test_backoff_doubles_and_is_capped() -> None:
    delays = [backoff(n, 2.0, 100.0) for n in range(1, 10)]
    assert 1.6 <= delays[0] <= 2.4
    assert 3.2 <= delays[1] <= 4.8
    assert all(d <= 120.0 for d in delays)
    assert delays[-1] >= 80.0
