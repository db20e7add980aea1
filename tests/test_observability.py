"""/healthz and /metrics on a live gateway: counts that follow what happened, and a stuck outbox called out."""

from __future__ import annotations

import asyncio
import json
import logging
import re

from gateway.cli import JsonFormatter
from tests.conftest import Live, SmtpSink, free_port, make_settings, run_gateway


def _value(text: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{inner}}}" if labels else name) + r" ([0-9.]+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


async def test_metrics_follow_requests_and_outbox(live: Live) -> None:
    first = await live.approval()
    await live.approval(fn="other")
    await live.client.post(f"/v1/approvals/{first['id']}/cancel")
    assert live.sink is not None
    await live.sink.wait_for(3)
    for _ in range(100):
        text = (await live.client.get("/metrics")).text
        if _value(text, "gateway_outbox_pending", channel="mail") == 0:
            break
        await asyncio.sleep(0.05)
    assert "# TYPE gateway_requests gauge" in text
    assert _value(text, "gateway_requests", kind="approval", status="pending") == 1
    assert _value(text, "gateway_requests", kind="approval", status="cancelled") == 1
    assert _value(text, "gateway_outbox_pending", channel="mail") == 0
    assert _value(text, "gateway_waiters") == 0
    health = (await live.client.get("/healthz")).json()
    assert health["status"] == "ok" and health["outbox"]["mail"]["stuck"] is False


async def test_a_stuck_outbox_makes_health_degraded(database_url: str, smtp_sink: SmtpSink) -> None:
    smtp_sink.stop()
    port = free_port()
    settings = make_settings(database_url, port, smtp_sink.port, outbox_stuck_after=0.5, outbox_max_attempts=100)
    async with run_gateway(settings, port) as svc:
        from gateway.keys import create_key

        _, key = await create_key(svc.db, "agent")
        import httpx

        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"fn": "f", "kwargs": {}, "channel": {"email": {"to": ["a@example.com"]}}}
            assert (await client.post("/v1/approvals", json=body)).status_code == 201
            for _ in range(100):
                health = (await client.get("/healthz")).json()
                if "mail outbox stuck" in health.get("problems", []):
                    break
                await asyncio.sleep(0.1)
            assert health["status"] == "degraded" and "mail outbox stuck" in health["problems"]
            # The cause is named: the server cannot be reached (the mail is held, not failed).
            held = [p for p in health["problems"] if p.startswith("mail held: cannot connect to the SMTP server")]
            assert len(held) == 1, health["problems"]
            assert (await client.get("/healthz")).status_code == 200  # the replica still serves
            metrics = (await client.get("/metrics")).text
            assert _value(metrics, "gateway_outbox_pending", channel="mail") == 1
            assert _value(metrics, "gateway_outbox_oldest_pending_seconds", channel="mail") > 0.5


def test_json_log_lines() -> None:
    record = logging.LogRecord("gateway.outbox", logging.WARNING, __file__, 1, "mail %s failed", ("m1",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "gateway.outbox"
    assert entry["message"] == "mail m1 failed" and entry["ts"].endswith("+00:00")
