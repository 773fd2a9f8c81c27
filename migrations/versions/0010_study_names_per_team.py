"""Study names are unique per team: ``hpo_studies.name`` is the name the API shows.

Optuna's ``studies.study_name`` is unique across the database, so the service names a study
there ``<team>/<name>`` (the ``default`` team: ``<name>``; names cannot hold ``/``, so the two
never collide). Existing studies are all in ``default``: their name is their Optuna name.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hpo_studies", sa.Column("name", sa.String(512), nullable=True))
    op.execute(
        "UPDATE hpo_studies s SET name = st.study_name FROM studies st"
        " WHERE st.study_id = s.study_id"
    )
    op.alter_column("hpo_studies", "name", nullable=False)
    op.create_unique_constraint("uq_hpo_studies_team_id_name", "hpo_studies", ["team_id", "name"])


def downgrade() -> None:
    op.drop_constraint("uq_hpo_studies_team_id_name", "hpo_studies", type_="unique")
    op.drop_column("hpo_studies", "name")
