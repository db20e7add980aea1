"""The `gateway` command as a user runs it: real processes, real ports, SIGKILL."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import SmtpSink, free_port, links_in
from tests.processes import DEV_KEY, clean_env, gateway_process, stop, wait_healthy
from tests.test_links_routes import csrf_from, form_url


def test_gateway_dev_walkthrough(dev_gateway: tuple[str, subprocess.Popen[str]]) -> None:
    """The README's quickstart: submit with the printed key, open the mail, approve, see it approved."""
    base, _proc = dev_gateway
    auth = {"Authorization": f"Bearer {DEV_KEY}"}
    created = httpx.post(
        f"{base}/v1/approvals",
        headers=auth,
        json={"fn": "send_email", "kwargs": {"to": "x@example.com"}, "channel": {"email": {"to": ["me@example.com"]}}},
    )
    assert created.status_code == 201, created.text
    approval_id = created.json()["id"]

    listed = _first_mail(base)
    assert len(httpx.get(f"{base}/dev/messages").json()) == 1
    assert listed["to"] == ["me@example.com"]
    assert listed["subject"].startswith("Approval needed: send_email")
    raw = httpx.get(f"{base}/dev/messages/{listed['id']}.eml")
    assert raw.headers["content-type"].startswith("message/rfc822")
    import email
    import email.policy

    msg = email.message_from_bytes(raw.content, policy=email.policy.default)
    approve = next(link for link in links_in(msg) if link.endswith("/approve"))  # type: ignore[arg-type]
    assert approve in listed["links"]
    mailbox = httpx.get(f"{base}/dev/mailbox")
    assert mailbox.status_code == 200 and approve.replace("&", "&amp;") in mailbox.text

    with httpx.Client() as browser:
        page = browser.get(approve)
        posted = browser.post(form_url(approve), data={"csrf_token": csrf_from(page.text), "decision": "approve"})
    assert posted.status_code == 303
    final = httpx.get(f"{base}/v1/approvals/{approval_id}", headers=auth).json()
    assert final["status"] == "approved" and final["decided_via"] == "link"
    assert httpx.get(f"{base}/dev/messages/nope.eml").status_code == 404


def test_gateway_dev_prints_url_and_key(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "dev", "--port", str(port), "--db", str(tmp_path / "d.sqlite3")],
        env=clean_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "API key:" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output
        key = re.search(r"API key:\s+(gw_\S+)", output)
        assert key, output
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/approvals/x", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert response.status_code == 404  # authenticated, just no such approval
    finally:
        stop(proc)


def test_keys_create_and_migrate(tmp_path: Path) -> None:
    env = clean_env(GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/k.sqlite3")
    migrated = subprocess.run([sys.executable, "-m", "gateway", "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout
    created = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "my-agent"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(r"gw_[a-z2-7]{8}_[A-Za-z0-9_\-]{40,}\n", created.stdout)
    assert "shown only this once" in created.stderr


def test_killed_between_commit_and_send_loses_nothing(tmp_path: Path) -> None:
    sink = SmtpSink()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/prod.sqlite3",
        GATEWAY_PUBLIC_URL=base,
        GATEWAY_SECRET_KEYS="crash-test-secret-0123456789",
        GATEWAY_FROM_ADDRESS="gw@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
        GATEWAY_SMTP_PORT=str(sink.port),
        GATEWAY_SMTP_SECURITY="none",
    )
    key = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "agent"], env=env, capture_output=True, text=True
    ).stdout.strip()
    # HTTP only: the request and its mail are committed, and nothing sends it.
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-workers"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_healthy(base, server)
        created = httpx.post(
            f"{base}/v1/approvals",
            headers={"Authorization": f"Bearer {key}"},
            json={"fn": "wire_money", "kwargs": {"amount": 10}, "channel": {"email": {"to": ["cfo@example.com"]}}},
        )
        assert created.status_code == 201
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()

    sink.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.received, "the worker sent nothing"
    finally:
        stop(worker)  # a clean stop: whatever it was sending is finished and recorded by now
        sink.stop()
    assert len(sink.received) == 1  # once: no sender runs any more, so this count is final
    rcpts, raw = sink.received[0]
    assert rcpts == ["cfo@example.com"] and b"wire_money" in raw


def _first_mail(base: str) -> dict:
    for _ in range(100):
        messages = httpx.get(f"{base}/dev/messages").json()
        if messages:
            return messages[0]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("no mail captured")


