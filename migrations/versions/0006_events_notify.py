"""NOTIFY hpo_events once per study and statement that writes events (for live streams).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION hpo_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('hpo_events', CAST(study_id AS text))
               FROM (SELECT DISTINCT study_id FROM new_events) AS studies;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER hpo_events_notify AFTER INSERT ON hpo_events
        REFERENCING NEW TABLE AS new_events
        FOR EACH STATEMENT EXECUTE FUNCTION hpo_notify_events()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER hpo_events_notify ON hpo_events")
    op.execute("DROP FUNCTION hpo_notify_events()")
