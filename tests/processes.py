"""Gateway processes for tests that need a real one: `gateway dev` on a free port, started and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

DEV_KEY = "gw_testdev1_0123456789abcdefghijklmnop"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def wait_healthy(base: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("gateway did not become healthy")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def dev_process(tmp_path: Path, port: int | None = None, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`gateway dev` with the test key (and ``env``); the same ``tmp_path`` and ``port`` restart the same gateway."""
    port = port or free_port()
    args = ["dev", "--port", str(port), "--db", str(tmp_path / "dev.sqlite3")]
    with gateway_process(tmp_path, args, port, clean_env(GATEWAY_DEV_API_KEY=DEV_KEY, **env)) as running:
        yield running


@contextmanager
def gateway_process(
    tmp_path: Path, args: list[str], port: int, env: dict[str, str], log_name: str = "gateway.log"
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`gateway ARGS` serving on ``port``, healthy before it is handed out, stopped after."""
    # Output to a file, not a pipe nobody reads: a full pipe would stall the gateway mid-test.
    with open(tmp_path / log_name, "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        yield base, proc
    finally:
        stop(proc)


def gateway_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One `gateway ARGS` command against ``database_url``, with none of this environment's GATEWAY_ settings."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=clean_env(GATEWAY_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def mails_to(base: str, address: str, requests_only: bool = True) -> list[dict[str, Any]]:
    """Mail to ``address``, newest first; by default only request mails (with links, not a reply in a thread:
    confirmations, notices and reminders are left out)."""
    mails = [m for m in httpx.get(f"{base}/dev/messages").json() if address in m["to"]]
    if requests_only:
        mails = [m for m in mails if m["links"] and not m["subject"].startswith("Re:")]
    return mails


def wait_for_mail(base: str, address: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mails_to(base, address)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} mail(s) to {address}, got {len(mails_to(base, address))}")


def link(mail: dict[str, Any], ending: str) -> str:
    return next(url for url in mail["links"] if url.endswith(ending))


def click(url: str, **fields: str) -> httpx.Response:
    """What a human does: open the link's page, then submit its form (with the page's CSRF field)."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, "no CSRF field on the page"
        form = re.sub(r"/(approve|reject|answer|option/[^/]+)$", "", url)
        return browser.post(form, data={"csrf_token": match.group(1), **fields})
