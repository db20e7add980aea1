"""The app factory. Its lifespan owns the runtime: engine, mailer and workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from gateway import __version__, observability
from gateway.agents.routes import router as agents_router
from gateway.api import errors
from gateway.approvals.routes import router as approvals_router
from gateway.humanlayer.routes import router as humanlayer_router
from gateway.inbound.routes import router as inbound_router
from gateway.links.routes import router as links_router
from gateway.runtime import Runtime

DESCRIPTION = """Email-first approvals and questions for AI agents.

An agent submits an approval (a function and its arguments) or a question; each recipient gets an email with
personal, signed links and can also answer by replying. Wait for the decision with `GET …?wait=N`.
"""


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await runtime.start()
        app.state.dev_mailbox = runtime.dev_mailbox
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Approval gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own copy of Swagger UI: /docs works without internet
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(errors.BodyLimit)
    app.include_router(approvals_router)
    app.include_router(links_router)
    app.include_router(inbound_router)
    app.include_router(humanlayer_router)
    app.include_router(agents_router)
    if runtime.dev_mailbox is not None:
        from gateway.dev.routes import router as dev_router

        app.include_router(dev_router)

    @app.get("/healthz", tags=["health"], summary="200 while the database answers; says if anything is stuck")
    async def healthz() -> JSONResponse:
        status, body = await observability.health(runtime)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(await observability.metrics(runtime), media_type="text/plain; version=0.0.4")

    _offline_docs(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the fastapi-offline package's copy, not a CDN (a self-hosted gateway often has no
    way out, and a page that loads scripts from elsewhere is a page someone else can change)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = files("fastapi_offline") / "static"
    app.mount("/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )


class Server(uvicorn.Server):
    """uvicorn's server, ending the app's event streams when it stops: they would hold the graceful shutdown
    for ever (their clients reconnect, to another replica or to this one once it is back).

    It also ticks once a second, not ten times (uvicorn's tick refreshes the Date header each second and looks
    for a signal to stop): a signal wakes it at once instead, and a server holding thousands of waiting agents
    is otherwise idle."""

    _exit_wakeup: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _should_exit = False

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        # Set by a signal's handler or by whoever runs the server (tests): the tick waits no longer.
        self._should_exit = value
        if value and self._loop is not None and self._exit_wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits any more
                self._loop.call_soon_threadsafe(self._exit_wakeup.set)

    async def main_loop(self) -> None:
        self._loop, self._exit_wakeup = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # uvicorn refreshes the Date header when the count is a multiple of 10
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_wakeup.wait()
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None:
            services.streams.end_all()
        await super().shutdown(sockets)
