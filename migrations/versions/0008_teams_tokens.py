"""hpo_teams and hpo_api_tokens: who may call the API, and as which role.

Tokens are stored only as the SHA-256 of the token (the token is 256 random bits, so a plain
hash is enough: nothing to brute-force). ``prefix`` is the token's first characters, kept to
tell tokens apart in listings. A token is usable while ``revoked_at`` is NULL and
``expires_at`` is NULL or in the future.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "role IN ('read', 'worker', 'submit', 'admin')"


def upgrade() -> None:
    op.create_table(
        "hpo_teams",
        sa.Column("team_id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("team_id", name="pk_hpo_teams"),
        sa.UniqueConstraint("name", name="uq_hpo_teams_name"),
    )
    op.create_table(
        "hpo_api_tokens",
        sa.Column("token_id", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(ROLES, name="ck_hpo_api_tokens_role"),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["hpo_teams.team_id"],
            name="fk_hpo_api_tokens_team_id_hpo_teams",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name="pk_hpo_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_hpo_api_tokens_token_hash"),
    )
    op.create_index("ix_hpo_api_tokens_team_id", "hpo_api_tokens", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_hpo_api_tokens_team_id", table_name="hpo_api_tokens")
    op.drop_table("hpo_api_tokens")
    op.drop_table("hpo_teams")
