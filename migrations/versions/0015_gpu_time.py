"""GPU time: each attempt's device and wall time, and the study's ``max_gpu_hours``.

``hpo_trial_attempts``: one row per lease of a trial (a new trial, a retry, a promotion), with
the device the worker said it runs on (``device``, NULL when it said none) and its GPUs
(``gpus``, 0 for a CPU or an unknown device), from ``started_at`` (the lease's start) to
``ended_at`` (complete, release, pause, expiry; NULL while it runs) and how it ended
(``outcome``). A study's GPU-seconds are the sum over its attempts of gpus x wall time
(``service.usage.gpu_time``); ``GET /teams/usage`` sums them per team and period.

``hpo_studies.max_gpu_hours``: the study's budget of GPU-hours; once used, nothing more is
handed out, running trials are told to stop, and the study completes.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_trial_attempts",
        sa.Column("attempt_id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("gpus", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["hpo_trials.trial_id"],
            name=op.f("fk_hpo_trial_attempts_trial_id_hpo_trials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.study_id"],
            name=op.f("fk_hpo_trial_attempts_study_id_hpo_studies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_hpo_trial_attempts")),
        sa.CheckConstraint("gpus >= 0", name=op.f("ck_hpo_trial_attempts_gpus")),
        sa.CheckConstraint(
            "ended_at >= started_at", name=op.f("ck_hpo_trial_attempts_ended_after_start")
        ),
    )
    op.create_index(
        "ix_hpo_trial_attempts_study_id", "hpo_trial_attempts", ["study_id", "started_at"]
    )
    op.create_index("ix_hpo_trial_attempts_started_at", "hpo_trial_attempts", ["started_at"])
    op.create_index(
        "ix_hpo_trial_attempts_trial_id_open",
        "hpo_trial_attempts",
        ["trial_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.add_column("hpo_studies", sa.Column("max_gpu_hours", sa.Float(), nullable=True))
    op.create_check_constraint(
        op.f("ck_hpo_studies_max_gpu_hours"), "hpo_studies", "max_gpu_hours > 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_hpo_studies_max_gpu_hours"), "hpo_studies", type_="check")
    op.drop_column("hpo_studies", "max_gpu_hours")
    op.drop_index("ix_hpo_trial_attempts_trial_id_open", table_name="hpo_trial_attempts")
    op.drop_index("ix_hpo_trial_attempts_started_at", table_name="hpo_trial_attempts")
    op.drop_index("ix_hpo_trial_attempts_study_id", table_name="hpo_trial_attempts")
    op.drop_table("hpo_trial_attempts")
