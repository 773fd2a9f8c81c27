"""The ``hpo`` command.

- ``main``: the parser and the one place that turns a user's error into a short message
  (``service.cli.errors``).
- ``server``: ``hpo serve`` and ``hpo db``, on the database.
- ``studies``: ``hpo study ...``, over the HTTP API (``service.cli.api`` connects,
  ``service.cli.output`` prints tables and JSON, ``service.cli.study_file`` reads study files).
- ``fleet``: ``hpo worker list``.
- ``hpo token`` lives in ``service.auth.cli``; ``hpo worker`` and ``hpo demo`` in ``workers.cli``.
"""

from service.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
