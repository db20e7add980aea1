"""`gateway serve --processes 2` on SQLite: one port, two processes, signals between them, a killed child
restarted, and a clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, SmtpSink, free_port, link_ending
from tests.processes import clean_env, gateway_cli, gateway_process
from tests.test_approvals_service import request_mail_to
from tests.test_links_routes import csrf_from, form_url

BODY = {"fn": "wire_money", "kwargs": {"amount": 5}, "channel": {"email": {"to": ["alice@example.com"]}}}


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@contextmanager
def supervised(tmp_path: Path, smtp_port: int) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """(base URL, API key, supervisor) of `gateway serve --processes 2` on a SQLite file."""
    port = free_port()
    url = f"sqlite:///{tmp_path}/gw.sqlite3"
    key = gateway_cli(url, "keys", "create", "agent").stdout.strip()
    env = clean_env(
        GATEWAY_DATABASE_URL=url,
        GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        GATEWAY_SECRET_KEYS=SECRET,
        GATEWAY_FROM_ADDRESS="gateway@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
        GATEWAY_SMTP_PORT=str(smtp_port),
        GATEWAY_SMTP_SECURITY="none",
    )
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"]
    with gateway_process(tmp_path, args, port, env) as (base, proc):
        deadline = time.monotonic() + 20
        while len(children(proc.pid)) < 2 or not all_healthy(base):
            assert time.monotonic() < deadline, "the children did not come up"
            time.sleep(0.1)
        yield base, key, proc


def running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def all_healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@asynccontextmanager
async def one_connection_to_each(base: str, key: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """A keep-alive client on the process that runs the senders and one on the other (the kernel picks a
    process per connection; only the senders' /healthz reports the outbox)."""
    found: dict[bool, httpx.AsyncClient] = {}
    spare: list[httpx.AsyncClient] = []
    try:
        for _ in range(200):
            client = httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                limits=httpx.Limits(max_connections=1),
            )
            senders = "outbox" in (await client.get("/healthz")).json()
            if senders in found:
                spare.append(client)
            else:
                found[senders] = client
            if len(found) == 2:
                break
        assert len(found) == 2, "every connection went to one process"
        yield found[True], found[False]
    finally:
        for client in [*found.values(), *spare]:
            await client.aclose()


