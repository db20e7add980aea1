"""FastAPI dependencies: the shared services and the calling agent's identity."""

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import ForbiddenError, UnauthorizedError
from gateway.keys import Principal
from gateway.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key from `gateway keys create` (or `gateway dev`).")


def _services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop per request.
    return _services(request)


async def any_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("send your API key as `Authorization: Bearer <key>`")
    found = await _services(request).keys.authenticate(credentials.credentials)
    if found is None:
        raise UnauthorizedError("this API key is not valid")
    return found


async def principal(who: Principal = Depends(any_key)) -> Principal:
    """An agent's key: makes requests and reads its own."""
    if who.role != "agent":
        raise ForbiddenError(
            f"{who.name!r} is a responder key: it answers requests on a recipient's behalf and makes none"
            " (an agent uses a key from `gateway keys create NAME`)"
        )
    return who


async def responder(who: Principal = Depends(any_key)) -> Principal:
    """A responder's key (`gateway keys create NAME --responder`): answers requests for their recipients."""
    if who.role != "responder":
        raise ForbiddenError(
            "an agent's key cannot answer requests, its own or any other: answers come from the recipients"
            " (links, replies) or from a responder key (`gateway keys create NAME --responder`)"
        )
    return who
