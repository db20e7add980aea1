"""``/r/<token>``: the page behind every emailed link.

GET and HEAD only show (mail scanners fetch every link, and some run its scripts); the form's POST decides,
once per recipient, with a CSRF field. Every refusal is a page a person can read, with a 4xx status.
"""

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway import forms
from gateway.api.deps import services
from gateway.approvals import lifecycle, service
from gateway.approvals.views import RequestView
from gateway.errors import (
    AlreadyRespondedError,
    ArgumentsChangedError,
    FieldsRefusedError,
    GatewayError,
    NotAnApproverError,
    NotPendingError,
)
from gateway.links.tokens import TokenError, TokenExpiredError
from gateway.mail.compose import (
    answer_fields,
    argument_rows,
    changed_arguments,
    current_kwargs,
    edit_fields,
    links_for,
    page_title,
    policy_text,
)
from gateway.models import Recipient
from gateway.models import Request as Req
from gateway.services import Services

router = APIRouter(include_in_schema=False)

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


class LinkPageError(Exception):
    """A page that refuses, with its status. ``view``: the request it is about, when the link still names one
    (an expired link shows what expired, read-only)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        view: RequestView | None = None,
        recipient: Recipient | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.view = view
        self.recipient = recipient
        super().__init__(title)


def render(svc: Services, name: str, status: int, **ctx: Any) -> HTMLResponse:
    html = svc.templates.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def error_page(svc: Services, exc: LinkPageError, agent: str = "the agent") -> HTMLResponse:
    if exc.view is not None and exc.recipient is not None:  # an expired link: what it was for, read-only
        ctx = page_context(svc, exc.view, exc.recipient, None, agent=agent)
        ctx["can_answer"], ctx["link_expired"] = False, True
        return render(svc, "pages/request.html", exc.status, done=False, **ctx)
    return render(svc, "pages/message.html", exc.status, title=exc.title, detail=exc.detail)


async def agent_name(svc: Services, request: Req) -> str:
    async with svc.db.read() as session:
        return await lifecycle.agent_name(session, request)


def human_message(exc: GatewayError, request: Req) -> str:
    """A refusal in a person's words, naming the request by its reference, never by an internal id."""
    if isinstance(exc, AlreadyRespondedError):
        return f"you have already answered this request (#{request.ref}); each person answers once."
    if isinstance(exc, NotPendingError):
        return f"this request (#{request.ref}) is already {exc.request_status}."
    return exc.message


async def resolve(svc: Services, token: str) -> tuple[RequestView, Recipient]:
    try:
        claim = svc.signer.verify_link(token)
    except TokenExpiredError as exc:
        found = await service.view_for_recipient(svc, exc.recipient_id) if exc.recipient_id else None
        raise LinkPageError(
            410,
            "This link has expired",
            "The request it belongs to is no longer open.",
            view=found[0] if found else None,
            recipient=found[1] if found else None,
        ) from exc
    except TokenError as exc:
        raise LinkPageError(
            400,
            "This link is not valid",
            "It may have been cut short or altered. Open it from the email again.",
        ) from exc
    found = await service.view_for_recipient(svc, claim.recipient_id)
    if found is None:
        raise LinkPageError(404, "Request not found", "This link points to a request this gateway does not know.")
    return found


EDIT_PREFIX = "kwargs."  # the contract's name of an editable argument's field


def _inputs(request: Req, typed: dict[str, str] | None) -> dict[str, str]:
    """What each input shows: what the person typed (after a refused submit), else the current value."""
    shown: dict[str, str] = {}
    current = current_kwargs(request)
    for field in edit_fields(request):
        shown[EDIT_PREFIX + field.name] = field.as_input(current.get(field.name))
    for field in answer_fields(request):
        shown[field.name] = field.as_input(field.default)
    if typed is not None:
        for name in shown:
            shown[name] = typed.get(name, "")
    return shown


