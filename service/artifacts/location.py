"""Where artifacts live: ``HPO_ARTIFACT_URL=s3://bucket/prefix`` parsed, and the object keys.

Keys: ``<prefix>/<study_id>/<trial_id>/<name>/<step>-<uuid>`` (``.../<name>/<uuid>`` without a
step); everything of a study
lies under ``<prefix>/<study_id>/``, so deleting a study deletes that prefix.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Final

MIN_PART_BYTES: Final = 5 * 1024 * 1024  # S3's smallest part (all but the last)
MAX_PARTS: Final = 10_000  # S3's most parts of one multipart upload

# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ArtifactLocation:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    def study_prefix(self, study_id: int) -> str:
        """The key prefix (ending in ``/``) under which all of a study's objects lie."""
        return f"{self._root()}{study_id}/"

    def new_key(self, study_id: int, trial_id: int, name: str, step: int | None) -> str:
        """A key no other upload has: a retried or concurrent upload never overwrites one."""
        at = "" if step is None else f"{step}-"
        return f"{self.study_prefix(study_id)}{trial_id}/{name}/{at}{uuid.uuid4().hex}"

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


def parse_artifact_url(url: str) -> ArtifactLocation:
    """``s3://bucket`` or ``s3://bucket/some/prefix``; ValueError saying what is wrong."""
    text = url.strip()
    if not text.startswith("s3://"):
        raise ValueError(f"HPO_ARTIFACT_URL must look like s3://bucket/prefix, not {url!r}")
    bucket, _, prefix = text[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"HPO_ARTIFACT_URL: {bucket!r} is not a bucket name (3-63 characters: lowercase"
            " letters, digits, dots, hyphens)"
        )
    parts = [p for p in prefix.split("/") if p]
    bad = [p for p in parts if not _PREFIX_PART.fullmatch(p) or p in {".", ".."}]
    if bad:
        raise ValueError(
            f"HPO_ARTIFACT_URL: prefix part {bad[0]!r} may hold only letters, digits, '.', '_'"
            " and '-'"
        )
    return ArtifactLocation(bucket=bucket, prefix="/".join(parts))


def part_size(size: int, threshold: int) -> int | None:
    """The part size of a multipart upload of ``size`` bytes, or None for one plain PUT (at
    most ``threshold`` bytes). Parts grow beyond ``threshold`` only to stay within S3's
    10,000 parts."""
    if size <= threshold:
        return None
    return max(threshold, -(-size // MAX_PARTS))


NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CHECKPOINT: Final = "checkpoint"  # the artifact name a trial resumes from
