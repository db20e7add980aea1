"""The client's shared logic, with httpx's MockTransport standing in for the gateway (unit tests)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.client import (
    APIError,
    AuthenticationError,
    ConflictError,
    Gateway,
    GatewayConnectionError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    derive_call_id,
)
from gateway.client._base import WaitPlan, _jsonable, bind_arguments

APPROVAL = {
    "id": "apr_1",
    "call_id": "c",
    "run_id": "r",
    "fn": "f",
    "kwargs": {},
    "status": "pending",
    "comment": None,
    "reject_option": None,
    "decided_by": None,
    "decided_via": None,
    "created_at": "2026-11-21T10:00:00+00:00",
    "decided_at": None,
    "expires_at": None,
    "responses": [],
    "state": None,
}


def gateway(handler: Any) -> Gateway:
    return Gateway("http://gw.test", "gw_key", run_id="run-1", transport=httpx.MockTransport(handler))


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.client._sync.time.sleep", lambda _s: None)


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, AuthenticationError, "unauthorized"),
        (404, NotFoundError, "not_found"),
        (409, ConflictError, "call_id_conflict"),
        (422, InvalidRequestError, "invalid_request"),
        (413, InvalidRequestError, "too_large"),
        (500, ServerError, "internal"),
    ],
)
def test_errors_map_to_their_classes_and_carry_the_body(status: int, error: type[APIError], code: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": "what went wrong"}})

    with pytest.raises(error) as caught:
        gateway(handler).approval("apr_1")
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, "what went wrong")
    assert isinstance(caught.value, GatewayError)


def test_an_error_without_a_json_body_still_maps() -> None:
    with pytest.raises(ServerError) as caught:
        gateway(lambda r: httpx.Response(500, text="<html>oops</html>")).approval("apr_1")
    assert caught.value.code == "error" and "oops" in caught.value.message


def test_creation_is_retried_after_503_and_dropped_connections() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if len(seen) == 1:
            raise httpx.ConnectError("refused")
        if len(seen) == 2:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy"}})
        return httpx.Response(201, json=APPROVAL)

    handle = gateway(handler).request_approval("send", {"to": "x"}, "boss@example.com")
    assert handle.id == "apr_1"
    assert len(seen) == 3
    assert seen[0] == seen[2]  # the same call id each time: the retry cannot create a second request
    assert seen[0]["call_id"] == derive_call_id("run-1", "send", {"to": "x"})


def test_an_unreachable_gateway_gives_a_connection_error_after_retries() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused")

    with pytest.raises(GatewayConnectionError, match=r"cannot reach the gateway at http://gw\.test"):
        gateway(handler).approval("apr_1")
    assert attempts == 6


def test_a_client_error_is_not_retried() -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(422, json={"error": {"code": "invalid_request", "message": "channel.email.to"}})

    with pytest.raises(InvalidRequestError, match=r"channel\.email\.to"):
        gateway(handler).request_approval("send", {}, "not-an-address")
    assert attempts == 1


def test_the_request_body_follows_the_contract() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer gw_key"
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json=APPROVAL)

    gateway(handler).request_approval(
        "send",
        {"when": datetime(2026, 1, 2, tzinfo=UTC)},
        ["a@example.com", "b@example.com"],
        cc="c@example.com",
        subject="S",
        context="C",
        reject_options=["tone", {"name": "facts", "title": "Wrong facts"}],
        policy={"quorum": 2},
        expires_in=600,
        state={"step": 3},
    )
    (body,) = bodies
    assert body["channel"] == {
        "email": {"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"], "subject": "S", "context": "C"}
    }
    assert body["kwargs"] == {"when": "2026-01-02T00:00:00+00:00"}
    assert body["reject_options"] == [{"name": "tone"}, {"name": "facts", "title": "Wrong facts"}]
    assert (body["policy"], body["expires_in"], body["state"], body["run_id"]) == (
        {"quorum": 2},
        600,
        {"step": 3},
        "run-1",
    )


def test_call_ids_are_stable_and_distinct() -> None:
    base = derive_call_id("run", "fn", {"a": 1, "b": [1, 2]})
    assert base == derive_call_id("run", "fn", {"b": [1, 2], "a": 1})  # key order does not matter
    others = {
        derive_call_id("run2", "fn", {"a": 1, "b": [1, 2]}),
        derive_call_id("run", "fn2", {"a": 1, "b": [1, 2]}),
        derive_call_id("run", "fn", {"a": 2, "b": [1, 2]}),
        derive_call_id("run", "fn", {"a": 1, "b": [1, 2]}, occurrence=1),
    }
    assert base not in others and len(others) == 4
    assert len(base) <= 200


def test_arguments_are_bound_by_name() -> None:
    def fn(a: int, b: str = "x", *rest: int, c: bool = False, **extra: Any) -> None: ...

    named = bind_arguments(inspect.signature(fn), (1, "y", 7, 8), {"c": True, "d": {1, 2}})
    assert named == {"a": 1, "b": "y", "rest": [7, 8], "c": True, "d": [1, 2]}


def test_values_become_json() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    assert _jsonable({"p": Point(1, 2), "s": {"b", "a"}, "t": (1, 2), "raw": b"hi", 3: None}) == {
        "p": {"x": 1, "y": 2},
        "s": ["a", "b"],
        "t": [1, 2],
        "raw": "hi",
        "3": None,
    }
    assert _jsonable(object()).startswith("<object object")


def test_a_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    with pytest.raises(GatewayError, match="GATEWAY_API_KEY"):
        Gateway("http://gw.test")


def test_url_key_and_run_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_URL", "http://env.test/")
    monkeypatch.setenv("GATEWAY_API_KEY", "gw_env")
    monkeypatch.setenv("GATEWAY_RUN_ID", "run-env")
    gw = Gateway()
    assert (gw.base_url, gw.api_key, gw.run_id) == ("http://env.test", "gw_env", "run-env")
    monkeypatch.delenv("GATEWAY_RUN_ID")
    assert Gateway().run_id != Gateway().run_id  # no run id: each client is its own run


def test_wait_plan_holds_what_is_left_and_then_stops() -> None:
    plan = WaitPlan("apr_1", 2.5)
    first = plan.next_poll("/v1/approvals/apr_1")
    assert first is not None and first.params == {"wait": 2.5} and first.retry is False
    assert first.timeout is not None and first.timeout > 2.5  # the read timeout outlasts the hold
    endless = WaitPlan("apr_1", None).next_poll("/p")
    assert endless is not None and endless.params == {"wait": 60}
    spent = WaitPlan("apr_1", 0)
    assert spent.next_poll("/p") is None
    assert "apr_1" in str(spent.timed_out())


# --- response models as the gateway's response_schema ----------------------------------------------------------


def test_a_response_model_is_reduced_to_the_form_subset() -> None:
    import enum
    from datetime import date
    from typing import Literal

    from pydantic import BaseModel, Field

    from gateway.client import response_schema

    class Tier(enum.Enum):
        basic = "basic"
        pro = "pro"

    class Order(BaseModel):
        day: date
        at: datetime | None = None
        tier: Tier = Tier.basic
        size: Literal["s", "m"]
        count: int = Field(ge=1, description="How many")
        tags: list[str] = []
        gift: bool = False

    schema = response_schema(Order)
    props = schema["properties"]
    assert schema["required"] == ["day", "size", "count"]
    assert props["day"] == {"title": "Day", "format": "date", "type": "string"}
    assert props["at"]["format"] == "date-time" and "default" not in props["at"]
    assert props["tier"]["enum"] == ["basic", "pro"] and props["tier"]["type"] == "string"
    assert props["size"]["enum"] == ["s", "m"]
    assert props["count"] == {"title": "Count", "description": "How many", "minimum": 1, "type": "integer"}
    assert props["tags"]["items"] == {"type": "string"}
    assert props["gift"]["type"] == "boolean"


def test_what_a_form_cannot_ask_for_is_named() -> None:
    from pydantic import BaseModel

    from gateway.client import ResponseModelError, response_schema

    class Money(BaseModel):
        amounts: list[int]

    class Either(BaseModel):
        value: int | str

    with pytest.raises(ResponseModelError, match="amounts"):
        response_schema(Money)
    with pytest.raises(ResponseModelError, match="value"):
        response_schema(Either)


# -- the inbox's stream reader ---------------------------------------------------------------------------


@given(
    texts=st.lists(
        st.text(max_size=40) | st.sampled_from(["a\u2028b", "x\x85y", "p\u2029", "\x0b\x0c\x1c"]), max_size=6
    ),
    beats=st.lists(st.integers(0, 3), min_size=7, max_size=7),
)
def test_the_inbox_reads_each_message_of_the_stream_in_order_whatever_comes_between(
    texts: list[str], beats: list[int]
) -> None:
    """Events as the gateway writes them (JSON that leaves non-ASCII as it is, then gateway.streams.sse), with
    heartbeats and the opening between them, split into lines as httpx does (str.splitlines, which also breaks
    at U+2028 and NEL): each message is taken once, whole, in order, and the cursor is the last one's id."""
    from gateway.client._base import InboxBase
    from gateway.streams import sse

    stream = "retry: 2000\n: connected\n\n"
    for n, text in enumerate(texts, start=1):
        stream += ":\n\n" * beats[n - 1]
        data = {"id": f"amsg_{n}", "from": "a@example.com", "subject": "s", "text": text, "message_id": "<m@x>"}
        stream += sse(n, "message", json.dumps(data, ensure_ascii=False)).decode()
    stream += ":\n\n" * beats[-1]
    inbox = InboxBase("agent", after="0")
    taken = [inbox._feed(line) for line in stream.splitlines()]
    assert sum(taken) == len(texts)
    assert [m.text for m in inbox._pending] == texts
    assert inbox.cursor == (str(len(texts)) if texts else "0")


def test_the_inbox_joins_a_multi_line_data_field_and_ignores_other_events() -> None:
    from gateway.client._base import InboxBase

    inbox = InboxBase("agent")
    lines = [
        "event: ping",
        "data: {}",
        "",
        "id: 7",
        "event: message",
        'data: {"id": "amsg_7",',
        'data: "text": "hi"}',
        "",
    ]
    assert [inbox._feed(x) for x in lines].count(True) == 1
    assert inbox._pending[0].text == "hi" and inbox.cursor == "7"
