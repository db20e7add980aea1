"""kill -9 under load, on real `gateway serve` processes and a real SMTP server: nothing acknowledged is lost,
everything queued goes out after a restart, and at most the one mail in flight goes twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import SECRET, SmtpSink, free_port, link_ending
from tests.processes import clean_env, gateway_process, stop
from tests.test_approvals_service import request_mail_to
from tests.test_links_routes import csrf_from, form_url
from tests.test_webhooks import Receiver


def _env(tmp_path: Path, port: int, smtp_port: int, **extra: str) -> dict[str, str]:
    return clean_env(
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/crash.sqlite3",
        GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        GATEWAY_SECRET_KEYS=SECRET,
        GATEWAY_FROM_ADDRESS="gateway@example.test",
        GATEWAY_REPLY_ADDRESS="replies@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
        GATEWAY_SMTP_PORT=str(smtp_port),
        GATEWAY_SMTP_SECURITY="none",
        GATEWAY_SMTP_CONNECTIONS="1",  # one mail in flight at a time: the one a kill may send twice
        GATEWAY_OUTBOX_LEASE="2",
        GATEWAY_OUTBOX_BACKOFF_BASE="0.2",
        GATEWAY_OUTBOX_BACKOFF_MAX="1",
        GATEWAY_WEBHOOK_SECRET="whsec_" + "B" * 40,
        GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",
        **extra,
    )


def _key(env: dict[str, str], tmp_path: Path) -> str:
    created = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "crash-agent"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


def _requests_mailed(sink: SmtpSink) -> Counter[str]:
    """How many times each request's mail reached the SMTP server (by its X-Gateway-Request header)."""
    return Counter(str(m["X-Gateway-Request"]).split()[0] for m in sink.messages if m["X-Gateway-Request"])


async def test_kill_9_while_submitting_and_sending_loses_nothing(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_sink.delay = 0.1  # a slow server: the kill lands with a mail in flight
    port = free_port()
    env = _env(tmp_path, port, smtp_sink.port)
    key = _key(env, tmp_path)
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    acknowledged: list[str] = []

    async def submit(client: httpx.AsyncClient, worker: int) -> None:
        for n in range(1000):
            body = {
                "fn": "wire_money",
                "kwargs": {"n": n},
                "channel": {"email": {"to": [f"payer{worker}@example.com"]}},
                "call_id": f"w{worker}-{n}",
            }
            try:
                response = await client.post("/v1/approvals", json=body)
            except httpx.HTTPError:
                return  # the server died under us: this one was never acknowledged
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["id"])

    with gateway_process(tmp_path, args, port, env, "first.log") as (base, proc):
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            submitters = [asyncio.create_task(submit(client, w)) for w in range(4)]
            for _ in range(400):  # until it is busy both ways: submitting, and some mail already out
                if len(smtp_sink.received) >= 5 and len(acknowledged) >= 30:
                    break
                await asyncio.sleep(0.05)
            assert len(smtp_sink.received) >= 5, "no mail went out before the kill"
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            await asyncio.gather(*submitters)
    assert len(smtp_sink.received) < len(acknowledged)  # it died with mail still to send

    smtp_sink.delay = 0
    port = free_port()
    env = _env(tmp_path, port, smtp_sink.port)
    with gateway_process(tmp_path, ["serve", "--host", "127.0.0.1", "--port", str(port)], port, env, "second.log") as (
        base,
        proc,
    ):
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            for request_id in acknowledged:  # every acknowledged request exists
                assert (await client.get(f"/v1/approvals/{request_id}")).status_code == 200
            for _ in range(600):
                if set(acknowledged) <= set(_requests_mailed(smtp_sink)):
                    break
                await asyncio.sleep(0.05)
        stop(proc)  # a clean stop: everything it sent is recorded, nothing more will go out
    mailed = _requests_mailed(smtp_sink)
    assert set(acknowledged) <= set(mailed), "an acknowledged request's mail never went out"
    twice = [request_id for request_id, count in mailed.items() if count > 1]
    assert len(twice) <= 1 and all(mailed[r] == 2 for r in twice), mailed.most_common(3)


async def test_kill_9_between_a_decision_and_its_confirmation_and_webhook(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """The decision commits with its confirmation mail and webhook queued; the process dies before sending
    either; a worker started afterwards sends each exactly once."""
    receiver = Receiver()
    await receiver.start()
    port = free_port()
    env = _env(tmp_path, port, smtp_sink.port)
    key = _key(env, tmp_path)
    auth = {"Authorization": f"Bearer {key}"}
    body = {
        "fn": "wire_money",
        "kwargs": {"amount": 10},
        "channel": {"email": {"to": ["cfo@example.com"]}},
        "callback_url": receiver.url,
    }
    try:
        with gateway_process(tmp_path, ["serve", "--host", "127.0.0.1", "--port", str(port)], port, env, "a.log") as (
            base,
            proc,
        ):
            async with httpx.AsyncClient(headers=auth) as client:
                created = (await client.post(f"{base}/v1/approvals", json=body)).json()
            mail = await request_mail_to(smtp_sink, created["id"], "cfo@example.com")
        # Now HTTP only (no sender runs): decide, then kill it before anything is sent.
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-workers"]
        with gateway_process(tmp_path, args, port, env, "b.log") as (base, proc):
            link = link_ending(mail, "/approve")
            async with httpx.AsyncClient() as browser:
                page = await browser.get(link)
                posted = await browser.post(
                    form_url(link), data={"csrf_token": csrf_from(page.text), "decision": "approve"}
                )
            assert posted.status_code == 303
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
        assert len(smtp_sink.received) == 1 and receiver.received == []

        worker = subprocess.Popen(  # noqa: ASYNC220  (started once; the test then waits on the sink)
            [sys.executable, "-m", "gateway", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            await smtp_sink.wait_for(2, timeout=20)
            await receiver.wait_for(1, timeout=20)
            await _until_recorded(env, created["id"])
        finally:
            stop(worker)  # a clean stop: what it sent is recorded; the counts below are final
        confirmation = smtp_sink.messages[1]
        assert str(confirmation["To"]) == "cfo@example.com" and confirmation["In-Reply-To"]
        assert len(smtp_sink.received) == 2 and len(receiver.received) == 1
        assert '"approval.approved"' in receiver.received[0][1]
    finally:
        await receiver.stop()


async def _until_recorded(env: dict[str, str], request_id: str) -> None:
    """Wait until the confirmation and the webhook are recorded as sent in the request's audit trail."""
    path = env["GATEWAY_DATABASE_URL"].removeprefix("sqlite:///")
    types: list[str] = []
    for _ in range(400):
        with sqlite3.connect(path) as db:
            types = [row[0] for row in db.execute("SELECT type FROM events WHERE request_id = ?", (request_id,))]
        if types.count("mail_sent") == 2 and types.count("webhook_sent") == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not recorded: {types}")
