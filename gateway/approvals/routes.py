"""/v1/approvals and /v1/questions: the same five endpoints for both kinds, defined once."""

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from gateway.api.deps import principal, responder, services
from gateway.approvals import service
from gateway.approvals.present import approval_out, question_out
from gateway.approvals.schemas import (
    ApprovalAnswer,
    ApprovalCreate,
    ApprovalOut,
    ErrorOut,
    EventOut,
    QuestionAnswer,
    QuestionCreate,
    QuestionOut,
)
from gateway.approvals.views import RequestView
from gateway.errors import InvalidInputError
from gateway.keys import Principal
from gateway.models import utcnow
from gateway.services import Services

router = APIRouter(prefix="/v1")

_ERROR_TEXT = {
    401: "No API key, or one that is not valid (or was revoked)",
    403: "A key whose role does not allow this (an agent's key answering, a responder's key asking), or a copied"
    " recipient answering",
    404: "No such request among those your key created",
    409: "A conflict: the call_id is used with other content, or the request is no longer pending",
    413: "The body is larger than 1 MiB",
    422: "Invalid input (the message says which field and why)",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route really gives, each in the contract's shape."""
    return {code: {"model": ErrorOut, "description": _ERROR_TEXT[code]} for code in codes}


async def wait_for_decision(svc: Services, who: Principal, kind: str, request_id: str, wait: float) -> RequestView:
    """Hold the answer until the request leaves pending or ``wait`` seconds pass (no polling).

    Every change to a request notifies, so a wait that ends without a notification (and before the expiry)
    answers with the view it already has: a renewing long-poll costs one read, not two.
    """
    with svc.notifier.subscribe(request_id) as changed:
        view = await service.get_view(svc, who, kind, request_id)
        request = view.request
        if wait <= 0 or request.status != "pending":
            return view
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            timeout = deadline - asyncio.get_running_loop().time()
            if request.expires_at is not None:
                timeout = min(timeout, (request.expires_at - utcnow()).total_seconds() + 0.01)
            if timeout <= 0:
                break
            try:
                async with asyncio.timeout(timeout):
                    await changed.wait()
            except TimeoutError:
                break
            changed.clear()
            view = await service.get_view(svc, who, kind, request_id)
            if view.request.status != "pending":
                return view
        if service.is_due_to_expire(request):
            return await service.get_view(svc, who, kind, request_id)
    return view


def as_json(model: BaseModel, status: int = 200, *, by_alias: bool = False) -> Response:
    """The model as the response, serialized once: the route's response_model still documents it, but FastAPI
    would validate the model it was just given all over again (a measurable share of a submit's CPU)."""
    body = model.model_dump_json(by_alias=by_alias).encode()
    return Response(body, status_code=status, media_type="application/json")


def _register(
    kind: str,
    plural: str,
    create_model: type[ApprovalCreate] | type[QuestionCreate],
    out_model: type[BaseModel],
    present: Callable[[RequestView], Any],
    page_model: type[BaseModel],
    statuses: frozenset[str],
) -> None:
    label = kind.capitalize()

    async def create(
        body: create_model,  # type: ignore[valid-type]
        who: Principal = Depends(principal),
        svc: Services = Depends(services),
    ) -> Any:
        view, created = await service.create_request(svc, who, body)
        return as_json(present(view), 201 if created else 200)

    async def get(
        request_id: str,
        wait: float = Query(0, ge=0, le=60, description="Hold the answer up to this many seconds for a decision."),
        who: Principal = Depends(principal),
        svc: Services = Depends(services),
    ) -> Any:
        return as_json(present(await wait_for_decision(svc, who, kind, request_id, wait)))

    status_type = Literal[tuple(sorted(statuses))]  # type: ignore[valid-type]  # typed in the OpenAPI as an enum

    async def listing(
        status: status_type | None = Query(None, description="Only requests in this status."),  # type: ignore[valid-type]
        run_id: str | None = Query(None, max_length=200),
        call_id: str | None = Query(None, max_length=200),
        recipient: str | None = Query(None, max_length=320, description="Only requests sent to this address."),
        limit: int = Query(50, ge=1, le=200),
        cursor: str | None = Query(None, max_length=64, description="next_cursor of the previous page."),
        who: Principal = Depends(principal),
        svc: Services = Depends(services),
    ) -> Any:
        if status is not None and status not in statuses:
            raise InvalidInputError(f"status must be one of {', '.join(sorted(statuses))}")
        filters = service.Filters(
            status=status, run_id=run_id, call_id=call_id, recipient=recipient, before=cursor, limit=limit
        )
        views, next_cursor = await service.list_for_agent(svc, who, kind, filters)
        return {"data": [present(v) for v in views], "next_cursor": next_cursor}

    async def cancel(request_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)) -> Any:
        return present(await service.cancel(svc, who, kind, request_id))

    async def events(
        request_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
    ) -> list[EventOut]:
        rows = await service.list_events(svc, who, kind, request_id)
        return [
            EventOut(
                id=e.id or 0,
                at=e.at,
                type=e.type,
                actor=e.actor,
                data=e.data,
                seq=e.seq,
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in rows
        ]

    tags: list[str | Enum] = [plural]
    router.add_api_route(
        f"/{plural}",
        listing,
        methods=["GET"],
        response_model=page_model,
        tags=tags,
        summary=f"List your {plural}, newest first (filters, cursor pagination)",
        responses=_errors(401, 422),
        name=f"list_{plural}",
    )
    router.add_api_route(
        f"/{plural}",
        create,
        methods=["POST"],
        status_code=201,
        response_model=out_model,
        tags=tags,
        summary=f"Create {'an' if kind == 'approval' else 'a'} {kind}",
        responses={
            200: {"model": out_model, "description": "The same call_id with the same content again: the existing one"},
            **_errors(401, 409, 413, 422),
        },
        name=f"create_{kind}",
    )
    router.add_api_route(
        f"/{plural}/{{request_id}}",
        get,
        methods=["GET"],
        response_model=out_model,
        tags=tags,
        summary=f"Get a {kind}, optionally waiting for its decision",
        responses=_errors(401, 404, 422),
        name=f"get_{kind}",
    )
    router.add_api_route(
        f"/{plural}/{{request_id}}/cancel",
        cancel,
        methods=["POST"],
        response_model=out_model,
        tags=tags,
        summary=f"Cancel a pending {kind}",
        responses=_errors(401, 404, 409, 413),
        name=f"cancel_{kind}",
    )
    router.add_api_route(
        f"/{plural}/{{request_id}}/events",
        events,
        methods=["GET"],
        response_model=list[EventOut],
        tags=tags,
        summary=f"{label} audit trail, oldest first",
        responses=_errors(401, 404),
        name=f"{kind}_events",
    )


async def answer_approval(
    request_id: str,
    body: ApprovalAnswer,
    who: Principal = Depends(responder),
    svc: Services = Depends(services),
) -> Any:
    view = await service.answer_for(
        svc,
        who,
        "approval",
        request_id,
        body.approver,
        decision=body.decision,
        comment=body.comment,
        option=body.reject_option,
        edits=body.edited_kwargs,
    )
    return as_json(approval_out(view))


async def answer_question(
    request_id: str,
    body: QuestionAnswer,
    who: Principal = Depends(responder),
    svc: Services = Depends(services),
) -> Any:
    view = await service.answer_for(
        svc,
        who,
        "question",
        request_id,
        body.responder,
        decision="answer",
        comment=body.response,
        option=body.response_option,
        data=body.response_data,
    )
    return as_json(question_out(view))


for _path, _route, _model, _kind in (
    ("/approvals/{request_id}/responses", answer_approval, ApprovalOut, "approval"),
    ("/questions/{request_id}/responses", answer_question, QuestionOut, "question"),
):
    router.add_api_route(
        _path,
        _route,
        methods=["POST"],
        response_model=_model,
        tags=[f"{_kind}s"],
        summary=f"Answer {'an' if _kind == 'approval' else 'a'} {_kind} on behalf of one of its recipients"
        " (a responder key)",
        responses=_errors(401, 403, 404, 409, 413, 422),
        name=f"answer_{_kind}",
    )


class ApprovalPage(BaseModel):
    data: list[ApprovalOut]
    next_cursor: str | None


class QuestionPage(BaseModel):
    data: list[QuestionOut]
    next_cursor: str | None


_register(
    "approval",
    "approvals",
    ApprovalCreate,
    ApprovalOut,
    approval_out,
    ApprovalPage,
    frozenset({"pending", "approved", "rejected", "expired", "cancelled"}),
)
_register(
    "question",
    "questions",
    QuestionCreate,
    QuestionOut,
    question_out,
    QuestionPage,
    frozenset({"pending", "answered", "expired", "cancelled"}),
)
