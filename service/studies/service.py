"""The rules of studies: what may be created, how states change, what deletion removes."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from service import idempotency
from service.auth import repository as auth_repo
from service.checkpoints.store import CheckpointStore
from service.db.unit_of_work import UnitOfWork
from service.errors import DuplicateName, NotFound, SpecError
from service.fleet import repository as fleet_repo
from service.idempotency import IdempotencyKey, KeyRace
from service.ids import ResourceId
from service.pagination import DEFAULT_LIMIT, Page, decode_key, encode_cursor
from service.sampling.registry import StudyViews
from service.sampling.view import StudyDefinition
from service.spec import (
    PrunerSpec,
    SamplerSpec,
    SchedulerSpec,
    check_scheduler,
    check_study,
    grid_point_count,
    parse_search_space,
)
from service.spec.samplers import CONSTRAINT_AWARE
from service.states import StudyStateName
from service.studies import repository as repo
from service.studies.schemas import (
    ForkFrom,
    ForkOut,
    SkippedTrialOut,
    StudyCreate,
    StudyOut,
    StudyPatch,
    TrialCounts,
)
from service.studies.task_check import check_task
from service.trials.imports import ImportTarget, fork_trials

_STUDY_KEY: TypeAdapter[int] = TypeAdapter(ResourceId)
# A worker seen (claiming) within this many seconds counts as running.
WORKER_RECENT_S = 600


class StudyService:
    def __init__(
        self,
        uow: UnitOfWork,
        views: StudyViews,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self._uow = uow
        self._views = views
        self._checkpoints = checkpoints

    def create(
        self, body: StudyCreate, idem: IdempotencyKey | None = None, *, team_id: int | None
    ) -> StudyOut:
        """Validate the whole specification (a dry run of its sampler and pruner), then store it
        as a study of the team (of the ``default`` team for None). One transaction; with an
        ``Idempotency-Key`` seen before, the first answer again.

        409 ``duplicate_name`` if a study of the team (or a plain Optuna study with the same
        Optuna name, ``<team>/<name>``) has the name.
        """
        max_trials = self._budget(body)
        check_study(body.sampler, body.pruner, body.search_space, body.directions, max_trials)
        _check_resource_budget(body.pruner.name, body.max_resource_total)
        check_scheduler(
            body.scheduler,
            space=body.search_space,
            pruner=body.pruner,
            directions=body.directions,
        )
        check_task(body.task, body.search_space)
        try:
            created = self._uow.transaction(
                lambda conn: _store(conn, body, max_trials, idem, team_id=team_id)
            )
        except IntegrityError as exc:
            if "study_name" in str(exc.orig) or "uq_hpo_studies_team_id_name" in str(exc.orig):
                raise DuplicateName(f"a study named {body.name!r} already exists") from None
            raise
        except KeyRace:
            assert idem is not None
            with self._uow.read() as conn:
                stored = idempotency.find(conn, idem)
            assert stored is not None
            created = StudyOut.model_validate(stored.body)
        return _warned(self._uow, [created])[0]

    @staticmethod
    def _budget(body: StudyCreate) -> int | None:
        """A grid study's budget defaults to (and may not exceed) the size of its grid."""
        if body.sampler.name != "grid":
            return body.max_trials
        size = grid_point_count(body.sampler, body.search_space)
        if body.max_trials is not None and body.max_trials > size:
            raise SpecError(
                f"max_trials {body.max_trials} exceeds the grid's {size} points",
                [{"loc": ["max_trials"], "msg": f"the grid has only {size} points"}],
            )
        return body.max_trials or size

    def get(self, study_id: int) -> StudyOut:
        with self._uow.read() as conn:
            row = repo.get_study(conn, study_id)
        if row is None:
            raise NotFound(f"study {study_id} does not exist")
        return _warned(self._uow, [to_study_out(row)])[0]

    def get_by_name(self, name: str, *, team_id: int | None) -> StudyOut:
        """The study of that name in the team (in any team for None)."""
        with self._uow.read() as conn:
            row = repo.get_study_by_name(conn, name, team_id)
        if row is None:
            raise NotFound(f"no study named {name!r}")
        return _warned(self._uow, [to_study_out(row)])[0]

    def list(
        self,
        *,
        state: StudyStateName | None,
        cursor: str | None,
        limit: int = DEFAULT_LIMIT,
        team_id: int | None,
    ) -> Page[StudyOut]:
        """The team's studies (every team's for None)."""
        kind = f"studies:{state or ''}"
        after = decode_key(cursor, kind, _STUDY_KEY)
        with self._uow.read() as conn:
            rows = repo.list_studies(
                conn, team_id=team_id, state=state, after_id=after, limit=limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(kind, rows[-1].study_id) if more else None
        items = _warned(self._uow, [to_study_out(r) for r in rows])
        return Page[StudyOut](items=items, next_cursor=next_cursor)

    def update(self, study_id: int, patch: StudyPatch) -> StudyOut:
        """Pause (no new trials; running ones go on), resume, stop (running trials are told to
        stop at their next heartbeat), change budgets or replace metadata. One transaction."""
        return to_study_out(self._uow.transaction(lambda conn: _update(conn, study_id, patch)))

    def delete(self, study_id: int) -> None:
        """Delete the study with all its trials (Optuna's rows and ours) in one transaction."""

        def work(conn: Connection) -> None:
            if not repo.lock_study_row(conn, study_id):
                raise NotFound(f"study {study_id} does not exist")
            repo.delete_study(conn, study_id)

        self._uow.transaction(work)
        self._views.discard(study_id)
        if self._checkpoints is not None:  # rows went by cascade; checkpoint files go now
            self._checkpoints.delete_study(study_id)


def _warned(uow: UnitOfWork, studies: list[StudyOut]) -> list[StudyOut]:
    """The studies with their ``warnings``: a running study with a task that has started
    no trial yet, while no worker of its team announced that task lately (a typo in the
    task's name, or no worker running), says so."""
    waiting = [s for s in studies if _waits_for_a_worker(s)]
    if not waiting:
        return studies
    with uow.read() as conn:
        seen = fleet_repo.recent_tasks(conn, sorted({s.team for s in waiting}), WORKER_RECENT_S)
    for study in waiting:
        task = (study.task or {}).get("name")
        tasks = seen.get(study.team, set())
        if task not in tasks:
            announced = ", ".join(sorted(tasks)) or "none"
            study.warnings.append(
                f"no worker of team {study.team!r} seen in the last "
                f"{WORKER_RECENT_S // 60} minutes has the task {task!r} (tasks announced: "
                f"{announced}); start a worker that has it (hpo worker), or check the name"
            )
    return studies


def _waits_for_a_worker(study: StudyOut) -> bool:
    return (
        study.state == "running"
        and study.n_trials_started == 0
        and isinstance((study.task or {}).get("name"), str)
    )


def _store(
    conn: Connection,
    body: StudyCreate,
    max_trials: int | None,
    idem: IdempotencyKey | None,
    *,
    team_id: int | None,
) -> StudyOut:
    """Insert the study (or find the answer recorded under ``idem``); IntegrityError on a
    name the team already uses, KeyRace when another request recorded ``idem`` meanwhile."""
    if idem is not None and (stored := idempotency.find(conn, idem)) is not None:
        return StudyOut.model_validate(stored.body)
    study_id = repo.insert_study(
        conn,
        team_id=team_id,
        name=body.name,
        directions=body.directions,
        metric_names=body.metric_names,
        metadata=body.metadata,
        spec=_spec(body),
        task_name=body.task["name"] if body.task else None,
        max_trials=max_trials,
        max_parallel=body.max_parallel,
        max_retries=body.max_retries,
        lease_seconds=body.lease_seconds,
        max_resource_total=body.max_resource_total,
        max_gpu_hours=body.max_gpu_hours,
    )
    fork = None if body.from_ is None else _fork(conn, study_id, body, body.from_, team_id)
    row = repo.get_study(conn, study_id)
    assert row is not None
    out = to_study_out(row)
    out.fork = fork
    if idem is not None:
        idempotency.record(conn, idem, 201, out.model_dump(mode="json"))
    return out


def _fork(
    conn: Connection, study_id: int, body: StudyCreate, source: ForkFrom, team_id: int | None
) -> ForkOut:
    """Import the trials of the source study that fit the new one (same transaction)."""
    found = _source_study(conn, source.study, team_id)
    target = ImportTarget(body.search_space, len(body.directions), tuple(body.constraints))
    forked = fork_trials(
        conn,
        study_id=study_id,
        target=target,
        source={"study_id": found.study_id, "study": found.name},
        source_study_id=found.study_id,
        source_space=found.spec.get("search_space") or {},
        states=source.states,
        defaults=source.defaults,
    )
    return ForkOut(
        source_study_id=found.study_id,
        source_study=found.name,
        imported=forked.imported,
        skipped=[
            SkippedTrialOut(number=s.number, state=s.state, reason=s.reason) for s in forked.skipped
        ],
        dropped_params=forked.dropped_params,
    )


def _source_study(conn: Connection, ref: int | str, team_id: int | None) -> repo.StudyRow:
    """The study a fork starts from, by id or name, if the caller's team may read it (another
    team's answers as an unknown one does)."""
    if isinstance(ref, str):
        row = repo.get_study_by_name(conn, ref, team_id)
    elif team_id is None or auth_repo.team_of_study(conn, ref) == team_id:
        row = repo.get_study(conn, ref)
    else:
        row = None
    if row is None:
        raise NotFound(
            f"from.study: there is no study {ref!r} you may read; `GET /studies` lists them"
        )
    return row


def _spec(body: StudyCreate) -> dict[str, Any]:
    """What ``hpo_studies.spec`` keeps: search space, sampler, pruner and task, as JSON."""
    return {
        "search_space": {k: v.model_dump(mode="json") for k, v in body.search_space.items()},
        "sampler": body.sampler.model_dump(mode="json"),
        "pruner": body.pruner.model_dump(mode="json"),
        "scheduler": None if body.scheduler is None else body.scheduler.model_dump(mode="json"),
        "task": body.task,
        "constraints": body.constraints,
        "infeasible_failures": body.infeasible_failures,
    }


def _check_resource_budget(pruner: str, max_resource_total: int | None) -> None:
    """``max_resource_total`` counts the asha pruner's resource units: only with it."""
    if max_resource_total is not None and pruner != "asha":
        raise SpecError(
            "max_resource_total needs the asha pruner (it counts the units asha grants)",
            [{"loc": ["max_resource_total"], "msg": "only with pruner 'asha'"}],
        )


def _update(conn: Connection, study_id: int, patch: StudyPatch) -> repo.StudyRow:
    fields = patch.model_fields_set
    if "max_resource_total" in fields:
        current = repo.get_study(conn, study_id)
        if current is None:
            raise NotFound(f"study {study_id} does not exist")
        _check_resource_budget(current.spec["pruner"]["name"], patch.max_resource_total)
    found = repo.update_study(
        conn,
        study_id,
        state=patch.state,
        max_trials=(patch.max_trials,) if "max_trials" in fields else None,
        max_parallel=(patch.max_parallel,) if "max_parallel" in fields else None,
        max_resource_total=(
            (patch.max_resource_total,) if "max_resource_total" in fields else None
        ),
        max_gpu_hours=(patch.max_gpu_hours,) if "max_gpu_hours" in fields else None,
    )
    if not found:
        raise NotFound(f"study {study_id} does not exist")
    if patch.metadata is not None:
        repo.replace_metadata(conn, study_id, patch.metadata)
    row = repo.get_study(conn, study_id)
    assert row is not None
    return row


def to_study_out(row: repo.StudyRow) -> StudyOut:
    spec = row.spec
    return StudyOut(
        id=row.study_id,
        name=row.name,
        optuna_study_name=row.optuna_name,
        team=row.team,
        state=row.state,
        state_reason=row.state_reason,
        directions=row.directions,
        metric_names=row.metric_names,
        search_space=spec["search_space"],
        sampler=spec["sampler"],
        pruner=spec["pruner"],
        scheduler=spec.get("scheduler"),
        task=spec.get("task"),
        max_trials=row.max_trials,
        max_parallel=row.max_parallel,
        max_resource_total=row.max_resource_total,
        max_gpu_hours=row.max_gpu_hours,
        gpu_hours_used=row.gpu_seconds / 3600.0,
        max_retries=row.max_retries,
        lease_seconds=row.lease_seconds,
        metadata=row.metadata,
        # Studies created before constraints existed have neither key.
        constraints=spec.get("constraints", []),
        infeasible_failures=spec.get("infeasible_failures", []),
        n_trials_started=row.n_started,
        trial_counts=TrialCounts(**row.counts),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def load_definition(uow: UnitOfWork, study_id: int) -> StudyDefinition:
    """What a study view is built from (immutable after creation)."""
    with uow.read() as conn:
        row = repo.load_definition_row(conn, study_id)
    if row is None:
        raise NotFound(f"study {study_id} does not exist")
    spec = row.spec
    sampler = SamplerSpec.model_validate(spec["sampler"])
    # Failures become evidence only for samplers that read constraints (CMA-ES would take the
    # evidence's infinite values as real solutions).
    learns = sampler.name in CONSTRAINT_AWARE
    scheduler = spec.get("scheduler")  # absent in studies made before schedulers existed
    return StudyDefinition(
        study_id=study_id,
        name=row.optuna_name,
        directions=row.directions,
        search_space=parse_search_space(spec["search_space"]),
        sampler=sampler,
        pruner=PrunerSpec.model_validate(spec["pruner"]),
        task=spec.get("task"),
        constraints=tuple(spec.get("constraints", ())),
        infeasible_failures=frozenset(spec.get("infeasible_failures", ()) if learns else ()),
        scheduler=None if scheduler is None else SchedulerSpec.model_validate(scheduler),
    )
