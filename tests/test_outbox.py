"""The durable outbox against a real SMTP server that goes down, defers and refuses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from gateway import audit
from gateway.approvals import service
from gateway.approvals.schemas import ApprovalCreate
from gateway.keys import Principal, create_key
from gateway.mail import outbox
from gateway.mail.outbox import OutboxSender, backoff
from gateway.mail.smtp import PermanentDeliveryError
from gateway.models import Event, OutboxMessage
from gateway.runtime import Runtime
from gateway.services import Services
from gateway.settings import Settings
from tests.conftest import Live, free_port, make_settings, run_gateway


@contextlib.asynccontextmanager
async def agent_runtime(settings: Settings, workers: bool = True) -> AsyncIterator[tuple[Services, Principal]]:
    """A started runtime (with or without its workers) and an agent's identity on it; stopped on the way out."""
    runtime = Runtime(settings, workers=workers)
    svc = await runtime.start()
    try:
        key, _ = await create_key(svc.db, "agent")
        yield svc, Principal(key.id, key.name)
    finally:
        await runtime.stop()


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

    async def all_sent() -> bool:
        return all([(await _approval_view(live, i))["recipients"][0]["mail_status"] == "sent" for i in ids])

    await _until(all_sent, timeout=15)
    # Recorded as sent, a mail is never claimed again: the count is final, no pause needed.
    mails = sink.messages
    assert len(mails) == 3
    assert len({m["Message-ID"] for m in mails}) == 3
    assert sorted(m["Subject"].split(": ")[1].split(" ")[0] for m in mails) == ["task_0", "task_1", "task_2"]


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
    sink.mode = "accept"
    later = await live.approval(call_id="later")  # the sender has run again once this one is delivered
    await sink.wait_for(1)
    await _until(lambda: _sent(live, later["id"]))
    types = await _events(live, approval["id"])
    assert types.count("mail_failed") == 1 and "mail_deferred" not in types  # a failed mail is not tried again
    assert len(sink.received) == 1
    recipient = (await _approval_view(live, approval["id"]))["recipients"][0]
    assert recipient["mail_status"] == "failed"
    assert "550" in recipient["mail_error"]


async def _sent(live: Live, approval_id: str) -> bool:
    return "mail_sent" in await _events(live, approval_id)


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
    async with agent_runtime(make_settings(database_url, free_port(), free_port()), workers=False) as (svc, who):
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


def test_backoff_doubles_and_is_capped() -> None:
    delays = [backoff(n, 2.0, 100.0) for n in range(1, 10)]
    assert 1.6 <= delays[0] <= 2.4
    assert 3.2 <= delays[1] <= 4.8
    assert all(d <= 120.0 for d in delays)
    assert delays[-1] >= 80.0


async def _stored(live: Live, approval_id: str) -> OutboxMessage:
    async with live.services.db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.request_id == approval_id)
        return (await session.exec(query)).one()


async def test_a_queued_mail_is_composed_once_and_what_was_sent_is_what_is_stored(live: Live) -> None:
    """Submit queues the mail unwritten; the sender composes it before the first attempt and keeps it with the
    outcome, so a retry after a deferral sends the very same message (same Date, boundary and links)."""
    sink = live.sink
    assert sink is not None
    sink.stop()
    approval = await live.approval()

    async def deferred() -> bool:
        return "mail_deferred" in await _events(live, approval["id"])

    await _until(deferred)
    first = (await _stored(live, approval["id"])).raw
    assert first is not None and "Approval needed: send_email" in first  # composed for the failed attempt, kept

    sink.start()
    (mail,) = await sink.wait_for(1, timeout=15)

    async def recorded() -> bool:  # the outcome is committed just after the server's 250
        return (await _stored(live, approval["id"])).status == "sent"

    await _until(recorded)
    row = await _stored(live, approval["id"])
    assert row.raw == first
    assert sink.received[0][1].replace(b"\r\n", b"\n") == first.encode().replace(b"\r\n", b"\n")
    assert mail["Message-ID"] == row.message_id


