"""/inbound/*: mail providers' inbound webhooks, each a source feeding the one pipeline (see sources.py)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from gateway.api.deps import services
from gateway.approvals.schemas import ErrorOut
from gateway.inbound import pipeline, sources
from gateway.models import KeyValue
from gateway.services import Services

router = APIRouter(prefix="/inbound", tags=["inbound"])
MAX_FIELD_BYTES = 32 * 1024 * 1024  # a message with attachments, as one form field (SendGrid, Mailgun)


class InboundOut(BaseModel):
    """What became of the mail: ``decided``, ``recorded``, ``ignored`` (with the reason) or ``duplicate``."""

    outcome: str
    reason: str | None
    request_id: str | None


_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "A wrong or missing secret or signature; nothing was stored"},
    413: {"model": ErrorOut, "description": "The body is larger than the inbound limit"},
    422: {"model": ErrorOut, "description": "Not this provider's format; nothing was stored"},
}


async def _take(svc: Services, raw: bytes, source: str) -> InboundOut:
    outcome = await pipeline.process(svc, raw, source=source)
    return InboundOut(outcome=outcome.outcome, reason=outcome.reason, request_id=outcome.request_id)


async def _form(request: Request) -> dict[str, Any]:
    try:
        form = await request.form(max_part_size=MAX_FIELD_BYTES)
    except Exception as exc:  # a body that is not a form (starlette raises several kinds)
        raise sources.BadPayload(f"not a form: {type(exc).__name__}") from exc
    out: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            out.setdefault(key, await value.read() if hasattr(value, "read") else value)
    finally:
        await form.close()  # uploaded parts may be spooled to temporary files
    return out


@router.post("/raw", response_model=InboundOut, responses=_ANSWERS, summary="One raw RFC 822 message")
async def raw(request: Request, svc: Services = Depends(services)) -> InboundOut:
    sources.check_bearer(request.headers.get("authorization"), svc.settings.inbound_secret)
    return await _take(svc, sources.raw_message(await request.body()), "raw")


@router.post("/postmark", response_model=InboundOut, responses=_ANSWERS, summary="Postmark's inbound webhook")
async def postmark(request: Request, svc: Services = Depends(services)) -> InboundOut:
    sources.check_basic(request.headers.get("authorization"), svc.settings.inbound_secret)
    return await _take(svc, sources.postmark(await request.body()), "postmark")


@router.post("/sendgrid", response_model=InboundOut, responses=_ANSWERS, summary="SendGrid Inbound Parse (raw)")
async def sendgrid(request: Request, svc: Services = Depends(services)) -> InboundOut:
    sources.check_basic(request.headers.get("authorization"), svc.settings.inbound_secret)
    return await _take(svc, sources.sendgrid(await _form(request)), "sendgrid")


@router.post("/mailgun", response_model=InboundOut, responses=_ANSWERS, summary="Mailgun's forwarded MIME message")
@router.post("/mailgun/mime", response_model=InboundOut, responses=_ANSWERS, include_in_schema=False)
async def mailgun(request: Request, svc: Services = Depends(services)) -> InboundOut:
    """Mailgun posts the whole MIME message (body-mime) to a forward() URL that ends in "mime": the route's
    action is forward("https://<gateway>/inbound/mailgun/mime")."""
    raw, token = sources.mailgun(await _form(request), svc.settings.mailgun_signing_key)
    await _remember_token(svc, token, raw)
    return await _take(svc, raw, "mailgun")


_TOKENS = "mailgun-token:"  # kv keys of the Mailgun tokens seen: "<prefix><token>" -> "<seen at, epoch s> <digest>"
_TOKENS_END = "mailgun-token;"  # the key just after every such key (";" follows ":")
# A token outlives its signature's freshness (MAILGUN_MAX_AGE either way) by a margin, then is forgotten: a replay
# of it fails the timestamp check by then. Checked at most every 10 minutes per process.
TOKEN_KEEP = 2 * sources.MAILGUN_MAX_AGE + 300
_pruned_at: list[float] = [0.0]


async def _remember_token(svc: Services, token: str, raw: bytes) -> None:
    """Mailgun signs its timestamp and token, not the message: a token comes once, with one message. Mailgun's
    own retry (the same message) goes on to the pipeline, which de-duplicates it; another message under a
    token seen before is a replay."""
    digest = hashlib.sha256(raw).hexdigest()
    key = f"{_TOKENS}{token[:200]}"
    now = time.time()
    try:
        async with svc.db.write() as session:
            session.add(KeyValue(key=key, value=f"{int(now):012d} {digest}"))
            if now - _pruned_at[0] > 600:
                _pruned_at[0] = now
                await _forget_tokens(session, now - TOKEN_KEEP)
    except IntegrityError:
        async with svc.db.read() as session:
            seen = await session.get(KeyValue, key)
        if seen is None or seen.value.rsplit(" ", 1)[-1] != digest:
            raise sources.Replayed("this Mailgun token was used before, with another message") from None


async def _forget_tokens(session: Any, before: float) -> None:
    """Tokens seen before ``before`` (a range of the primary key, and a fixed-width time that sorts as text)."""
    conn = await session.connection()
    await conn.execute(
        delete(KeyValue).where(
            col(KeyValue.key) >= _TOKENS, col(KeyValue.key) < _TOKENS_END, col(KeyValue.value) < f"{int(before):012d}"
        )
    )


_verifiers: dict[str, sources.SnsVerifier] = {}


def _sns(svc: Services) -> sources.SnsVerifier:
    pattern = svc.settings.sns_cert_url_pattern
    verifier = _verifiers.get(pattern)
    if verifier is None:
        verifier = _verifiers[pattern] = sources.SnsVerifier(_fetch, pattern)
    return verifier


async def _fetch(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


@router.post("/ses", response_model=InboundOut, responses=_ANSWERS, summary="Amazon SES inbound mail through SNS")
async def ses(request: Request, svc: Services = Depends(services)) -> Any:
    message = sources.parse_sns(await request.body())
    verifier = _sns(svc)
    await verifier.verify(message)
    topics = svc.settings.ses_topic_arn_list
    if topics and message.get("TopicArn") not in topics:
        raise sources.Unauthorized(f"SNS topic {str(message.get('TopicArn'))[:200]!r} is not in GATEWAY_SES_TOPIC_ARNS")
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL") or "")
        if not verifier.allowed(url):
            raise sources.Unauthorized("the SubscribeURL is not an Amazon SNS host")
        try:
            await _fetch(url)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": {"code": "not_confirmed", "message": f"SNS did not confirm: {exc}"}}, 502)
        return JSONResponse({"confirmed": message.get("TopicArn")})
    if kind == "UnsubscribeConfirmation":
        return JSONResponse({"unsubscribed": message.get("TopicArn")})
    return await _take(svc, sources.ses_message(message), "ses")
