"""``/jobs``: submit, list, read, cancel, export, and a job's front, trials, comparison
and report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from prunetune.service.roots import refuse_code
from prunetune.service.routes.deps import JobId, Service, owner
from prunetune.store.tokens import Principal

router = APIRouter()


class SubmitRequest(BaseModel):
    spec: dict[str, Any] = Field(description="a job spec, as in the YAML files")


class ExportRequest(BaseModel):
    trial: int = Field(ge=0, description="trial number (a completed trial of the job)")
    out: str = Field(min_length=1, description="folder on the server to write the pruned model to")
    overwrite: bool = Field(False, description="replace the files of a non-empty folder (atomically)")
    format: Literal["dense", "compressed-tensors"] = Field(
        "dense", description="unstructured/N:M weights: dense safetensors or compressed-tensors bitmasks")


@router.post("/jobs", status_code=201)
def submit(body: SubmitRequest, service: Service, who: Principal = Depends(owner),
           idempotency_key: Annotated[str | None, Header(
               min_length=1, max_length=200,
               description="a retry with the same key (and spec) returns the first job")] = None,
           ) -> dict[str, Any]:
    refuse_code(body.spec)
    return service.submit(body.spec, owner=who.owner, idempotency_key=idempotency_key)


@router.get("/jobs")
def list_jobs(service: Service, who: Principal = Depends(owner), state: str | None = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return service.list_jobs(state=state, limit=limit, who=who)


@router.get("/jobs/{job_id}")
def get_job(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> dict[str, Any]:
    return service.get(job_id, who)


@router.get("/jobs/{job_id}/front")
def front(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
    return service.front(job_id, who)


@router.get("/jobs/{job_id}/trials")
def trials(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
    return service.trials(job_id, who)


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> dict[str, Any]:
    return service.cancel(job_id, who)


@router.post("/jobs/{job_id}/export", status_code=201)
def export(job_id: JobId, body: ExportRequest, service: Service, who: Principal = Depends(owner)) -> dict[str, Any]:
    return service.export(job_id, body.trial, body.out, who, overwrite=body.overwrite, format=body.format)


@router.get("/jobs/{job_id}/comparison")
def comparison(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> dict[str, Any] | None:
    return service.comparison(job_id, who)


@router.get("/jobs/{job_id}/report", response_class=HTMLResponse)
def report(job_id: JobId, service: Service, who: Principal = Depends(owner)) -> HTMLResponse:
    return HTMLResponse(service.report(job_id, who))
