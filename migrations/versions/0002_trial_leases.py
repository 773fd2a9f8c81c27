"""hpo_trials: the queue and lease state of each trial the service hands out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_trials",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("expired_leases", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.String(256), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finish_token", sa.String(64), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("change_xid", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.trial_id"],
            name="fk_hpo_trials_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.study_id"],
            name="fk_hpo_trials_study_id_hpo_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", name="pk_hpo_trials"),
    )
    op.create_index("ix_hpo_trials_study_id_change_xid", "hpo_trials", ["study_id", "change_xid"])
    op.create_index(
        "ix_hpo_trials_study_id_queued_at",
        "hpo_trials",
        ["study_id", "queued_at"],
        postgresql_where=sa.text("queued_at IS NOT NULL"),
    )
    op.create_index(
        "ix_hpo_trials_lease_expires_at",
        "hpo_trials",
        ["lease_expires_at"],
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    )
    op.create_index(
        "ix_hpo_trials_study_id_leased",
        "hpo_trials",
        ["study_id"],
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_hpo_trials_study_id_leased", table_name="hpo_trials")
    op.drop_index("ix_hpo_trials_lease_expires_at", table_name="hpo_trials")
    op.drop_index("ix_hpo_trials_study_id_queued_at", table_name="hpo_trials")
    op.drop_index("ix_hpo_trials_study_id_change_xid", table_name="hpo_trials")
    op.drop_table("hpo_trials")
