"""hpo_studies: what Optuna has no place for in a study (spec, state, budgets).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSON

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_studies",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec", JSON(), nullable=False),
        sa.Column("task_name", sa.String(256), nullable=True),
        sa.Column("max_trials", sa.Integer(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("lease_seconds", sa.Integer(), nullable=False),
        sa.Column("n_started", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_handout_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('running', 'paused', 'stopped')", name="ck_hpo_studies_state"
        ),
        sa.CheckConstraint("n_started >= 0", name="ck_hpo_studies_n_started"),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.study_id"],
            name="fk_hpo_studies_study_id_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("study_id", name="pk_hpo_studies"),
    )
    op.create_index("ix_hpo_studies_state_task_name", "hpo_studies", ["state", "task_name"])


def downgrade() -> None:
    op.drop_index("ix_hpo_studies_state_task_name", table_name="hpo_studies")
    op.drop_table("hpo_studies")
