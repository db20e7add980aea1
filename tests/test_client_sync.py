"""The blocking client against a real `gateway dev` process: mail captured, links clicked, decisions waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, Field

from gateway.client import (
    ApprovalRejectedError,
    ConflictError,
    Gateway,
    HumanTool,
    RequestExpiredError,
    ResponseModelError,
    WaitTimeoutError,
    openai_tool,
)
from tests.processes import DEV_KEY, clean_env, click, dev_process, link, mails_to, wait_for_mail

Dev = tuple[str, subprocess.Popen[str]]


def address() -> str:
    return f"boss-{uuid.uuid4().hex[:8]}@example.com"


def in_background(fn: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


@pytest.fixture
def gw(dev_gateway: Dev) -> Gateway:
    return Gateway(dev_gateway[0], DEV_KEY, run_id=f"run-{uuid.uuid4().hex[:6]}")


def test_approved_function_runs_with_its_arguments(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss, ran = address(), []

    @gw.require_approval(boss, subject="Refund?", context="Over the limit")
    def refund(customer: str, amount: int, note: str = "sorry") -> str:
        """Refund a customer."""
        ran.append((customer, amount, note))
        return f"refunded {amount}"

    assert refund.__name__ == "refund" and refund.__doc__ == "Refund a customer."
    result = in_background(lambda: refund("ann@example.com", 40))
    (mail,) = wait_for_mail(base, boss)
    assert mail["subject"].startswith("Refund?")
    assert not result.done() and ran == []  # nothing runs before the human decides
    assert click(link(mail, "/approve"), decision="approve").status_code == 303
    assert result.result(10) == "refunded 40"
    assert ran == [("ann@example.com", 40, "sorry")]
    assert len(mails_to(base, boss)) == 1
    raw = httpx.get(f"{base}/dev/messages/{mail['id']}.eml").text
    assert "customer" in raw and "ann@example.com" in raw and "note" in raw  # positional arguments, by name


def test_rejected_function_does_not_run_and_returns_the_feedback(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss, ran = address(), []

    @gw.require_approval(boss)
    def send_email(to: str, body: str) -> str:
        ran.append(to)
        return "sent"

    result = in_background(lambda: send_email("c@example.com", body="Hi"))
    (mail,) = wait_for_mail(base, boss)
    click(link(mail, "/reject"), decision="reject", comment="Too informal, use their title")
    assert result.result(10) == "User denied send_email with message: Too informal, use their title"
    assert ran == []


def test_raise_on_reject_raises_with_the_comment(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()

    @gw.require_approval(boss, raise_on_reject=True)
    def delete_records(table: str) -> None:
        raise AssertionError("must not run")

    result = in_background(lambda: delete_records("users"))
    (mail,) = wait_for_mail(base, boss)
    click(link(mail, "/reject"), decision="reject", comment="Never on prod")
    with pytest.raises(ApprovalRejectedError) as caught:
        result.result(10)
    assert caught.value.comment == "Never on prod" and caught.value.fn == "delete_records"
    assert caught.value.request.status == "rejected"


def test_expired_request_does_not_run(dev_gateway: Dev, gw: Gateway) -> None:
    boss = address()

    @gw.require_approval(boss, expires_in=1)
    def transfer(amount: int) -> str:
        raise AssertionError("must not run")

    started = time.monotonic()
    assert transfer(10) == "The request to run transfer expired before anyone approved it; transfer was not run."
    assert time.monotonic() - started < 5

    @gw.require_approval(boss, expires_in=1, raise_on_reject=True)
    def transfer_strict(amount: int) -> str:
        raise AssertionError("must not run")

    with pytest.raises(RequestExpiredError):
        transfer_strict(10)


def test_timeout_returns_and_calling_again_resumes_the_same_request(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()

    @gw.require_approval(boss, timeout=1)
    def publish(post: str) -> str:
        return f"published {post}"

    first = publish("hello")
    assert first.startswith("No decision on publish within 1 s; publish was not run.")
    (mail,) = wait_for_mail(base, boss)
    again = in_background(lambda: publish("hello"))
    time.sleep(0.3)
    click(link(mail, "/approve"), decision="approve")
    assert again.result(10) == "published hello"
    assert len(mails_to(base, boss)) == 1  # resumed, not asked twice
    # Decided once: the next identical call in this run is a new request, with its own mail.
    third = in_background(lambda: publish("hello"))
    mails = wait_for_mail(base, boss, count=2)
    click(link(mails[0], "/reject"), decision="reject", comment="once is enough")
    assert third.result(10) == "User denied publish with message: once is enough"


def test_handles_wait_and_raise_on_timeout(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()
    handle = gw.request_approval("wire_money", {"amount": 5}, boss)
    again = gw.request_approval("wire_money", {"amount": 5}, boss)  # same run, fn and arguments: same request
    assert again.id == handle.id and handle.call_id.startswith("auto-")
    with pytest.raises(WaitTimeoutError) as caught:
        handle.wait(timeout=0.5)
    assert caught.value.request_id == handle.id
    (mail,) = wait_for_mail(base, boss)
    waiting = in_background(lambda: handle.wait(timeout=20))
    time.sleep(0.2)
    click(link(mail, "/approve"), decision="approve")
    assert waiting.result(10).status == "approved"
    with pytest.raises(ConflictError) as caught:  # a decided request cannot be cancelled: the gateway says so
        handle.cancel()
    assert caught.value.status == 409


def test_human_as_tool_answered_on_the_page(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()
    ask_human = gw.human_as_tool(boss, context="Drafting replies")
    assert isinstance(ask_human, HumanTool)
    definition = openai_tool(ask_human)
    assert definition["function"]["name"] == "ask_human"
    assert definition["function"]["parameters"]["required"] == ["message"]
    answer = in_background(lambda: ask_human("Which tone for the investor update?"))
    (mail,) = wait_for_mail(base, boss)
    assert click(link(mail, "/answer"), response="Warm but brief.").status_code == 303
    assert answer.result(10) == "Warm but brief."


def test_question_options_through_a_handle(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()
    handle = gw.ask("Ship on Friday?", boss, response_options=[{"name": "yes", "title": "Ship it"}, "no"])
    (mail,) = wait_for_mail(base, boss)
    click(link(mail, "/option/yes"), option="yes")
    question = handle.wait(timeout=10)
    assert question.status == "answered" and question.response_option == "yes" and question.responded_by == boss


def test_a_wait_survives_the_gateway_restarting(tmp_path: Path) -> None:
    """The long-poll's connection drops with the server; the client reconnects and still gets the decision."""
    with dev_process(tmp_path) as (base, _proc):
        port = int(base.rsplit(":", 1)[1])
        gw = Gateway(base, DEV_KEY)
        boss = address()
        handle = gw.request_approval("deploy", {"env": "prod"}, boss)
        (mail,) = wait_for_mail(base, boss)
        waiting = in_background(lambda: handle.wait(timeout=60))
        time.sleep(0.3)
    assert not waiting.done()
    with dev_process(tmp_path, port) as (base, _proc):
        click(link(mail, "/approve"), decision="approve")
        assert waiting.result(15).status == "approved"