def page_context(
    svc: Services,
    view: RequestView,
    recipient: Recipient,
    preselect: str | None,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    agent: str = "An agent",
) -> dict[str, Any]:
    request = view.request
    mine = next((r for r in view.responses if r.recipient_id == recipient.id and r.round == request.round), None)
    earlier = next((r for r in view.responses if r.recipient_id == recipient.id and r.round < request.round), None)
    approvers = sum(1 for r in view.recipients if r.role == "to")
    email = request.channel["email"]
    return {
        "request": request,
        "kind": request.kind,
        "title": page_title(request),
        "agent": agent,
        "link_expired": False,
        "recipient": recipient,
        "mine": mine,
        "earlier": earlier,
        "responses": view.responses,
        "arguments": argument_rows(current_kwargs(request)),
        "changed": changed_arguments(request),
        "edit_fields": edit_fields(request),
        "answer_fields": answer_fields(request),
        "inputs": _inputs(request, typed),
        "errors": errors or {},
        "edit_prefix": EDIT_PREFIX,
        "context": email.get("context"),
        "options": request.options or [],
        "policy_text": policy_text(request, approvers),
        "links": (links := links_for(svc, recipient, request)),
        "post_url": urlsplit(links.page).path,
        "csrf_token": svc.signer.sign_csrf(recipient.id),
        "preselect": preselect,
        "comment_typed": "",
        "can_answer": request.status == "pending" and mine is None and recipient.role == "to",
    }


async def _show(svc: Services, http: Request, token: str, preselect: str | None, done: bool = False) -> Response:
    try:
        view, recipient = await resolve(svc, token)
    except LinkPageError as exc:
        return error_page(svc, exc, await agent_name(svc, exc.view.request) if exc.view else "the agent")
    if http.method == "GET":
        await service.record_event(
            svc,
            view.request.id,
            "link_opened",
            recipient.address,
            ip=http.client.host if http.client else None,
            user_agent=http.headers.get("user-agent", "")[:300],
        )
    ctx = page_context(svc, view, recipient, preselect, agent=await agent_name(svc, view.request))
    return render(svc, "pages/request.html", 200, done=done, **ctx)


