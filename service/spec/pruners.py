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
======================  ===============================================

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
    "none", "median", "percentile", "successive_halving", "hyperband", "threshold", "wilcoxon"
]
PRUNER_NAMES: tuple[PrunerName, ...] = get_args(PrunerName)


class PrunerSpec(BaseModel):
    """Which pruner a study uses and its constructor options (checked by build_pruner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PrunerName = "none"
    options: Options = Field(default_factory=dict)


def _rules(name: PrunerName, target: type[BasePruner], **hints: Any) -> OptionRules:
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
    return cast(BasePruner, construct(rules, options))


def _check_hyperband_range(options: dict[str, Any]) -> None:
    """With ``max_resource < min_resource`` Optuna builds zero brackets and never prunes."""
    low, high = options.get("min_resource", 1), options.get("max_resource", "auto")
    if isinstance(high, int) and high < low:
        raise fail(
            ["pruner", "options", "max_resource"],
            f"max_resource ({high}) must be >= min_resource ({low})",
        )
