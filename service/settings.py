"""Server settings: one typed class, read from ``HPO_*`` environment variables.

The worker has its own settings class (``workers.settings``); the two processes share nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.artifacts.location import MIN_PART_BYTES, parse_artifact_url


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL and stored checkpoints live unless configured."""
    return Path.home() / ".local" / "share" / "hpo"


class ServerSettings(BaseSettings):
    """Settings of one API server process.

    ``database_url`` unset means: start (or join) the embedded PostgreSQL under ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    database_url: SecretStr | None = Field(
        default=None, description="postgresql://user:pass@host/db; unset = embedded PostgreSQL"
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    pool_size: int = Field(
        default=20,
        ge=1,
        le=200,
        description="kept-open database connections; below the thread pool's 40 concurrent"
        " requests, so busy servers churn overflow connections when it is too small",
    )
    max_overflow: int = Field(default=20, ge=0, le=500)
    reaper_interval_s: float = Field(default=2.0, gt=0, le=300)
    view_cache_size: int = Field(default=64, ge=1, description="studies kept warm per process")
    claim_max_wait_s: float = Field(default=60.0, ge=0, le=600)
    claim_repoll_s: float = Field(
        default=5.0, gt=0, le=60, description="long polls re-check this often without a NOTIFY"
    )
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    event_retention_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="how long live-update events are kept"
    )
    events_heartbeat_s: float = Field(
        default=15.0, gt=0, le=300, description="event streams send a comment this often"
    )
    events_repoll_s: float = Field(
        default=5.0, gt=0, le=60, description="event streams re-check this often without a NOTIFY"
    )
    importance_sync_max_trials: int = Field(
        default=200,
        ge=0,
        description="importances of studies with at most this many complete trials are computed"
        " in the request; larger studies are computed in the background",
    )
    checkpoint_dir: Path | None = Field(
        default=None, description="store checkpoints as files here instead of in PostgreSQL"
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="largest request body (413 above it); checkpoints have their own limit",
    )
    checkpoint_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    import_max_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="largest body of a trial import (POST /studies/{id}/trials/import)",
    )
    artifact_url: str | None = Field(
        default=None,
        description="s3://bucket/prefix: checkpoints and artifacts go to S3-compatible storage"
        " by presigned URLs (endpoint and credentials from the AWS_* variables); unset: through"
        " the API (docs/artifacts.md)",
    )
    artifact_part_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=MIN_PART_BYTES,
        le=5 * 1024 * 1024 * 1024,
        description="artifacts above this size are uploaded in parts of this size (multipart)",
    )
    artifact_url_ttl_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="how long presigned URLs stay valid; uploads not confirmed within twice this"
        " are deleted by the reaper",
    )
    artifact_keep_top_k: int | None = Field(
        default=None,
        ge=1,
        description="retention: the reaper keeps only the artifacts of the best k trials of every"
        " finished study, and k is the default of POST /studies/{id}/artifacts/retention;"
        " unset: retention only on request, which must say k",
    )
    fail_fast_trials: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="pause a study whose first this many finished trials all failed for the"
        " same reason (state_reason says why); 0: never",
    )
    auth: Literal["tokens", "off"] = Field(
        default="tokens",
        description="tokens: every /api call needs a team's bearer token (hpo token create);"
        " off: no auth, every caller is an admin of every team (a single-user machine only)",
    )
    auth_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="a recognised token is cached this long; a revocation made through another"
        " server process takes effect within it",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text: one line per record; json: one JSON object per line"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, GET /metrics needs 'Authorization: Bearer <it>'; unset, /metrics"
        " is open like /healthz (keep it on an internal network then)",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("artifact_url")
    @classmethod
    def _valid_artifact_url(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_artifact_url(value)  # raises ValueError saying what is wrong
            return value.strip()
        return None

    @model_validator(mode="after")
    def _one_checkpoint_store(self) -> ServerSettings:
        if self.artifact_url is not None and self.checkpoint_dir is not None:
            raise ValueError(
                "HPO_ARTIFACT_URL and HPO_CHECKPOINT_DIR are both set; checkpoints go to one"
                " place: unset one of them"
            )
        return self

    @field_validator("metrics_token")
    @classmethod
    def _no_placeholder_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() in {"", "changeme", "secret"}:
            raise ValueError("HPO_METRICS_TOKEN is a placeholder; set a real secret or unset it")
        return value
