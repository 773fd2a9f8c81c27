"""hpo_events: an append-only log of what happened to studies and trials (live updates).

Each row carries the id of the transaction that wrote it (``xid``); readers order by
(xid, id) and only read below the oldest running transaction, so no event is ever skipped.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", JSONB(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["hpo_studies.study_id"],
            name="fk_hpo_events_study_id_hpo_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_hpo_events"),
    )
    op.create_index("ix_hpo_events_study_id_xid_id", "hpo_events", ["study_id", "xid", "id"])
    op.create_index("ix_hpo_events_created_at", "hpo_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_hpo_events_created_at", table_name="hpo_events")
    op.drop_index("ix_hpo_events_study_id_xid_id", table_name="hpo_events")
    op.drop_table("hpo_events")
