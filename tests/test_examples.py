"""examples/linkedin_inbox.py runs against a real `gateway dev`, with its scripted model and a human answering."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.processes import DEV_KEY, clean_env, click, link, mails_to, wait_for_mail

ROOT = Path(__file__).resolve().parent.parent


def test_linkedin_inbox_example(dev_gateway: tuple[str, subprocess.Popen[str]]) -> None:
    base, _ = dev_gateway
    human = "me@example.com"
    agent = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "linkedin_inbox.py"), human],
        env=clean_env(GATEWAY_URL=base, GATEWAY_API_KEY=DEV_KEY),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = update(base, human, "Starting on your LinkedIn inbox: 3 threads")
        # Thread 1: answer the question, approve the drafted message.
        question = wait_for_mail(base, human, 1)[0]
        assert "Dana Reyes" in httpx.get(f"{base}/dev/messages/{question['id']}.eml").text
        click(link(question, "/answer"), response="thanks, happy to talk on Tuesday.")
        approval = wait_for_mail(base, human, 2)[0]
        assert approval["subject"].startswith("LinkedIn: OK to send this message?")
        click(link(approval, "/approve"), decision="approve")
        # Mid-run, the human steers the agent by replying to its first update.
        steer = httpx.post(f"{base}/dev/messages/{start['id']}/reply", data={"text": "Stop, don't write to Terri."})
        assert steer.status_code in (200, 303)
        # Thread 2: answer, then reject the draft with feedback; the agent does not send it.
        click(link(wait_for_mail(base, human, 3)[0], "/answer"), response="yes, Thursday 10am works.")
        click(link(wait_for_mail(base, human, 4)[0], "/reject"), decision="reject", comment="Too curt, add a hello.")
        out, err = agent.communicate(timeout=30)
    finally:
        agent.kill()
    assert agent.returncode == 0, err
    assert "[t-101] human says: thanks, happy to talk on Tuesday." in out
    assert "[t-101] sent to t-101" in out
    assert "[t-102] User denied send_linkedin_message with message: Too curt, add a hello." in out
    assert "message from me@example.com: Stop, don't write to Terri." in out
    assert "[t-103] skipped: the human said so" in out
    assert len(mails_to(base, human)) == 4  # nothing asked, nothing drafted for Terri
    done = update(base, human, "Done: 1 sent, 1 not sent, 1 skipped.")
    assert done["subject"].startswith("Re: Update: Done")  # in the run's thread
    assert out.strip().endswith("messages sent: 1")


def update(base: str, address: str, text: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in mails_to(base, address, requests_only=False):
            if f"Update: {text}" in mail["subject"]:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no update saying {text!r}")
