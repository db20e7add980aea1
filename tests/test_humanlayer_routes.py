"""/humanlayer/v1 over HTTP, in the shapes HumanLayer's SDKs send (Python: every field, nulls included;
TypeScript: undefined fields left out), on SQLite and PostgreSQL; and the responder keys its respond routes need."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from gateway.keys import create_key
from tests.conftest import Live, link_ending

HL = "/humanlayer/v1"


def python_call(call_id: str, address: str = "alice@example.com", **spec: Any) -> dict[str, Any]:
    """As the Python SDK's FunctionCall.model_dump() sends it: every field, null where empty."""
    email = {
        "address": address,
        "context_about_user": "the user you are assisting",
        "additional_recipients": None,
        "subject": None,
        "references_message_id": None,
        "in_reply_to_message_id": None,
        "experimental_subject_line": None,
        "experimental_references_message_id": None,
        "experimental_in_reply_to_message_id": None,
        "template": None,
    }
    email.update(spec.pop("email", {}))
    body = {
        "run_id": "agent-Zq3",
        "call_id": call_id,
        "spec": {
            "fn": "send_email",
            "kwargs": {"to": "ceo@example.com", "subject": "Q3"},
            "channel": {"slack": None, "sms": None, "whatsapp": None, "email": email},
            "reject_options": None,
            "state": None,
        },
        "status": None,
    }
    body["spec"].update(spec)
    return body


def ts_contact(call_id: str, address: str = "carol@example.com", **spec: Any) -> dict[str, Any]:
    """As the TypeScript SDK sends a human contact: undefined fields left out."""
    return {
        "run_id": "agent",
        "call_id": call_id,
        "spec": {"msg": "Which day?", "channel": {"email": {"address": address}}, **spec},
    }


async def responder_key(live: Live, name: str = "chat-bot") -> str:
    _, plaintext = await create_key(live.services.db, name, role="responder")
    return plaintext


async def test_a_function_call_is_an_approval_with_its_mail_and_a_repeat_is_the_same(live: Live) -> None:
    body = python_call(
        "call-abc",
        email={
            "additional_recipients": [
                {"address": "bob@example.com", "context_about_user": None, "field": "to"},
                {"address": "dan@example.com", "context_about_user": None, "field": "bcc"},
            ],
            "subject": "Re: Q3 plan",
            "experimental_subject_line": "Re: Q3 plan",
            "in_reply_to_message_id": "<orig@example.com>",
            "experimental_in_reply_to_message_id": "<orig@example.com>",
        },
        reject_options=[{"name": "too_long", "title": "Too long", "description": None, "prompt_fill": None}],
        state={"step": 3},
    )
    created = await live.client.post(f"{HL}/function_calls", json=body)
    assert created.status_code == 201, created.text
    out = created.json()
    assert out["call_id"] == "call-abc" and out["run_id"] == "agent-Zq3"
    assert out["status"]["approved"] is None and out["status"]["requested_at"]
    assert out["spec"]["fn"] == "send_email" and out["spec"]["state"] == {"step": 3}
    assert out["spec"]["channel"]["email"]["address"] == "alice@example.com"
    mails = await live.sink.wait_for(3)  # type: ignore[union-attr]
    assert sorted(str(m["To"]) for m in mails) == ["alice@example.com", "bob@example.com", "dan@example.com"]
    assert all(str(m["Subject"]).startswith("Re: Q3 plan") and m["In-Reply-To"] == "<orig@example.com>" for m in mails)
    again = await live.client.post(f"{HL}/function_calls", json=body)
    assert again.status_code == 200 and again.json()["gateway"]["id"] == out["gateway"]["id"]
    other = await live.client.post(f"{HL}/function_calls", json=python_call("call-abc", address="eve@example.com"))
    assert other.status_code == 409 and other.json()["error"]["code"] == "call_id_conflict"
    await asyncio.sleep(0.3)
    assert len(live.sink.received) == 3  # type: ignore[union-attr]  # one request, one mail each, once
    approval = (await live.client.get(f"/v1/approvals/{out['gateway']['id']}")).json()
    assert {r["address"]: r["role"] for r in approval["recipients"]} == {
        "alice@example.com": "to",
        "bob@example.com": "to",
        "dan@example.com": "cc",
    }
    assert approval["state"] == {"step": 3} and approval["call_id"] == "call-abc"


