"""The process's metrics (counters and histograms) and the one-line hooks that feed them.

All live in prometheus_client's default registry. Under ``hpo serve --workers N`` they are
shared through files (``service.observability.multiprocess``); the choice is made when this
module is first imported, so the environment must be set before that.

Gauges of trials per study are not here: they are read from the database at scrape time
(``service.observability.gauges``), because the database is the truth across processes.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client.context_managers import Timer

# No ``*_created`` series: one process would export them and several (multiprocess mode) not.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Hot-path requests take milliseconds; long-polling claims wait up to 60 s.
_REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# TPE on a small study samples in about a millisecond; GP on a large one takes seconds.
_SAMPLER_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

HTTP_REQUESTS = Counter(
    "hpo_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "hpo_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by method, route template and"
    " status code.",
    ["method", "route", "status"],
    buckets=_REQUEST_BUCKETS,
)
CLAIMS = Counter(
    "hpo_claims",
    "Claim attempts by outcome: claimed (a trial was leased) or empty. A long-polling claim"
    " tries once on arrival and again on every wake-up.",
    ["outcome"],
)
LEASES_REAPED = Counter(
    "hpo_leases_reaped",
    "Expired leases handled by this process's reaper: requeued, or failed (max_retries reached).",
    ["outcome"],
)
SAMPLER_SECONDS = Histogram(
    "hpo_sampler_duration_seconds",
    "Time the study's sampler took to sample one trial's parameters, by sampler.",
    ["sampler"],
    buckets=_SAMPLER_BUCKETS,
)

ClaimOutcome = Literal["claimed", "empty"]
ReapOutcome = Literal["requeued", "failed"]

# Every outcome is exported from the start (as 0), so rates work before the first event.
for _outcome in ("claimed", "empty"):
    CLAIMS.labels(_outcome)
for _outcome in ("requeued", "failed"):
    LEASES_REAPED.labels(_outcome)


def count_claim(claimed: bool) -> None:
    """One claim attempt, which leased a trial or found none."""
    CLAIMS.labels("claimed" if claimed else "empty").inc()


def count_reaped(requeued: bool) -> None:
    """One expired lease, put back in the queue or failed."""
    LEASES_REAPED.labels("requeued" if requeued else "failed").inc()


def time_sampling(sampler: str) -> Timer:
    """``with time_sampling(name):`` observes the block's duration for that sampler."""
    return SAMPLER_SECONDS.labels(sampler).time()
