"""The HTTP API (``prunetune serve``): routes only; the work is in ``service/jobs.py``.

Every route but ``/health`` needs ``Authorization: Bearer <token>``; a token acts on its
owner's jobs and schedules only (another owner's are 404 to it), an admin token on all.
Errors are JSON: ``{"error": {"type", "message", "field", "value", "allowed"}}``, values
echoed cut to a few hundred characters; a rejected request writes nothing. A request body
over ``PRUNETUNE_MAX_BODY`` bytes (default 256 KiB; ``serve --max-body``) is a 413.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prunetune import __version__
from prunetune.errors import SHOWN_CHARS, SpecError, shown
from prunetune.service.jobs import JobService
from prunetune.service.roots import refuse_code
from prunetune.store.db import ConflictError, DatabaseUnavailableError, NotFoundError, StoreError
from prunetune.store.tokens import Principal, authenticate

log = logging.getLogger(__name__)

MAX_BODY_ENV = "PRUNETUNE_MAX_BODY"
DEFAULT_MAX_BODY = 256 * 1024  # bytes: a spec is a few KB; a schedule's or an export's less
_MAX_ID = 2**63 - 1  # ids are 64-bit in the database; a larger number is a 422, not a driver overflow
JobId = Annotated[int, Path(ge=0, le=_MAX_ID, description="job id")]


def _schedule_key(key: str) -> int | str:
    """A schedule's id (digits that fit a database integer) or its name."""
    return int(key) if key.isdigit() and int(key) <= _MAX_ID else key


class SubmitRequest(BaseModel):
    spec: dict[str, Any] = Field(description="a job spec, as in the YAML files")


class ExportRequest(BaseModel):
    trial: int = Field(ge=0, description="trial number (a completed trial of the job)")
    out: str = Field(min_length=1, description="folder on the server to write the pruned model to")
    overwrite: bool = Field(False, description="replace the files of a non-empty folder (atomically)")
    format: Literal["dense", "compressed-tensors"] = Field(
        "dense", description="unstructured/N:M weights: dense safetensors or compressed-tensors bitmasks")


class ScheduleRequest(BaseModel):
    spec: dict[str, Any]
    cron: str = Field(min_length=1, examples=["0 2 * * *"])
    name: str = Field(min_length=1, max_length=100)
    timezone: str = Field("UTC", description="IANA zone the cron is read in", examples=["Europe/Berlin"])
    catch_up: str = Field("once", description="after downtime: once | all | skip")
    warm_start: bool = Field(True, description="seed each run with the previous run's front")
    reseed: bool = Field(True, description="a different seed for each run")


class ScheduleUpdate(BaseModel):
    enabled: bool


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None,
                 value: Any = None, allowed: str | None = None, kind: str = "error") -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.value, self.allowed, self.kind = (
            status, message, field, value, allowed, kind)


