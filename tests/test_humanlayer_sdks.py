"""HumanLayer's own SDKs, unmodified, from the registries (PyPI `humanlayer`, npm `@humanlayer/sdk`), each in its
own environment, against a real `gateway dev` process, with a human acting through the link pages and by reply.

The SDKs poll every 3 seconds, so the scenarios run side by side: every agent starts at once, a thread plays
each human, and every outcome is checked at the end (all failures reported together).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import DEV_KEY, clean_env, click, dev_process, gateway_process, link, wait_for_mail

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
PY_SDK = "humanlayer==0.7.9"
TS_SDK = "@humanlayer/sdk@0.7.9"


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """One test process at a time builds a cached environment (pytest-xdist runs several)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A virtualenv of its own with HumanLayer's Python SDK from PyPI (made once, kept in .cache/)."""
    venv = CACHE / "humanlayer-py-0.7.9"
    python = venv / "bin" / "python"
    with cache_lock("humanlayer-py"):
        if not python.exists() or subprocess.run([python, "-c", "import humanlayer"], capture_output=True).returncode:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", PY_SDK], check=True)
    return python


@pytest.fixture(scope="session")
def sdk_node() -> Path:
    """HumanLayer's TypeScript SDK from npm (`.ci/run` installs it; installed here when missing), for Node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed for the TypeScript SDK (apt-get install nodejs npm)")
    prefix = CACHE / "humanlayer-ts-0.7.9"
    with cache_lock("humanlayer-ts"):
        if not (prefix / "node_modules" / "@humanlayer" / "sdk" / "package.json").exists():
            prefix.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", TS_SDK], check=True
            )
    return prefix / "node_modules"


@dataclass
class Scenario:
    name: str
    command: list[str]
    env: dict[str, str]
    human: Callable[[], None] | None
    check: Callable[[dict[str, Any]], None]
    process: subprocess.Popen[str] | None = None
    errors: list[str] = field(default_factory=list)


def run_all(scenarios: list[Scenario], timeout: float = 90) -> None:
    for s in scenarios:
        s.process = subprocess.Popen(s.command, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def act(s: Scenario) -> None:
        try:
            if s.human is not None:
                s.human()
        except Exception as exc:  # reported with the scenario's other failures
            s.errors.append(f"human: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=act, args=(s,)) for s in scenarios]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    for s in scenarios:
        assert s.process is not None
        try:
            out, err = s.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            s.process.kill()
            out, err = s.process.communicate()
            s.errors.append("the agent never finished")
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if not lines:
            s.errors.append(f"no result; stdout={out[-500:]!r} stderr={err[-1500:]!r}")
            continue
        try:
            s.check(json.loads(lines[-1]))
        except AssertionError as exc:
            s.errors.append(f"{exc} (result {lines[-1][:400]})")
    failed = [f"{s.name}: {'; '.join(s.errors)}" for s in scenarios if s.errors]
    assert not failed, "\n".join(failed)


def reply(base: str, address: str, text: str) -> None:
    """What a human does in their mail client: answer the request mail (through the dev mailbox's reply form)."""
    (mail,) = wait_for_mail(base, address)[:1]
    response = httpx.post(
        f"{base}/dev/messages/{mail['id']}/reply", data={"text": text}, timeout=10, follow_redirects=True
    )
    assert response.status_code == 200 and ": decided" in response.text, response.text[-500:]


def approve(base: str, address: str, comment: str = "") -> None:
    mail = wait_for_mail(base, address)[0]
    assert click(link(mail, "/approve"), decision="approve", comment=comment).status_code == 303


def choose(base: str, address: str, option: str) -> None:
    mail = wait_for_mail(base, address)[0]
    assert click(link(mail, f"/option/{option}"), option=option).status_code == 303


def py(python: Path, tmp: Path, name: str, body: str, **env: str) -> tuple[list[str], dict[str, str]]:
    script = tmp / (re.sub(r"\W+", "_", name) + ".py")
    script.write_text(
        "import asyncio, json, sys, time\n"
        "from humanlayer import *\n"
        "from humanlayer.core.models import EmailRecipient, Escalation, FunctionCallStatus\n"
        "def out(**kw): print(json.dumps(kw), flush=True)\n" + textwrap.dedent(body)
    )
    return [str(python), str(script)], env


def node(modules: Path, tmp: Path, name: str, body: str) -> list[str]:
    script = tmp / f"{name}.cjs"
    script.write_text(
        "const { humanlayer } = require('@humanlayer/sdk')\n"
        "const out = o => console.log(JSON.stringify(o))\n"
        f"async function main() {{\n{textwrap.dedent(body)}\n}}\n"
        "main().catch(e => out({ thrown: String(e) }))\n"
    )
    return ["node", str(script)]


def sdk_env(base: str, key: str = DEV_KEY, **extra: str) -> dict[str, str]:
    return clean_env(
        HUMANLAYER_API_BASE=f"{base}/humanlayer/v1",
        HUMANLAYER_API_KEY=key,
        NODE_PATH=extra.pop("NODE_PATH", ""),
        PYTHONUNBUFFERED="1",
        **extra,
    )


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[str]:
    with dev_process(tmp_path) as (base, _):
        yield base


def responder_key(tmp_path: Path) -> str:
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "keys",
            "create",
            "chat-bot",
            "--responder",
            "--db",
            str(tmp_path / "dev.sqlite3"),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


def test_the_python_sdk_unchanged(sdk_python: Path, dev: str, tmp_path: Path) -> None:
    base = dev
    bot = responder_key(tmp_path)

    def channel(address: str) -> str:
        return f'ContactChannel(email=EmailContactChannel(address="{address}", context_about_user="the CFO"))'

    def scenario(
        name: str,
        body: str,
        human: Callable[[], None] | None,
        check: Callable[[dict[str, Any]], None],
        key: str = DEV_KEY,
    ) -> Scenario:
        command, _ = py(sdk_python, tmp_path, name, body)
        return Scenario(name, command, sdk_env(base, key), human, check)

    def expect(**wanted: Any) -> Callable[[dict[str, Any]], None]:
        def check(result: dict[str, Any]) -> None:
            assert result == wanted, f"expected {wanted}"

        return check

    scenarios = [
        scenario(
            "require_approval, approved by link: the function runs",
            f"""
            hl = HumanLayer(verbose=True)
            @hl.require_approval({channel("p-approve@example.com")})
            def send_email(to: str, body: str) -> str:
                return f"sent to {{to}}"
            out(result=send_email(to="bob@example.com", body="Q3 numbers attached"))
            """,
            lambda: approve(base, "p-approve@example.com"),
            expect(result="sent to bob@example.com"),
        ),
        scenario(
            "require_approval, rejected by reply: the LLM gets the feedback",
            f"""
            hl = HumanLayer()
            @hl.require_approval({channel("p-reject@example.com")})
            def send_email(to: str, body: str) -> str:
                return "sent"
            out(result=send_email(to="bob@example.com", body="Buy now!!!"))
            """,
            lambda: reply(base, "p-reject@example.com", "Too pushy, soften the tone first."),
            expect(result="User denied send_email with message: Too pushy, soften the tone first."),
        ),
        scenario(
            "human_as_tool with response options, answered by link",
            f"""
            hl = HumanLayer()
            tool = hl.human_as_tool({channel("p-options@example.com")}, response_options=[
                ResponseOption(name="tue", title="Tuesday"), ResponseOption(name="wed", title="Wednesday")])
            out(name=tool.__name__, answer=tool(message="Which day suits the review?", subject="Review day"))
            """,
            lambda: choose(base, "p-options@example.com", "tue"),
            expect(name="contact_human_via_email_p_options_example_com", answer="Tuesday"),
        ),
        scenario(
            "human_as_tool with free text, answered by reply",
            f"""
            hl = HumanLayer()
            tool = hl.human_as_tool({channel("p-text@example.com")})
            out(answer=tool(message="Where should the offsite be?"))
            """,
            lambda: reply(base, "p-text@example.com", "Lisbon, the week of the 14th."),
            expect(answer="Lisbon, the week of the 14th."),
        ),
        scenario(
            "fetch_approval",
            f"""
            hl = HumanLayer()
            done = hl.fetch_approval(FunctionCallSpec(fn="wire_money", kwargs={{"amount": 500}},
                                     channel={channel("p-fetch@example.com")}))
            status = done.as_completed()
            out(approved=status.approved, comment=status.comment, fn=done.call.spec.fn)
            """,
            lambda: approve(base, "p-fetch@example.com", comment="Fine for 500."),
            expect(approved=True, comment="Fine for 500.", fn="wire_money"),
        ),
        scenario(
            "create_function_call twice with one call_id, then get_function_call",
            f"""
            hl = HumanLayer(run_id="run-fixed")
            spec = FunctionCallSpec(fn="delete_user", kwargs={{"id": 7}}, channel={channel("p-create@example.com")})
            first = hl.create_function_call(spec, call_id="p-fixed-call")
            second = hl.create_function_call(spec, call_id="p-fixed-call")
            got = hl.get_function_call("p-fixed-call")
            out(same=first.call_id == second.call_id == got.call_id, pending=got.status.approved is None,
                run_id=got.run_id)
            """,
            None,
            expect(same=True, pending=True, run_id="run-fixed"),
        ),
        scenario(
            "AsyncHumanLayer: require_approval and human_as_tool",
            f"""
            async def main():
                hl = AsyncHumanLayer()
                @hl.require_approval({channel("p-async@example.com")})
                async def restart(service: str) -> str:
                    return f"restarted {{service}}"
                tool = hl.human_as_tool({channel("p-async-ask@example.com")})
                done, answer = await asyncio.gather(restart(service="api"), tool(message="Ship today?"))
                out(result=done, answer=answer)
            asyncio.run(main())
            """,
            lambda: (approve(base, "p-async@example.com"), reply(base, "p-async-ask@example.com", "Yes, after 5pm.")),
            expect(result="restarted api", answer="Yes, after 5pm."),
        ),
        scenario(
            "escalate_email, then a responder key answers; an agent key cannot",
            f"""
            hl = HumanLayer()
            spec = FunctionCallSpec(fn="refund", kwargs={{"order": 42}}, channel={channel("p-esc@example.com")})
            call = hl.create_function_call(spec, call_id="p-esc-call")
            hl.escalate_email_function_call(call.call_id, Escalation(escalation_msg="Still waiting: please decide.",
                additional_recipients=[EmailRecipient(address="p-esc-boss@example.com", field="to")]))
            try:
                hl.respond_to_function_call(call.call_id, FunctionCallStatus(approved=True, comment="self-approved"))
                refused = False
            except Exception as exc:
                refused = "403" in str(exc) and "cannot answer" in str(exc)
            bot = HumanLayer(api_key="{bot}")
            answered = bot.respond_to_function_call(
                call.call_id, FunctionCallStatus(approved=True, comment="OK'd in chat"))
            out(refused=refused, approved=answered.status.approved, comment=answered.status.comment)
            """,
            lambda: wait_for_mail(base, "p-esc-boss@example.com"),
            expect(refused=True, approved=True, comment="OK'd in chat"),
        ),
        scenario(
            "a Slack channel is refused, naming email",
            """
            hl = HumanLayer()
            @hl.require_approval(ContactChannel(slack=SlackContactChannel(channel_or_user_id="C0123")))
            def deploy(env: str) -> str:
                return "deployed"
            out(result=deploy(env="prod"))
            """,
            None,
            lambda r: _contains(
                r["result"], "Error fetching approval for deploy", "slack channel is not served", "email"
            ),
        ),
        scenario(
            "a wrong key is refused",
            f"""
            hl = HumanLayer()
            @hl.require_approval({channel("p-wrong@example.com")})
            def deploy(env: str) -> str:
                return "deployed"
            out(result=deploy(env="prod"))
            """,
            None,
            lambda r: _contains(r["result"], "Error fetching approval for deploy", "401", "not valid"),
            key="gw_not_a_key_at_all",
        ),
    ]
    run_all(scenarios)
    # The same call_id twice: one request, one mail; the escalation reached the boss with the note.
    listed = httpx.get(
        f"{base}/v1/approvals", params={"call_id": "p-fixed-call"}, headers={"Authorization": f"Bearer {DEV_KEY}"}
    )
    assert len(listed.json()["data"]) == 1
    assert len(wait_for_mail(base, "p-create@example.com")) == 1
    assert httpx.get(f"{base}/dev/messages").json()  # the mailbox is there to look at on failure


def _contains(text: str, *parts: str) -> None:
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


def test_the_typescript_sdk_unchanged(sdk_node: Path, dev: str, tmp_path: Path) -> None:
    base = dev
    env = sdk_env(base, NODE_PATH=str(sdk_node))

    def scenario(
        name: str,
        body: str,
        human: Callable[[], None] | None,
        check: Callable[[dict[str, Any]], None],
        key: str = DEV_KEY,
    ) -> Scenario:
        return Scenario(
            name,
            node(sdk_node, tmp_path, re.sub(r"\W+", "_", name), body),
            {**env, "HUMANLAYER_API_KEY": key},
            human,
            check,
        )

    scenarios = [
        scenario(
            "requireApproval, approved by link",
            """
            const hl = humanlayer()
            const send = hl.requireApproval({ email: { address: 't-approve@example.com' } })(
              async function sendEmail(kwargs) { return `sent to ${kwargs.to}` })
            out({ result: await send({ to: 'bob@example.com' }) })
            """,
            lambda: approve(base, "t-approve@example.com"),
            lambda r: _equal(r, {"result": "sent to bob@example.com"}),
        ),
        scenario(
            "requireApproval, rejected by reply",
            """
            const hl = humanlayer()
            const send = hl.requireApproval({ email: { address: 't-reject@example.com' } })(
              async function sendEmail(kwargs) { return 'sent' })
            out({ result: await send({ to: 'bob@example.com' }) })
            """,
            lambda: reply(base, "t-reject@example.com", "Not today: the numbers are wrong."),
            lambda r: _equal(
                r, {"result": "User denied function sendEmail with comment: Not today: the numbers are wrong."}
            ),
        ),
        scenario(
            "humanAsTool, answered by reply",
            """
            const hl = humanlayer()
            const ask = hl.humanAsTool({ email: { address: 't-ask@example.com' } })
            out({ answer: await ask({ message: 'Which room?' }) })
            """,
            lambda: reply(base, "t-ask@example.com", "Room 4."),
            lambda r: _equal(r, {"answer": "Room 4."}),
        ),
        scenario(
            "a Slack channel is refused",
            """
            const hl = humanlayer()
            const deploy = hl.requireApproval({ slack: { channel_or_user_id: 'C0123' } })(
              async function deploy(kwargs) { return 'deployed' })
            out({ result: await deploy({ env: 'prod' }) })
            """,
            None,
            lambda r: _contains(r["thrown"], "422", "slack channel is not served", "email"),
        ),
        scenario(
            "a wrong key is refused",
            """
            const hl = humanlayer()
            const ask = hl.humanAsTool({ email: { address: 't-wrong@example.com' } })
            out({ answer: await ask({ message: 'Which room?' }) })
            """,
            None,
            lambda r: _contains(r["thrown"], "401", "not valid"),
            key="gw_not_a_key_at_all",
        ),
    ]
    run_all(scenarios)


def _equal(result: dict[str, Any], wanted: dict[str, Any]) -> None:
    assert result == wanted, f"expected {wanted}"


def test_an_expired_request_ends_both_sdks_wait(sdk_python: Path, sdk_node: Path, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(GATEWAY_DEV_API_KEY=DEV_KEY, GATEWAY_DEFAULT_EXPIRES_IN="2")
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "dev.sqlite3")]
    with gateway_process(tmp_path, args, port, env) as (base, _):
        command, _ = py(
            sdk_python,
            tmp_path,
            "expiry",
            """
            hl = HumanLayer()
            @hl.require_approval(ContactChannel(email=EmailContactChannel(address="x-py@example.com")))
            def send_email(to: str) -> str:
                return "sent"
            out(result=send_email(to="bob@example.com"))
            """,
        )
        ts = node(
            sdk_node,
            tmp_path,
            "expiry",
            """
            const hl = humanlayer()
            const ask = hl.humanAsTool({ email: { address: 'x-ts@example.com' } })
            out({ answer: await ask({ message: 'Anyone?' }) })
            """,
        )
        run_all(
            [
                Scenario(
                    "python",
                    command,
                    sdk_env(base),
                    None,
                    lambda r: _contains(
                        r["result"], "User denied send_email with message: Not approved: the request expired"
                    ),
                ),
                Scenario(
                    "typescript",
                    ts,
                    sdk_env(base, NODE_PATH=str(sdk_node)),
                    None,
                    lambda r: _contains(r["answer"], "No answer: the request expired"),
                ),
            ]
        )
    assert os.path.exists(tmp_path / "dev.sqlite3")
