"""/humanlayer/v1: HumanLayer's agent API, so agents written with its SDKs move here by setting
HUMANLAYER_API_BASE and HUMANLAYER_API_KEY. Every route is a thin translation onto the gateway's own service (the
same requests, mails, pages, reply reading, audit and webhooks); docs/humanlayer.md has the mapping."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlmodel import select

from gateway.api.deps import principal, responder, services
from gateway.approvals import service
from gateway.approvals.routes import as_json
from gateway.errors import CallIdConflictError, InvalidInputError, NotFoundError
from gateway.humanlayer import mapping
from gateway.humanlayer import schemas as hl
from gateway.keys import Principal
from gateway.models import Request
from gateway.services import Services

router = APIRouter(prefix="/humanlayer/v1", tags=["humanlayer"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text}
    for code, text in (
        (401, "No API key, or one that is not valid"),
        (403, "A key whose role does not allow this"),
        (404, "No such call among those your key made"),
        (409, "The call_id is used with other content, or the request is no longer pending"),
        (422, "Not a call this gateway can serve (the message says why: a channel other than email, a bad address)"),
    )
}


@router.post("/function_calls", response_model=hl.FunctionCallOut, responses=_ERRORS, summary="Create a function call")
async def create_function_call(
    body: hl.FunctionCall, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    view, created = await service.create_request(svc, who, mapping.approval_of(body))
    return as_json(mapping.function_call_out(view.request), 201 if created else 200)


@router.get(
    "/function_calls/{call_id}", response_model=hl.FunctionCallOut, responses=_ERRORS, summary="Get a function call"
)
async def get_function_call(
    call_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    return as_json(mapping.function_call_out(await service.request_by_call_id(svc, who, "approval", call_id)))


@router.post(
    "/contact_requests", response_model=hl.HumanContactOut, responses=_ERRORS, summary="Create a human contact"
)
async def create_human_contact(
    body: hl.HumanContact, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    view, created = await service.create_request(svc, who, mapping.question_of(body))
    return as_json(mapping.human_contact_out(view.request), 201 if created else 200)


@router.get(
    "/contact_requests/{call_id}", response_model=hl.HumanContactOut, responses=_ERRORS, summary="Get a human contact"
)
async def get_human_contact(
    call_id: str, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    return as_json(mapping.human_contact_out(await service.request_by_call_id(svc, who, "question", call_id)))


async def _escalate(svc: Services, who: Principal, kind: str, call_id: str, body: hl.Escalation) -> Any:
    request = await service.request_by_call_id(svc, who, kind, call_id)
    to, cc = mapping.escalation_targets(body)
    return (await service.escalate_now(svc, who, kind, request.id, to, cc, body.escalation_msg)).request


@router.post(
    "/agent/function_calls/{call_id}/escalate_email",
    response_model=hl.FunctionCallOut,
    responses=_ERRORS,
    summary="Escalate a function call: more recipients, or the same ones again, with a note",
)
async def escalate_function_call(
    call_id: str, body: hl.Escalation, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    return as_json(mapping.function_call_out(await _escalate(svc, who, "approval", call_id, body)))


@router.post(
    "/agent/human_contacts/{call_id}/escalate_email",
    response_model=hl.HumanContactOut,
    responses=_ERRORS,
    summary="Escalate a human contact: more recipients, or the same ones again, with a note",
)
async def escalate_human_contact(
    call_id: str, body: hl.Escalation, who: Principal = Depends(principal), svc: Services = Depends(services)
) -> Any:
    return as_json(mapping.human_contact_out(await _escalate(svc, who, "question", call_id, body)))


async def _by_call_id_anywhere(svc: Services, kind: str, call_id: str) -> str:
    """A responder answers for any agent: the call_id must name one request of that kind."""
    async with svc.db.read() as session:
        query = select(Request.id).where(Request.call_id == call_id, Request.kind == kind).limit(2)
        found = list((await session.exec(query)).all())
    if not found:
        raise NotFoundError(kind, call_id)
    if len(found) > 1:
        raise CallIdConflictError(call_id, f"several agents' requests; answer by id at /v1/{kind}s/{{id}}/responses")
    return found[0]


@router.post(
    "/agent/function_calls/{call_id}/respond",
    response_model=hl.FunctionCallOut,
    responses=_ERRORS,
    summary="Answer a function call on a recipient's behalf (a responder key)",
)
async def respond_function_call(
    call_id: str, body: hl.FunctionCallStatusIn, who: Principal = Depends(responder), svc: Services = Depends(services)
) -> Any:
    if body.approved is None:
        raise InvalidInputError("approved: true or false")
    request_id = await _by_call_id_anywhere(svc, "approval", call_id)
    view = await service.answer_for(
        svc,
        who,
        "approval",
        request_id,
        body.approver,
        decision="approve" if body.approved else "reject",
        comment=body.comment,
        option=body.reject_option_name if not body.approved else None,
    )
    return as_json(mapping.function_call_out(view.request))


@router.post(
    "/agent/human_contacts/{call_id}/respond",
    response_model=hl.HumanContactOut,
    responses=_ERRORS,
    summary="Answer a human contact on a recipient's behalf (a responder key)",
)
async def respond_human_contact(
    call_id: str, body: hl.HumanContactStatusIn, who: Principal = Depends(responder), svc: Services = Depends(services)
) -> Any:
    if not (body.response or "").strip() and body.response_option_name is None:
        raise InvalidInputError("response: give the answer's text (or response_option_name)")
    request_id = await _by_call_id_anywhere(svc, "question", call_id)
    view = await service.answer_for(
        svc,
        who,
        "question",
        request_id,
        body.responder,
        decision="answer",
        comment=body.response,
        option=body.response_option_name,
    )
    return as_json(mapping.human_contact_out(view.request))
