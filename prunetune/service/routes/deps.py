"""What the routes share: the job service and database of the app that serves them,
the bearer-token owner of a request, and the path parameters' types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from prunetune.service.jobs import JobService
from prunetune.service.routes.errors import ApiError
from prunetune.store.tokens import Principal, authenticate

_MAX_ID = 2**63 - 1  # ids are 64-bit in the database; a larger number is a 422, not a driver overflow
JobId = Annotated[int, Path(ge=0, le=_MAX_ID, description="job id")]
_bearer = HTTPBearer(auto_error=False)


def schedule_key(key: str) -> int | str:
    """A schedule's id (digits that fit a database integer) or its name."""
    return int(key) if key.isdigit() and int(key) <= _MAX_ID else key


def service(request: Request) -> JobService:
    """The job service ``create_app`` put on the app."""
    return request.app.state.service  # type: ignore[no-any-return]


def owner(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """Who the request's bearer token belongs to; 401 without one or with a revoked one."""
    if cred is None:
        raise ApiError(401, "missing bearer token; send 'Authorization: Bearer <token>' "
                       "(create one with `prunetune token create`)", field="Authorization", kind="unauthorized")
    who = authenticate(request.app.state.db, cred.credentials)
    if who is None:
        raise ApiError(401, "invalid or revoked token", field="Authorization", kind="unauthorized")
    return who


Service = Annotated[JobService, Depends(service)]
