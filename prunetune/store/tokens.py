"""API tokens: 256-bit random secrets, stored only as SHA-256 hashes.

A token reads ``ptk_<prefix>_<secret>``; the prefix finds the row and the hashes are
compared with :func:`hmac.compare_digest`. A token is shown once, when it is created,
and never logged.

A token belongs to an owner: it sees and acts on that owner's jobs, schedules and
exports only. An admin token (``prunetune token create --admin``) sees every owner's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from prunetune.store.db import get_engine, session_scope
from prunetune.store.models import ApiToken, utcnow

_SCHEME = "ptk"
_DUMMY = hashlib.sha256(b"no such token").hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: an owner, and whether it may act on every owner's data."""

    owner: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.owner


def create_token(url: str, owner: str = "local", *, admin: bool = False) -> str:
    """Store a new token for ``owner`` and return it (the only time it is visible)."""
    prefix = secrets.token_hex(6)
    token = f"{_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    with session_scope(get_engine(url)) as s:
        s.add(ApiToken(prefix=prefix, token_hash=_hash(token), owner=owner, admin=admin, created_at=utcnow()))
    return token


def authenticate(url: str, token: str | None) -> Principal | None:
    """The principal of a valid, unrevoked token; None otherwise."""
    if not token:
        return None
    parts = token.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == _SCHEME else ""
    with session_scope(get_engine(url)) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.revoked_at.is_(None)))
        expected = row.token_hash if row is not None else _DUMMY
        ok = hmac.compare_digest(expected, _hash(token))
        return Principal(row.owner, bool(row.admin)) if ok and row is not None else None


def verify_token(url: str, token: str | None) -> str | None:
    """The owner of a valid, unrevoked token; None otherwise."""
    who = authenticate(url, token)
    return None if who is None else who.owner


def list_tokens(url: str) -> list[dict[str, Any]]:
    """Every token's prefix, owner, scope and dates (never a secret or a hash), oldest first."""
    with session_scope(get_engine(url)) as s:
        return [{"prefix": r.prefix, "owner": r.owner, "admin": bool(r.admin),
                 "created_at": r.created_at.isoformat(),
                 "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
                for r in s.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(url: str, token: str) -> bool:
    """Revoke a token given whole, or by the prefix ``token list`` shows (``ptk_<prefix>``
    or the bare prefix). False when no such unrevoked token exists."""
    parts = token.split("_")
    whole = len(parts) >= 3 and parts[0] == _SCHEME
    if whole and verify_token(url, token) is None:
        return False
    prefix = parts[1] if whole or (len(parts) == 2 and parts[0] == _SCHEME) else token
    with session_scope(get_engine(url)) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.revoked_at.is_(None)))
        if row is None:
            return False
        row.revoked_at = utcnow()
    return True
