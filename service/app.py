"""The FastAPI application: ``create_app()`` and its lifespan.

Nothing connects at import time. The lifespan resolves the database (``HPO_DATABASE_URL`` or
the embedded PostgreSQL), refuses to start on an out-of-date schema, and builds the services,
the LISTEN thread and the lease reaper; routes reach them through dependencies.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api.docs import install_api_docs
from service.api.errors import API_ERRORS, install_error_handlers
from service.api.limits import BodyLimit, BodySizeLimit, RouteLimit
from service.artifacts.checkpoint_store import ObjectCheckpointStore
from service.artifacts.endpoints import router as artifacts_router
from service.artifacts.maintenance import artifact_maintenance
from service.artifacts.service import build_artifacts
from service.auth.access import Access
from service.auth.endpoints import router as auth_router
from service.auth.service import AuthService
from service.checkpoints.endpoints import router as checkpoints_router
from service.checkpoints.service import CheckpointService, build_store
from service.dashboard.endpoints import router as dashboard_router
from service.db.engine import create_db_engine, resolve_url
from service.db.migrate import ensure_current
from service.db.unit_of_work import UnitOfWork
from service.fleet.endpoints import router as fleet_router
from service.fleet.service import FleetService
from service.health import router as health_router
from service.history.endpoints import router as history_router
from service.history.importance import ImportanceCache
from service.history.service import HistoryService
from service.live.endpoints import router as live_router
from service.live.service import LiveService
from service.live.shutdown import on_stop_signals
from service.live.stream import StreamTiming
from service.notify import (
    EVENTS_CHANNEL,
    WORK_CHANNEL,
    EventBroadcaster,
    Listener,
    WorkSignal,
    route_notifications,
)
from service.observability.install import install_observability
from service.reaper import Reaper
from service.sampling.registry import StudyViews
from service.settings import ServerSettings
from service.studies.endpoints import router as studies_router
from service.studies.service import StudyService, load_definition
from service.trials.endpoints import router as trials_router
from service.trials.import_endpoints import router as imports_router
from service.trials.imports import TrialImports
from service.trials.index import TrialStudyIndex
from service.trials.queries import TrialQueries
from service.trials.service import ClaimTiming, TrialService
from service.trials.suggest import Suggestions
from service.trials.suggest_endpoints import router as suggest_router
from service.usage.endpoints import router as usage_router
from service.usage.service import UsageService

API_PREFIX = "/api/v1"


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    app = FastAPI(
        title="HPO service",
        version=__version__,
        description="Bayesian optimization over HTTP: studies and trials in PostgreSQL, "
        "sampled and pruned by Optuna.",
        lifespan=_lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: ours are offline
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        default=BodyLimit(settings.max_body_bytes, "HPO_MAX_BODY_BYTES"),
        routes=[  # checkpoints are raw bytes, held to their own limit
            RouteLimit(
                "PUT",
                API_PREFIX + r"/trials/[^/]+/checkpoint",
                BodyLimit(settings.checkpoint_max_bytes, "HPO_CHECKPOINT_MAX_BYTES"),
            ),
            RouteLimit(  # up to 10 000 trials with their curves
                "POST",
                API_PREFIX + r"/studies/[^/]+/trials/import",
                BodyLimit(settings.import_max_bytes, "HPO_IMPORT_MAX_BYTES"),
            ),
        ],
    )
    install_observability(app)
    # Every /api route takes its caller from service.api.deps (a bearer token, checked against
    # the study's or trial's team); only health, the dashboard's static pages, the schema and
    # its pages (/docs, /redoc) are open.
    # Routes are matched in order, one by one, on every request: the trials router (ask, claim,
    # heartbeat, report, complete: the hot path) first. No two routers have overlapping paths,
    # except that history must come before studies, whose /studies/{study_id} would otherwise
    # take /studies/summary.
    app.include_router(trials_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(imports_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(suggest_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(history_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(studies_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(checkpoints_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(artifacts_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(fleet_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(live_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(auth_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(usage_router, prefix=API_PREFIX, responses=API_ERRORS)
    app.include_router(health_router)
    app.include_router(dashboard_router)
    install_api_docs(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ServerSettings = app.state.settings
    checkpoint_store = build_store(settings.checkpoint_dir)  # files (if configured) or PostgreSQL
    url = resolve_url(settings)
    engine = create_db_engine(url, pool_size=settings.pool_size, max_overflow=settings.max_overflow)
    try:
        ensure_current(engine)
    except Exception:
        engine.dispose()
        raise
    uow = UnitOfWork(engine)
    artifacts = build_artifacts(settings, uow)  # object storage, if HPO_ARTIFACT_URL is set
    if artifacts is not None:
        checkpoint_store = ObjectCheckpointStore(artifacts.objects, artifacts.location)
    views = StudyViews(functools.partial(load_definition, uow), settings.view_cache_size)
    signal = WorkSignal(asyncio.get_running_loop())
    events = EventBroadcaster(asyncio.get_running_loop())
    listener = Listener(
        url.set(drivername="postgresql").render_as_string(hide_password=False),
        [WORK_CHANNEL, EVENTS_CHANNEL],
        route_notifications(signal, events),
    )
    reaper = Reaper(
        uow,
        settings.reaper_interval_s,
        settings.idempotency_ttl_s,
        settings.event_retention_s,
        artifact_maintenance(uow, artifacts),  # retention and stale uploads, with object storage
    )
    app.state.engine = engine
    app.state.uow = uow
    app.state.auth = AuthService(uow, settings.auth_cache_s)
    app.state.studies = StudyService(uow, views, checkpoint_store)
    trial_index = TrialStudyIndex(uow)
    app.state.access = Access(uow, trial_index)
    app.state.trials = TrialService(
        uow,
        views,
        trial_index,
        signal,
        ClaimTiming(settings.claim_max_wait_s, settings.claim_repoll_s),
        fail_fast_trials=settings.fail_fast_trials,
        checkpoints=checkpoint_store,
    )
    reaper.settle_with(functools.partial(app.state.trials.settle, check=True))
    app.state.trial_queries = TrialQueries(uow)
    app.state.imports = TrialImports(uow, views, trial_index)
    app.state.suggestions = Suggestions(uow, views, trial_index)
    app.state.fleet = FleetService(uow)
    app.state.usage = UsageService(uow)
    app.state.artifacts = artifacts
    app.state.checkpoints = CheckpointService(
        uow, checkpoint_store, settings.checkpoint_max_bytes, artifacts
    )
    app.state.history = HistoryService(
        uow, ImportanceCache(uow, settings.importance_sync_max_trials)
    )
    app.state.live = LiveService(
        uow, events, StreamTiming(settings.events_heartbeat_s, settings.events_repoll_s)
    )
    app.state.reaper = reaper
    listener.start()
    reaper.start()
    # Event streams never end by themselves: close them when the server is told to stop.
    restore_signals = on_stop_signals(events.close_threadsafe)
    try:
        yield
    finally:
        restore_signals()
        events.close()
        app.state.history.close()
        reaper.stop()
        listener.stop()
        engine.dispose()
