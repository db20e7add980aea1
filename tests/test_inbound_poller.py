"""The IMAP poller against a real Dovecot: replies appended to the mailbox become decisions."""

from __future__ import annotations

import asyncio
import itertools
import time
from email.message import EmailMessage
from typing import Any

import pytest

from gateway.inbound import pipeline
from gateway.inbound.poller import ImapPoller, parse_fetch
from tests import mailclients
from tests.conftest import Live, imap_settings, make_settings


async def request_mail(live: Live, to: str = "alice@example.com", **overrides: Any) -> tuple[dict, EmailMessage]:
    before = len(live.sink.received)  # type: ignore[union-attr]
    approval = await live.approval(channel={"email": {"to": [to]}}, **overrides)
    mails = await live.sink.wait_for(before + 1)  # type: ignore[union-attr]
    return approval, next(m for m in mails if str(m["To"]) == to and approval["ref"] in str(m["Subject"]))


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def append(dovecot: Any, raw: bytes, mailbox: str = "INBOX") -> None:
    await asyncio.to_thread(dovecot.append, raw, mailbox)


async def poller_connected(live: Live) -> None:
    async def connected() -> bool:
        return live.runtime.poller.status.connected  # type: ignore[union-attr]

    await until(connected)


async def test_replies_from_the_mailbox_decide_and_wake_waiters(live_imap: Live, dovecot: Any) -> None:
    live = live_imap
    await poller_connected(live)
    approve, approve_mail = await request_mail(live, "alice@example.com")
    reject, reject_mail = await request_mail(live, "bob@example.com")
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approve['id']}", params={"wait": 30}))
    await asyncio.sleep(0.2)

    await append(dovecot, mailclients.gmail(approve_mail, "Approved, go ahead."))
    await append(dovecot, mailclients.outlook(reject_mail, "No. Use the Q4 numbers instead."))

    woken = (await asyncio.wait_for(waiter, 15)).json()
    assert woken["status"] == "approved" and woken["decided_via"] == "reply"

    async def rejected() -> bool:
        return (await live.client.get(f"/v1/approvals/{reject['id']}")).json()["status"] == "rejected"

    await until(rejected)
    body = (await live.client.get(f"/v1/approvals/{reject['id']}")).json()
    assert body["comment"] == "No. Use the Q4 numbers instead."

    async def moved() -> bool:
        return await asyncio.to_thread(dovecot.count, "Processed") == 2

    await until(moved)
    assert await asyncio.to_thread(dovecot.count, "INBOX") == 0


async def test_question_answered_from_apple_mail(live_imap: Live, dovecot: Any) -> None:
    live = live_imap
    await poller_connected(live)
    q = await live.client.post(
        "/v1/questions", json={"message": "Budget?", "channel": {"email": {"to": ["carol@example.com"]}}}
    )
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    waiter = asyncio.create_task(live.client.get(f"/v1/questions/{q.json()['id']}", params={"wait": 30}))
    await append(dovecot, mailclients.apple_mail(mail, "Bis 500 Euro, ça suffit."))
    body = (await asyncio.wait_for(waiter, 15)).json()
    assert body["status"] == "answered"
    assert body["response"] == "Bis 500 Euro, ça suffit."


async def test_nothing_automatic_forged_late_or_repeated_decides(live_imap: Live, dovecot: Any) -> None:
    live = live_imap
    await poller_connected(live)
    approval, mail = await request_mail(live)
    genuine = mailclients.gmail(mail, "approve")
    for raw in (
        mailclients.out_of_office(mail),
        mailclients.bounce(mail),
        mailclients.gmail(mail, "approve", sender="mallory@evil.example"),
    ):
        await append(dovecot, raw)

    async def three_ignored() -> bool:
        events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
        return len([e for e in events if e["type"] == "reply_ignored"]) >= 3

    await until(three_ignored)
    assert (await live.client.get(f"/v1/approvals/{approval['id']}")).json()["status"] == "pending"

    await append(dovecot, genuine)
    await append(dovecot, genuine)  # the same message delivered twice
    await append(dovecot, mailclients.gmail(mail, "reject, changed my mind"))  # after the decision

    async def all_processed() -> bool:
        return await asyncio.to_thread(dovecot.count, "Processed") == 6

    await until(all_processed)
    body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
    assert body["status"] == "approved" and len(body["responses"]) == 1
    events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
    reasons = sorted(e["data"]["reason"] for e in events if e["type"] == "reply_ignored")
    # The decider changing their mind after deciding: each person answers once.
    assert reasons == ["already_responded", "automated", "automated", "sender_mismatch"]
    async with live.services.db.read() as session:
        from sqlmodel import select

        from gateway.models import InboundMessage

        rows = (await session.exec(select(InboundMessage))).all()
    assert len(rows) == 5  # the repeat was recognised by its Message-ID and recorded once