def _echo(value: Any) -> Any:
    """A value as an error may echo it: numbers as they are, anything else cut short."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and len(value) <= SHOWN_CHARS:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # a lone surrogate: its escaped repr is what can be sent
            return ascii(value)
    return ascii(value) if len(ascii(value)) <= SHOWN_CHARS else shown(value).encode("utf-8", "backslashreplace").decode()


def _error(status: int, kind: str, message: str, field: str | None = None, value: Any = None,
           allowed: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    if len(message) > 4 * SHOWN_CHARS:
        message = f"{message[:4 * SHOWN_CHARS]}... ({len(message) - 4 * SHOWN_CHARS} more characters)"
    body = {"type": kind, "message": message, "field": field, "value": _echo(value), "allowed": allowed}
    try:
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    except (TypeError, ValueError):  # not JSON, or not UTF-8 (a lone surrogate): its repr is
        body = {k: (v if k == "type" else None if v is None else ascii(v)) for k, v in body.items()}
        return JSONResponse({"error": body}, status_code=status, headers=headers)


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
        response = _error(413, "too_large", f"request body of {got} bytes; at most {self.limit} bytes "
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
    app.add_middleware(BodyLimit, limit=max_body_bytes or max_body())
    bearer = HTTPBearer(auto_error=False)

    def owner(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
        if cred is None:
            raise ApiError(401, "missing bearer token; send 'Authorization: Bearer <token>' "
                           "(create one with `prunetune token create`)", field="Authorization", kind="unauthorized")
        who = authenticate(db, cred.credentials)
        if who is None:
            raise ApiError(401, "invalid or revoked token", field="Authorization", kind="unauthorized")
        return who

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return _error(err.status, err.kind, err.message, err.field, err.value, err.allowed, headers)

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, err: SpecError) -> JSONResponse:
        return _error(422, "invalid_spec", str(err), err.field, err.value, err.allowed)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        if first.get("type") == "json_invalid":  # loc is ("body", <character offset>)
            at = first.get("loc", ("body", "?"))[-1]
            return _error(422, "invalid_request", f"the request body is not valid JSON (at character {at}): "
                          f"{first.get('ctx', {}).get('error', first.get('msg'))}", "body", None, "a JSON object")
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        value = first.get("input") if first.get("type") != "missing" else None
        return _error(422, "invalid_request", f"field '{field}': {first.get('msg')}", field, value, first.get("msg"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no such route, method not allowed, an unparsable body)
        # in the documented error shape, not {"detail": ...}.
        kinds = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}
        return _error(err.status_code, kinds.get(err.status_code, "error"), str(err.detail),
                      headers=getattr(err, "headers", None))

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, err: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(err), "id", err.key)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, err: ConflictError) -> JSONResponse:
        return _error(409, "conflict", str(err), err.field, err.value, err.allowed)

    @app.exception_handler(DatabaseUnavailableError)
    async def _unavailable(_: Request, err: DatabaseUnavailableError) -> JSONResponse:
        return _error(503, "unavailable", str(err))

    @app.exception_handler(StoreError)
    async def _store(_: Request, err: StoreError) -> JSONResponse:
        return _error(500, "database", str(err))

    @app.get("/health")
    def health() -> dict[str, Any]:
        from prunetune.store.db import current_revision

        return {"status": "ok", "version": __version__, "schema": current_revision(db)}

    @app.post("/jobs", status_code=201)
    def submit(body: SubmitRequest, who: Principal = Depends(owner),
               idempotency_key: Annotated[str | None, Header(
                   min_length=1, max_length=200,
                   description="a retry with the same key (and spec) returns the first job")] = None,
               ) -> dict[str, Any]:
        refuse_code(body.spec)
        return service.submit(body.spec, owner=who.owner, idempotency_key=idempotency_key)

    @app.get("/jobs")
    def list_jobs(who: Principal = Depends(owner), state: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return service.list_jobs(state=state, limit=limit, who=who)

    @app.get("/jobs/{job_id}")
    def get_job(job_id: JobId, who: Principal = Depends(owner)) -> dict[str, Any]:
        return service.get(job_id, who)

    @app.get("/jobs/{job_id}/front")
    def front(job_id: JobId, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
        return service.front(job_id, who)

    @app.get("/jobs/{job_id}/trials")
    def trials(job_id: JobId, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
        return service.trials(job_id, who)

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: JobId, who: Principal = Depends(owner)) -> dict[str, Any]:
        return service.cancel(job_id, who)

    @app.post("/jobs/{job_id}/export", status_code=201)
    def export(job_id: JobId, body: ExportRequest, who: Principal = Depends(owner)) -> dict[str, Any]:
        return service.export(job_id, body.trial, body.out, who, overwrite=body.overwrite, format=body.format)

    @app.post("/schedules", status_code=201)
    def schedule(body: ScheduleRequest, who: Principal = Depends(owner)) -> dict[str, Any]:
        refuse_code(body.spec)
        return service.schedule(body.spec, body.cron, body.name, owner=who.owner, timezone=body.timezone,
                                catch_up=body.catch_up, warm_start=body.warm_start, reseed=body.reseed)

    @app.get("/schedules")
    def schedules(who: Principal = Depends(owner)) -> list[dict[str, Any]]:
        return service.schedules(who)

    @app.get("/schedules/{key}/runs")
    def schedule_runs(key: str, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
        return service.schedule_runs(_schedule_key(key), who)

    @app.patch("/schedules/{key}")
    def update_schedule(key: str, body: ScheduleUpdate, who: Principal = Depends(owner)) -> dict[str, Any]:
        return service.set_schedule_enabled(_schedule_key(key), body.enabled, who)

    @app.get("/jobs/{job_id}/comparison")
    def comparison(job_id: JobId, who: Principal = Depends(owner)) -> dict[str, Any] | None:
        return service.comparison(job_id, who)

    @app.get("/jobs/{job_id}/report", response_class=HTMLResponse)
    def report(job_id: JobId, who: Principal = Depends(owner)) -> HTMLResponse:
        return HTMLResponse(service.report(job_id, who))

    return app