async def test_a_mail_its_template_cannot_write_fails_alone(database_url: str, smtp_sink: Any, tmp_path: Any) -> None:
    """A template override that breaks on one request fails that mail (no retry can help) with the reason on
    the request and in the audit trail; the request stays pending and the next mail goes out."""
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "approval.txt").write_text(
        '{% if request.fn == "explode" %}{{ no_such_variable }}{% endif %}Approve {{ request.fn }}?\n'
    )
    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, templates_dir=tmp_path)
    async with agent_runtime(settings) as (svc, who):
        broken, _ = await service.create_request(
            svc, who, ApprovalCreate.model_validate({"fn": "explode", "channel": {"email": {"to": ["a@example.com"]}}})
        )
        fine, _ = await service.create_request(
            svc, who, ApprovalCreate.model_validate({"fn": "tidy", "channel": {"email": {"to": ["b@example.com"]}}})
        )
        (mail,) = await smtp_sink.wait_for(1, timeout=10)
        assert "Approve tidy?" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]

        async def failed() -> OutboxMessage | None:
            async with svc.db.read() as session:
                row = (
                    await session.exec(select(OutboxMessage).where(OutboxMessage.request_id == broken.request.id))
                ).one()
            return row if row.status == "failed" else None

        await _until(failed, timeout=5.0)
        row = await failed()
        assert row is not None
        assert "UndefinedError" in (row.last_error or "") and "no_such_variable" in (row.last_error or "")
        assert row.raw is None and row.attempts == 1
        view = await service.get_view(svc, who, "approval", broken.request.id)
        assert view.request.status == "pending"
        assert view.mail[view.recipients[0].id].status == "failed"
        events = [e.type for e in await service.list_events(svc, who, "approval", broken.request.id)]
        assert events[-1] == "mail_failed"
        assert len(smtp_sink.received) == 1  # the broken one was never sent
        fine_view = await service.get_view(svc, who, "approval", fine.request.id)
        assert fine_view.mail[fine_view.recipients[0].id].status == "sent"  # and the one after it was


class SlowTransport:
    """Takes a while per mail and notes how many sends overlap and in which order each address got its mail."""

    def __init__(
        self, log: list[tuple[str, str]], active: list[int], spans: list[tuple[float, float]] | None = None
    ) -> None:
        self.log = log
        self.active = active
        self.spans = spans if spans is not None else []

    async def send(self, mail: OutboxMessage) -> None:
        started = asyncio.get_running_loop().time()
        self.active[0] += 1
        self.active[1] = max(self.active[1], self.active[0])
        await asyncio.sleep(0.05)
        self.active[0] -= 1
        self.log.append((mail.rcpt_to[0], mail.message_id))
        self.spans.append((started, asyncio.get_running_loop().time()))

    async def close(self) -> None:
        pass


async def test_lanes_send_side_by_side_and_keep_each_recipients_order(database_url: str) -> None:
    async with agent_runtime(make_settings(database_url, free_port(), free_port()), workers=False) as (svc, who):
        queued: dict[str, list[str]] = {}
        for n in range(3):  # three mails for each of four people, in this order
            for person in ("a", "b", "c", "d"):
                body = ApprovalCreate.model_validate(
                    {"fn": f"f{n}", "channel": {"email": {"to": [f"{person}@x.test"]}}}
                )
                view, _ = await service.create_request(svc, who, body)
                async with svc.db.read() as session:
                    row = (
                        await session.exec(select(OutboxMessage).where(OutboxMessage.request_id == view.request.id))
                    ).one()
                queued.setdefault(f"{person}@x.test", []).append(row.message_id)
        log: list[tuple[str, str]] = []
        active = [0, 0]
        spans: list[tuple[float, float]] = []
        lanes = [SlowTransport(log, active, spans) for _ in range(4)]
        assert await OutboxSender(svc, lanes).run_once() == 12
        assert len(log) == 12
        assert active[1] > 1  # sends overlapped
        # Faster than one after the other: the time during which some send was running is shorter than the sends'
        # durations added up (measured on the sends themselves, so a loaded machine's database work does not count).
        covered, end = 0.0, float("-inf")
        for start, stop in sorted(spans):
            covered += max(0.0, stop - max(start, end))
            end = max(end, stop)
        assert covered < sum(stop - start for start, stop in spans) * 0.75
        for person, ids in queued.items():
            assert [mid for to, mid in log if to == person] == ids  # each person's mail in the order queued


async def _queue(svc: Services, who: Principal, people: list[str]) -> list[str]:
    ids = []
    for n, person in enumerate(people):
        body = ApprovalCreate.model_validate({"fn": f"f{n}", "channel": {"email": {"to": [person]}}})
        ids.append((await service.create_request(svc, who, body))[0].request.id)
    return ids


async def _rows(svc: Services) -> list[OutboxMessage]:
    async with svc.db.read() as session:
        return list((await session.exec(select(OutboxMessage))).all())


