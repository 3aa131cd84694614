"""``/schedules``: register, list, pause or resume a recurring search, and its runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from prunetune.service.roots import refuse_code
from prunetune.service.routes.deps import Service, owner, schedule_key
from prunetune.store.tokens import Principal

router = APIRouter()


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


@router.post("/schedules", status_code=201)
def schedule(body: ScheduleRequest, service: Service, who: Principal = Depends(owner)) -> dict[str, Any]:
    refuse_code(body.spec)
    return service.schedule(body.spec, body.cron, body.name, owner=who.owner, timezone=body.timezone,
                            catch_up=body.catch_up, warm_start=body.warm_start, reseed=body.reseed)


@router.get("/schedules")
def schedules(service: Service, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
    return service.schedules(who)


@router.get("/schedules/{key}/runs")
def schedule_runs(key: str, service: Service, who: Principal = Depends(owner)) -> list[dict[str, Any]]:
    return service.schedule_runs(schedule_key(key), who)


@router.patch("/schedules/{key}")
def update_schedule(key: str, body: ScheduleUpdate, service: Service,
                    who: Principal = Depends(owner)) -> dict[str, Any]:
    return service.set_schedule_enabled(schedule_key(key), body.enabled, who)
