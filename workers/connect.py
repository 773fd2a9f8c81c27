"""A worker and the API: the start-up check of its token, and backoff while it is unreachable.

- :func:`check_access` asks ``GET /whoami`` before the worker loads anything. An unreachable
  API is said at once and at every retry, with the delay; a refused token (401), or one whose
  role may not run trials, raises :class:`AccessRefused` at once: retrying cannot fix it.
- :class:`Backoff` spaces the retries: 1, 2, 4 ... 30 s (jittered), back to 1 s once the API
  answers; at most 1 s after a call whose answer may have been lost on the way back (a claim
  the server may have handed a trial to). Every wait is on the worker's stop event, so Ctrl-C
  ends it at once.
"""

from __future__ import annotations

import logging
import random
import threading

from workers.client import ApiError, HPOClient, Unavailable
from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

EXIT_ACCESS_REFUSED = 3
_ANSWER_LOST_RETRY_S = 1.0  # the exit status of a worker whose token is refused
_RUN_ROLES = ("worker", "submit", "admin")
_FIX = "set HPO_API_TOKEN or --token to a worker token: hpo token create --team TEAM --role worker"


class AccessRefused(Exception):
    """The API refuses this worker's token; ``str()``: what is wrong, then what to do."""


class Backoff:
    def __init__(self, first_s: float = 1.0, cap_s: float = 30.0) -> None:
        self._first = first_s
        self._cap = cap_s
        self._next = first_s
        self.failures = 0

    def next_delay(self, cap_s: float | None = None) -> float:
        """The delay before the next retry (and doubles the one after, up to the cap);
        ``cap_s`` caps this one."""
        delay = min(self._next, cap_s or self._cap) * (0.75 + random.random() / 2)
        self._next = min(self._next * 2, self._cap)
        self.failures += 1
        return delay

    def reset(self) -> bool:
        """The API answered; True if it had failed before (worth saying)."""
        failed = self.failures > 0
        self._next, self.failures = self._first, 0
        return failed


def unreachable(
    who: str, url: str, exc: Unavailable, backoff: Backoff, stop: threading.Event
) -> None:
    """Say that ``url`` does not answer and wait for the next retry (or for ``stop``). A call
    whose answer may be lost (the server may hold a lease for it) is retried within a second,
    before that lease can expire."""
    delay = backoff.next_delay(_ANSWER_LOST_RETRY_S if exc.answer_lost else None)
    reason = str(exc).split(": ", 1)[-1]
    logger.warning(
        "%s: cannot reach the API at %s (%s); retrying in %.1f s", who, url, reason, delay
    )
    stop.wait(delay)


def refusal(exc: ApiError, url: str, has_token: bool) -> AccessRefused:
    """The refusal of a 401 or 403, in words that say what to do."""
    if exc.status == 401 and not has_token:
        what = f"the API at {url} needs a token and the worker has none"
    elif exc.status == 401:
        what = f"the API at {url} refused the worker's token ({exc.message})"
    else:
        what = f"the API at {url} does not let this token run trials ({exc.message})"
    return AccessRefused(f"{what}\n  {_FIX}")


def raise_if_refused(exc: ApiError, settings: WorkerSettings, url: str) -> None:
    """A 401 or 403 on a claim: raise :class:`AccessRefused` saying what to do."""
    if exc.status in (401, 403):
        token = settings.api_token
        raise refusal(exc, url, bool(token and token.get_secret_value())) from exc


def check_access(settings: WorkerSettings, stop: threading.Event) -> bool:
    """Wait until the API answers, then check that the token may run trials.

    Returns False when ``stop`` was set before the API answered; raises AccessRefused."""
    token = settings.api_token.get_secret_value() if settings.api_token else None
    token = token or None  # HPO_API_TOKEN= (empty) is no token
    backoff = Backoff()
    with HPOClient(settings.api_url, token=token, retry_for_s=0) as client:
        while not stop.is_set():
            try:
                me = client.request("GET", "/whoami").json()
            except Unavailable as exc:
                unreachable("worker", client.base_url, exc, backoff, stop)
                continue
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise refusal(exc, client.base_url, token is not None) from exc
                raise
            if me.get("auth") and me.get("role") not in _RUN_ROLES:
                role = me.get("role")
                raise AccessRefused(
                    f"the {role!r} token of the worker may not run trials\n  {_FIX}"
                )
            logger.info("the API at %s answers (team %s)", client.base_url, me.get("team"))
            return True
    return False
