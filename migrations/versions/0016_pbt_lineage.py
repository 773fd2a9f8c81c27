"""Population-based training (the ``pbt`` scheduler): the lineage of child trials.

``hpo_trials.parent_trial_id``: the trial whose checkpoint a child started from;
``hpo_trials.started_from_step``: the first step the child runs (its parent's checkpoint step
plus one); ``hpo_trials.replaced_trial_id``: the trial of the bottom quantile the child
replaced (unique: a trial is replaced once, so a repeated report cannot start a second child).
All three are NULL for trials the sampler made.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hpo_trials", sa.Column("parent_trial_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_hpo_trials_parent_trial_id_hpo_trials"),
        "hpo_trials",
        "hpo_trials",
        ["parent_trial_id"],
        ["trial_id"],
        ondelete="SET NULL",
    )
    op.add_column("hpo_trials", sa.Column("started_from_step", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_hpo_trials_started_from_step"), "hpo_trials", "started_from_step >= 0"
    )
    op.add_column("hpo_trials", sa.Column("replaced_trial_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_hpo_trials_replaced_trial_id_hpo_trials"),
        "hpo_trials",
        "hpo_trials",
        ["replaced_trial_id"],
        ["trial_id"],
        ondelete="SET NULL",
    )
    op.create_unique_constraint(
        op.f("uq_hpo_trials_replaced_trial_id"), "hpo_trials", ["replaced_trial_id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_hpo_trials_replaced_trial_id"), "hpo_trials", type_="unique")
    op.drop_constraint(
        op.f("fk_hpo_trials_replaced_trial_id_hpo_trials"), "hpo_trials", type_="foreignkey"
    )
    op.drop_column("hpo_trials", "replaced_trial_id")
    op.drop_constraint(op.f("ck_hpo_trials_started_from_step"), "hpo_trials", type_="check")
    op.drop_column("hpo_trials", "started_from_step")
    op.drop_constraint(
        op.f("fk_hpo_trials_parent_trial_id_hpo_trials"), "hpo_trials", type_="foreignkey"
    )
    op.drop_column("hpo_trials", "parent_trial_id")
