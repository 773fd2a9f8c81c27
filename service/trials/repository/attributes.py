"""Trial and study attributes, including what samplers and pruners write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, text

from service.sampling.view_storage import Journal

_UPSERT_STUDY_SYSTEM_ATTRS = text(
    """
    INSERT INTO study_system_attributes (study_id, key, value_json)
    SELECT :study_id, x.key, x.value
      FROM unnest(CAST(:keys AS text[]), CAST(:values AS text[])) AS x(key, value)
    ON CONFLICT (study_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
    """
)


_UPSERT_TRIAL_ATTRS = {
    table: text(
        f"""
        INSERT INTO {table} (trial_id, key, value_json)
        SELECT :trial_id, x.key, x.value
          FROM unnest(CAST(:keys AS text[]), CAST(:values AS text[])) AS x(key, value)
        ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
        """
    )
    for table in ("trial_system_attributes", "trial_user_attributes")
}


def upsert_study_system_attrs(conn: Connection, study_id: int, attrs: Mapping[str, Any]) -> None:
    if attrs:
        conn.execute(
            _UPSERT_STUDY_SYSTEM_ATTRS,
            {
                "study_id": study_id,
                "keys": list(attrs),
                "values": [json.dumps(v) for v in attrs.values()],
            },
        )


def upsert_trial_attrs(
    conn: Connection, trial_id: int, attrs: Mapping[str, Any], *, system: bool = False
) -> None:
    if attrs:
        table = "trial_system_attributes" if system else "trial_user_attributes"
        conn.execute(
            _UPSERT_TRIAL_ATTRS[table],
            {
                "trial_id": trial_id,
                "keys": list(attrs),
                "values": [json.dumps(v) for v in attrs.values()],
            },
        )


def flush_journal(conn: Connection, study_id: int, journal: Journal) -> None:
    """Persist what a sampler or pruner wrote to the study view (see ``ViewStorage``)."""
    upsert_study_system_attrs(conn, study_id, journal.study_system_attrs)
    for trial_id, attrs in journal.trial_system_attrs.items():
        upsert_trial_attrs(conn, trial_id, attrs, system=True)
    for trial_id, attrs in journal.trial_user_attrs.items():
        upsert_trial_attrs(conn, trial_id, attrs)