@router.api_route("/r/inbox/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def inbox(token: str, svc: Services = Depends(services)) -> Response:
    """An approver's inbox: every request still waiting for them, each opening its own page (which decides only
    by its form, like every link). Registered before ``/r/{token}/{action}``, which would take it otherwise."""
    try:
        address = svc.signer.verify_inbox(token)
    except TokenExpiredError:
        detail = "Open the newest request mail for a fresh link to everything waiting for you."
        return error_page(svc, LinkPageError(410, "This link has expired", detail))
    except TokenError:
        detail = "It may have been cut short or altered. Open it from the email again."
        return error_page(svc, LinkPageError(400, "This link is not valid", detail))
    items = [
        {
            "kind": w.request.kind,
            "ref": w.request.ref,
            "title": page_title(w.request),
            "agent": w.agent,
            "created": w.request.created_at,
            "expires": w.request.expires_at,
            "page": links_for(svc, w.recipient, w.request).page,
        }
        for w in await service.waiting_for(svc, address)
    ]
    return render(svc, "pages/inbox.html", 200, address=address, items=items)


@router.api_route("/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def show(token: str, http: Request, done: str = "", svc: Services = Depends(services)) -> Response:
    return await _show(svc, http, token, None, done == "1")


@router.api_route("/r/{token}/{action}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def show_action(token: str, action: str, http: Request, svc: Services = Depends(services)) -> Response:
    if action not in ("approve", "reject", "answer"):
        return error_page(svc, LinkPageError(404, "Page not found", "This address does not match any action."))
    return await _show(svc, http, token, action)


@router.api_route("/r/{token}/option/{name}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def show_option(token: str, name: str, http: Request, svc: Services = Depends(services)) -> Response:
    return await _show(svc, http, token, f"option:{name}")


def _edits(request: Req, form: dict[str, str]) -> dict[str, Any] | None:
    """The editable arguments as the form gives them (the service keeps only those that changed). An emptied
    text input is an empty string, not a missing value."""
    # A field the form did not send at all is left as it is (a checkbox is the exception: unticked sends nothing).
    fields = [f for f in edit_fields(request) if EDIT_PREFIX + f.name in form or f.widget == "checkbox"]
    if not any(EDIT_PREFIX + f.name in form for f in fields):
        return None
    current = current_kwargs(request)
    values = forms.read_form(fields, form, EDIT_PREFIX)
    for field in fields:
        if field.name not in values and isinstance(current.get(field.name), str) and EDIT_PREFIX + field.name in form:
            values[field.name] = ""
    return values


@router.post("/r/{token}", response_class=HTMLResponse)
async def submit(
    token: str,
    http: Request,
    csrf_token: Annotated[str, Form()] = "",
    decision: Annotated[str | None, Form()] = None,
    option: Annotated[str | None, Form()] = None,
    reject_option: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,  # cut to service.MAX_COMMENT, as on every route
    response: Annotated[str | None, Form()] = None,
    shown_round: Annotated[str | None, Form(alias="round")] = None,  # the arguments' round the page showed
    svc: Services = Depends(services),
) -> Response:
    form = {k: v for k, v in (await http.form()).items() if isinstance(v, str)}
    view: RequestView | None = None
    try:
        view, recipient = await resolve(svc, token)
        try:
            svc.signer.verify_csrf(csrf_token, recipient.id)
        except TokenError as exc:
            raise LinkPageError(
                403, "This form has expired", "Open the link from the email again and submit the fresh form."
            ) from exc
        kind = view.request.kind
        meta = {"ip": http.client.host if http.client else None}
        seen_round = _round(shown_round)
        if kind == "approval":
            if decision not in ("approve", "reject"):
                raise LinkPageError(400, "Choose approve or reject", "The form was sent without a decision.")
            edits = _edits(view.request, form) if decision == "approve" else None
            await service.respond(
                svc,
                recipient.id,
                decision=decision,
                via="link",
                comment=comment,
                option=(reject_option or None) if decision == "reject" else None,
                meta=meta,
                edits=edits,
                seen_round=seen_round,
            )
        elif answer_fields(view.request):
            data = forms.read_form(answer_fields(view.request), form)
            await service.respond(svc, recipient.id, decision="answer", via="link", data=data, meta=meta)
        else:
            text = (response or comment or "").strip()
            chosen = option or None
            if not text and chosen:
                match = next((o for o in view.request.options or [] if o["name"] == chosen), None)
                text = (match or {}).get("title") or chosen
            if not text:
                raise LinkPageError(400, "Write an answer", "The form was sent without an answer.")
            await service.respond(
                svc, recipient.id, decision="answer", via="link", comment=text, option=chosen, meta=meta
            )
    except LinkPageError as exc:
        return error_page(svc, exc, await agent_name(svc, exc.view.request) if exc.view else "the agent")
    except (forms.FieldErrors, FieldsRefusedError) as exc:
        assert view is not None
        return await _refused_fields(svc, view, recipient, form, exc.errors)
    except (NotPendingError, AlreadyRespondedError, ArgumentsChangedError) as exc:
        return await _conflict(svc, http, token, exc)
    except NotAnApproverError as exc:
        return error_page(svc, LinkPageError(403, "You were copied for information", exc.message))
    except GatewayError as exc:
        return error_page(svc, LinkPageError(exc.status, "This answer was not accepted", exc.message))
    return RedirectResponse(f"/r/{token}?done=1", status_code=303, headers={"Cache-Control": "no-store"})


def _round(value: str | None) -> int | None:
    """The round of the arguments the page showed; a form that says something else is not one we sent (a page
    never has a 422 in JSON)."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 9:
        raise LinkPageError(400, "This form is not one we sent", "Open the link from the email again.")
    return int(value)


async def _refused_fields(
    svc: Services, view: RequestView, recipient: Recipient, form: dict[str, str], errors: dict[str, str]
) -> Response:
    """The page again, with what the person typed and a message beside each field that was wrong."""
    prefix = EDIT_PREFIX if view.request.kind == "approval" else ""
    keyed = {(prefix + k if k else ""): v for k, v in errors.items()}
    agent = await agent_name(svc, view.request)
    ctx = page_context(svc, view, recipient, form.get("decision"), typed=form, errors=keyed, agent=agent)
    ctx["comment_typed"] = form.get("comment", "")
    return render(svc, "pages/request.html", 422, done=False, **ctx)


async def _conflict(svc: Services, http: Request, token: str, exc: GatewayError) -> Response:
    view, recipient = await resolve(svc, token)
    ctx = page_context(svc, view, recipient, None, agent=await agent_name(svc, view.request))
    return render(svc, "pages/request.html", 409, done=False, refused=human_message(exc, view.request), **ctx)