def test_dev_inbound_and_reply_form(dev_gateway: tuple[str, subprocess.Popen[str]]) -> None:
    import email
    import email.policy

    from tests import mailclients

    base, _ = dev_gateway
    auth = {"Authorization": f"Bearer {DEV_KEY}"}
    first = httpx.post(
        f"{base}/v1/approvals",
        headers=auth,
        json={"fn": "post_tweet", "kwargs": {"text": "hi"}, "channel": {"email": {"to": ["me@example.com"]}}},
    ).json()
    listed = _first_mail(base)
    raw = httpx.get(f"{base}/dev/messages/{listed['id']}.eml").content
    original = email.message_from_bytes(raw, policy=email.policy.default)
    fed = httpx.post(f"{base}/dev/inbound", content=mailclients.outlook(original, "No, too casual."))  # type: ignore[arg-type]
    assert fed.json() == {"outcome": "decided", "reason": None, "request_id": first["id"]}
    assert httpx.get(f"{base}/v1/approvals/{first['id']}", headers=auth).json()["comment"] == "No, too casual."
    bad = httpx.post(f"{base}/dev/inbound", content=b"")
    assert bad.status_code == 422

    second = httpx.post(
        f"{base}/v1/approvals",
        headers=auth,
        json={"fn": "post_tweet", "kwargs": {"text": "hello"}, "channel": {"email": {"to": ["you@example.com"]}}},
    ).json()
    for _ in range(100):
        mails = [m for m in httpx.get(f"{base}/dev/messages").json() if m["to"] == ["you@example.com"]]
        if mails:
            break
        time.sleep(0.05)
    form = httpx.post(f"{base}/dev/messages/{mails[0]['id']}/reply", data={"text": "lgtm"}, follow_redirects=True)
    assert form.status_code == 200 and ": decided" in form.text and '<p class="prose">lgtm</p>' in form.text
    body = httpx.get(f"{base}/v1/approvals/{second['id']}", headers=auth).json()
    assert body["status"] == "approved" and body["decided_via"] == "reply"

    # The reply written on the page is kept, downloadable, and reads back the same with gateway parse-reply.
    eml = re.search(r'href="(/dev/replies/rpl_[a-z2-7]+\.eml)"', form.text).group(1)  # type: ignore[union-attr]
    saved = httpx.get(f"{base}{eml}")
    assert saved.status_code == 200 and b"In-Reply-To:" in saved.content
    path = Path(__file__).parent / ".." / "_dev_reply.eml"
    try:
        path.write_bytes(saved.content)
        parsed = subprocess.run(
            [sys.executable, "-m", "gateway", "parse-reply", str(path)], capture_output=True, text=True, timeout=60
        )
    finally:
        path.unlink(missing_ok=True)
    assert parsed.returncode == 0 and "lgtm" in parsed.stdout and "approve" in parsed.stdout

    # The mail as the recipient sees it (HTML, sandboxed), the text on a toggle, no empty headers.
    page = httpx.get(f"{base}/dev/mailbox").text
    assert '<iframe class="mail"' in page and 'sandbox="allow-popups' in page and "srcdoc=" in page
    assert '<summary class="muted">Text part</summary>' in page and "Reply-To ·" not in page
    httpx.post(
        f"{base}/v1/questions",
        headers=auth,
        json={"message": "Which day?", "channel": {"email": {"to": ["q@example.com"]}}},
    )
    for _ in range(100):
        if 'placeholder="your answer' in (page := httpx.get(f"{base}/dev/mailbox").text):
            break
        time.sleep(0.05)
    assert 'placeholder="your answer, in your own words"' in page  # a question's reply box suggests an answer

    # Hundreds of mails stay usable: a page at a time.
    for n in range(20):
        body = {"fn": f"step_{n}", "channel": {"email": {"to": ["many@example.com"]}}}
        httpx.post(f"{base}/v1/approvals", headers=auth, json=body)
    for _ in range(200):
        if len(httpx.get(f"{base}/dev/messages").json()) >= 24:
            break
        time.sleep(0.05)
    first_page = httpx.get(f"{base}/dev/mailbox").text
    assert "Page 1 of 2" in first_page and first_page.count('class="card message"') == 20
    assert 'href="/dev/mailbox?page=2">Older' in first_page
    assert 'href="/dev/mailbox?page=1">Newer' in httpx.get(f"{base}/dev/mailbox?page=2").text


