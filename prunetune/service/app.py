"""The HTTP API (``prunetune serve``): routes only; the work is in ``service/jobs.py``.

Every route but ``/health`` needs ``Authorization: Bearer <token>``. Errors are JSON:
``{"error": {"type", "message", "field", "value", "allowed"}}``; a rejected request
writes nothing.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from prunetune import __version__
from prunetune.errors import SpecError
from prunetune.service.jobs import JobService
from prunetune.service.roots import refuse_code
from prunetune.store.db import ConflictError, DatabaseUnavailableError, NotFoundError, StoreError
from prunetune.store.tokens import verify_token

log = logging.getLogger(__name__)

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


def _error(status: int, kind: str, message: str, field: str | None = None, value: Any = None,
           allowed: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": kind, "message": message, "field": field, "value": value, "allowed": allowed}
    try:
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    except (TypeError, ValueError):
        body["value"] = repr(value)
        return JSONResponse({"error": body}, status_code=status, headers=headers)


def create_app(db: str) -> FastAPI:
    """The API over the job database ``db`` (upgraded to the newest schema first)."""
    service = JobService(db)
    app = FastAPI(title="prunetune", version=__version__,
                  description="AutoML search for pruning policies: jobs, trials, Pareto fronts, exports.")
    bearer = HTTPBearer(auto_error=False)

    def owner(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if cred is None:
            raise ApiError(401, "missing bearer token; send 'Authorization: Bearer <token>' "
                           "(create one with `prunetune token create`)", field="Authorization", kind="unauthorized")
        who = verify_token(db, cred.credentials)
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
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        value = first.get("input") if first.get("type") != "missing" else None
        return _error(422, "invalid_request", f"field '{field}': {first.get('msg')}", field, value, first.get("msg"))

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
    def submit(body: SubmitRequest, who: str = Depends(owner)) -> dict[str, Any]:
        refuse_code(body.spec)
        return service.submit(body.spec, owner=who)

    @app.get("/jobs")
    def list_jobs(who: str = Depends(owner), state: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return service.list_jobs(state=state, limit=limit)

    @app.get("/jobs/{job_id}")
    def get_job(job_id: JobId, who: str = Depends(owner)) -> dict[str, Any]:
        return service.get(job_id)

    @app.get("/jobs/{job_id}/front")
    def front(job_id: JobId, who: str = Depends(owner)) -> list[dict[str, Any]]:
        return service.front(job_id)

    @app.get("/jobs/{job_id}/trials")
    def trials(job_id: JobId, who: str = Depends(owner)) -> list[dict[str, Any]]:
        return service.trials(job_id)

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: JobId, who: str = Depends(owner)) -> dict[str, Any]:
        return service.cancel(job_id)

    @app.post("/jobs/{job_id}/export", status_code=201)
    def export(job_id: JobId, body: ExportRequest, who: str = Depends(owner)) -> dict[str, Any]:
        return service.export(job_id, body.trial, body.out)

    @app.post("/schedules", status_code=201)
    def schedule(body: ScheduleRequest, who: str = Depends(owner)) -> dict[str, Any]:
        refuse_code(body.spec)
        return service.schedule(body.spec, body.cron, body.name, owner=who, timezone=body.timezone,
                                catch_up=body.catch_up, warm_start=body.warm_start, reseed=body.reseed)

    @app.get("/schedules")
    def schedules(who: str = Depends(owner)) -> list[dict[str, Any]]:
        return service.schedules()

    @app.get("/schedules/{key}/runs")
    def schedule_runs(key: str, who: str = Depends(owner)) -> list[dict[str, Any]]:
        return service.schedule_runs(_schedule_key(key))

    @app.patch("/schedules/{key}")
    def update_schedule(key: str, body: ScheduleUpdate, who: str = Depends(owner)) -> dict[str, Any]:
        return service.set_schedule_enabled(_schedule_key(key), body.enabled)

    @app.get("/jobs/{job_id}/comparison")
    def comparison(job_id: JobId, who: str = Depends(owner)) -> dict[str, Any] | None:
        return service.comparison(job_id)

    @app.get("/jobs/{job_id}/report", response_class=HTMLResponse)
    def report(job_id: JobId, who: str = Depends(owner)) -> HTMLResponse:
        return HTMLResponse(service.report(job_id))

    return app