AGENT = textwrap.dedent(
    """
    import sys
    from gateway.client import Gateway

    gw = Gateway()

    @gw.require_approval(sys.argv[1])
    def send_report(quarter: str) -> str:
        return "report sent for " + quarter

    print(send_report("Q3"), flush=True)
    """
)


def test_a_killed_agent_resumes_its_wait_without_a_second_email(dev_gateway: Dev, tmp_path: Path) -> None:
    base, _ = dev_gateway
    boss = address()
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = clean_env(GATEWAY_URL=base, GATEWAY_API_KEY=DEV_KEY, GATEWAY_RUN_ID="nightly-2026-11-21")

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), boss], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    first = start()
    wait_for_mail(base, boss)
    _wait_for_waiters(base, 1)
    first.kill()
    first.wait()
    second = start()
    _wait_for_waiters(base, 1)
    assert len(mails_to(base, boss)) == 1  # resumed: no second email
    click(link(mails_to(base, boss)[0], "/approve"), decision="approve")
    out, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    assert out.strip() == "report sent for Q3"
    assert len(mails_to(base, boss)) == 1


def _wait_for_waiters(base: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/healthz").json().get("waiters") == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {count} waiting agent(s)")


def test_one_waiting_agent_holds_one_long_poll(dev_gateway: Dev, gw: Gateway) -> None:
    """While it waits, the client holds one long-poll at a time and renews it; it never polls in a loop."""
    base, _ = dev_gateway
    sent: list[str] = []
    gw._http.event_hooks["request"].append(lambda request: sent.append(str(request.url)))
    handle = gw.request_approval("noop", {}, address())
    with pytest.raises(WaitTimeoutError):
        handle.wait(timeout=3.5)
    polls = [url for url in sent if "wait=" in url]
    assert polls == [f"{base}/v1/approvals/{handle.id}?wait=3.5"]  # one request held the whole 3.5 s


