"""Which endpoints hear of a change, and the outbox rows that carry it (written in the change's transaction)."""

from __future__ import annotations

import json
from typing import Any

from gateway.approvals.present import approval_out, question_out
from gateway.approvals.views import RequestView
from gateway.audit import event
from gateway.models import OutboxMessage, Request, build, new_id, utcnow
from gateway.services import Services

KIND = "webhook"


def targets(svc: Services, request: Request, final: bool) -> list[str]:
    """Final outcomes go to the request's callback_url and every configured endpoint; single responses only to
    those that asked for them."""
    settings = svc.settings
    urls: list[str] = []
    if request.callback_url and (final or request.callback_responses):
        urls.append(request.callback_url)
    if final or settings.webhook_responses:
        urls += [u for u in settings.webhook_url_list if u not in urls]
    return urls


def wanted(svc: Services, request: Request, final: bool) -> bool:
    return bool(targets(svc, request, final))


def payload(view: RequestView, type_: str) -> str:
    present = approval_out if view.request.kind == "approval" else question_out
    body: dict[str, Any] = {
        "type": type_,
        "timestamp": utcnow().isoformat(),
        "data": present(view).model_dump(mode="json"),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def webhook_rows(svc: Services, view: RequestView, final: bool) -> list[Any]:
    """One outbox row per endpoint, each with its own webhook-id (stable across its retries)."""
    request = view.request
    urls = targets(svc, request, final)
    if not urls:
        return []
    type_ = f"{request.kind}.{request.status if final else 'response'}"
    body = payload(view, type_)
    rows: list[Any] = []
    for url in urls:
        webhook_id = new_id("msg")
        rows.append(
            build(
                OutboxMessage,
                id=new_id("whk"),
                request_id=request.id,
                kind=KIND,
                mail_from="",
                rcpt_to=[url],
                message_id=webhook_id,
                raw=body,
            )
        )
        rows.append(event(request.id, "webhook_queued", None, url=url, type=type_, webhook_id=webhook_id))
    return rows
