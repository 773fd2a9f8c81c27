"""Worker settings: one typed class, from flags or ``HPO_*`` environment variables.

The API server has its own settings (``service.settings``); the two share nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_spool() -> Path:
    return Path.home() / ".local" / "share" / "hpo" / "worker-spool"


class WorkerSettings(BaseSettings):
    """Settings of one worker process (all its slots).

    ``HPO_TASKS`` and ``HPO_STUDIES`` take comma-separated lists.
    """

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    api_url: str = Field(
        default="http://127.0.0.1:8000",
        description="the service's base URL, or several comma-separated to fail over between",
    )
    api_token: SecretStr | None = Field(default=None, description="bearer token, if required")
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    slots: int | None = Field(
        default=None, ge=1, le=256, description="trials at once (default: one per GPU, or 1)"
    )
    tasks: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="only claim studies with these tasks (default: all known)"
    )
    studies: Annotated[list[int] | None, NoDecode] = Field(
        default=None, description="only claim trials of these study ids"
    )
    worker_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    poll_wait_s: float = Field(default=10.0, ge=0, le=60, description="long-poll per claim")
    api_retry_s: float = Field(
        default=60.0, gt=0, description="how long calls retry an unreachable API"
    )
    exit_when_idle_s: float | None = Field(
        default=None,
        ge=0,
        description="exit 0 once no trial was found for this long (unset or 0: never)",
    )
    spool_dir: Path = Field(
        default_factory=_default_spool, description="finished results not yet delivered"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="CPU threads per slot (default: cores / slots)"
    )
    log_level: str = "info"

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()] or None
        return value

    @field_validator("studies", mode="before")
    @classmethod
    def _split_studies(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(s) for s in value.split(",") if s.strip()] or None
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        device = value.strip().lower()
        if device in ("auto", "cpu", "cuda") or (
            device.startswith("cuda:") and device[5:].isdigit()
        ):
            return device
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
