"""Observability: Prometheus metrics at ``GET /metrics`` and structured logs with a request id.

Modules: ``metrics`` (the process's counters and histograms, and the hooks that feed them),
``request_id`` (the id of the request being handled), ``requests`` (the ASGI middleware that
times every request and sets its id), ``repository`` and ``gauges`` (per-study gauges read from
the database at scrape time), ``exposition`` (one scrape), ``multiprocess`` (``hpo serve
--workers N``), ``logs`` (text or JSON lines), ``endpoints`` (``GET /metrics``) and ``install``
(the one call ``create_app`` makes).
"""
