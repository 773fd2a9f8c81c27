"""The service's migrations: from empty, down, up again, never touching Optuna's tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from service.db import migrate
from service.db.engine import create_db_engine
from service.db.tables import VERSION_TABLE, include_name, include_object, metadata
from service.db.url import render_url
from tests.support import OPTUNA_TABLES, ScratchDatabase

OPTUNA_VERSION_TABLES = ("alembic_version", "version_info")


@pytest.fixture
def empty_db(tmp_path: Path) -> Iterator[ScratchDatabase]:
    db = ScratchDatabase(tmp_path)
    yield db
    db.drop()


def _optuna_schema(url: str) -> dict[str, object]:
    """Every column, index, constraint and row count of Optuna's tables."""
    engine = create_engine(url)
    with engine.connect() as conn:
        insp = inspect(conn)
        snapshot: dict[str, object] = {}
        for table in (*OPTUNA_TABLES, *OPTUNA_VERSION_TABLES):
            snapshot[table] = (
                [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                sorted(str(i) for i in insp.get_indexes(table)),
                sorted(str(f) for f in insp.get_foreign_keys(table)),
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one(),
            )
    engine.dispose()
    return snapshot


def test_upgrade_downgrade_upgrade(empty_db: ScratchDatabase) -> None:
    url = empty_db.url
    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    assert not migrate.schema_status(engine).up_to_date

    status = migrate.upgrade(url)
    assert status.up_to_date
    tables = set(inspect(engine).get_table_names())
    assert {
        "hpo_studies",
        "hpo_trials",
        "hpo_idempotency_keys",
        "hpo_workers",
        VERSION_TABLE,
    } <= tables
    # Put data in Optuna's tables the way Optuna itself does.
    study = optuna.create_study(study_name="plain", storage=render_url(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    before = _optuna_schema(render_url(url))

    migrate.downgrade_service(url, "base")
    tables = set(inspect(engine).get_table_names())
    assert not {t for t in tables if t.startswith("hpo_") and t != VERSION_TABLE}
    assert _optuna_schema(render_url(url)) == before

    assert migrate.upgrade(url).up_to_date
    assert _optuna_schema(render_url(url)) == before
    assert len(optuna.load_study(study_name="plain", storage=render_url(url)).trials) == 3
    engine.dispose()


def test_models_match_the_migrations_and_autogenerate_ignores_optuna(
    test_db: ScratchDatabase,
) -> None:
    engine = create_db_engine(test_db.url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": include_name,
                "include_object": include_object,
                "compare_type": True,
                "version_table": VERSION_TABLE,
            },
        )
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_server_refuses_an_out_of_date_schema(empty_db: ScratchDatabase) -> None:
    engine = create_db_engine(empty_db.url, pool_size=1, max_overflow=0)
    with pytest.raises(Exception, match="hpo db upgrade"):
        migrate.ensure_current(engine)
    engine.dispose()


def test_optuna_and_service_version_tables_are_separate(test_db: ScratchDatabase) -> None:
    engine = create_db_engine(test_db.url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        optuna_rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        ours = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one()
    status = migrate.schema_status(engine)
    engine.dispose()
    assert optuna_rev.startswith("v")  # Optuna's revision ids look like v3.2.0.a
    assert optuna_rev == status.optuna_head  # Optuna's own head, read through its public API
    assert ours == migrate.service_head()


def test_studies_and_workers_made_before_teams_go_to_the_default_team_and_keep_names(
    empty_db: ScratchDatabase,
) -> None:
    url = empty_db.url
    migrate.upgrade(url)
    migrate.downgrade_service(url, "0008")  # as a database of the release before teams
    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    with engine.begin() as conn:
        study_id = conn.execute(
            text("INSERT INTO studies (study_name) VALUES ('old') RETURNING study_id")
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO hpo_studies (study_id, state, spec, max_retries, lease_seconds)"
                " VALUES (:id, 'running', '{}', 0, 60)"
            ),
            {"id": study_id},
        )
        conn.execute(text("INSERT INTO hpo_workers (worker_id) VALUES ('gpu-0:0')"))
    assert migrate.upgrade(url).up_to_date
    with engine.connect() as conn:
        default = conn.execute(text("SELECT team_id FROM hpo_teams WHERE name = 'default'"))
        team_id = default.scalar_one()
        assert conn.execute(text("SELECT team_id FROM hpo_studies")).scalar_one() == team_id
        assert conn.execute(text("SELECT team_id FROM hpo_workers")).scalar_one() == team_id
        # 0010: the API's name of a default-team study is its Optuna name
        assert conn.execute(text("SELECT name FROM hpo_studies")).scalar_one() == "old"
    migrate.downgrade_service(url, "0008")  # and back, keeping the rows
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hpo_studies")).scalar_one() == 1
        assert conn.execute(text("SELECT worker_id FROM hpo_workers")).scalar_one() == "gpu-0:0"
    engine.dispose()
