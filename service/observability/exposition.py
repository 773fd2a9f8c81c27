"""One scrape: the process's metrics (or every process's, in multiprocess mode) and the
per-study gauges, in the format the scraper asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service.db.unit_of_work import UnitOfWork
from service.observability.gauges import StudyGauges
from service.observability.multiprocess import multiprocess_registry


class _Scrape:
    """Both sources as one collector, so one encoder call renders them."""

    def __init__(self, process: Collector, studies: Collector) -> None:
        self._sources = (process, studies)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


def render(uow: UnitOfWork, accept: str | None) -> tuple[bytes, str]:
    """The exposition text and its content type: OpenMetrics when ``accept`` asks for it, else
    Prometheus text format 0.0.4."""
    encode, content_type = _encoder(accept)
    process = multiprocess_registry() or REGISTRY
    return encode(_Scrape(process, StudyGauges(uow))), content_type


def _encoder(accept: str | None) -> tuple[Callable[[Collector], bytes], str]:
    """prometheus_client's choice for ``accept``; plain text when it cannot read the header
    (it raises on a version that is not a number)."""
    try:
        return choose_encoder(accept or "")
    except (TypeError, ValueError):
        return generate_latest, CONTENT_TYPE_PLAIN_0_0_4
