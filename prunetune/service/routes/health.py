"""``/health``: the one route without a token (version and database schema)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from prunetune import __version__

router = APIRouter()


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    from prunetune.store.db import current_revision

    return {"status": "ok", "version": __version__, "schema": current_revision(request.app.state.db)}