async def test_two_processes_wake_each_others_waiters_and_send_the_mail(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    with supervised(tmp_path, smtp_sink.port) as (base, key, proc):
        assert len(children(proc.pid)) == 2
        async with one_connection_to_each(base, key) as (on_senders, on_other):
            for n, (submit_on, wait_on) in enumerate([(on_other, on_senders), (on_senders, on_other)]):
                # Submitted where no sender runs: the mail still goes (the senders' process hears of it).
                created = (await submit_on.post("/v1/approvals", json={**BODY, "call_id": f"c{n}"})).json()
                waiter = asyncio.create_task(wait_on.get(f"/v1/approvals/{created['id']}", params={"wait": 30}))
                mail = await request_mail_to(smtp_sink, created["id"], "alice@example.com")
                await asyncio.sleep(0.2)  # the waiter is parked
                # The decision is made through the other process than the one holding the waiter.
                page = await submit_on.get(link_ending(mail, "/approve").removeprefix(base))
                started = time.perf_counter()
                posted = await submit_on.post(
                    form_url(link_ending(mail, "/approve")).removeprefix(base),
                    data={"csrf_token": csrf_from(page.text), "decision": "approve"},
                )
                assert posted.status_code == 303
                body = (await asyncio.wait_for(waiter, 10)).json()
                assert body["status"] == "approved"
                assert time.perf_counter() - started < 1.0  # woken by the signal, not the 30 s wait running out


async def test_a_killed_child_is_restarted_and_a_stop_ends_them_all(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    with supervised(tmp_path, smtp_sink.port) as (base, key, proc):
        first = children(proc.pid)
        os.kill(first[1], signal.SIGKILL)
        sockets = tmp_path / "gw.sqlite3-gateway"
        deadline = time.monotonic() + 15
        while True:  # a new second child, listening for signals (so its server is up)
            now = children(proc.pid)
            listening = {int(p.name.split("-")[0]) for p in sockets.glob("*.sock")}
            if len(now) == 2 and first[1] not in now and set(now) <= listening:
                break
            assert time.monotonic() < deadline, f"not restarted: {now}"
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            assert (await client.post("/v1/approvals", json=BODY)).status_code == 201
        await smtp_sink.wait_for(1, 15)
        every = children(proc.pid)
        assert len(list(sockets.glob("*.sock"))) >= 2, (every, list(sockets.iterdir()))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not [pid for pid in every if running(pid)]
        # The killed child's socket stays until another process finds it dead; the two that stopped took theirs.
        assert len(list(sockets.glob("*.sock"))) <= 1


def test_processes_must_be_positive(tmp_path: Path) -> None:
    env = clean_env(
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gw.sqlite3",
        GATEWAY_PUBLIC_URL="http://127.0.0.1:1",
        GATEWAY_SECRET_KEYS=SECRET,
        GATEWAY_FROM_ADDRESS="gateway@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
    )
    argv = [sys.executable, "-m", "gateway", "serve", "--processes", "0"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--processes" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not Path("/proc/self/task").exists():
        pytest.fail("these tests read /proc (Linux)")


def test_the_workers_are_shared_out_and_at_most_four_processes_read_the_mailbox() -> None:
    from gateway.supervisor import Supervisor

    def roles(processes: int, workers: bool = True) -> list[list[str]]:
        sup = Supervisor("127.0.0.1", 8000, processes, workers=workers)
        out = []
        for i in range(processes):
            argv = sup.child_argv(i)
            assert argv[argv.index("--port") + 1] == "8000" and "--reuse-port" in argv
            out.append(argv[argv.index("--roles") + 1 :] if "--roles" in argv else ["--no-workers"])
            if "--poller-part" in argv:
                out[-1].append(argv[argv.index("--poller-part") + 1])
        return out

    assert roles(2) == [["scheduler,poller", "0/2"], ["senders,poller", "1/2"]]
    assert roles(6) == [
        ["scheduler,poller", "0/4"],
        ["senders,poller", "1/4"],
        ["poller", "2/4"],
        ["poller", "3/4"],
        ["--no-workers"],
        ["--no-workers"],
    ]
    assert roles(3, workers=False) == [["--no-workers"]] * 3


async def test_answers_racing_through_both_processes_give_one_decision(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """`serve --processes 2` on one SQLite file: two approvers' forms posted at once, one through each process
    (a third through whichever the kernel picks). Exactly one decision; every answer kept."""
    team = ["alice@example.com", "bob@example.com", "carol@example.com"]
    with supervised(tmp_path, smtp_sink.port) as (base, key, _):
        async with one_connection_to_each(base, key) as (first, second):
            third = httpx.AsyncClient(base_url=base, timeout=30)
            try:
                for round_ in range(3):
                    body = {**BODY, "channel": {"email": {"to": team}}, "call_id": f"race-{round_}"}
                    created = (await first.post("/v1/approvals", json=body)).json()
                    forms = []
                    for person, client, decision in zip(
                        team, (first, second, third), ("approve", "reject", "approve"), strict=True
                    ):
                        mail = await request_mail_to(smtp_sink, created["id"], person)
                        link = link_ending(mail, f"/{decision}").removeprefix(base)
                        page = await client.get(link)
                        fields = {"csrf_token": csrf_from(page.text), "decision": decision}
                        forms.append(client.post(form_url(link), data=fields))
                    results = await asyncio.gather(*forms)
                    assert [r.status_code for r in results] == [303, 303, 303]
                    done = (await second.get(f"/v1/approvals/{created['id']}")).json()
                    events = (await first.get(f"/v1/approvals/{created['id']}/events")).json()
                    assert [e["type"] for e in events].count("decided") == 1
                    assert len(done["responses"]) == 3 and sum(not r["late"] for r in done["responses"]) == 1
                    assert done["status"] in ("approved", "rejected")
            finally:
                await third.aclose()
