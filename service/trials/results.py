"""What a finished trial's result must hold, for a complete call and for an imported trial."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def check_result(
    state: str,
    values: Sequence[float] | None,
    reason: str | None,
    constraints: Mapping[str, float] | None,
    *,
    verb: str,
) -> None:
    """Raise ValueError (pydantic turns it into a 422 detail) if the fields do not fit the
    state: values for complete (no NaN), none otherwise; constraints only for complete; a
    reason only for failed. ``verb`` names the action in the NaN hint (complete, import)."""
    if state == "complete":
        if values is None:
            raise ValueError("a complete trial needs 'values' (one per objective)")
        if any(math.isnan(v) for v in values):
            raise ValueError(f"values must not be NaN; {verb} the trial as 'failed' instead")
    elif values is not None:
        raise ValueError(f"a {state} trial takes no 'values'")
    if constraints is not None:
        if state != "complete":
            raise ValueError("'constraints' are only for complete trials")
        if any(math.isnan(v) for v in constraints.values()):
            raise ValueError("constraint values must not be NaN")
    if reason is not None and state != "failed":
        raise ValueError("'reason' is only for failed trials")
