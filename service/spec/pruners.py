"""The pruner registry: our pruner names, their options, and how Optuna pruners are built.

======================  ===============================================
name                    Optuna class
======================  ===============================================
``none`` (default)      :class:`~optuna.pruners.NopPruner`
``median``              :class:`~optuna.pruners.MedianPruner`
``percentile``          :class:`~optuna.pruners.PercentilePruner` (``percentile`` required)
``successive_halving``  :class:`~optuna.pruners.SuccessiveHalvingPruner`
``hyperband``           :class:`~optuna.pruners.HyperbandPruner`
``threshold``           :class:`~optuna.pruners.ThresholdPruner` (``lower`` or ``upper``)
``wilcoxon``            :class:`~optuna.pruners.WilcoxonPruner`
``asha``                the service's own: pause and promote (:class:`AshaSchedule`)
======================  ===============================================

``asha`` is asynchronous successive halving (asynchronous Hyperband with ``brackets`` > 1): its
decision at a rung is *continue* or *pause*, never prune, and paused trials are promoted later
(``service.sampling.asha``). Its Optuna pruner is a ``NopPruner``; :func:`build_schedule` gives
its rungs.

Only ``none`` is allowed for multi-objective studies: Optuna cannot report intermediate
values for them. :func:`build_pruner` is cheap, pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, cast, get_args

from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
    ThresholdPruner,
    WilcoxonPruner,
)
from pydantic import BaseModel, ConfigDict, Field

from service.spec.details import fail
from service.spec.options import (
    NonNegativeInt,
    OptionRules,
    Options,
    PositiveInt,
    check_options,
    construct,
)

PrunerName = Literal[
    "none",
    "median",
    "percentile",
    "successive_halving",
    "hyperband",
    "threshold",
    "wilcoxon",
    "asha",
]
PRUNER_NAMES: tuple[PrunerName, ...] = get_args(PrunerName)


class PrunerSpec(BaseModel):
    """Which pruner a study uses and its constructor options (checked by build_pruner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PrunerName = "none"
    options: Options = Field(default_factory=dict)


class AshaSchedule:
    """The rungs of the ``asha`` pruner (options checked by the constructor).

    Resource: a report at step ``s`` means ``s + 1`` units done (steps count from 0, as the
    built-in tasks report epochs). Bracket ``b`` (``0 <= b < brackets``) starts at
    ``min_resource * reduction_factor**b`` units; its rung ``k`` is at ``r_k = r_0 *
    reduction_factor**k`` units, for every ``r_k < max_resource``: the decision is taken on the
    report of step ``r_k - 1``. At ``max_resource`` units a trial is done (its task completes
    it). A trial's bracket is its number modulo ``brackets`` (fixed at creation, the same in
    every process).
    """

    def __init__(
        self,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int = 27,
        brackets: int = 1,
    ) -> None:
        for name, value, low in (
            ("min_resource", min_resource, 1),
            ("reduction_factor", reduction_factor, 2),
            ("max_resource", max_resource, 1),
            ("brackets", brackets, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
        if max_resource <= min_resource * reduction_factor ** (brackets - 1):
            raise ValueError(
                f"max_resource ({max_resource}) must be above the lowest rung of the last "
                f"bracket (min_resource * reduction_factor**(brackets - 1) = "
                f"{min_resource * reduction_factor ** (brackets - 1)}): every bracket needs a rung"
            )
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.max_resource = max_resource
        self.brackets = brackets

    def bracket(self, number: int) -> int:
        """The bracket of the trial with this number."""
        return number % self.brackets

    def rung_steps(self, bracket: int) -> list[int]:
        """The steps at which trials of ``bracket`` are decided on, lowest rung first."""
        steps: list[int] = []
        resource = self.min_resource * self.reduction_factor**bracket
        while resource < self.max_resource:
            steps.append(resource - 1)
            resource *= self.reduction_factor
        return steps

    def first_stop(self, number: int) -> int:
        """The units a new trial ``number`` is granted: up to its bracket's first rung."""
        return self.rung_steps(self.bracket(number))[0] + 1

    def next_stop(self, number: int, units: int) -> int:
        """The units up to which a trial that has done ``units`` may run on: its next rung, or
        ``max_resource``."""
        above = [s + 1 for s in self.rung_steps(self.bracket(number)) if s + 1 > units]
        return above[0] if above else self.max_resource

    def rung_of(self, number: int, step: int) -> int | None:
        """The rung (0 = lowest) whose decision step is ``step`` for trial ``number``, if any."""
        steps = self.rung_steps(self.bracket(number))
        return steps.index(step) if step in steps else None


def _rules(name: PrunerName, target: Any, **hints: Any) -> OptionRules:
    return OptionRules(kind="pruner", name=name, target=target, hints=hints)


# HyperbandPruner checks these only when it first prunes (or never).
_HYPERBAND_HINTS = {
    "min_resource": PositiveInt,
    "max_resource": PositiveInt | Literal["auto"],
    "reduction_factor": Annotated[int, Field(ge=2)],
    "bootstrap_count": NonNegativeInt,
}


_REGISTRY: dict[PrunerName, OptionRules] = {
    "none": _rules("none", NopPruner),
    "median": _rules("median", MedianPruner),
    "percentile": _rules("percentile", PercentilePruner),
    "successive_halving": _rules("successive_halving", SuccessiveHalvingPruner),
    "hyperband": _rules("hyperband", HyperbandPruner, **_HYPERBAND_HINTS),
    "threshold": _rules("threshold", ThresholdPruner),
    "wilcoxon": _rules("wilcoxon", WilcoxonPruner),
    "asha": _rules(
        "asha",
        AshaSchedule,
        min_resource=PositiveInt,
        reduction_factor=Annotated[int, Field(ge=2)],
        max_resource=PositiveInt,
        brackets=PositiveInt,
    ),
}


def pruner_rules(name: PrunerName) -> OptionRules:
    """The option rules of one pruner (for documentation and tests)."""
    return _REGISTRY[name]


def build_pruner(spec: PrunerSpec, directions: Sequence[str]) -> BasePruner:
    """Build the Optuna pruner ``spec`` describes for a study with ``directions``.

    Raises :class:`~service.errors.SpecError` for a pruner other than ``none`` on a
    multi-objective study, unknown or ill-typed options, missing required options, and
    anything Optuna's constructor refuses.
    """
    if len(directions) > 1 and spec.name != "none":
        raise fail(
            ["pruner", "name"],
            f"pruner {spec.name!r} needs a single-objective study: Optuna cannot report "
            "intermediate values for multi-objective studies (use 'none')",
        )
    rules = _REGISTRY[spec.name]
    options = check_options(rules, spec.options)
    if spec.name == "hyperband":
        _check_hyperband_range(options)
    built = construct(rules, options)
    if isinstance(built, AshaSchedule):
        return NopPruner()  # asha decides in service.sampling.asha, never through Optuna
    return cast(BasePruner, built)


def build_schedule(spec: PrunerSpec) -> AshaSchedule | None:
    """The rungs of an ``asha`` pruner; None for every other pruner. ``spec`` must have passed
    :func:`build_pruner` (the options are checked there)."""
    if spec.name != "asha":
        return None
    return cast(
        AshaSchedule, construct(_REGISTRY["asha"], check_options(_REGISTRY["asha"], spec.options))
    )


def _check_hyperband_range(options: dict[str, Any]) -> None:
    """With ``max_resource < min_resource`` Optuna builds zero brackets and never prunes."""
    low, high = options.get("min_resource", 1), options.get("max_resource", "auto")
    if isinstance(high, int) and high < low:
        raise fail(
            ["pruner", "options", "max_resource"],
            f"max_resource ({high}) must be >= min_resource ({low})",
        )
