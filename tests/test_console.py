"""`gateway requests list` and `gateway requests show`: the operator's tables, read from the database."""

from __future__ import annotations

import asyncio

from gateway.approvals.console import cell, table
from tests.conftest import Live
from tests.processes import gateway_cli


def test_cells_are_one_printable_line() -> None:
    assert cell("a\nb\x1b[31mred") == "a b?[31mred"
    assert cell("x" * 50, 10) == "x" * 9 + "…"
    assert cell(None) == "-"
    assert table(["a", "bb"], [["long value", "x"]]).splitlines() == ["A           BB", "long value  x"]


async def test_list_and_show(live: Live) -> None:
    url = str(live.services.db.url).replace("+aiosqlite", "").replace("+asyncpg", "")
    pending = await live.approval(fn="wire_money", kwargs={"amount": 1200}, run_id="run-7")
    cancelled = await live.approval(fn="delete_repo", channel={"email": {"to": ["bob@example.com"]}})
    await live.client.post(f"/v1/approvals/{cancelled['id']}/cancel")

    listed = await asyncio.to_thread(gateway_cli, url, "requests", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "AGENT"]
    assert lines[1].startswith(cancelled["id"]) and "cancelled" in lines[1] and "test-agent" in lines[1]
    assert lines[2].startswith(pending["id"]) and "wire_money" in lines[2] and "alice@example.com" in lines[2]

    only = await asyncio.to_thread(gateway_cli, url, "requests", "list", "--status", "pending", "--run", "run-7")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == [pending["id"]]
    by_recipient = await asyncio.to_thread(gateway_cli, url, "requests", "list", "--recipient", "bob@example.com")
    assert [line.split()[0] for line in by_recipient.stdout.splitlines()[1:]] == [cancelled["id"]]
    paged = await asyncio.to_thread(gateway_cli, url, "requests", "list", "--limit", "1")
    assert f"(more: --before {cancelled['id']})" in paged.stdout

    shown = await asyncio.to_thread(gateway_cli, url, "requests", "show", cancelled["id"])
    assert shown.returncode == 0, shown.stderr
    assert "delete_repo" in shown.stdout and "cancelled" in shown.stdout
    assert "bob@example.com" in shown.stdout
    trail = shown.stdout.split("\n\n")[-1].splitlines()
    assert trail[0].startswith("#") and "EVENT" in trail[0]
    events = [line.split()[3] for line in trail[1:]]  # seq, date, time, event
    assert events[0] == "created" and "cancelled" in events

    missing = await asyncio.to_thread(gateway_cli, url, "requests", "show", "apr_nothing")
    assert missing.returncode == 1 and "no request apr_nothing" in missing.stderr
