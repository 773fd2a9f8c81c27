"""Studies and workers belong to a team.

Existing studies and workers go to a team named ``default`` (created here when missing), the
team the service uses when it runs with ``HPO_AUTH=off``. Worker ids are unique per team.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT_TEAM = "(SELECT team_id FROM hpo_teams WHERE name = 'default')"


def upgrade() -> None:
    op.execute("INSERT INTO hpo_teams (name) VALUES ('default') ON CONFLICT (name) DO NOTHING")
    for table in ("hpo_studies", "hpo_workers"):
        op.add_column(table, sa.Column("team_id", sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET team_id = {_DEFAULT_TEAM}")
        op.alter_column(table, "team_id", nullable=False)
        op.create_foreign_key(
            f"fk_{table}_team_id_hpo_teams",
            table,
            "hpo_teams",
            ["team_id"],
            ["team_id"],
            ondelete="CASCADE",
        )
    op.create_index("ix_hpo_studies_team_id", "hpo_studies", ["team_id"])
    op.drop_constraint("pk_hpo_workers", "hpo_workers", type_="primary")
    op.create_primary_key("pk_hpo_workers", "hpo_workers", ["team_id", "worker_id"])


def downgrade() -> None:
    # Worker ids were unique per team; keep the most recently seen row of each id.
    op.execute(
        "DELETE FROM hpo_workers w USING hpo_workers o"
        " WHERE w.worker_id = o.worker_id AND (w.last_seen_at, w.team_id)"
        " < (o.last_seen_at, o.team_id)"
    )
    op.drop_constraint("pk_hpo_workers", "hpo_workers", type_="primary")
    op.create_primary_key("pk_hpo_workers", "hpo_workers", ["worker_id"])
    op.drop_index("ix_hpo_studies_team_id", table_name="hpo_studies")
    for table in ("hpo_workers", "hpo_studies"):
        op.drop_constraint(f"fk_{table}_team_id_hpo_teams", table, type_="foreignkey")
        op.drop_column(table, "team_id")