async def test_dovecot_restart_loses_nothing_and_repeats_nothing(live_imap: Live, dovecot: Any) -> None:
    live = live_imap
    await poller_connected(live)
    first, first_mail = await request_mail(live, "alice@example.com")
    second, second_mail = await request_mail(live, "bob@example.com")
    await append(dovecot, mailclients.gmail(first_mail, "approve"))

    async def first_done() -> bool:
        return (await live.client.get(f"/v1/approvals/{first['id']}")).json()["status"] == "approved"

    await until(first_done)
    await asyncio.to_thread(dovecot.stop)
    dovecot.drop_into_maildir(mailclients.gmail(second_mail, "approved while the server was down"))

    async def disconnected() -> bool:
        return not live.runtime.poller.status.connected  # type: ignore[union-attr]

    await until(disconnected, timeout=45)  # Dovecot's imap process may linger ~10 s after the master stops
    await asyncio.to_thread(dovecot.start)

    async def second_done() -> bool:
        return (await live.client.get(f"/v1/approvals/{second['id']}")).json()["status"] == "approved"

    await until(second_done, timeout=60)  # reconnect backoff included
    for approval in (first, second):
        body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
        assert len(body["responses"]) == 1
    assert live.runtime.poller.status.processed == 2  # type: ignore[union-attr]


async def test_uidvalidity_change_starts_over_safely(database_url: str, smtp_sink: Any, dovecot: Any) -> None:
    from gateway.runtime import Runtime
    from tests.conftest import free_port

    settings = make_settings(
        database_url, free_port(), smtp_sink.port, **imap_settings(dovecot, imap_mailbox="Replies")
    )
    runtime = Runtime(settings, workers=False)
    svc = await runtime.start()
    try:
        conn = await asyncio.to_thread(dovecot.client)
        await asyncio.to_thread(conn.create, "Replies")
        poller = ImapPoller(svc)
        client = await poller.connect()
        await poller.ensure_processed_folder(client)
        for n in range(3):
            await append(dovecot, f"Subject: stray {n}\r\nMessage-ID: <s{n}@x>\r\n\r\nhello\r\n".encode(), "Replies")
        selected = await client.select("Replies")
        state = await poller.load_state()
        assert state is None
        from gateway.inbound.poller import MailboxState

        state = MailboxState(poller._uidvalidity(selected.lines), 0)
        assert await poller.drain(client, state) == 3
        assert state.last_uid == 3
        await client.logout()

        await asyncio.to_thread(conn.delete, "Replies")
        await asyncio.to_thread(conn.create, "Replies")
        await asyncio.to_thread(conn.logout)
        await append(dovecot, b"Subject: after\r\nMessage-ID: <after@x>\r\n\r\nhello\r\n", "Replies")
        task = asyncio.create_task(poller.session())

        async def seen_after() -> bool:  # processed, and its place in the new mailbox saved (that comes after)
            saved = await poller.load_state()
            return poller.status.processed == 4 and saved is not None and saved.last_uid == 1

        await until(seen_after)
        task.cancel()
        new_state = await poller.load_state()
        assert new_state is not None and new_state.uidvalidity != state.uidvalidity and new_state.last_uid == 1
    finally:
        await runtime.stop()


@pytest.mark.parametrize("security", ["none", "starttls", "tls"])
async def test_connection_security_modes(database_url: str, smtp_sink: Any, dovecot: Any, security: str) -> None:
    from gateway.runtime import Runtime
    from tests.conftest import free_port

    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    extra = imap_settings(dovecot, imap_security=security, imap_port=port)
    runtime = Runtime(make_settings(database_url, free_port(), smtp_sink.port, **extra), workers=False)
    svc = await runtime.start()
    try:
        client = await ImapPoller(svc).connect()
        assert client.get_state() == "AUTH"
        encrypted = client.protocol.transport.get_extra_info("ssl_object") is not None
        assert encrypted == (security != "none")  # the mode is what is on the wire, not only a login
        await client.logout()
    finally:
        await runtime.stop()


@pytest.mark.parametrize("dovecot", [False], indirect=True)
async def test_polls_where_idle_is_missing(database_url: str, smtp_sink: Any, dovecot: Any) -> None:
    from gateway.runtime import Runtime
    from tests.conftest import free_port, run_gateway

    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, **imap_settings(dovecot, imap_poll_interval=0.3))
    runtime = Runtime(settings)
    async with run_gateway(settings, port, runtime):

        async def connected() -> bool:
            return runtime.poller is not None and runtime.poller.status.connected

        await until(connected)
        await append(dovecot, b"Subject: x\r\nMessage-ID: <poll@x>\r\n\r\nhello\r\n")

        async def processed() -> bool:
            return runtime.poller.status.processed == 1  # type: ignore[union-attr]

        await until(processed, timeout=5)


