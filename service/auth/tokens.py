"""Token material: how a token is made, hashed and recognised.

A token is ``hpo_`` followed by 43 URL-safe characters (256 random bits). Only its SHA-256
is stored; the token itself is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "hpo_"
PREFIX_SHOWN = 12  # characters of a token kept in clear to tell tokens apart in listings
_SHAPE = re.compile(r"hpo_[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def looks_like_token(token: str) -> bool:
    """Whether ``token`` has the shape ``new_token`` makes (anything else is refused without
    a database lookup)."""
    return _SHAPE.fullmatch(token) is not None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def shown_prefix(token: str) -> str:
    return token[:PREFIX_SHOWN]
