"""hpo_artifacts: checkpoints and named artifacts kept in object storage (HPO_ARTIFACT_URL).

One row per object: ``pending`` from the upload request until the worker confirms the upload
under a live lease, then ``stored``. The bytes never pass through the database.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_artifacts",
        sa.Column("artifact_id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("multipart_id", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'stored')", name="ck_hpo_artifacts_state"),
        sa.CheckConstraint("size >= 0", name="ck_hpo_artifacts_size"),
        sa.CheckConstraint("step >= 0", name="ck_hpo_artifacts_step"),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.study_id"],
            name="fk_hpo_artifacts_study_id_hpo_studies",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.trial_id"],
            name="fk_hpo_artifacts_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_hpo_artifacts"),
        sa.UniqueConstraint("object_key", name="uq_hpo_artifacts_object_key"),
    )
    op.create_index("ix_hpo_artifacts_trial_id_name", "hpo_artifacts", ["trial_id", "name"])
    op.create_index("ix_hpo_artifacts_study_id", "hpo_artifacts", ["study_id"])
    # The reaper's sweep of uploads never confirmed reads only these rows.
    op.create_index(
        "ix_hpo_artifacts_pending_created_at",
        "hpo_artifacts",
        ["created_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_hpo_artifacts_pending_created_at", table_name="hpo_artifacts")
    op.drop_index("ix_hpo_artifacts_study_id", table_name="hpo_artifacts")
    op.drop_index("ix_hpo_artifacts_trial_id_name", table_name="hpo_artifacts")
    op.drop_table("hpo_artifacts")
