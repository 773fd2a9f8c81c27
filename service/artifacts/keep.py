"""Which artifacts stay: the best and the last checkpoint of a trial.

Pure decisions on rows already read; the service deletes what is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.artifacts.repository import ArtifactRow


def checkpoints_to_keep(
    checkpoints: Sequence[ArtifactRow], values: Mapping[int, float], maximize: bool
) -> set[int]:
    """The ids to keep of a trial's stored checkpoints (oldest first): the newest, and the one
    taken at the step whose reported intermediate value is the best so far (``maximize`` or
    minimise; ties: the earlier checkpoint). Checkpoints at steps without a reported value
    compete only for newest."""
    if not checkpoints:
        return set()
    keep = {checkpoints[-1].artifact_id}
    scored = [c for c in checkpoints if c.step is not None and c.step in values]
    if scored:
        sign = -1.0 if maximize else 1.0
        best = min(scored, key=lambda c: sign * values[c.step or 0])
        keep.add(best.artifact_id)
    return keep