async def test_outcomes_of_side_by_side_lanes_commit_together_with_their_audit_events(database_url: str) -> None:
    async with agent_runtime(make_settings(database_url, free_port(), free_port()), workers=False) as (svc, who):
        ids = await _queue(svc, who, [f"{p}{n}@x.test" for n in range(3) for p in "abcd"])
        sender = OutboxSender(svc, [SlowTransport([], [0, 0]) for _ in range(4)])
        commits: list[int] = []
        real = sender.record

        async def counted(outcomes: Any) -> None:
            commits.append(len(outcomes))
            await real(outcomes)

        sender.record = counted  # type: ignore[method-assign]
        assert await sender.run_once() == 12
        assert sum(commits) == 12 and len(commits) < 12  # outcomes shared commits
        rows = await _rows(svc)
        assert {r.status for r in rows} == {"sent"} and all(r.attempts == 1 and r.sent_at for r in rows)
        async with svc.db.read() as session:
            for request_id in ids:
                assert (await audit.verify(session, request_id))[2] == []
                chain = (await session.exec(select(Event).where(Event.request_id == request_id))).all()
                assert [e.type for e in chain].count("mail_sent") == 1


async def test_a_sender_runs_at_most_record_ahead_mails_past_what_is_committed(database_url: str) -> None:
    async with agent_runtime(make_settings(database_url, free_port(), free_port()), workers=False) as (svc, who):
        await _queue(svc, who, ["a@x.test"] * 12)  # one person: one lane, in order
        ahead: list[int] = []

        class Counting:
            sent = 0

            async def send(self, mail: OutboxMessage) -> None:
                committed = sum(1 for r in await _rows(svc) if r.status == "sent")
                ahead.append(self.sent - committed)
                self.sent += 1

            async def close(self) -> None:
                pass

        sender = OutboxSender(svc, Counting())
        real = sender.record

        async def slow(outcomes: Any) -> None:  # a database slower than the SMTP server
            await asyncio.sleep(0.05)
            await real(outcomes)

        sender.record = slow  # type: ignore[method-assign]
        with patch.object(outbox, "RECORD_AHEAD", 3):
            assert await sender.run_once() == 12
        assert max(ahead) <= 3 and max(ahead) >= 2  # it did run ahead, and no further than allowed
        assert {r.status for r in await _rows(svc)} == {"sent"}


async def test_outcomes_that_cannot_be_committed_leave_the_mail_claimed_to_go_out_again(database_url: str) -> None:
    settings = make_settings(database_url, free_port(), free_port(), outbox_lease=0.3)
    async with agent_runtime(settings, workers=False) as (svc, who):
        await _queue(svc, who, ["a@x.test", "b@x.test"])
        log: list[tuple[str, str]] = []
        sender = OutboxSender(svc, SlowTransport(log, [0, 0]))

        async def broken(outcomes: Any) -> None:
            raise OperationalError("UPDATE", {}, Exception("disk I/O error"))

        real, sender.record = sender.record, broken  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            await sender.run_once()
        rows = await _rows(svc)
        assert len(log) == 2 and {r.status for r in rows} == {"pending"} and all(r.lease_until for r in rows)
        assert await sender.run_once() == 0  # still claimed: nobody sends them meanwhile
        await asyncio.sleep(0.35)
        sender.record = real  # type: ignore[method-assign]
        assert await sender.run_once() == 2  # the lease ran out: they go out again (at least once)
        assert len(log) == 4 and {r.status for r in await _rows(svc)} == {"sent"}


