"""Drop ``ix_hpo_studies_team_id``: the unique ``(team_id, name)`` index serves every lookup by
``team_id`` (its leading column), so the single-column index only cost writes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_hpo_studies_team_id", table_name="hpo_studies")


def downgrade() -> None:
    op.create_index("ix_hpo_studies_team_id", "hpo_studies", ["team_id"])
