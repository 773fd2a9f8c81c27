"""The service's own tables (prefix ``hpo_``), next to Optuna's schema in the same database.

Optuna's tables hold studies, trials, parameters, values and intermediate values; these hold what
Optuna has no place for. They are created only by the Alembic revisions in ``migrations/`` (with
their own version table, ``hpo_alembic_version``); this module is the model that autogenerate
compares against. ``studies`` and ``trials`` appear below only as stubs so that foreign keys
resolve; ``migrations/env.py`` keeps autogenerate away from every table not named ``hpo_*``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSON, JSONB

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

OWN_PREFIX = "hpo_"
# Alembic version table of the service's revisions (Optuna keeps ``alembic_version``).
VERSION_TABLE = "hpo_alembic_version"

# Stubs of Optuna's tables, for foreign keys only (never created or altered by this project).
optuna_studies = Table("studies", metadata, Column("study_id", Integer, primary_key=True))
optuna_trials = Table("trials", metadata, Column("trial_id", Integer, primary_key=True))

NOW = text("now()")

teams = Table(
    "hpo_teams",
    metadata,
    Column("team_id", Integer, Identity(), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)

# API tokens, stored only as the SHA-256 of the token (service.auth).
api_tokens = Table(
    "hpo_api_tokens",
    metadata,
    Column("token_id", Integer, Identity(), primary_key=True),
    Column(
        "team_id",
        Integer,
        ForeignKey("hpo_teams.team_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("role", String(16), nullable=False),
    Column("name", String(128), nullable=True),
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("role IN ('read', 'worker', 'submit', 'admin')", name="role"),
)

study_specs = Table(
    "hpo_studies",
    metadata,
    Column(
        "study_id",
        Integer,
        ForeignKey("studies.study_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "team_id",
        Integer,
        ForeignKey("hpo_teams.team_id", ondelete="CASCADE"),
        nullable=False,  # looked up through the unique (team_id, name) index
    ),
    # The name the API shows, unique per team; Optuna's studies.study_name is <team>/<name>
    # (the default team: <name>), unique across the database.
    Column("name", String(512), nullable=False),
    Column("state", String(16), nullable=False),
    # Why the server paused the study by itself; NULL once a user changes the state.
    Column("state_reason", Text, nullable=True),
    # json, not jsonb: it keeps the user's key order (the order of the search space).
    Column("spec", JSON, nullable=False),
    Column("task_name", String(256), nullable=True),
    Column("max_trials", Integer, nullable=True),
    Column("max_parallel", Integer, nullable=True),
    Column("max_retries", Integer, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("n_started", Integer, nullable=False, server_default=text("0")),
    # The asha budget of resource units over all trials, and whether a hand-out found it spent.
    Column("max_resource_total", Integer, nullable=True),
    Column("resource_spent", Boolean, nullable=False, server_default=false()),
    # The budget of GPU-hours over all attempts (service.usage.gpu_time).
    Column("max_gpu_hours", Float, nullable=True),
    Column("last_handout_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("state IN ('running', 'paused', 'stopped')", name="state"),
    UniqueConstraint("team_id", "name"),
    CheckConstraint("n_started >= 0", name="n_started"),
    CheckConstraint("max_resource_total >= 1", name="max_resource_total"),
    CheckConstraint("max_gpu_hours > 0", name="max_gpu_hours"),
    Index("ix_hpo_studies_state_task_name", "state", "task_name"),
)

trial_leases = Table(
    "hpo_trials",
    metadata,
    Column(
        "trial_id",
        Integer,
        ForeignKey("trials.trial_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "study_id",
        Integer,
        ForeignKey("hpo_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("expired_leases", Integer, nullable=False, server_default=text("0")),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("worker_id", String(256), nullable=True),
    Column("queued_at", DateTime(timezone=True), nullable=True),
    Column("finish_token", String(64), nullable=True),
    Column("fail_reason", Text, nullable=True),
    Column("change_xid", BigInteger, nullable=False),
    # The rung step at which the asha pruner paused the trial (service.sampling.asha).
    Column("paused_step", Integer, nullable=True),
    CheckConstraint("paused_step >= 0", name="paused_step"),
    # The resource units the asha pruner granted the trial (its next rung, or max_resource).
    Column("resource_granted", Integer, nullable=True),
    CheckConstraint("resource_granted >= 0", name="resource_granted"),
    # Population-based training (service.sampling.pbt): a child's parent, the first step it
    # runs (its parent's checkpoint step + 1), and the trial of the bottom it replaced.
    Column(
        "parent_trial_id",
        Integer,
        ForeignKey("hpo_trials.trial_id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("started_from_step", Integer, nullable=True),
    CheckConstraint("started_from_step >= 0", name="started_from_step"),
    Column(
        "replaced_trial_id",
        Integer,
        ForeignKey("hpo_trials.trial_id", ondelete="SET NULL"),
        nullable=True,
        unique=True,
    ),
    Index("ix_hpo_trials_study_id_change_xid", "study_id", "change_xid"),
    Index(
        "ix_hpo_trials_study_id_queued_at",
        "study_id",
        "queued_at",
        postgresql_where=text("queued_at IS NOT NULL"),
    ),
    Index(
        "ix_hpo_trials_lease_expires_at",
        "lease_expires_at",
        postgresql_where=text("lease_token IS NOT NULL"),
    ),
    Index(
        "ix_hpo_trials_study_id_leased",
        "study_id",
        postgresql_where=text("lease_token IS NOT NULL"),
    ),
    Index(
        "ix_hpo_trials_study_id_paused",
        "study_id",
        postgresql_where=text("paused_step IS NOT NULL"),
    ),
)

# One row per lease of a trial: the device it ran on and its wall time (service.usage).
trial_attempts = Table(
    "hpo_trial_attempts",
    metadata,
    Column("attempt_id", BigInteger, Identity(), primary_key=True),
    Column(
        "trial_id",
        Integer,
        ForeignKey("hpo_trials.trial_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "study_id",
        Integer,
        ForeignKey("hpo_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("device", String(64), nullable=True),
    Column("gpus", Integer, nullable=False, server_default=text("0")),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("outcome", String(16), nullable=True),
    CheckConstraint("gpus >= 0", name="gpus"),
    CheckConstraint("ended_at >= started_at", name="ended_after_start"),
    Index("ix_hpo_trial_attempts_study_id", "study_id", "started_at"),
    Index("ix_hpo_trial_attempts_started_at", "started_at"),
    Index(
        "ix_hpo_trial_attempts_trial_id_open",
        "trial_id",
        postgresql_where=text("ended_at IS NULL"),
    ),
)

idempotency_keys = Table(
    "hpo_idempotency_keys",
    metadata,
    Column("scope", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Index("ix_hpo_idempotency_keys_created_at", "created_at"),
)

workers = Table(
    "hpo_workers",
    metadata,
    Column(
        "team_id",
        Integer,
        ForeignKey("hpo_teams.team_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("worker_id", String(256), primary_key=True),
    Column("tasks", JSONB, nullable=True),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=NOW),
)


events = Table(
    "hpo_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("xid", BigInteger, nullable=False),
    Column(
        "study_id",
        Integer,
        ForeignKey("hpo_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trial_id", Integer, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Index("ix_hpo_events_study_id_xid_id", "study_id", "xid", "id"),
    Index("ix_hpo_events_created_at", "created_at"),
)

# The last checkpoint of each trial (service.checkpoints). ``data`` holds the bytes for the
# PostgreSQL store and is NULL for the file store.
checkpoints = Table(
    "hpo_checkpoints",
    metadata,
    Column(
        "trial_id",
        Integer,
        ForeignKey("trials.trial_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "study_id",
        Integer,
        ForeignKey("hpo_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("step", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", BYTEA, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    CheckConstraint("step >= 0", name="step"),
    CheckConstraint("size >= 0", name="size"),
    Index("ix_hpo_checkpoints_study_id", "study_id"),
)

# Artifacts in object storage (HPO_ARTIFACT_URL): one row per object, pending until the
# upload is confirmed under a live lease. No bytes here, ever.
hpo_artifacts = Table(
    "hpo_artifacts",
    metadata,
    Column("artifact_id", BigInteger, Identity(), primary_key=True),
    Column(
        "study_id",
        Integer,
        ForeignKey("hpo_studies.study_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trial_id", Integer, ForeignKey("trials.trial_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("step", Integer, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("object_key", Text, nullable=False),
    Column("multipart_id", Text, nullable=True),
    Column("lease_token", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=NOW),
    Column("stored_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("state IN ('pending', 'stored')", name="state"),
    CheckConstraint("size >= 0", name="size"),
    CheckConstraint("step >= 0", name="step"),
    UniqueConstraint("object_key"),
    Index("ix_hpo_artifacts_trial_id_name", "trial_id", "name"),
    Index("ix_hpo_artifacts_study_id", "study_id"),
    Index(
        "ix_hpo_artifacts_pending_created_at",
        "created_at",
        postgresql_where=text("state = 'pending'"),
    ),
)


def is_own_table(name: str | None) -> bool:
    """True for the service's tables; everything else belongs to Optuna."""
    return name is not None and name.startswith(OWN_PREFIX) and name != VERSION_TABLE


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic autogenerate filter: reflect only the service's tables."""
    return is_own_table(name) if type_ == "table" else True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic autogenerate filter: compare only the service's tables and what hangs off them."""
    if type_ == "table":
        return is_own_table(name)
    table = getattr(obj, "table", None)
    return is_own_table(table.name) if table is not None else True
