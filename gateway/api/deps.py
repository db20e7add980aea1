"""FastAPI dependencies: the shared services and the calling agent's identity."""

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import UnauthorizedError
from gateway.keys import Principal
from gateway.services import Services

_bearer = HTTPBearer(auto_error=False, description="An API key from `gateway keys create` (or `gateway dev`).")


def _services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop per request.
    return _services(request)


async def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError("send your API key as `Authorization: Bearer <key>`")
    found = await _services(request).keys.authenticate(credentials.credentials)
    if found is None:
        raise UnauthorizedError("this API key is not valid")
    return found
