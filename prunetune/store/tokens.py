"""API tokens: 256-bit random secrets, stored only as SHA-256 hashes.

A token reads ``ptk_<prefix>_<secret>``; the prefix finds the row and the hashes are
compared with :func:`hmac.compare_digest`. A token is shown once, when it is created,
and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select

from prunetune.store.db import get_engine, session_scope
from prunetune.store.models import ApiToken, utcnow

_SCHEME = "ptk"
_DUMMY = hashlib.sha256(b"no such token").hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(url: str, owner: str = "local") -> str:
    """Store a new token for ``owner`` and return it (the only time it is visible)."""
    prefix = secrets.token_hex(6)
    token = f"{_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    with session_scope(get_engine(url)) as s:
        s.add(ApiToken(prefix=prefix, token_hash=_hash(token), owner=owner, created_at=utcnow()))
    return token


def verify_token(url: str, token: str | None) -> str | None:
    """The owner of a valid, unrevoked token; None otherwise."""
    if not token:
        return None
    parts = token.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == _SCHEME else ""
    with session_scope(get_engine(url)) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.revoked_at.is_(None)))
        expected = row.token_hash if row is not None else _DUMMY
        ok = hmac.compare_digest(expected, _hash(token))
        return row.owner if ok and row is not None else None


def revoke_token(url: str, token: str) -> bool:
    owner = verify_token(url, token)
    if owner is None:
        return False
    with session_scope(get_engine(url)) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
        if row is not None:
            row.revoked_at = utcnow()
    return True
