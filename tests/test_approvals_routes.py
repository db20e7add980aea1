"""The HTTP API as the contract describes it: shapes, idempotency, isolation, waits, errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Live

APPROVAL_KEYS = {
    "id",
    "call_id",
    "run_id",
    "fn",
    "kwargs",
    "status",
    "comment",
    "reject_option",
    "decided_by",
    "decided_via",
    "created_at",
    "decided_at",
    "expires_at",
    "responses",
    "state",
}
QUESTION_KEYS = {
    "id",
    "call_id",
    "run_id",
    "message",
    "status",
    "response",
    "response_option",
    "responded_by",
    "responded_via",
    "created_at",
    "responded_at",
    "expires_at",
    "state",
}


async def test_create_returns_the_contract_shape(live: Live) -> None:
    body = await live.approval(call_id="call-1", run_id="run-7", state={"step": 3}, expires_in=600)
    assert set(body) >= APPROVAL_KEYS
    assert body["status"] == "pending"
    assert body["call_id"] == "call-1" and body["run_id"] == "run-7"
    assert body["state"] == {"step": 3}
    assert body["kwargs"] == {"to": "ceo@example.com", "subject": "Q3 numbers"}
    assert body["expires_at"] is not None and body["decided_at"] is None
    assert body["id"].startswith("apr_")


async def test_question_shape(live: Live) -> None:
    r = await live.client.post(
        "/v1/questions", json={"message": "Go?", "channel": {"email": {"to": ["a@example.com"]}}}
    )
    assert r.status_code == 201
    assert set(r.json()) >= QUESTION_KEYS
    assert r.json()["status"] == "pending"


async def test_idempotent_per_key_and_call_id(live: Live) -> None:
    first = await live.approval(call_id="same")
    again = await live.client.post(
        "/v1/approvals",
        json={
            "fn": "send_email",
            "kwargs": {"to": "ceo@example.com", "subject": "Q3 numbers"},
            "channel": {"email": {"to": ["alice@example.com"]}},
            "call_id": "same",
        },
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    other = await live.client.post(
        "/v1/approvals",
        json={
            "fn": "send_email",
            "kwargs": {"x": 1},
            "channel": {"email": {"to": ["a@example.com"]}},
            "call_id": "same",
        },
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "call_id_conflict"
    # Only one mail went out for the repeated submission.
    await live.sink.wait_for(1)  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert len(live.sink.received) == 1  # type: ignore[union-attr]


async def test_concurrent_duplicate_submissions_create_one(live: Live) -> None:
    body = {"fn": "pay", "kwargs": {"amount": 5}, "channel": {"email": {"to": ["a@example.com"]}}, "call_id": "race"}
    results = await asyncio.gather(*(live.client.post("/v1/approvals", json=body) for _ in range(8)))
    assert sorted(r.status_code for r in results) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in results}) == 1


async def test_same_call_id_under_another_key_is_separate(live: Live) -> None:
    first = await live.approval(call_id="shared")
    other_key = await live.new_key()
    async with httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        created = await other.post(
            "/v1/approvals",
            json={"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "call_id": "shared"},
        )
        assert created.status_code == 201
        assert created.json()["id"] != first["id"]
        # And the first key's request is invisible to the second.
        for path in (f"/v1/approvals/{first['id']}", f"/v1/approvals/{first['id']}/events"):
            hidden = await other.get(path)
            assert hidden.status_code == 404
            assert hidden.json()["error"]["code"] == "not_found"
        assert (await other.post(f"/v1/approvals/{first['id']}/cancel")).status_code == 404


async def test_a_question_id_is_not_an_approval(live: Live) -> None:
    q = await live.client.post("/v1/questions", json={"message": "?", "channel": {"email": {"to": ["a@example.com"]}}})
    assert (await live.client.get(f"/v1/approvals/{q.json()['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "fn"),
        ({"fn": "x"}, "channel"),
        ({"fn": "", "channel": {"email": {"to": ["a@example.com"]}}}, "fn"),
        ({"fn": "x", "channel": {"email": {"to": []}}}, "to"),
        ({"fn": "x", "channel": {"email": {"to": ["not-an-address"]}}}, "not an email address"),
        ({"fn": "x", "channel": {"email": {"to": ["a@b..com"]}}}, "not an email address"),  # once a 500
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"], "cc": ["a@b..com"]}}}, "cc"),
        ({"fn": "x", "channel": {"email": {"to": ['"a b"@x.com']}}}, "not an email address"),
        ({"fn": "x", "channel": {"email": {"to": ["bób@example.com"]}}}, "SMTPUTF8"),  # not accepted, then lost
        (
            {"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "escalation": {"after": 5, "to": "é@x.com"}},
            "SMTPUTF8",
        ),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com\nBcc: evil@x.com"]}}}, "single line"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"], "subject": "a\r\nBcc: x@y.z"}}}, "single line"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "policy": {"quorum": 2}}, "quorum"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "policy": "most"}, "policy"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "expires_in": 0}, "expires_in"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "expires_in": "soon"}, "expires_in"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "kwargs": [1, 2]}, "kwargs"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "callback_url": "ftp://x"}, "callback_url"),
        ({"fn": "x", "channel": {"sms": {}}}, "sms"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "unknown": 1}, "unknown"),
        (
            {
                "fn": "x",
                "channel": {"email": {"to": ["a@example.com"]}},
                "reject_options": [{"name": "a"}, {"name": "a"}],
            },
            "unique",
        ),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "reject_options": [{"name": "a b"}]}, "name"),
        ({"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}, "kwargs": {"big": "x" * 300_000}}, "KiB"),
        ([1, 2, 3], "JSON object"),
        ("just a string", "JSON object"),
    ],
)
async def test_invalid_input_gets_422_with_the_error_shape(live: Live, body: Any, fragment: str) -> None:
    response = await live.client.post("/v1/approvals", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"\xff\xfe\x00", {"content-type": "application/json"}),
        (b"fn=x", {"content-type": "application/x-www-form-urlencoded"}),
        (b"", {"content-type": "application/json"}),
        (b"null", {"content-type": "application/json"}),
    ],
)
async def test_malformed_bodies_are_4xx(live: Live, content: bytes, headers: dict[str, str]) -> None:
    response = await live.client.post("/v1/approvals", content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == {"code", "message"}


async def test_oversized_body_is_413(live: Live) -> None:
    response = await live.client.post(
        "/v1/approvals", content=b'{"fn": "' + b"x" * 2_000_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_question_validation(live: Live) -> None:
    r = await live.client.post("/v1/questions", json={"message": "", "channel": {"email": {"to": ["a@example.com"]}}})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"
    for to, cc in ((["a@b..com"], []), (["a@example.com"], ["x@-y.com"])):
        body = {"message": "Which?", "channel": {"email": {"to": to, "cc": cc}}}
        r = await live.client.post("/v1/questions", json=body)
        assert r.status_code == 422 and "not an email address" in r.json()["error"]["message"]


async def test_an_international_address_is_taken_when_the_smtp_server_can(live: Live) -> None:
    live.services.settings.smtp_utf8 = True  # the test SMTP server (aiosmtpd) offers SMTPUTF8
    approval = await live.approval(channel={"email": {"to": ["bób@bücher.de"]}})
    assert approval["recipients"][0]["address"] == "bób@xn--bcher-kva.de"
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    assert live.sink.received[0][0] == ["bób@xn--bcher-kva.de"]  # type: ignore[union-attr]
    assert str(mail["To"]) == "bób@xn--bcher-kva.de"


async def test_a_restarted_agent_resumes_by_call_id_under_a_new_run_id(live: Live) -> None:
    """The client sends a fresh run id per process; the call is the same call (200, one mail)."""
    first = await live.approval(call_id="resume-me", run_id="run-before-restart")
    again = await live.client.post(
        "/v1/approvals",
        json={
            "fn": "send_email",
            "kwargs": {"to": "ceo@example.com", "subject": "Q3 numbers"},
            "channel": {"email": {"to": ["alice@example.com"]}},
            "call_id": "resume-me",
            "run_id": "run-after-restart",
        },
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"] and again.json()["run_id"] == "run-before-restart"
    async with live.services.db.read() as session:
        from sqlmodel import select

        from gateway.models import OutboxMessage

        assert len((await session.exec(select(OutboxMessage))).all()) == 1  # one mail, not a second


async def test_options_names_every_method_of_a_path(live: Live) -> None:
    response = await live.client.options("/v1/approvals")
    assert response.status_code == 204
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST", "OPTIONS"}
    wrong = await live.client.delete("/v1/approvals")
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"] and "GET" in wrong.headers["allow"]
    one = await live.client.options("/v1/approvals/apr_x/cancel")
    assert one.status_code == 204 and "POST" in one.headers["allow"] and "GET" not in one.headers["allow"]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer gw_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbb"])
async def test_auth_is_required(live: Live, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(base_url=live.base_url, headers=headers) as anon:
        response = await anon.post("/v1/approvals", json={"fn": "x", "channel": {"email": {"to": ["a@example.com"]}}})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_wait_returns_at_once_for_a_decided_request_and_times_out_otherwise(live: Live) -> None:
    approval = await live.approval()
    started = time.monotonic()
    held = await live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 0.5})
    elapsed = time.monotonic() - started
    assert held.json()["status"] == "pending"
    assert elapsed >= 0.45
    cancelled = await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    started = time.monotonic()
    assert (await live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30})).json()[
        "status"
    ] == "cancelled"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["-1", "61", "abc"])
async def test_wait_bounds(live: Live, wait: str) -> None:
    approval = await live.approval()
    response = await live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": wait})
    assert response.status_code == 422
    assert "wait" in response.json()["error"]["message"]


async def test_cancel_wakes_waiters_and_is_final(live: Live) -> None:
    approval = await live.approval()
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30}))
    await asyncio.sleep(0.1)
    cancelled = await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    assert cancelled.status_code == 200
    woken = await asyncio.wait_for(waiter, 5)
    assert woken.json()["status"] == "cancelled"
    assert woken.json()["decided_via"] == "api"
    again = await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_cancel_after_decision_is_409(live: Live) -> None:
    from sqlmodel import select

    from gateway.approvals import service
    from gateway.models import Recipient

    approval = await live.approval()
    async with live.services.db.read() as session:
        recipient_id = (await session.exec(select(Recipient.id).where(Recipient.request_id == approval["id"]))).one()
    await service.respond(live.services, recipient_id, decision="approve", via="link")
    response = await live.client.post(f"/v1/approvals/{approval['id']}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_pending"


async def test_wait_reports_expiry_when_it_happens(live: Live) -> None:
    started = time.monotonic()
    approval = await live.approval(expires_in=1)
    response = await live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 10})
    assert response.json()["status"] == "expired"
    assert 0.95 < time.monotonic() - started < 3  # from before the submit: the expiry is 1 s after creation


async def test_events_trail_oldest_first(live: Live) -> None:
    approval = await live.approval()
    await live.sink.wait_for(1)  # type: ignore[union-attr]
    for _ in range(100):
        events = (await live.client.get(f"/v1/approvals/{approval['id']}/events")).json()
        if any(e["type"] == "mail_sent" for e in events):
            break
        await asyncio.sleep(0.05)
    types = [e["type"] for e in events]
    assert types[:3] == ["created", "mail_queued", "mail_sent"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


async def test_recipients_report_mail_status(live: Live) -> None:
    approval = await live.approval()
    await live.sink.wait_for(1)  # type: ignore[union-attr]
    for _ in range(100):
        body = (await live.client.get(f"/v1/approvals/{approval['id']}")).json()
        if body["recipients"][0]["mail_status"] == "sent":
            break
        await asyncio.sleep(0.05)
    assert body["recipients"] == [
        {"address": "alice@example.com", "role": "to", "mail_status": "sent", "mail_error": None, "responded": False}
    ]


async def test_healthz_and_openapi(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.base_url) as anon:
        health = await anon.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        spec = (await anon.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/v1/approvals",
        "/v1/approvals/{request_id}",
        "/v1/approvals/{request_id}/cancel",
        "/v1/approvals/{request_id}/events",
        "/v1/questions",
        "/v1/questions/{request_id}",
        "/healthz",
    ):
        assert path in paths, path
    assert "/r/{token}" not in paths


async def test_unknown_route_and_method_use_the_error_shape(live: Live) -> None:
    missing = await live.client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await live.client.delete("/v1/approvals")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


async def test_wait_outlasts_responses_that_do_not_decide(live: Live) -> None:
    from sqlmodel import col, select

    from gateway.approvals import service
    from gateway.models import Recipient

    approval = await live.approval(channel={"email": {"to": ["a@example.com", "b@example.com"]}}, policy="all")
    async with live.services.db.read() as session:
        first, second = (
            await session.exec(
                select(Recipient.id).where(Recipient.request_id == approval["id"]).order_by(col(Recipient.address))
            )
        ).all()
    waiter = asyncio.create_task(live.client.get(f"/v1/approvals/{approval['id']}", params={"wait": 30}))
    await asyncio.sleep(0.1)
    await service.respond(live.services, first, decision="approve", via="link")
    await asyncio.sleep(0.3)
    assert not waiter.done()  # one of two approvals: still pending, still waiting
    await service.respond(live.services, second, decision="approve", via="link")
    body = (await asyncio.wait_for(waiter, 5)).json()
    assert body["status"] == "approved"
    assert [r["approver"] for r in body["responses"]] == ["a@example.com", "b@example.com"]


async def test_listing_filters_and_cursor_pagination(live: Live) -> None:
    made = [await live.approval(fn=f"task_{i}", run_id="run-a" if i % 2 else "run-b") for i in range(5)]
    other = await live.new_key()
    async with httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {other}"}) as client:
        theirs = await client.post(
            "/v1/approvals", json={"fn": "x", "kwargs": {}, "channel": {"email": {"to": ["zed@example.com"]}}}
        )
        assert theirs.status_code == 201
        assert (await client.get("/v1/approvals")).json()["data"][0]["fn"] == "x"
    await live.client.post(f"/v1/approvals/{made[0]['id']}/cancel")

    first = (await live.client.get("/v1/approvals", params={"limit": 2})).json()
    assert [a["fn"] for a in first["data"]] == ["task_4", "task_3"]  # newest first, only our own
    second = (await live.client.get("/v1/approvals", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    third = (await live.client.get("/v1/approvals", params={"limit": 2, "cursor": second["next_cursor"]})).json()
    assert [a["fn"] for a in second["data"] + third["data"]] == ["task_2", "task_1", "task_0"]
    assert third["next_cursor"] is None

    run_a = (await live.client.get("/v1/approvals", params={"run_id": "run-a"})).json()["data"]
    assert sorted(a["fn"] for a in run_a) == ["task_1", "task_3"]
    cancelled = (await live.client.get("/v1/approvals", params={"status": "cancelled"})).json()["data"]
    assert [a["id"] for a in cancelled] == [made[0]["id"]]
    assert (await live.client.get("/v1/approvals", params={"recipient": "ALICE@example.com"})).json()["data"]
    assert (await live.client.get("/v1/approvals", params={"recipient": "zed@example.com"})).json()["data"] == []
    assert (await live.client.get("/v1/questions")).json() == {"data": [], "next_cursor": None}

    bad = await live.client.get("/v1/approvals", params={"status": "answered"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert (await live.client.get("/v1/approvals", params={"limit": 0})).status_code == 422


# --- edits and typed answers over the API -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"editable": ["nope"]}, "'nope'"),
        ({"kwargs_schema": {"type": "object", "properties": {"to": {"type": "integer"}}}, "editable": True}, "to"),
        ({"kwargs_schema": {"type": "wrong"}}, "not a valid JSON Schema"),
    ],
)
async def test_an_approval_with_edits_it_cannot_offer_is_refused(
    live: Live, body: dict[str, Any], message: str
) -> None:
    response = await live.client.post(
        "/v1/approvals",
        json={"fn": "send", "kwargs": {"to": "a@example.com"}, "channel": {"email": {"to": ["x@example.com"]}}, **body},
    )
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


async def test_a_question_cannot_have_both_options_and_a_schema(live: Live) -> None:
    response = await live.client.post(
        "/v1/questions",
        json={
            "message": "?",
            "channel": {"email": {"to": ["x@example.com"]}},
            "response_options": [{"name": "a"}],
            "response_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    )
    assert response.status_code == 422 and "not both" in response.json()["error"]["message"]


async def test_the_same_call_id_with_edits_offered_is_the_same_call(live: Live) -> None:
    body = {
        "fn": "send",
        "kwargs": {"to": "a@example.com"},
        "channel": {"email": {"to": ["x@example.com"]}},
        "call_id": "edits-1",
        "editable": True,
    }
    first = await live.client.post("/v1/approvals", json=body)
    again = await live.client.post("/v1/approvals", json=body)
    other = await live.client.post("/v1/approvals", json={**body, "editable": False})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert first.json()["editable"] == ["to"]


async def test_a_responder_key_approves_with_edits_and_answers_with_data(live: Live) -> None:
    from gateway.keys import create_key

    _, plaintext = await create_key(live.services.db, "portal", role="responder")
    bot = {"Authorization": f"Bearer {plaintext}"}
    approval = await live.approval(
        editable=["subject"], kwargs_schema={"type": "object", "properties": {"subject": {"maxLength": 20}}}
    )
    path = f"/v1/approvals/{approval['id']}/responses"
    answer = {"approver": "alice@example.com", "decision": "approve"}
    wrong = await live.client.post(path, json={**answer, "edited_kwargs": {"to": "x@example.com"}}, headers=bot)
    assert wrong.status_code == 422 and "'to' may not be edited" in wrong.json()["error"]["message"]
    long = await live.client.post(path, json={**answer, "edited_kwargs": {"subject": "x" * 30}}, headers=bot)
    assert long.status_code == 422 and "subject must be at most 20" in long.json()["error"]["message"]
    reject = await live.client.post(
        path, json={**answer, "decision": "reject", "edited_kwargs": {"subject": "Hi"}}, headers=bot
    )
    assert reject.status_code == 422 and "edits go with an approval" in reject.json()["error"]["message"]
    done = await live.client.post(path, json={**answer, "edited_kwargs": {"subject": "Q3 (final)"}}, headers=bot)
    assert done.status_code == 200, done.text
    assert done.json()["edited_kwargs"] == {"to": "ceo@example.com", "subject": "Q3 (final)"}

    schema = {"type": "object", "properties": {"n": {"type": "integer", "title": "Count"}}, "required": ["n"]}
    question = (
        await live.client.post(
            "/v1/questions",
            json={
                "message": "How many?",
                "channel": {"email": {"to": ["alice@example.com"]}},
                "response_schema": schema,
            },
        )
    ).json()
    qpath = f"/v1/questions/{question['id']}/responses"
    text_only = await live.client.post(qpath, json={"responder": "alice@example.com", "response": "3"}, headers=bot)
    assert text_only.status_code == 422 and "typed fields" in text_only.json()["error"]["message"]
    bad = await live.client.post(
        qpath, json={"responder": "alice@example.com", "response_data": {"n": "x"}}, headers=bot
    )
    assert bad.status_code == 422 and "n must be a whole number" in bad.json()["error"]["message"]
    good = await live.client.post(
        qpath, json={"responder": "alice@example.com", "response_data": {"n": 3}}, headers=bot
    )
    assert good.status_code == 200, good.text
    assert (good.json()["response_data"], good.json()["response"]) == ({"n": 3}, "Count: 3")
    assert good.json()["response_schema"] == schema
