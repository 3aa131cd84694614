"""The API's error answers: ``{"error": {"type", "message", "field", "value", "allowed"}}``
for every failure (ours, the store's, FastAPI's validation and Starlette's own), values
echoed cut to a few hundred characters."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from prunetune.errors import SHOWN_CHARS, SpecError, shown
from prunetune.store.db import ConflictError, DatabaseUnavailableError, NotFoundError, StoreError


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


def error_response(status: int, kind: str, message: str, field: str | None = None, value: Any = None,
                   allowed: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    if len(message) > 4 * SHOWN_CHARS:
        message = f"{message[:4 * SHOWN_CHARS]}... ({len(message) - 4 * SHOWN_CHARS} more characters)"
    body = {"type": kind, "message": message, "field": field, "value": _echo(value), "allowed": allowed}
    try:
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    except (TypeError, ValueError):  # not JSON, or not UTF-8 (a lone surrogate): its repr is
        body = {k: (v if k == "type" else None if v is None else ascii(v)) for k, v in body.items()}
        return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return error_response(err.status, err.kind, err.message, err.field, err.value, err.allowed, headers)


async def _spec_error(_: Request, err: SpecError) -> JSONResponse:
    return error_response(422, "invalid_spec", str(err), err.field, err.value, err.allowed)


async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
    first = err.errors()[0]
    if first.get("type") == "json_invalid":  # loc is ("body", <character offset>)
        at = first.get("loc", ("body", "?"))[-1]
        return error_response(422, "invalid_request", f"the request body is not valid JSON (at character {at}): "
                              f"{first.get('ctx', {}).get('error', first.get('msg'))}", "body", None, "a JSON object")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(loc) or "body"
    value = first.get("input") if first.get("type") != "missing" else None
    return error_response(422, "invalid_request", f"field '{field}': {first.get('msg')}", field, value, first.get("msg"))


async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
    # Starlette's own answers (no such route, method not allowed, an unparsable body)
    # in the documented error shape, not {"detail": ...}.
    kinds = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}
    return error_response(err.status_code, kinds.get(err.status_code, "error"), str(err.detail),
                          headers=getattr(err, "headers", None))


async def _not_found(_: Request, err: NotFoundError) -> JSONResponse:
    return error_response(404, "not_found", str(err), "id", err.key)


async def _conflict(_: Request, err: ConflictError) -> JSONResponse:
    return error_response(409, "conflict", str(err), err.field, err.value, err.allowed)


async def _unavailable(_: Request, err: DatabaseUnavailableError) -> JSONResponse:
    return error_response(503, "unavailable", str(err))


async def _store(_: Request, err: StoreError) -> JSONResponse:
    return error_response(500, "database", str(err))


def add_error_handlers(app: FastAPI) -> None:
    """Answer every exception the routes may raise in the error shape above."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(SpecError)(_spec_error)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(StarletteHTTPException)(_http)
    app.exception_handler(NotFoundError)(_not_found)
    app.exception_handler(ConflictError)(_conflict)
    app.exception_handler(DatabaseUnavailableError)(_unavailable)
    app.exception_handler(StoreError)(_store)
