"""Pause and promote (the ``asha`` pruner): paused trials and the resource budget.

``hpo_trials.paused_step``: the rung step at which the ``asha`` pruner paused a trial.

Set by the report whose decision was *pause* (the trial still holds its lease); once the lease is
handed back or expires, the trial is paused: Optuna state ``WAITING``, not queued, no lease,
waiting to be promoted. Cleared when it is promoted (leased again) or finished at the budget's
end. The partial index finds a study's paused trials.

``hpo_trials.resource_granted``: the resource units (steps) the trial may reach under its current
grant (its next rung, or ``max_resource``). ``hpo_studies.max_resource_total``: the study's
budget of resource units summed over all trials; ``hpo_studies.resource_spent``: set when a
hand-out found that budget spent with nothing left running (the study is then completed).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hpo_trials", sa.Column("paused_step", sa.Integer(), nullable=True))
    op.create_check_constraint(op.f("ck_hpo_trials_paused_step"), "hpo_trials", "paused_step >= 0")
    op.create_index(
        "ix_hpo_trials_study_id_paused",
        "hpo_trials",
        ["study_id"],
        postgresql_where=sa.text("paused_step IS NOT NULL"),
    )
    op.add_column("hpo_trials", sa.Column("resource_granted", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_hpo_trials_resource_granted"), "hpo_trials", "resource_granted >= 0"
    )
    op.add_column("hpo_studies", sa.Column("max_resource_total", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_hpo_studies_max_resource_total"), "hpo_studies", "max_resource_total >= 1"
    )
    op.add_column(
        "hpo_studies",
        sa.Column("resource_spent", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("hpo_studies", "resource_spent")
    op.drop_constraint(op.f("ck_hpo_studies_max_resource_total"), "hpo_studies", type_="check")
    op.drop_column("hpo_studies", "max_resource_total")
    op.drop_constraint(op.f("ck_hpo_trials_resource_granted"), "hpo_trials", type_="check")
    op.drop_column("hpo_trials", "resource_granted")
    op.drop_index("ix_hpo_trials_study_id_paused", table_name="hpo_trials")
    op.drop_constraint(op.f("ck_hpo_trials_paused_step"), "hpo_trials", type_="check")
    op.drop_column("hpo_trials", "paused_step")