def test_parse_fetch_handles_either_item_order() -> None:
    lines = [
        b"1 FETCH (UID 7 BODY[] {5}",
        bytearray(b"hello"),
        b")",
        b"2 FETCH (BODY[] {3}",
        bytearray(b"abc"),
        b" UID 9)",
        b"Fetch completed.",
    ]
    assert parse_fetch(lines) == [(7, b"hello"), (9, b"abc")]


async def test_mail_arriving_while_a_batch_is_processed_is_not_left_until_the_idle_renews(
    live_imap: Live, dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mail that arrives while a batch is being processed is reported with the answer to a later command (the
    # UID MOVE), not by IDLE, which only tells of what the session has not heard of yet. aioimaplib drops an
    # untagged EXISTS that comes with an asynchronous command, so the poller used to go idle with a reply
    # waiting, until the IDLE renewed (10 minutes by default).
    live = live_imap
    await poller_connected(live)
    first, first_mail = await request_mail(live, "alice@example.com")
    second, second_mail = await request_mail(live, "bob@example.com")
    process = pipeline.process
    calls = 0

    async def slow_first(svc: Any, raw: bytes, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the second reply lands while the first is still being processed
            await append(dovecot, mailclients.gmail(second_mail, "approve"))
            await asyncio.sleep(0.8)
        return await process(svc, raw, **kwargs)

    monkeypatch.setattr(pipeline, "process", slow_first)
    await append(dovecot, mailclients.gmail(first_mail, "approve"))

    async def both_approved() -> bool:
        statuses = [(await live.client.get(f"/v1/approvals/{a['id']}")).json()["status"] for a in (first, second)]
        return statuses == ["approved", "approved"]

    await until(both_approved, timeout=10)
    assert calls == 2


async def test_two_parts_share_the_mailbox_by_sender_and_read_nothing_twice(
    database_url: str, smtp_sink: Any, dovecot: Any
) -> None:
    import httpx
    from sqlmodel import select

    from gateway.inbound.poller import part_of
    from gateway.keys import create_key
    from gateway.models import InboundMessage, KeyValue
    from gateway.runtime import Runtime
    from tests.conftest import free_port, run_gateway

    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, **imap_settings(dovecot))
    runtime = Runtime(settings, roles=frozenset({"senders"}))  # no poller of its own: the two parts below
    async with run_gateway(settings, port, runtime) as svc:
        _, key = await create_key(svc.db, "agent")
        senders = [f"person{n}@example.com" for n in range(12)]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            approvals = {}
            for to in senders:
                body = {"fn": "f", "kwargs": {}, "channel": {"email": {"to": [to]}}}
                approvals[to] = (await c.post("/v1/approvals", json=body)).json()
            mails = await smtp_sink.wait_for(len(senders))
            by_to = {str(m["To"]): m for m in mails}
            expected = {k: {s for s in senders if part_of(s, 2) == k} for k in range(2)}
            assert expected[0] and expected[1]  # both parts have work (crc32 of these addresses)

            parts = [ImapPoller(svc, part=(k, 2)) for k in range(2)]
            tasks = [asyncio.create_task(p.run()) for p in parts]
            try:

                async def both_connected() -> bool:
                    return all(p.status.connected for p in parts)

                await until(both_connected)
                for to in senders:
                    await append(dovecot, mailclients.gmail(by_to[to], "Approved."))
                # And one from nobody (no From header): it still falls to exactly one part.
                await append(dovecot, b"Subject: stray\r\nMessage-ID: <nofrom@x>\r\n\r\nhello\r\n")

                async def all_decided() -> bool:
                    for to in senders:
                        status = (await c.get(f"/v1/approvals/{approvals[to]['id']}")).json()["status"]
                        if status != "approved":
                            return False
                    return True

                await until(all_decided, timeout=30)
                await until(lambda: asyncio.to_thread(lambda: dovecot.count("INBOX") == 0))
                counts = [len(expected[k]) + (part_of("", 2) == k) for k in range(2)]
                assert [p.status.processed for p in parts] == counts
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        async with svc.db.read() as session:
            records = (await session.exec(select(InboundMessage))).all()
            assert sorted(r.sender for r in records if r.sender) == sorted(senders)  # each once
            assert len(records) == len(senders) + 1
            assert sorted(r.outcome for r in records) == ["decided"] * len(senders) + ["ignored"]
            states = {row.key: row.value for row in (await session.exec(select(KeyValue))).all()}
        assert sorted(k[-4:] for k in states if k.startswith("imap:")) == ["#0/2", "#1/2"]  # a place each
        with pytest.raises(ValueError):
            ImapPoller(svc, part=(2, 2))


def test_part_of_is_stable_and_ignores_case() -> None:
    from gateway.inbound.poller import part_of

    assert part_of("Alice@Example.com", 3) == part_of("alice@example.com", 3)
    assert {part_of(f"p{n}@x.test", 4) for n in range(40)} == {0, 1, 2, 3}


async def test_a_refused_login_is_named_and_retried_with_growing_pauses(
    database_url: str, smtp_sink: Any, dovecot: Any
) -> None:
    from gateway import observability
    from gateway.runtime import Runtime
    from tests.conftest import free_port

    settings = make_settings(database_url, free_port(), smtp_sink.port, **imap_settings(dovecot, imap_password="wrong"))
    runtime = Runtime(settings, workers=False)
    await runtime.start()
    try:
        runtime.poller = poller = ImapPoller(runtime.services)  # type: ignore[arg-type]
        pauses: list[float] = []

        async def pause(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == 5:
                raise asyncio.CancelledError

        poller._pause = pause  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await poller.run()
        assert poller.status.login_refused and not poller.status.ever_connected
        assert "refused the login" in (poller.status.last_error or "")
        assert all(later > earlier for earlier, later in itertools.pairwise(pauses))  # backing off
        status, health = await observability.health(runtime)
        assert status == 200 and health["status"] == "degraded"
        assert any(p.startswith("the IMAP poller cannot log in") for p in health["problems"]), health
        assert "lost its mailbox" not in " ".join(health["problems"])
        assert health["poller"]["lag_seconds"] > 0  # from its start: it has never read the mailbox
    finally:
        runtime.poller = None
        await runtime.stop()


async def test_the_pause_starts_short_again_after_every_good_login(
    database_url: str, smtp_sink: Any, dovecot: Any
) -> None:
    """A session that logged in and then lost the server (a Dovecot restart) retries at once; one that cannot
    reach it backs off, up to the cap, and not for ever at 2 s (the old reset counted messages, not logins)."""
    from gateway.runtime import Runtime
    from tests.conftest import free_port

    runtime = Runtime(make_settings(database_url, free_port(), smtp_sink.port, **imap_settings(dovecot)), workers=False)
    svc = await runtime.start()
    try:
        poller = ImapPoller(svc)
        poller.status.processed = 7  # it has read mail before: that alone must not keep the pause short
        script = ["fail", "fail", "fail", "login", "fail", "fail"] + ["fail"] * 8
        pauses: list[float] = []

        async def session() -> None:
            step = script[len(pauses)]
            if step == "login":
                poller._logged_in = True
            raise ConnectionError(step)

        async def pause(seconds: float) -> None:
            pauses.append(seconds)
            if len(pauses) == len(script):
                raise asyncio.CancelledError

        poller.session = session  # type: ignore[method-assign]
        poller._pause = pause  # type: ignore[method-assign]
        with pytest.raises(asyncio.CancelledError):
            await poller.run()
        base = [p / ImapPoller.RETRY_FIRST for p in pauses]
        assert base[0] < 1.25 and 1.5 < base[1] < 2.5 and 3 < base[2] < 5  # doubling while refused
        assert base[3] < 1.25 and base[4] < 1.25 and 1.5 < base[5] < 2.5  # short again after a login
        assert max(pauses) <= ImapPoller.RETRY_MAX * 1.2 and pauses[-1] > ImapPoller.RETRY_MAX * 0.7  # capped
    finally:
        await runtime.stop()


async def test_mail_to_an_agents_address_reaches_its_waiting_inbox(live_imap: Live, dovecot: Any) -> None:
    live = live_imap
    live.services.settings.trusted_authserv_ids = "mx.example.test"
    agent = (
        await live.client.post("/v1/agents", json={"name": "ops", "allowed_senders": ["alice@example.com"]})
    ).json()
    waiter = asyncio.create_task(live.client.get("/v1/agents/ops/messages", params={"wait": 30}))

    def mail(text: str, *extra: str) -> bytes:
        lines = [
            "Authentication-Results: mx.example.test; dmarc=pass header.from=example.com",
            "From: Alice <alice@example.com>",
            f"To: {agent['address']}",
            "Subject: Change of plan",
            f"Message-ID: <{abs(hash(text))}@example.com>",
            *extra,
            "",
            text,
        ]
        return "\r\n".join(lines).encode()

    await append(dovecot, mail("I am away until Monday.", "Auto-Submitted: auto-replied"))
    await append(dovecot, mail("Pause the campaign until I say so."))
    page = (await asyncio.wait_for(waiter, 30)).json()
    assert [m["text"] for m in page["messages"]] == ["Pause the campaign until I say so."]
    assert (await live.client.get("/v1/agents/ops/messages", params={"after": page["next"]})).json()["messages"] == []
