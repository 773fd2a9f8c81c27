"""The trial an objective evaluates through the service, shaped like ``optuna.Trial``.

An Optuna objective runs unchanged::

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        if optimizer == "sgd":
            momentum = trial.suggest_float("momentum", 0.0, 0.99)
        for epoch in range(20):
            loss = train_one_epoch(...)
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

* ``suggest_*`` of a parameter the study declares answers the value its lease carries, after
  checking the objective asks for the declared distribution (:class:`DistributionMismatch`) and
  that the parameter exists in this trial (a declared ``when`` that does not hold:
  :class:`InactiveParameter`). No request.
* ``suggest_*`` of an undeclared name (an open space: ``{}`` or partly declared) is sampled by
  the server for this trial, with the study's sampler and history: one request
  (``POST /trials/{id}/suggest``), answered again with the same value if repeated. A name
  suggested twice in one trial must keep its distribution (as the server requires).
* ``report(value, step)`` sends an intermediate value (Optuna's argument order) and remembers
  the pruner's answer, which ``should_prune()`` returns (False before any report). A ``step``
  that is not an integer is a ``TypeError`` (the former ``report(step, value)`` order).
* ``set_user_attr`` and ``set_constraint`` are sent with the trial's complete call.

``params`` holds every value the lease carries (all the active declared parameters, from the
start, and undeclared ones a retried trial suggested before) plus those suggested since;
``distributions`` those of the values suggested or declared.
"""

from __future__ import annotations

import datetime as dt
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from workers.client import ApiError, HPOClient, Lease


class DistributionMismatch(ValueError):
    """The objective suggests a declared parameter with another distribution than the study's
    search space declares, or a parameter again with another distribution."""


class InactiveParameter(ValueError):
    """The objective suggests a declared conditional parameter whose ``when`` does not hold in
    this trial (the trial does not hold it)."""


class SuggestRefused(ValueError):
    """The server refused to sample an undeclared parameter (422: an invalid distribution, a
    sampler that samples declared parameters only...)."""


def declared_distribution(spec: Mapping[str, Any]) -> BaseDistribution:
    """The Optuna distribution of one parameter of a study's search space (its JSON)."""
    kind = spec["type"]
    if kind == "float":
        return FloatDistribution(
            spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step")
        )
    if kind == "int":
        return IntDistribution(
            spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1)
        )
    return CategoricalDistribution(spec["choices"])


class ClientTrial:
    """One leased trial for an objective (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        lease: Lease,
        client: HPOClient,
        search_space: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.lease = lease
        self.client = client
        self.user_attrs: dict[str, Any] = {}
        self.constraints: dict[str, float] = {}
        self.datetime_start = dt.datetime.now()
        self._space = dict(search_space or {})
        self._params: dict[str, Any] = dict(lease.params)
        self._distributions: dict[str, BaseDistribution] = {
            name: declared_distribution(self._space[name])
            for name in lease.params
            if name in self._space
        }
        self._should_prune = False

    @property
    def number(self) -> int:
        return self.lease.number

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return dict(self._distributions)

    # ---- suggestions ----

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        spec = {"type": "float", "low": float(low), "high": float(high), "log": log, "step": step}
        distribution = FloatDistribution(low, high, log=log, step=step)
        return float(self._suggest(name, distribution, spec))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        spec = {"type": "int", "low": int(low), "high": int(high), "log": log, "step": int(step)}
        distribution = IntDistribution(low, high, log=log, step=step)
        return int(self._suggest(name, distribution, spec))

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        distribution = CategoricalDistribution(choices)
        spec = {"type": "categorical", "choices": list(choices)}
        value: CategoricalChoiceType = self._suggest(name, distribution, spec)
        return value

    def _suggest(self, name: str, distribution: BaseDistribution, spec: dict[str, Any]) -> Any:
        if name in self._space:
            return self._declared(name, distribution)
        held = self._distributions.get(name)
        if held is not None:
            if held != distribution:
                raise DistributionMismatch(
                    f"parameter {name!r} was suggested in this trial as {held}; "
                    f"it cannot be suggested again as {distribution}"
                )
            return self._params[name]
        try:
            value = self.client.suggest(self.lease.trial_id, self.lease.token, name, spec)
        except ApiError as exc:
            if exc.status == 422:
                raise SuggestRefused(f"the server refused to suggest {name!r}: {exc}") from exc
            raise
        self._params[name] = value
        self._distributions[name] = distribution
        return value

    def _declared(self, name: str, distribution: BaseDistribution) -> Any:
        declared = declared_distribution(self._space[name])
        if declared != distribution:
            raise DistributionMismatch(
                f"parameter {name!r} is declared in the study's search space as {declared}, "
                f"but the objective suggests {distribution}: make them the same (or leave "
                "the parameter out of the search space to have it sampled as suggested)"
            )
        if name not in self._params:
            when = self._space[name].get("when")
            raise InactiveParameter(
                f"parameter {name!r} is not active in trial {self.number}: the study declares "
                f"it with when={when} and this trial's values {self._params} do not meet it; "
                "suggest it only under the same condition"
            )
        return self._params[name]

    # ---- reports and attributes ----

    def report(self, value: float, step: int) -> None:
        """Send an intermediate value (``optuna.Trial.report``'s order: value, then step) and
        keep the pruner's answer for :meth:`should_prune`. Never raises ``TrialPruned``."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(
                f"step must be an integer, got {step!r}: report takes (value, step) as "
                "optuna.Trial.report does (were the arguments swapped?)"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"value must be a float, got {type(value).__name__}") from None
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        answer = self.client.report(self.lease.trial_id, self.lease.token, int(step), number)
        self._should_prune = bool(answer["should_prune"])

    def should_prune(self) -> bool:
        """The study's pruner's answer to the last report (False before any)."""
        return self._should_prune

    def set_user_attr(self, key: str, value: Any) -> None:
        """Sent with the trial's complete call."""
        self.user_attrs[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        """One of the study's declared constraint values (<= 0 is feasible), sent on complete."""
        self.constraints[key] = float(value)
