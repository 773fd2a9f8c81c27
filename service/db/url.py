"""Database URLs as users write them, mapped to the driver this project ships (psycopg2)."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from service.errors import InvalidInput

_DRIVER = "postgresql+psycopg2"
_ACCEPTED = {"postgres", "postgresql", "postgresql+psycopg2"}


def normalize_url(raw: str) -> URL:
    """Parse ``raw`` and pin the driver to psycopg2.

    ``postgresql://`` and ``postgres://`` are accepted as written by users (SQLAlchemy 2.1 would
    map a bare ``postgresql://`` to psycopg 3, which is not installed). Anything that is not
    PostgreSQL is refused: there is no SQLite path.
    """
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse text
        raise InvalidInput(f"not a database URL: {raw!r} ({exc})") from exc
    if url.drivername not in _ACCEPTED:
        raise InvalidInput(
            f"unsupported database {url.drivername!r}: the service needs PostgreSQL "
            "(postgresql://user:pass@host/db)"
        )
    return url.set(drivername=_DRIVER)


def render_url(url: URL) -> str:
    """The URL as a string with the password kept (for Optuna and Alembic configs)."""
    return url.render_as_string(hide_password=False)
