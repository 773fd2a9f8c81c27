"""``hpo_studies.state_reason``: why the server itself paused a study (for example: its first
trials all failed for the same reason); cleared whenever a user changes the state.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hpo_studies", sa.Column("state_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("hpo_studies", "state_reason")