def test_parse_reply_command(tmp_path: Path) -> None:
    eml = tmp_path / "reply.eml"
    eml.write_bytes(
        b"From: a@example.com\r\nSubject: Re: x\r\n\r\nYes, ship it.\r\n\r\n"
        b"On Mon, 2 Apr 2012, Bot <b@x.com> wrote:\r\n> Approve?\r\n"
    )
    result = subprocess.run([sys.executable, "-m", "gateway", "parse-reply", str(eml)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "automated: no" in result.stdout
    assert "decision:  approve" in result.stdout
    assert result.stdout.rstrip().endswith("Yes, ship it.")
    assert "forwarded" not in result.stdout
    forward = tmp_path / "forward.eml"
    forward.write_bytes(
        b"From: a@example.com\r\nSubject: Re: x\r\n\r\nNo.\r\n\r\n---------- Forwarded message ---------\r\n"
        b"From: c@example.org\r\n\r\nYes!\r\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "parse-reply", str(forward)], capture_output=True, text=True
    )
    assert "forwarded: yes" in result.stdout and "decision:  reject" in result.stdout
    assert result.stdout.rstrip().endswith("No.")
    ooo = tmp_path / "ooo.eml"
    ooo.write_bytes(b"From: a@example.com\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "parse-reply", str(ooo)], capture_output=True, text=True)
    assert "automated: auto_reply" in result.stdout and "never decides" in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "parse-reply", str(tmp_path / "nope.eml")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# --- refusals: one line, exit 2, nothing created ----------------------------------------------------------


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=clean_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    for args in (["requests", "list"], ["audit", "verify"], ["keys", "list"], ["outbox", "list"]):
        _one_line_refusal(_cli(*args, cwd=tmp_path), "no database at", "gateway.sqlite3")
    _one_line_refusal(_cli("requests", "list", "--db", str(tmp_path / "elsewhere.db"), cwd=tmp_path), "elsewhere.db")
    assert list(tmp_path.iterdir()) == []


def test_commands_in_the_dev_folder_read_the_dev_database(tmp_path: Path) -> None:
    port = free_port()
    dev = subprocess.Popen(
        [sys.executable, "-m", "gateway", "dev", "--port", str(port)],
        env=clean_env(GATEWAY_DEV_API_KEY="my-team-dev-key"),  # any key without spaces
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, dev)
        created = httpx.post(
            f"{base}/v1/approvals",
            headers={"Authorization": "Bearer my-team-dev-key"},
            json={"fn": "ship_it", "kwargs": {}, "channel": {"email": {"to": ["me@example.com"]}}},
        )
        assert created.status_code == 201, created.text
        listed = _cli("requests", "list", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert created.json()["id"] in listed.stdout and "Traceback" not in listed.stderr
        assert "gateway-dev.sqlite3" in listed.stderr  # it says which database it read
        verified = _cli("audit", "verify", cwd=tmp_path)
        assert verified.returncode == 0 and "intact" in verified.stdout
        bot = _cli("keys", "create", "chat-bot", "--responder", cwd=tmp_path)
        assert bot.returncode == 0 and "responder key 'chat-bot' created" in bot.stderr
        keys = _cli("keys", "list", cwd=tmp_path)
        assert keys.returncode == 0 and "dev" in keys.stdout and "gateway-dev.sqlite3" in keys.stderr
        assert any(line.startswith("chat-bot") and " responder " in line for line in keys.stdout.splitlines())
        asks = httpx.post(
            f"{base}/v1/approvals",
            headers={"Authorization": f"Bearer {bot.stdout.strip()}"},
            json={"fn": "ship_it", "kwargs": {}, "channel": {"email": {"to": ["me@example.com"]}}},
        )
        assert asks.status_code == 403, asks.text  # a responder key answers; it never asks
        busy = _cli("dev", "--port", str(port), cwd=tmp_path)  # the same port again
        _one_line_refusal(busy, f"127.0.0.1:{port}", "in use")
        assert "is running" not in busy.stdout and "API key" not in busy.stdout
    finally:
        stop(dev)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite3") == ["gateway-dev.sqlite3"]


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/gateway"
    for args in (["keys", "list"], ["keys", "create", "x"], ["migrate"], ["requests", "list"]):
        _one_line_refusal(_cli(*args, cwd=tmp_path, GATEWAY_DATABASE_URL=nowhere), "cannot use the database")
    serve = _cli(
        "serve",
        "--port",
        str(free_port()),
        cwd=tmp_path,
        GATEWAY_DATABASE_URL=nowhere,
        GATEWAY_SECRET_KEYS="s" * 20,
        GATEWAY_PUBLIC_URL="http://127.0.0.1:1",
        GATEWAY_FROM_ADDRESS="gw@example.test",
        GATEWAY_SMTP_HOST="127.0.0.1",
    )
    _one_line_refusal(serve, "cannot use the database", "127.0.0.1")


def test_a_refused_dev_key_is_one_line(tmp_path: Path) -> None:
    _one_line_refusal(
        _cli("dev", "--port", str(free_port()), cwd=tmp_path, GATEWAY_DEV_API_KEY="\x01bad"), "GATEWAY_DEV_API_KEY"
    )


def test_keys_revoked_from_the_command_line_stop_working_on_a_running_gateway(tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite3"
    created = _cli("keys", "create", "doomed", "--db", str(db), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    env = clean_env(GATEWAY_DEV_API_KEY=DEV_KEY)
    with gateway_process(tmp_path, ["dev", "--port", str(port), "--db", str(db)], port, env) as (base, _):
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/approvals", headers=auth).status_code == 200
        revoked = _cli("keys", "revoke", "doomed", "--db", str(db), cwd=tmp_path)
        assert revoked.returncode == 0 and "revoked doomed" in revoked.stdout, revoked.stderr
        started = time.monotonic()
        while httpx.get(f"{base}/v1/approvals", headers=auth).status_code != 401:
            assert time.monotonic() - started < 1.0, "the revoked key still works after a second"
        listed = _cli("keys", "list", "--db", str(db), cwd=tmp_path).stdout
        doomed = next(line for line in listed.splitlines() if line.startswith("doomed"))
        assert doomed.split()[-1] != "-"  # its revoked column is filled in
    _one_line_refusal(_cli("keys", "revoke", "nobody", "--db", str(db), cwd=tmp_path), "nobody")


def test_log_lines_carry_a_timestamp_and_the_banner_follows_the_json_format(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(GATEWAY_DEV_API_KEY=DEV_KEY, GATEWAY_LOG_FORMAT="json")
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "j.sqlite3")]
    with gateway_process(tmp_path, args, port, env, "json.log"):
        pass
    lines = [line for line in (tmp_path / "json.log").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, the banner included
    assert any("gateway dev is running at" in r["message"] and DEV_KEY in r["message"] for r in records)
    assert all(r["ts"] for r in records)
    from gateway.cli import _logging

    assert "%(asctime)s" in _log_format(_logging)


def _log_format(setup: Any) -> str:
    import logging

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        setup()
        return str(root.handlers[0].formatter._fmt)  # type: ignore[union-attr]
    finally:
        root.handlers = saved


def test_a_schema_from_a_newer_gateway_is_one_line(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "newer.sqlite3"
    assert _cli("migrate", "--db", str(db), cwd=tmp_path).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    _one_line_refusal(_cli("migrate", "--db", str(db), cwd=tmp_path), "9999", "newer")
    _one_line_refusal(_cli("keys", "create", "x", "--db", str(db), cwd=tmp_path), "9999")


def test_behind_a_proxy_the_audit_logs_the_persons_address_only_when_told_to(tmp_path: Path) -> None:
    """GATEWAY_FORWARDED_ALLOW_IPS names the proxies whose X-Forwarded-For counts; by default none does."""
    from tests.processes import dev_process

    def opened_from(env: dict[str, str], folder: Path) -> str:
        folder.mkdir()
        with dev_process(folder, **env) as (base, _):
            headers = {"Authorization": f"Bearer {DEV_KEY}"}
            body = {"fn": "f", "channel": {"email": {"to": ["a@example.com"]}}}
            approval = httpx.post(f"{base}/v1/approvals", json=body, headers=headers).json()
            for _ in range(100):
                mails = httpx.get(f"{base}/dev/messages").json()
                if mails:
                    break
                time.sleep(0.05)
            link = next(u for u in mails[0]["links"] if u.endswith("/approve"))
            httpx.get(link, headers={"X-Forwarded-For": "203.0.113.7"})
            events = httpx.get(f"{base}/v1/approvals/{approval['id']}/events", headers=headers).json()
            return str(next(e for e in events if e["type"] == "link_opened")["data"]["ip"])

    assert opened_from({}, tmp_path / "a") == "127.0.0.1"  # a forged header is not believed
    assert opened_from({"GATEWAY_FORWARDED_ALLOW_IPS": "127.0.0.1"}, tmp_path / "b") == "203.0.113.7"
