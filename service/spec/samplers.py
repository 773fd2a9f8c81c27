"""The sampler registry: our sampler names, their options, and how Optuna samplers are built.

* ``tpe`` (default): :class:`~optuna.samplers.TPESampler`; ``constant_liar`` defaults to True.
* ``random``: :class:`~optuna.samplers.RandomSampler`.
* ``gp``: :class:`~optuna.samplers.GPSampler`; needs PyTorch in the server (``gp`` extra).
* ``cmaes``: :class:`~optuna.samplers.CmaEsSampler`; single-objective only; ``x0`` must give
  a start value for every float and int parameter.
* ``qmc``: :class:`~optuna.samplers.QMCSampler`.
* ``grid``: :class:`~optuna.samplers.GridSampler`; ``search_space`` defaults to every value
  of a finite space (see :mod:`service.spec.grid`).
* ``nsga2``: :class:`~optuna.samplers.NSGAIISampler`; ``crossover`` is given by name
  (``uniform``, ``blxalpha``, ``sbx``, ``vsbx``, ``undx``, ``spx``; each with its defaults,
  ``uniform`` with ``swapping_prob``).

Conditional spaces (parameters with ``when``, see :mod:`service.spec.conditions`): a trial
holds only its active parameters, and each sampler does what Optuna's does with parameters that
come and go:

* ``tpe``: on a conditional space ``multivariate`` defaults to True (Optuna 5's own default
  only for one objective) and ``group`` to ``multivariate`` (Optuna's mode for such spaces:
  the trials are split into groups of parameters that occur together, and each group is
  sampled jointly). With ``multivariate=false`` each parameter is sampled on its own from the
  trials that have it; with ``group=false`` only the parameters every trial has are sampled
  jointly. The same defaults hold for an open space (``{}``: every parameter is suggested by the
  objective, define-by-run).
* ``random``: every active parameter independently.
* ``gp``, ``nsga2``: the parameters every trial so far has (Optuna's intersection search
  space) are sampled relatively; the others by the sampler's independent fallback (random).
* ``qmc``: the parameters of the study's first trial follow the QMC sequence; the others are
  sampled at random, and Optuna logs a warning for each (``warn_independent_sampling``).
* ``cmaes``: refused (CMA-ES needs a fixed space; Optuna's sampler would sample the
  conditional parameters at random, and everything at random once its modelled space changes).
* ``grid``: refused (Optuna's grid sampler visits a fixed grid, see :mod:`service.spec.grid`).

Each name builds Optuna's class itself, unmodified; the server runs it on the study's
in-memory view (:class:`~service.sampling.view_storage.ViewStorage`). A ``tpe`` study with a
``seed`` therefore suggests what ``TPESampler`` with that seed suggests on Optuna's own storage
holding the same trials.

Constraints need no ``constraints_func`` (refused: it is a Python object, and deprecated since
Optuna 5): Optuna 5's TPE, GP and NSGA-II read each trial's constraint values from its system
attributes (``FrozenTrial.constraints``), where the service stores a study's declared
constraints and the view puts its infeasible evidence (:class:`~service.sampling.rows.Evidence`).
Only those (``CONSTRAINT_AWARE``) get evidence; the others see failed trials as Optuna shows them.

``constant_liar`` defaults to True for TPE because the service evaluates trials in parallel:
running trials are then treated as bad results, so concurrent workers do not all get the
same suggestion. A client may still send ``"constant_liar": false``.

:func:`build_sampler` is cheap (no I/O; option checks are cached per class) and
deterministic: the same spec gives an equivalently configured sampler, and a ``seed`` option
is passed through unchanged. It never returns a sampler Optuna would refuse to build.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast, get_args

from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    GridSampler,
    NSGAIISampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)
from optuna.samplers.nsgaii import (
    BaseCrossover,
    BLXAlphaCrossover,
    SBXCrossover,
    SPXCrossover,
    UNDXCrossover,
    UniformCrossover,
    VSBXCrossover,
)
from pydantic import BaseModel, ConfigDict, Field

from service.spec.conditions import is_conditional
from service.spec.details import detail, fail, raise_details
from service.spec.grid import grid_points
from service.spec.options import (
    PYTHON_OBJECT,
    NonNegativeFloat,
    NonNegativeInt,
    OptionRules,
    Options,
    PositiveFloat,
    PositiveInt,
    check_options,
    construct,
)
from service.spec.search_space import CategoricalParam, InvalidValue, ParamSpec, normalize_value

SamplerName = Literal["tpe", "random", "gp", "cmaes", "qmc", "grid", "nsga2"]
SAMPLER_NAMES: tuple[SamplerName, ...] = get_args(SamplerName)
# The samplers that read trials' constraint values (Optuna 5's FrozenTrial.constraints).
CONSTRAINT_AWARE: frozenset[SamplerName] = frozenset({"tpe", "gp", "nsga2"})

CrossoverName = Literal["uniform", "blxalpha", "sbx", "vsbx", "undx", "spx"]
_CROSSOVERS: dict[str, Callable[[], BaseCrossover]] = {
    "blxalpha": BLXAlphaCrossover,
    "sbx": SBXCrossover,
    "vsbx": VSBXCrossover,
    "undx": UNDXCrossover,
    "spx": SPXCrossover,
}
_IGNORED_SINCE_4_4 = "cannot be set over the API: Optuna ignores it (deprecated since 4.4)"


class SamplerSpec(BaseModel):
    """Which sampler a study uses and its constructor options (checked by build_sampler)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SamplerName = "tpe"
    options: Options = Field(default_factory=dict)