async def test_every_final_state_ends_the_sdks_wait(live: Live) -> None:
    async def call(call_id: str, **extra: Any) -> dict[str, Any]:
        response = await live.client.post(f"{HL}/function_calls", json=python_call(call_id, **extra))
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def status(call_id: str) -> dict[str, Any]:
        response = await live.client.get(f"{HL}/function_calls/{call_id}")
        assert response.status_code == 200, response.text
        return response.json()["status"]  # type: ignore[no-any-return]

    approved = await call("call-ok")
    rejected = await call("call-no", email={"address": "rita@example.com"})
    cancelled = await call("call-cancel", email={"address": "carl@example.com"})
    mails = await live.sink.wait_for(3)  # type: ignore[union-attr]
    by_to = {str(m["To"]): m for m in mails}
    page = link_ending(by_to["alice@example.com"], "/approve")
    async with httpx.AsyncClient() as browser:
        form = await browser.get(page)
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        await browser.post(page.rsplit("/", 1)[0], data={"csrf_token": token, "decision": "approve"})
        page = link_ending(by_to["rita@example.com"], "/reject")
        form = await browser.get(page)
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        await browser.post(page.rsplit("/", 1)[0], data={"csrf_token": token, "decision": "reject"})
    await live.client.post(f"/v1/approvals/{cancelled['gateway']['id']}/cancel")
    assert (await status("call-ok"))["approved"] is True
    no = await status("call-no")
    assert no["approved"] is False and no["comment"] == "Rejected by rita@example.com, without a comment."
    gone = await status("call-cancel")
    assert gone["approved"] is False and "cancelled" in gone["comment"] and gone["responded_at"]
    assert approved["status"]["approved"] is None and rejected["status"]["approved"] is None


async def test_an_expired_call_and_contact_read_as_final(live: Live) -> None:
    live.services.settings.default_expires_in = 1
    await live.client.post(f"{HL}/function_calls", json=python_call("call-late"))
    await live.client.post(f"{HL}/contact_requests", json=ts_contact("human_call-late"))
    await asyncio.sleep(1.2)
    call = (await live.client.get(f"{HL}/function_calls/call-late")).json()
    assert call["status"]["approved"] is False and "expired" in call["status"]["comment"]
    contact = (await live.client.get(f"{HL}/contact_requests/human_call-late")).json()
    assert contact["status"]["response"].startswith("No answer: the request expired")
    assert call["gateway"]["status"] == contact["gateway"]["status"] == "expired"


