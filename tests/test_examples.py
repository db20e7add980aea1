"""examples/linkedin_inbox.py runs against a real `gateway dev`, with its scripted model and a human answering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.processes import DEV_KEY, clean_env, click, link, wait_for_mail

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
        # Thread 1: answer the question, approve the drafted message.
        question = wait_for_mail(base, human, 1)[0]
        assert "Dana Reyes" in httpx.get(f"{base}/dev/messages/{question['id']}.eml").text
        click(link(question, "/answer"), response="thanks, happy to talk on Tuesday.")
        approval = wait_for_mail(base, human, 2)[0]
        assert approval["subject"].startswith("LinkedIn: OK to send this message?")
        click(link(approval, "/approve"), decision="approve")
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
    assert out.strip().endswith("messages sent: 1")
