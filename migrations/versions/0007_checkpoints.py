"""hpo_checkpoints: the last checkpoint of each trial, so a requeued trial resumes anywhere.

``data`` holds the bytes when checkpoints are stored in PostgreSQL and is NULL when they are
files under ``HPO_CHECKPOINT_DIR``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import BYTEA

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_checkpoints",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", BYTEA(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("step >= 0", name="ck_hpo_checkpoints_step"),
        sa.CheckConstraint("size >= 0", name="ck_hpo_checkpoints_size"),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.trial_id"],
            name="fk_hpo_checkpoints_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.study_id"],
            name="fk_hpo_checkpoints_study_id_hpo_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", name="pk_hpo_checkpoints"),
    )
    op.create_index("ix_hpo_checkpoints_study_id", "hpo_checkpoints", ["study_id"])


def downgrade() -> None:
    op.drop_index("ix_hpo_checkpoints_study_id", table_name="hpo_checkpoints")
    op.drop_table("hpo_checkpoints")