Space = Mapping[str, ParamSpec]
Prepare = Callable[[dict[str, Any], Space], dict[str, Any]]


def _unchanged(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    return kwargs


@dataclass(frozen=True)
class _Entry:
    rules: OptionRules
    prepare: Prepare = _unchanged
    multi_objective: bool = True
    conditional: bool = True


def _tpe_defaults(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    defaults: dict[str, Any] = {"constant_liar": True}
    if is_conditional(space) or not space:  # conditional, or open (define-by-run)
        multivariate = kwargs.get("multivariate", True)
        defaults |= {"multivariate": multivariate, "group": kwargs.get("group", multivariate)}
    return {**defaults, **kwargs}


def _require_torch(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    if not torch_available():
        raise fail(
            ["sampler", "name"],
            "the 'gp' sampler needs PyTorch in the server process; "
            "install the server's `gp` extra (pip install 'hpo-service[gp]')",
        )
    return kwargs


def torch_available() -> bool:
    """Whether ``import torch`` can succeed in this process (checked without importing it)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _cmaes_x0(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    if "x0" in kwargs:
        kwargs = {**kwargs, "x0": _checked_x0(kwargs["x0"], space)}
    return kwargs


def _checked_x0(x0: dict[str, Any], space: Space) -> dict[str, Any]:
    """CMA-ES reads a start value for every float and int parameter (categoricals have none)."""
    loc = ["sampler", "options", "x0"]
    numeric = [n for n, s in space.items() if not isinstance(s, CategoricalParam)]
    details = [detail([*loc, n], "a start value is required") for n in numeric if n not in x0]
    checked: dict[str, Any] = {}
    for name, value in x0.items():
        if name not in numeric:
            details.append(detail([*loc, name], "x0 takes float and int parameters only"))
            continue
        try:
            checked[name] = normalize_value(space[name], value)
        except InvalidValue as exc:
            details.append(detail([*loc, name], str(exc)))
    raise_details(details)
    return checked


def _grid_search_space(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    return {**kwargs, "search_space": grid_points(kwargs.get("search_space"), space)}


def _nsga2_crossover(kwargs: dict[str, Any], space: Space) -> dict[str, Any]:
    name = kwargs.get("crossover")
    if name is None:
        return kwargs
    try:
        crossover = (
            UniformCrossover(kwargs.get("swapping_prob", 0.5))
            if name == "uniform"
            else _CROSSOVERS[name]()
        )
    except ValueError as exc:
        raise fail(["sampler", "options", "crossover"], str(exc)) from exc
    return {**kwargs, "crossover": crossover}


def _rules(name: SamplerName, target: type[BaseSampler], **kw: Any) -> OptionRules:
    return OptionRules(kind="sampler", name=name, target=target, **kw)


def _refused(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, PYTHON_OBJECT)


_REGISTRY: dict[SamplerName, _Entry] = {
    "tpe": _Entry(
        _rules(
            "tpe",
            TPESampler,
            refused=_refused("gamma", "weights", "constraints_func"),
            hints={
                "n_startup_trials": NonNegativeInt,
                "n_ei_candidates": PositiveInt,
                "prior_weight": NonNegativeFloat | None,
            },
        ),
        prepare=_tpe_defaults,
    ),
    "random": _Entry(_rules("random", RandomSampler)),
    "gp": _Entry(
        _rules(
            "gp",
            GPSampler,
            refused=_refused("independent_sampler", "constraints_func"),
            hints={"n_startup_trials": NonNegativeInt},
        ),
        prepare=_require_torch,
    ),
    "cmaes": _Entry(
        _rules(
            "cmaes",
            CmaEsSampler,
            refused={
                **_refused("independent_sampler", "source_trials"),
                "restart_strategy": _IGNORED_SINCE_4_4,
                "inc_popsize": _IGNORED_SINCE_4_4,
            },
            hints={
                "n_startup_trials": NonNegativeInt,
                "sigma0": PositiveFloat | None,
                "popsize": PositiveInt | None,
            },
        ),
        prepare=_cmaes_x0,
        multi_objective=False,
        conditional=False,
    ),
    "qmc": _Entry(
        _rules(
            "qmc",
            QMCSampler,
            refused=_refused("independent_sampler"),
            hints={"qmc_type": Literal["sobol", "halton"]},
        )
    ),
    "grid": _Entry(
        _rules("grid", GridSampler, hints={"search_space": dict[str, list[Any]]}),
        prepare=_grid_search_space,
    ),
    "nsga2": _Entry(
        _rules(
            "nsga2",
            NSGAIISampler,
            refused=_refused(
                "mutation",
                "constraints_func",
                "elite_population_selection_strategy",
                "child_generation_strategy",
                "after_trial_strategy",
            ),
            hints={
                "crossover": CrossoverName | None,
                "population_size": Annotated[int, Field(ge=2)],
            },
        ),
        prepare=_nsga2_crossover,
    ),
}


def sampler_rules(name: SamplerName) -> OptionRules:
    """The option rules of one sampler (for documentation and tests)."""
    return _REGISTRY[name].rules


def build_sampler(spec: SamplerSpec, space: Space, directions: Sequence[str]) -> BaseSampler:
    """Build the Optuna sampler ``spec`` describes for a study over ``space``.

    ``space`` must be validated (see :func:`~service.spec.conditions.parse_search_space`).
    Raises :class:`~service.errors.SpecError` for unknown or ill-typed options, options that
    need Python objects, a sampler that cannot handle ``len(directions)`` objectives or a
    conditional space, and anything Optuna's constructor refuses.
    """
    entry = _REGISTRY[spec.name]
    if len(directions) > 1 and not entry.multi_objective:
        raise fail(
            ["sampler", "name"],
            f"the {spec.name!r} sampler supports single-objective studies only; "
            f"this study has {len(directions)} objectives (use 'tpe', 'nsga2', 'gp' or 'random')",
        )
    if not entry.conditional and is_conditional(space):
        raise fail(
            ["sampler", "name"],
            f"the {spec.name!r} sampler needs a fixed search space (every parameter in every "
            "trial); this space has parameters with `when` (use 'tpe', 'random', 'gp', 'qmc' "
            "or 'nsga2')",
        )
    kwargs = entry.prepare(check_options(entry.rules, spec.options), space)
    return cast(BaseSampler, construct(entry.rules, kwargs))


def grid_point_count(spec: SamplerSpec, space: Space) -> int:
    """How many distinct points a ``grid`` sampler built from ``spec`` visits."""
    options = check_options(_REGISTRY["grid"].rules, spec.options)
    points = grid_points(options.get("search_space"), space)
    return math.prod(len(values) for values in points.values())