async def test_a_contact_answered_by_option_reads_as_the_option(live: Live) -> None:
    options = [{"name": "tue", "title": "Tuesday"}, {"name": "wed"}]
    created = await live.client.post(
        f"{HL}/contact_requests", json=ts_contact("human_call-1", response_options=options)
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"]["response"] is None
    (mail,) = await live.sink.wait_for(1)  # type: ignore[union-attr]
    page = link_ending(mail, "/option/tue")
    async with httpx.AsyncClient() as browser:
        form = await browser.get(page)
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        await browser.post(page.rsplit("/option/", 1)[0], data={"csrf_token": token, "option": "tue"})
    status = (await live.client.get(f"{HL}/contact_requests/human_call-1")).json()["status"]
    assert status == {**status, "response": "Tuesday", "response_option_name": "tue"} and status["responded_at"]


async def test_channels_other_than_email_are_refused_naming_email(live: Live) -> None:
    for channel, name in (
        ({"slack": {"channel_or_user_id": "C123"}}, "slack"),
        ({"sms": {"phone_number": "+15555550100"}}, "sms"),
        ({"whatsapp": {"phone_number": "+15555550100"}}, "whatsapp"),
    ):
        body = python_call("call-x")
        body["spec"]["channel"] = channel
        refused = await live.client.post(f"{HL}/function_calls", json=body)
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert f"the {name} channel is not served" in message and "email" in message
    no_channel = python_call("call-y")
    no_channel["spec"]["channel"] = None
    refused = await live.client.post(f"{HL}/function_calls", json=no_channel)
    assert refused.status_code == 422 and "by email only" in refused.json()["error"]["message"]
    bad = await live.client.post(f"{HL}/function_calls", json=python_call("call-z", address="not an address"))
    assert bad.status_code == 422 and "channel.email.to" in bad.json()["error"]["message"]
    assert live.sink.received == []  # type: ignore[union-attr]


async def test_keys_and_visibility(live: Live) -> None:
    wrong = await live.client.get(f"{HL}/function_calls/call-1", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    await live.client.post(f"{HL}/function_calls", json=python_call("call-mine"))
    other = await live.new_key()
    hidden = await live.client.get(f"{HL}/function_calls/call-mine", headers={"Authorization": f"Bearer {other}"})
    assert hidden.status_code == 404
    bot = await responder_key(live)
    asks = await live.client.post(
        f"{HL}/function_calls", json=python_call("c2"), headers={"Authorization": f"Bearer {bot}"}
    )
    assert asks.status_code == 403 and "responder key" in asks.json()["error"]["message"]
    asks = await live.client.post(
        "/v1/approvals",
        json={"fn": "f", "channel": {"email": {"to": ["a@example.com"]}}},
        headers={"Authorization": f"Bearer {bot}"},
    )
    assert asks.status_code == 403


async def test_respond_needs_a_responder_key_and_answers_for_the_channels_address(live: Live) -> None:
    created = (await live.client.post(f"{HL}/function_calls", json=python_call("call-r"))).json()
    await live.sink.wait_for(1)  # type: ignore[union-attr]
    path = f"{HL}/agent/function_calls/call-r/respond"
    status = {"requested_at": None, "responded_at": None, "approved": False, "comment": "Not to the CEO."}
    refused = await live.client.post(path, json=status)
    assert refused.status_code == 403 and "agent's key cannot answer" in refused.json()["error"]["message"]
    bot = {"Authorization": f"Bearer {await responder_key(live)}"}
    assert (await live.client.post(path, json={"approved": None}, headers=bot)).status_code == 422
    answered = await live.client.post(path, json=status, headers=bot)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == {**answered.json()["status"], "approved": False, "comment": "Not to the CEO."}
    again = await live.client.post(path, json=status, headers=bot)
    assert again.status_code == 409  # each recipient answers once
    approval = (await live.client.get(f"/v1/approvals/{created['gateway']['id']}")).json()
    assert approval["status"] == "rejected" and approval["decided_via"] == "api"
    assert approval["decided_by"] == "alice@example.com"
    events = (await live.client.get(f"/v1/approvals/{created['gateway']['id']}/events")).json()
    assert any(e["type"] == "response" and e["data"].get("responder_key") == "chat-bot" for e in events)

    contact = (await live.client.post(f"{HL}/contact_requests", json=ts_contact("human_call-r"))).json()
    path = f"{HL}/agent/human_contacts/human_call-r/respond"
    assert (await live.client.post(path, json={"response": ""}, headers=bot)).status_code == 422
    answered = await live.client.post(path, json={"response": "Thursday"}, headers=bot)
    assert answered.status_code == 200 and answered.json()["status"]["response"] == "Thursday"
    assert answered.json()["gateway"]["id"] == contact["gateway"]["id"]
    assert (
        await live.client.post(f"{HL}/agent/human_contacts/nope/respond", json={"response": "x"}, headers=bot)
    ).status_code == 404


async def test_escalate_email_adds_recipients_or_sends_again_with_the_note(live: Live) -> None:
    await live.client.post(f"{HL}/function_calls", json=python_call("call-e"))
    await live.sink.wait_for(1)  # type: ignore[union-attr]
    escalation = {
        "escalation_msg": "Alice is away: please decide today.",
        "additional_recipients": [
            {"address": "boss@example.com", "field": "to"},
            {"address": "ops@example.com", "field": "cc"},
        ],
    }
    escalated = await live.client.post(f"{HL}/agent/function_calls/call-e/escalate_email", json=escalation)
    assert escalated.status_code == 200, escalated.text
    mails = await live.sink.wait_for(3)  # type: ignore[union-attr]
    boss = next(m for m in mails if str(m["To"]) == "boss@example.com")
    assert "Alice is away: please decide today." in boss.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert link_ending(boss, "/approve")
    again = await live.client.post(
        f"{HL}/agent/function_calls/call-e/escalate_email", json={"escalation_msg": "Second call: anyone?"}
    )
    assert again.status_code == 200
    mails = await live.sink.wait_for(5)  # type: ignore[union-attr]
    resent = [m for m in mails[3:] if "Second call: anyone?" in m.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    assert sorted(str(m["To"]) for m in resent) == ["alice@example.com", "boss@example.com"]
    events = (await live.client.get(f"/v1/approvals/{escalated.json()['gateway']['id']}/events")).json()
    assert [e["data"]["to"] for e in events if e["type"] == "escalated"] == [["boss@example.com"], []]


async def test_v1_responses_with_a_responder_key(live: Live) -> None:
    approval = await live.approval(channel={"email": {"to": ["alice@example.com"], "cc": ["carl@example.com"]}})
    path = f"/v1/approvals/{approval['id']}/responses"
    body = {"approver": "alice@example.com", "decision": "approve", "comment": "From the portal."}
    assert (await live.client.post(path, json=body)).status_code == 403  # the agent's own key
    bot = {"Authorization": f"Bearer {await responder_key(live)}"}
    copied = await live.client.post(path, json={**body, "approver": "carl@example.com"}, headers=bot)
    assert copied.status_code == 403 and copied.json()["error"]["code"] == "not_an_approver"
    stranger = await live.client.post(path, json={**body, "approver": "eve@example.com"}, headers=bot)
    assert stranger.status_code == 422
    edits = await live.client.post(path, json={**body, "edited_kwargs": {"to": "x@example.com"}}, headers=bot)
    assert edits.status_code == 422 and "does not allow edits" in edits.json()["error"]["message"]
    decided = await live.client.post(path, json=body, headers=bot)
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["decided_via"] == "api"
    question = (
        await live.client.post(
            "/v1/questions", json={"message": "Which?", "channel": {"email": {"to": ["alice@example.com"]}}}
        )
    ).json()
    answered = await live.client.post(
        f"/v1/questions/{question['id']}/responses",
        json={"responder": "alice@example.com", "response": "That one"},
        headers=bot,
    )
    assert answered.status_code == 200 and answered.json()["response"] == "That one"