# --- the outer loop: updates out, messages in -------------------------------------------------------------

TRUSTED = "mx.example.test"


def human_writes(base: str, to: str, text: str, sender: str = "alice@example.com") -> dict[str, Any]:
    """A person's mail to an agent's address, as our receiving server hands it over (with its DMARC result)."""
    raw = (
        f"Authentication-Results: {TRUSTED}; dmarc=pass header.from=example.com\r\n"
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: About the run\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\n\r\n{text}\r\n"
    ).encode()
    return httpx.post(f"{base}/dev/inbound", content=raw, timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture
def outer_dev(tmp_path: Path) -> Any:
    from tests.conftest import free_port
    from tests.processes import gateway_process

    port = free_port()
    env = clean_env(GATEWAY_DEV_API_KEY=DEV_KEY, GATEWAY_TRUSTED_AUTHSERV_IDS=TRUSTED)
    with gateway_process(
        tmp_path, ["dev", "--port", str(port), "--db", str(tmp_path / "dev.sqlite3")], port, env
    ) as running:
        yield running


def test_notify_and_the_inbox_close_the_loop(outer_dev: Dev) -> None:
    base, _ = outer_dev
    gw = Gateway(base, DEV_KEY, run_id="run-outer")
    address = gw.agent("outer", ["alice@example.com"])
    inbox = gw.inbox("outer")
    assert inbox.poll() == [] and inbox.cursor == "0"
    sent = gw.notify("Done with 12 of 15; anything else?", "alice@example.com", agent="outer")
    assert sent.agent == "outer" and sent.run_id == "run-outer"
    update = wait_for_mail_any(base, "alice@example.com", "Update: Done with 12 of 15")
    reply = httpx.post(f"{base}/dev/messages/{update['id']}/reply", data={"text": "Stop there, thanks."}, timeout=10)
    assert reply.status_code in (200, 303)
    first = inbox.wait(timeout=10)
    assert (first.text, first.notification_id, first.run_id) == ("Stop there, thanks.", sent.id, "run-outer")

    waiting = in_background(lambda: inbox.wait(timeout=20))
    time.sleep(0.3)
    assert not waiting.done()
    assert human_writes(base, address, "Also: skip Terri.")["outcome"] == "delivered"
    assert waiting.result(timeout=10).text == "Also: skip Terri."
    cursor = inbox.cursor

    assert human_writes(base, address, "Forged!", sender="mallory@example.org")["reason"] == "sender_not_allowed"
    human_writes(base, address, "One.")
    human_writes(base, address, "Two.")
    resumed = Gateway(base, DEV_KEY).inbox("outer", after=cursor)  # a restarted agent, from its saved cursor
    assert [m.text for m in (resumed.wait(5), resumed.wait(5))] == ["One.", "Two."]
    assert resumed.poll() == []
    with pytest.raises(TimeoutError):
        resumed.wait(timeout=0.5)


def test_a_waiting_agent_rides_out_a_gateway_restart(tmp_path: Path) -> None:
    """The inbox's stream ends when the gateway stops; the wait reconnects (backing off while nothing answers)
    and gets the message written after the restart, from the same cursor."""
    from tests.conftest import free_port
    from tests.processes import gateway_process

    port = free_port()
    env = clean_env(GATEWAY_DEV_API_KEY=DEV_KEY, GATEWAY_TRUSTED_AUTHSERV_IDS=TRUSTED)
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "dev.sqlite3")]

    def held(base: str) -> None:
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/healthz", timeout=5).json().get("waiters", 0) < 1:
            assert time.monotonic() < deadline, "the inbox holds no stream"
            time.sleep(0.05)

    with gateway_process(tmp_path, args, port, env) as (base, _):
        gw = Gateway(base, DEV_KEY)
        address = gw.agent("steady", ["alice@example.com"])
        human_writes(base, address, "Before the restart.")
        inbox = gw.inbox("steady")
        assert inbox.wait(timeout=10).text == "Before the restart."
        waiting = in_background(lambda: inbox.wait(timeout=90))
        held(base)
    assert not waiting.done()  # the gateway is gone; the wait is not
    with gateway_process(tmp_path, args, port, env) as (base, _):
        held(base)  # it reconnected on its own
        human_writes(base, address, "After the restart.")
        assert waiting.result(timeout=15).text == "After the restart."


