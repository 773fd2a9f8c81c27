"""Workers and the Python client of the HPO service.

- ``workers.client.HPOClient``: the HTTP API (studies, ask/claim, report, complete), with retries.
- ``workers.optimize.optimize``: run your own objective against a study over HTTP.
- ``hpo worker`` / ``python -m workers``: the GPU-capable PyTorch worker process.
"""

from workers.client import ApiError, HPOClient, Lease, LeaseLostError, NotFoundError

__all__ = ["ApiError", "HPOClient", "Lease", "LeaseLostError", "NotFoundError"]
