"""Study specifications: search spaces, samplers, pruners, and the checks that guard them.

Pure Python over Optuna and pydantic: no database, no HTTP. Every invalid specification is
refused with :class:`~service.errors.SpecError`, whose ``details`` list ``{"loc", "msg"}``
entries pointing at the offending JSON field.
"""

from service.spec.conditions import (
    ActiveSpace,
    check_params,
    is_conditional,
    parse_search_space,
)
from service.spec.details import Detail
from service.spec.grid import MAX_GRID_POINTS, grid_points
from service.spec.pruners import PRUNER_NAMES, PrunerName, PrunerSpec, build_pruner
from service.spec.samplers import (
    SAMPLER_NAMES,
    SamplerName,
    SamplerSpec,
    build_sampler,
    grid_point_count,
)
from service.spec.schedulers import PbtOptions, SchedulerSpec, check_scheduler
from service.spec.search_space import (
    MAX_NAME_LENGTH,
    MAX_PARAMS,
    CategoricalParam,
    FloatParam,
    IntParam,
    InvalidValue,
    ParamSpec,
    RangeCondition,
    SearchSpace,
    grid_size,
    normalize_value,
    param_spec_json,
    to_distribution,
    to_distributions,
)
from service.spec.study_check import Direction, check_study

__all__ = [
    "MAX_GRID_POINTS",
    "MAX_NAME_LENGTH",
    "MAX_PARAMS",
    "PRUNER_NAMES",
    "SAMPLER_NAMES",
    "ActiveSpace",
    "CategoricalParam",
    "Detail",
    "Direction",
    "FloatParam",
    "IntParam",
    "InvalidValue",
    "ParamSpec",
    "PbtOptions",
    "PrunerName",
    "PrunerSpec",
    "RangeCondition",
    "SamplerName",
    "SamplerSpec",
    "SchedulerSpec",
    "SearchSpace",
    "build_pruner",
    "build_sampler",
    "check_params",
    "check_scheduler",
    "check_study",
    "grid_point_count",
    "grid_points",
    "grid_size",
    "is_conditional",
    "normalize_value",
    "param_spec_json",
    "parse_search_space",
    "to_distribution",
    "to_distributions",
]