def wait_for_mail_any(base: str, address: str, subject: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in mails_to(base, address, requests_only=False):
            if subject in mail["subject"]:
                return mail
        time.sleep(0.05)
    raise AssertionError(f"no mail {subject!r} to {address}")


def test_a_waiting_agent_gets_the_message_within_50_ms_of_its_commit(outer_dev: Dev) -> None:
    base, _ = outer_dev
    gw = Gateway(base, DEV_KEY)
    address = gw.agent("quick", ["alice@example.com"])
    cursor, lags = "0", []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=30) as client:
        for n in range(7):
            woken: list[float] = []

            def wait(after: str = cursor, woken: list[float] = woken) -> dict[str, Any]:
                page = client.get("/v1/agents/quick/messages", params={"after": after, "wait": 20}).json()
                woken.append(time.perf_counter())
                return page  # type: ignore[no-any-return]

            waiter = in_background(wait)
            time.sleep(0.15)
            assert human_writes(base, address, f"Step {n}.")["outcome"] == "delivered"
            committed = time.perf_counter()  # /dev/inbound answers once the message is committed
            page = waiter.result(timeout=10)
            assert [m["text"] for m in page["messages"]] == [f"Step {n}."]
            lags.append(woken[0] - committed)
            cursor = page["next"]
    lags.sort()
    assert lags[len(lags) // 2] < 0.05, lags  # the median; the waiter often answers before the POST does


# --- edits and typed answers ---------------------------------------------------------------------------------


class Booking(BaseModel):
    """What the human is asked for: a form with these fields, answered on the page or by reply."""

    start: date = Field(title="Start date")
    nights: int = Field(ge=1, description="How many nights")
    room: Literal["single", "double"] = "double"
    notes: str | None = None


def test_the_function_runs_with_the_arguments_the_human_approved(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss, ran = address(), []

    @gw.require_approval(boss, editable=["amount", "note"])
    def refund(customer: str, amount: int, **extra: Any) -> str:
        ran.append((customer, amount, extra))
        return f"refunded {amount}"

    result = in_background(lambda: refund("ann@example.com", 40, note="sorry"))
    (mail,) = wait_for_mail(base, boss)
    page = httpx.get(link(mail, "/approve")).text
    assert 'name="kwargs.amount"' in page and 'name="kwargs.customer"' not in page
    assert (
        click(
            link(mail, "/approve"), decision="approve", **{"kwargs.amount": "30", "kwargs.note": "Sorry!"}
        ).status_code
        == 303
    )
    told = result.result(10)
    assert ran == [("ann@example.com", 30, {"note": "Sorry!"})]
    assert told.startswith('refunded 30\n\nThe human changed amount from 40 to 30, note from "sorry" to "Sorry!"')


def test_ask_with_a_response_model_returns_the_model(dev_gateway: Dev, gw: Gateway) -> None:
    base, _ = dev_gateway
    boss = address()
    handle = gw.ask("Book the offsite?", boss, response_model=Booking)
    (mail,) = wait_for_mail(base, boss)
    assert click(link(mail, "/answer"), start="2027-05-03", nights="2", room="single").status_code == 303
    booking = handle.wait(timeout=10)
    assert booking == Booking(start=date(2027, 5, 3), nights=2, room="single")
    assert handle.question.response_data == {"start": "2027-05-03", "nights": 2, "room": "single"}

    # The same by reply: Name: value lines, written in the dev mailbox as a mail client would send them.
    by_mail = gw.ask("And the spring offsite?", third := address(), response_model=Booking)
    (mail,) = wait_for_mail(base, third)
    replied = httpx.post(
        f"{base}/dev/messages/{mail['id']}/reply", data={"text": "Start date: 2027-04-12\nnights: 3\n\nThanks!"}
    )
    assert replied.status_code == 303
    assert by_mail.wait(timeout=10) == Booking(start=date(2027, 4, 12), nights=3)

    ask_booking = gw.human_as_tool(other := address(), response_model=Booking)
    answer = in_background(lambda: ask_booking("Which dates?"))
    (mail,) = wait_for_mail(base, other)
    assert click(link(mail, "/answer"), start="2027-06-01", nights="0").status_code == 422  # refused per field
    assert click(link(mail, "/answer"), start="2027-06-01", nights="1", notes="Near the station").status_code == 303
    assert answer.result(10) == Booking(start=date(2027, 6, 1), nights=1, notes="Near the station")


def test_a_response_model_a_form_cannot_ask_for_fails_at_the_call(gw: Gateway) -> None:
    class Nested(BaseModel):
        booking: Booking

    with pytest.raises(ResponseModelError, match="booking"):
        gw.ask("?", address(), response_model=Nested)
