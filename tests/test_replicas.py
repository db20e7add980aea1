"""Several `gateway serve` replicas on one PostgreSQL: a decision on one wakes a waiter on the other, a sender
killed mid-batch leaves its mail to the other, and the mailbox's one poller fails over."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.db import Database
from gateway.keys import create_key
from gateway.migrate import upgrade
from tests import mailclients
from tests.conftest import SECRET, SmtpSink, empty_postgres, free_port, imap_settings, link_ending
from tests.processes import clean_env, gateway_process
from tests.test_approvals_service import request_mail_to
from tests.test_links_routes import csrf_from, form_url


@pytest.fixture
async def pg(postgres_database: str) -> tuple[str, str]:
    """(database URL, an API key) on an emptied, migrated PostgreSQL database."""
    url = await empty_postgres(postgres_database)
    db = Database(url)
    await upgrade(db)
    _, key = await create_key(db, "replica-agent")
    await db.dispose()
    return url, key


@contextmanager
def replica(
    tmp_path: Path, database_url: str, smtp_port: int, name: str, **settings: Any
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_SECRET_KEYS": SECRET,
        "GATEWAY_FROM_ADDRESS": "gateway@example.test",
        "GATEWAY_REPLY_ADDRESS": "replies@example.test",
        "GATEWAY_SMTP_HOST": "127.0.0.1",
        "GATEWAY_SMTP_PORT": str(smtp_port),
        "GATEWAY_SMTP_SECURITY": "none",
        "GATEWAY_OUTBOX_BACKOFF_BASE": "0.2",
        "GATEWAY_OUTBOX_BACKOFF_MAX": "1",
    }
    env.update({f"GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    with gateway_process(tmp_path, args, port, clean_env(**env), f"{name}.log") as running:
        yield running


BODY = {"fn": "wire_money", "kwargs": {"amount": 5}, "channel": {"email": {"to": ["alice@example.com"]}}}


async def test_a_decision_on_one_replica_wakes_a_waiter_on_the_other(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink
) -> None:
    url, key = pg
    auth = {"Authorization": f"Bearer {key}"}
    with replica(tmp_path, url, smtp_sink.port, "a") as (a, _), replica(tmp_path, url, smtp_sink.port, "b") as (b, _):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            latencies = []
            for n in range(5):
                created = (await client.post(f"{a}/v1/approvals", json={**BODY, "kwargs": {"n": n}})).json()
                waiter = asyncio.create_task(client.get(f"{a}/v1/approvals/{created['id']}", params={"wait": 20}))
                mail = await request_mail_to(smtp_sink, created["id"], "alice@example.com")
                link = link_ending(mail, "/approve").replace(a, b)  # the human's click lands on replica B
                async with httpx.AsyncClient() as browser:
                    page = await browser.get(link)
                    await asyncio.sleep(0.2)  # the waiter on A is parked
                    started = time.perf_counter()
                    posted = await browser.post(
                        form_url(link), data={"csrf_token": csrf_from(page.text), "decision": "approve"}
                    )
                assert posted.status_code == 303
                body = (await asyncio.wait_for(waiter, 10)).json()
                latencies.append(time.perf_counter() - started)
                assert body["status"] == "approved" and body["decided_via"] == "link"
    assert max(latencies) < 1.0, latencies  # woken by NOTIFY, not by the 20 s long-poll running out


async def test_a_sender_killed_mid_batch_leaves_its_mail_to_the_other(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink
) -> None:
    url, key = pg
    smtp_sink.delay = 0.15  # a slow server, so the kill lands mid-batch
    count = 20
    auth = {"Authorization": f"Bearer {key}"}
    with replica(tmp_path, url, smtp_sink.port, "a", outbox_lease=2) as (a, proc_a):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            for n in range(count):
                assert (await client.post(f"{a}/v1/approvals", json={**BODY, "call_id": f"c{n}"})).status_code == 201
        await smtp_sink.wait_for(4, timeout=15)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait(5)
    sent_by_a = len(smtp_sink.received)
    assert sent_by_a < count  # A died with claimed mail unsent
    smtp_sink.delay = 0
    with replica(tmp_path, url, smtp_sink.port, "b", outbox_lease=2):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ids = Counter(str(m["Message-ID"]) for m in smtp_sink.messages)
            if len(ids) == count:
                break
            await asyncio.sleep(0.1)
    ids = Counter(str(m["Message-ID"]) for m in smtp_sink.messages)
    assert len(ids) == count  # every mail sent
    # At most the one in flight when A died went twice (one recipient: one sending lane, one mail in flight).
    assert sum(n - 1 for n in ids.values()) <= 1


async def test_the_mailbox_poller_fails_over(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink, dovecot: Any
) -> None:
    url, key = pg
    imap = {k: v for k, v in imap_settings(dovecot).items()}
    extra = {**imap, "leader_retry": 0.5, "imap_idle_renew": 30}
    auth = {"Authorization": f"Bearer {key}"}
    with (
        replica(tmp_path, url, smtp_sink.port, "a", **extra) as (a, proc_a),
        replica(tmp_path, url, smtp_sink.port, "b", **extra) as (b, proc_b),
    ):
        roles = {}
        for _ in range(100):
            roles = {base: (await _health(base)).get("poller", {}).get("role") for base in (a, b)}
            if sorted(roles.values()) == ["leading", "standby"]:
                break
            await asyncio.sleep(0.1)
        assert sorted(roles.values()) == ["leading", "standby"], roles
        leader = a if roles[a] == "leading" else b
        other = b if leader == a else a
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            made = [
                (await client.post(f"{other}/v1/approvals", json={**BODY, "call_id": f"p{n}"})).json() for n in range(4)
            ]
            mails = await smtp_sink.wait_for(4)
            by_ref = {a["ref"]: a for a in made}
            originals = {by_ref[str(m["Subject"]).split("[#")[1].rstrip("]")]["id"]: m for m in mails}

            # One reply while the leader reads, then the leader dies and more replies arrive.
            first, *rest = list(originals.items())
            await asyncio.to_thread(dovecot.append, mailclients.gmail(first[1], "approve"))
            await _until_status(client, other, first[0], "approved")
            (proc_a if leader == a else proc_b).send_signal(signal.SIGKILL)
            for _, mail in rest:
                await asyncio.to_thread(dovecot.append, mailclients.gmail(mail, "approve"))
            await asyncio.to_thread(dovecot.append, mailclients.gmail(first[1], "approve"))  # a re-delivery
            for approval_id, _ in rest:
                await _until_status(client, other, approval_id, "approved", timeout=20)
            assert (await _health(other))["poller"]["role"] == "leading"
            for approval_id in originals:
                body = (await client.get(f"{other}/v1/approvals/{approval_id}")).json()
                assert len(body["responses"]) == 1  # nothing decided twice


async def _until_status(
    client: httpx.AsyncClient, base: str, approval_id: str, status: str, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.get(f"{base}/v1/approvals/{approval_id}")).json()["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{approval_id} did not become {status}")


async def _health(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base}/healthz")).json()  # type: ignore[no-any-return]


async def test_the_same_request_answered_at_once_through_both_replicas(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink, dovecot: Any
) -> None:
    """Three approvers of one request (policy any) answer together: a link POST on replica A, one on replica B,
    and a reply in the mailbox (read by whichever replica leads the poller). Exactly one decision; every answer
    kept, the later ones as late."""
    from tests.test_approvals_service import opened_link

    url, key = pg
    extra = {**imap_settings(dovecot), "leader_retry": 0.5}
    auth = {"Authorization": f"Bearer {key}"}
    team = ["alice@example.com", "bob@example.com", "carol@example.com"]
    with (
        replica(tmp_path, url, smtp_sink.port, "a", **extra) as (a, _),
        replica(tmp_path, url, smtp_sink.port, "b", **extra) as (b, _),
    ):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            for round_ in range(3):
                body = {**BODY, "channel": {"email": {"to": team}}, "call_id": f"race-{round_}"}
                created = (await client.post(f"{a}/v1/approvals", json=body)).json()
                mails = {p: await request_mail_to(smtp_sink, created["id"], p) for p in team}
                alice = await opened_link(mails["alice@example.com"], "approve", on=a)
                bob = await opened_link(mails["bob@example.com"], "reject", "no", on=b)
                reply = mailclients.gmail(mails["carol@example.com"], "approve")
                results = await asyncio.gather(alice(), bob(), asyncio.to_thread(dovecot.append, reply))
                assert results[:2] == [303, 303]
                for _ in range(200):  # the reply is read by the poller in its own time
                    done = (await client.get(f"{b}/v1/approvals/{created['id']}")).json()
                    if len(done["responses"]) == 3:
                        break
                    await asyncio.sleep(0.05)
                assert len(done["responses"]) == 3, done["responses"]
                events = (await client.get(f"{a}/v1/approvals/{created['id']}/events")).json()
                assert [e["type"] for e in events].count("decided") == 1
                assert sum(not r["late"] for r in done["responses"]) == 1  # policy any: one answer counted
                counted = next(r for r in done["responses"] if not r["late"])
                assert counted["approver"] == done["decided_by"] and done["status"] in ("approved", "rejected")


INBOUND = "an-inbound-secret-of-some-length"
# Replicas that take mail by webhook and trust our receiving server's DMARC results (mail to agents).
AGENT_MAIL_SETTINGS = {"trusted_authserv_ids": "mx.example.test", "inbound_secret": INBOUND}


def human_mail(to: str, ref: str, text: str) -> bytes:
    """A person's mail to an agent, with our receiving server's DMARC pass, as a provider would post it."""
    return (
        "Authentication-Results: mx.example.test; dmarc=pass header.from=example.com\r\n"
        f"From: alice@example.com\r\nTo: {to}\r\nSubject: {ref}\r\n"
        f"Message-ID: <{ref}@example.com>\r\n\r\n{text}\r\n"
    ).encode()


async def test_two_replicas_deliver_each_agent_message_once_and_wake_the_other(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink
) -> None:
    """The same human mail posted to both replicas (a provider's retry landing elsewhere) is delivered once;
    an agent waiting on replica B gets the message replica A stored, and a restart loses nothing."""
    url, key = pg
    auth = {"Authorization": f"Bearer {key}"}
    settings = AGENT_MAIL_SETTINGS
    with (
        replica(tmp_path, url, smtp_sink.port, "a", **settings) as (a, _),
        replica(tmp_path, url, smtp_sink.port, "b", **settings) as (b, _),
    ):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            agent = (
                await client.post(f"{a}/v1/agents", json={"name": "ops", "allowed_senders": ["@example.com"]})
            ).json()
            cursor = "0"
            for n in range(4):
                waiter = asyncio.create_task(
                    client.get(f"{b}/v1/agents/ops/messages", params={"after": cursor, "wait": 20})
                )
                await asyncio.sleep(0.2)
                raw = human_mail(agent["address"], f"step-{n}", f"Message {n}.")
                post = {"headers": {"Authorization": f"Bearer {INBOUND}"}, "content": raw}
                async with httpx.AsyncClient(timeout=30) as provider:
                    both = await asyncio.gather(
                        provider.post(f"{a}/inbound/raw", **post), provider.post(f"{b}/inbound/raw", **post)
                    )
                outcomes = sorted(r.json()["outcome"] for r in both)
                assert outcomes == ["delivered", "duplicate"], [r.text for r in both]
                page = (await asyncio.wait_for(waiter, 10)).json()
                assert [m["text"] for m in page["messages"]] == [f"Message {n}."]
                cursor = page["next"]
            everything = (await client.get(f"{a}/v1/agents/ops/messages")).json()
            assert [m["text"] for m in everything["messages"]] == [f"Message {n}." for n in range(4)]
    with replica(tmp_path, url, smtp_sink.port, "c", **settings) as (c, _):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            after = (await client.get(f"{c}/v1/agents/ops/messages", params={"after": cursor})).json()
            assert after == {"messages": [], "next": cursor}  # resumed from the cursor: nothing lost, nothing again


async def test_a_stream_on_one_replica_gets_the_messages_another_stores(
    tmp_path: Path, pg: tuple[str, str], smtp_sink: SmtpSink
) -> None:
    """An agent's message stream held on replica B gets, in order, each message replica A stored (woken by
    LISTEN/NOTIFY, not found by polling)."""
    url, key = pg
    auth = {"Authorization": f"Bearer {key}"}
    settings = AGENT_MAIL_SETTINGS
    with (
        replica(tmp_path, url, smtp_sink.port, "a", **settings) as (a, _),
        replica(tmp_path, url, smtp_sink.port, "b", **settings) as (b, _),
    ):
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            body = {"name": "streamed", "allowed_senders": ["@example.com"]}
            agent = (await client.post(f"{a}/v1/agents", json=body)).json()
            async with client.stream("GET", f"{b}/v1/agents/streamed/messages/stream") as response:
                assert response.status_code == 200
                lines = response.aiter_lines()
                for n in range(3):
                    raw = human_mail(agent["address"], f"streamed-{n}", f"Streamed {n}.")
                    posted = await client.post(
                        f"{a}/inbound/raw", content=raw, headers={"Authorization": f"Bearer {INBOUND}"}
                    )
                    assert posted.json()["outcome"] == "delivered", posted.text
                    async with asyncio.timeout(10):
                        data = await anext(line async for line in lines if line.startswith("data: "))
                    assert json.loads(data.removeprefix("data: "))["text"] == f"Streamed {n}."
