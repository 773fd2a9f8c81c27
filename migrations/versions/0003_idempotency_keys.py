"""hpo_idempotency_keys: replayable responses of POSTs sent with an Idempotency-Key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hpo_idempotency_keys",
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", JSONB(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("scope", "key", name="pk_hpo_idempotency_keys"),
    )
    op.create_index("ix_hpo_idempotency_keys_created_at", "hpo_idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_hpo_idempotency_keys_created_at", table_name="hpo_idempotency_keys")
    op.drop_table("hpo_idempotency_keys")
