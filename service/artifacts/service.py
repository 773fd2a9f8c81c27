"""The rules of artifacts in object storage.

- **Upload**: the holder of a trial's live lease asks for an upload (name, step, size,
  sha256); the server records a ``pending`` row under a fresh object key and answers a presigned
  PUT URL, or a multipart upload with one presigned URL per part. Bytes go straight to the
  bucket.
- **Confirm**: the same lease token confirms the upload. The server completes the multipart
  upload, checks the object's size, then locks the lease row and checks that the lease still
  holds; only then is the artifact ``stored``. A lost lease deletes the row and the object
  (409 ``lease_lost``); a missing object answers 422 ``not_uploaded`` (the upload may be
  retried); a wrong size deletes both (422 ``size_mismatch``).
- **Checkpoints** (name ``checkpoint``): a stored one becomes the trial's current checkpoint
  (its metadata in ``hpo_checkpoints``, ``data`` NULL); of the trial's checkpoints only the
  newest and the one at the step with the best reported value are kept (see ``keep``).
- **Read**: the same rule as checkpoints: a running or waiting trial's artifacts only for the
  holder of its live lease, a finished trial's for anyone who may read the trial.
- **Retention**: for a study with no running or waiting trial, the artifacts of every trial
  outside its best k are deleted: on request, and by the reaper for finished studies when
  ``HPO_ARTIFACT_KEEP_TOP_K`` is set (``maintenance``). Idempotent; runs on one study take
  turns under its row lock.

Objects are deleted after the transaction that dropped their rows commits; a crash in between
leaves an unreferenced object, which goes with its study.
Thread-safe; one instance per server process.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from service.artifacts import repository as repo
from service.artifacts.errors import (
    ArtifactsOff,
    NotUploaded,
    ObjectStoreUnavailable,
    SizeMismatch,
    UsePresigned,
)
from service.artifacts.keep import checkpoints_to_keep
from service.artifacts.location import (
    CHECKPOINT,
    ArtifactLocation,
    parse_artifact_url,
    part_size,
)
from service.artifacts.objects import ObjectStore, Part
from service.artifacts.repository import ArtifactRow, Orphan
from service.checkpoints import repository as checkpoints_repo
from service.checkpoints.service import check_readable, lease_lost, raise_for_lease
from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput, NotFound, StateConflict
from service.settings import ServerSettings
from service.trials import repository as trials_repo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadRequest:
    name: str
    step: int | None
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Upload:
    """Where to send the bytes: ``url`` for one PUT, or ``part_urls`` (part 1 first) of
    ``part_size`` bytes each (the last one shorter)."""

    artifact: ArtifactRow
    url: str | None
    part_urls: list[str]
    part_size: int | None
    expires_at: dt.datetime


@dataclass(frozen=True)
class Download:
    artifact: ArtifactRow
    url: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Retention:
    kept_trials: list[int]
    deleted_objects: int


class ArtifactService:
    def __init__(
        self,
        uow: UnitOfWork,
        objects: ObjectStore,
        location: ArtifactLocation,
        *,
        part_bytes: int,
        keep_top_k: int | None,
    ) -> None:
        self._uow = uow
        self.objects = objects
        self.location = location
        self.part_bytes = part_bytes
        self.keep_top_k = keep_top_k

    def refuse_bytes(self) -> None:
        raise UsePresigned(
            "this server keeps checkpoints in object storage: POST"
            " /trials/{id}/artifacts/uploads for a presigned URL (docs/artifacts.md)",
            {"uploads": "/api/v1/trials/{trial_id}/artifacts/uploads"},
        )

    # ---- upload ----

    def start_upload(self, trial_id: int, token: str, request: UploadRequest) -> Upload:
        """Record a pending upload and presign its URLs. Raises LeaseLost without a live
        lease, ObjectStoreUnavailable when the bucket does not answer."""
        _check_request(request)
        with self._uow.read() as conn:
            study_id = self._live_study(conn, trial_id, token)
        key = self.location.new_key(study_id, trial_id, request.name, request.step)
        size_of_part = part_size(request.size, self.part_bytes)
        multipart_id = None
        if size_of_part is None:
            self.objects.check_reachable()
        else:
            multipart_id = self.objects.create_multipart(key)

        def record(conn: Connection) -> ArtifactRow | None:
            if checkpoints_repo.lock_live_lease(conn, trial_id, token) is None:
                return None
            return repo.insert_pending(
                conn,
                study_id=study_id,
                trial_id=trial_id,
                name=request.name,
                step=request.step,
                size=request.size,
                sha256=request.sha256,
                object_key=key,
                multipart_id=multipart_id,
                lease_token=token,
            )

        row = self._uow.transaction(record)
        if row is None:
            self.forget([Orphan(key, multipart_id)])
            with self._uow.read() as conn:
                raise_for_lease(conn, trial_id)
        return self._upload(row, size_of_part)

    def _upload(self, row: ArtifactRow, size_of_part: int | None) -> Upload:
        expires = _now() + dt.timedelta(seconds=self.objects.url_ttl_s)
        if row.multipart_id is None or size_of_part is None:
            return Upload(row, self.objects.presign_put(row.object_key), [], None, expires)
        count = -(-row.size // size_of_part)
        urls = [
            self.objects.presign_part(row.object_key, row.multipart_id, n)
            for n in range(1, count + 1)
        ]
        return Upload(row, None, urls, size_of_part, expires)

    def complete_upload(
        self, trial_id: int, token: str, artifact_id: int, parts: Sequence[Part] | None
    ) -> ArtifactRow:
        """Confirm an upload (see the module docstring). Idempotent once stored."""
        with self._uow.read() as conn:
            row = repo.get(conn, trial_id, artifact_id)
        if row is None:
            raise NotFound(f"trial {trial_id} has no upload {artifact_id}")
        if row.lease_token != token:
            raise lease_lost(trial_id, "RUNNING")
        if row.state == "stored":
            return row
        self._check_object(row, parts)
        stored, orphans = self._uow.transaction(lambda conn: self._store(conn, row, token))
        if stored is None:
            self.forget(orphans)
            with self._uow.read() as conn:
                raise_for_lease(conn, trial_id)
        self.forget(orphans)
        return stored

    def _check_object(self, row: ArtifactRow, parts: Sequence[Part] | None) -> None:
        if row.multipart_id is not None:
            if not parts:
                raise NotUploaded("a multipart upload is confirmed with its parts' ETags")
            ordered = sorted(parts, key=lambda p: p.number)
            if not self.objects.complete_multipart(row.object_key, row.multipart_id, ordered):
                raise NotUploaded(
                    "object storage refused the parts (missing, or ETags that do not match)",
                    {"artifact_id": row.artifact_id},
                )
        size = self.objects.size_of(row.object_key)
        if size is None:
            raise NotUploaded(
                f"nothing was uploaded for artifact {row.artifact_id} yet",
                {"artifact_id": row.artifact_id},
            )
        if size != row.size:
            self._uow.transaction(lambda conn: repo.delete(conn, [row.artifact_id]))
            self.forget([Orphan(row.object_key, None)])
            raise SizeMismatch(
                f"the object has {size} bytes, the upload announced {row.size}; it was deleted",
                {"artifact_id": row.artifact_id, "size": size, "announced": row.size},
            )

    def _store(
        self, conn: Connection, row: ArtifactRow, token: str
    ) -> tuple[ArtifactRow | None, list[Orphan]]:
        """Under the locked lease row: pending → stored, or the row deleted if the lease went."""
        if checkpoints_repo.lock_live_lease(conn, row.trial_id, token) is None:
            return None, repo.delete(conn, [row.artifact_id])
        stored = repo.mark_stored(conn, row.artifact_id)
        if stored is None:  # stored by a concurrent confirm, or swept as stale meanwhile
            got = repo.get(conn, row.trial_id, row.artifact_id)
            if got is None:
                raise NotFound(f"upload {row.artifact_id} expired unconfirmed and was deleted")
            return got, []
        if stored.name != CHECKPOINT:
            return stored, []
        return stored, self._keep_best_and_last(conn, stored)

    def _keep_best_and_last(self, conn: Connection, stored: ArtifactRow) -> list[Orphan]:
        assert stored.step is not None and stored.sha256 is not None
        checkpoints_repo.upsert(
            conn,
            trial_id=stored.trial_id,
            study_id=stored.study_id,
            step=stored.step,
            size=stored.size,
            sha256=stored.sha256,
            data=None,
        )
        checkpoints = repo.stored(conn, stored.trial_id, CHECKPOINT)
        maximize = trials_repo.study_directions(conn, stored.study_id)[:1] == ["maximize"]
        values = repo.intermediate_values(conn, stored.trial_id)
        keep = checkpoints_to_keep(checkpoints, values, maximize)
        return repo.delete(conn, [c.artifact_id for c in checkpoints if c.artifact_id not in keep])

    # ---- read ----

    def list_stored(self, trial_id: int) -> list[ArtifactRow]:
        """The trial's stored artifacts, oldest first; no lease needed."""
        with self._uow.read() as conn:
            if trials_repo.study_of_trial(conn, trial_id) is None:
                raise NotFound(f"trial {trial_id} does not exist")
            return repo.stored(conn, trial_id)

    def download(self, trial_id: int, artifact_id: int, token: str | None) -> Download:
        with self._uow.read() as conn:
            check_readable(conn, trial_id, token)
            row = repo.get(conn, trial_id, artifact_id)
        if row is None or row.state != "stored":
            raise NotFound(f"trial {trial_id} has no artifact {artifact_id}")
        return self._link(row)

    def checkpoint_link(self, trial_id: int, token: str | None) -> Download:
        """A link to the trial's current checkpoint, under the checkpoint read rule."""
        with self._uow.read() as conn:
            check_readable(conn, trial_id, token)
            row = repo.latest_checkpoint(conn, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} has no checkpoint", {"trial_id": trial_id})
        return self._link(row)

    def _link(self, row: ArtifactRow) -> Download:
        filename = row.name if row.step is None else f"{row.name}-{row.step}"
        url = self.objects.presign_get(row.object_key, filename)
        return Download(row, url, _now() + dt.timedelta(seconds=self.objects.url_ttl_s))

    # ---- retention, deletion ----

    def apply_retention(self, study_id: int, keep_top_k: int | None) -> Retention:
        """Delete the artifacts of the study's trials outside its best ``keep_top_k``
        (``HPO_ARTIFACT_KEEP_TOP_K`` if None). Needs a study with no running or waiting trial."""
        k = keep_top_k or self.keep_top_k
        if k is None:
            raise InvalidInput("say keep_top_k, or set HPO_ARTIFACT_KEEP_TOP_K on the server")

        def work(conn: Connection) -> tuple[list[int], list[Orphan]]:
            repo.lock_study(conn, study_id)  # concurrent runs on one study take turns
            directions = trials_repo.study_directions(conn, study_id)
            if not directions:
                raise NotFound(f"study {study_id} does not exist")
            active = repo.active_trials(conn, study_id)
            if active:
                raise StateConflict(
                    f"study {study_id} still has {active} running or waiting trials; apply"
                    " retention once it has finished",
                    {"study_id": study_id, "active_trials": active},
                )
            top = repo.top_trials(conn, study_id, k, directions[0] == "maximize")
            return top, repo.delete_outside(conn, study_id, top)

        top, orphans = self._uow.transaction(work)
        self.forget(orphans)
        return Retention(top, len(orphans))

    def forget(self, orphans: Sequence[Orphan]) -> None:
        """Delete objects whose rows are gone; a bucket away is logged, not raised (the rows
        are committed; the objects go with their study at the latest)."""
        try:
            for orphan in orphans:
                if orphan.multipart_id is not None:
                    self.objects.abort_multipart(orphan.object_key, orphan.multipart_id)
            self.objects.delete([o.object_key for o in orphans])
        except ObjectStoreUnavailable as exc:
            logger.warning("%d unreferenced objects left in the bucket: %s", len(orphans), exc)

    def _live_study(self, conn: Connection, trial_id: int, token: str) -> int:
        lease = trials_repo.lease_state(conn, trial_id)
        if lease is None:
            raise NotFound(f"trial {trial_id} does not exist")
        if not (lease.lease_live and lease.lease_token == token):
            raise lease_lost(trial_id, lease.trial_state)
        return lease.study_id


def build_artifacts(settings: ServerSettings, uow: UnitOfWork) -> ArtifactService | None:
    """The artifact service when ``HPO_ARTIFACT_URL`` is set, else None."""
    if settings.artifact_url is None:
        return None
    location = parse_artifact_url(settings.artifact_url)
    return ArtifactService(
        uow,
        ObjectStore(location, settings.artifact_url_ttl_s),
        location,
        part_bytes=settings.artifact_part_bytes,
        keep_top_k=settings.artifact_keep_top_k,
    )


def artifacts_off() -> ArtifactsOff:
    return ArtifactsOff(
        "this server has no object storage (HPO_ARTIFACT_URL is unset): checkpoints go through"
        " PUT /trials/{id}/checkpoint, and named artifacts are not kept"
    )


def _check_request(request: UploadRequest) -> None:
    if request.name == CHECKPOINT and (request.step is None or request.sha256 is None):
        raise InvalidInput("a checkpoint upload needs its step and sha256")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