async def test_a_wrong_smtp_password_holds_the_mail_names_the_cause_and_sends_once_fixed(database_url: str) -> None:
    """The issue's outage: a 535 used to fail the first mail for good with /healthz "ok". Now the mail waits,
    /healthz says why, and the mail goes out once the password is right, once."""
    from tests.test_smtp import PASSWORD, USER, _authenticate, smtp_server

    with smtp_server(authenticator=_authenticate, auth_require_tls=False) as (smtp_port, server):
        port = free_port()
        settings = make_settings(
            database_url, port, smtp_port, smtp_username=USER, smtp_password="wrong", outbox_max_attempts=2
        )
        async with run_gateway(settings, port) as svc:
            _, key = await create_key(svc.db, "agent")
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=auth) as client:
                body = {"fn": "f", "kwargs": {}, "channel": {"email": {"to": ["a@example.com"]}}}
                created = (await client.post("/v1/approvals", json=body)).json()

                async def deferred_past_max_attempts() -> bool:
                    types = [e["type"] for e in (await client.get(f"/v1/approvals/{created['id']}/events")).json()]
                    return types.count("mail_deferred") >= 3

                await _until(deferred_past_max_attempts, timeout=20)  # more tries than max_attempts allows
                health = (await client.get("/healthz")).json()
                assert health["status"] == "degraded"
                held = [p for p in health["problems"] if p.startswith("mail held: ")]
                assert len(held) == 1 and "refused the login of GATEWAY_SMTP_USERNAME" in held[0], health
                mail = (await client.get(f"/v1/approvals/{created['id']}")).json()["recipients"][0]
                assert mail["mail_status"] == "pending"  # held, not failed

                svc.settings.smtp_password = PASSWORD  # the operator fixes it
                svc.wake_outbox(webhooks=False)
                for _ in range(200):
                    if server.accepted:
                        break
                    await asyncio.sleep(0.05)
                assert [rcpt for _, rcpt, _, _ in server.accepted] == [["a@example.com"]]

                async def healthy() -> bool:
                    return (await client.get("/healthz")).json()["status"] == "ok"

                await _until(healthy)


async def test_the_operator_sends_failed_mail_again(live: Live) -> None:
    from gateway.mail import operator

    sink = live.sink
    assert sink is not None
    sink.mode = "permfail"
    approval = await live.approval()
    await _until(lambda: _failed(live, approval["id"]))
    failed = await operator.list_mail(live.services.db, "failed", 10)
    assert [m.request_id for m in failed] == [approval["id"]]
    sink.mode = "accept"
    assert await operator.retry_failed(live.services.db, [failed[0].id]) == 1
    live.services.wake_outbox(webhooks=False)  # the CLI wakes other processes; here the sender is in this one
    await sink.wait_for(1)

    async def sent_recorded() -> bool:  # the outcome is committed just after the server accepted the mail
        return (await _events(live, approval["id"]))[-1] == "mail_sent"

    await _until(sent_recorded)
    types = await _events(live, approval["id"])
    assert types.count("mail_requeued") == 1 and types[-1] == "mail_sent"
    assert await operator.retry_failed(live.services.db, None) == 0  # nothing failed any more


async def _failed(live: Live, approval_id: str) -> bool:
    return "mail_failed" in await _events(live, approval_id)


async def test_a_live_sender_keeps_its_lease_and_a_dead_ones_mail_is_taken_within_the_lease(
    database_url: str,
) -> None:
    """Leases are short and renewed: a slow send outlives several lease lengths without another sender taking
    its mail; a sender that stops renewing (its process died) loses the mail to another within one lease."""
    settings = make_settings(database_url, free_port(), free_port(), outbox_lease=0.6)
    async with agent_runtime(settings, workers=False) as (svc, who):
        await _queue(svc, who, ["slow@x.test"])
        gate = asyncio.Event()
        sent: list[str] = []

        class Stuck:
            async def send(self, mail: OutboxMessage) -> None:
                await gate.wait()
                sent.append("first")

            async def close(self) -> None:
                pass

        class Quick:
            async def send(self, mail: OutboxMessage) -> None:
                sent.append("second")

            async def close(self) -> None:
                pass

        first = OutboxSender(svc, Stuck())
        running = asyncio.create_task(first.run_once())
        await _until(lambda: _all_leased(svc))
        other = OutboxSender(svc, Quick())
        for _ in range(4):  # two lease lengths: the first sender renews, the second finds nothing to take
            await asyncio.sleep(0.3)
            assert await other.run_once() == 0
        gate.set()
        assert await running == 1 and sent == ["first"]

        await _queue(svc, who, ["dead@x.test"])
        gate.clear()
        dying = OutboxSender(svc, Stuck())
        doomed = asyncio.create_task(dying.run_once())
        await _until(lambda: _all_leased(svc))
        assert dying._renewer is not None
        dying._renewer.cancel()  # as when its process dies: no more renewals
        started = asyncio.get_running_loop().time()
        for _ in range(100):
            if await other.run_once():
                break
            await asyncio.sleep(0.05)
        waited = asyncio.get_running_loop().time() - started
        assert sent == ["first", "second"] and waited < 0.6 + 0.5
        doomed.cancel()


async def _all_leased(svc: Services) -> bool:
    rows = [r for r in await _rows(svc) if r.status == "pending"]
    return bool(rows) and all(r.lease_until is not None for r in rows)
