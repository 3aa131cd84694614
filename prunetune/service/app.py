"""The HTTP API (``prunetune serve``): the app, its body limit and its routers (in
``service/routes/``); the work is in ``service/jobs.py``.

Every route but ``/health`` needs ``Authorization: Bearer <token>``; a token acts on its
owner's jobs and schedules only (another owner's are 404 to it), an admin token on all.
Errors are JSON: ``{"error": {"type", "message", "field", "value", "allowed"}}``, values
echoed cut to a few hundred characters; a rejected request writes nothing. A request body
over ``PRUNETUNE_MAX_BODY`` bytes (default 256 KiB; ``serve --max-body``) is a 413.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prunetune import __version__
from prunetune.service.jobs import JobService
from prunetune.service.routes import health, jobs, schedules
from prunetune.service.routes.errors import add_error_handlers, error_response

log = logging.getLogger(__name__)

MAX_BODY_ENV = "PRUNETUNE_MAX_BODY"
DEFAULT_MAX_BODY = 256 * 1024  # bytes: a spec is a few KB; a schedule's or an export's less


class BodyLimit:
    """Answer 413 to a request whose body exceeds ``limit`` bytes, before the app reads
    it: by its Content-Length when it sends one, else by counting the chunks as they come."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send, length.decode("latin-1"))
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(send, f"more than {size}")
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, got: str) -> None:
        response = error_response(413, "too_large", f"request body of {got} bytes; at most {self.limit} bytes "
                                  f"(the server's {MAX_BODY_ENV})", "body", got, f"at most {self.limit} bytes")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def max_body() -> int:
    raw = os.environ.get(MAX_BODY_ENV, "")
    if not raw:
        return DEFAULT_MAX_BODY
    if not raw.isdigit() or int(raw) < 1024:
        raise ValueError(f"{MAX_BODY_ENV}: got {raw!r}; a whole number of bytes, at least 1024")
    return int(raw)


def create_app(db: str, max_body_bytes: int | None = None) -> FastAPI:
    """The API over the job database ``db`` (upgraded to the newest schema first);
    request bodies over ``max_body_bytes`` (default :func:`max_body`) are refused."""
    service = JobService(db)
    app = FastAPI(title="prunetune", version=__version__,
                  description="AutoML search for pruning policies: jobs, trials, Pareto fronts, exports.")
    app.state.db, app.state.service = db, service  # what routes.deps hands the routes
    app.add_middleware(BodyLimit, limit=max_body_bytes or max_body())
    add_error_handlers(app)
    for router in (health.router, jobs.router, schedules.router):
        app.include_router(router)
    return app
