"""Retry decisions as pure functions: what to retry, how long to wait, ``Retry-After``."""

from __future__ import annotations

import random
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from ..errors import APIConnectionError, APIResponseError, APIStatusError

#: Attempts per request, the first included.
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_MAX_RETRIES = DEFAULT_MAX_ATTEMPTS - 1
#: Backoff: ``base * 2 ** (attempt - 1)`` seconds, at most ``cap``, then full jitter.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
#: The longest wait a ``Retry-After`` can ask for: a longer one is waited for this long only.
MAX_RETRY_AFTER_SECONDS = 60.0
#: Statuses worth another try: timeouts, rate limits and server-side failures.
RETRY_STATUSES = frozenset({408, 429})


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Args:
        value: the header's value, or None when absent.
        now: the current Unix time (for HTTP dates).

    Returns:
        The seconds to wait (0 for a date in the past), or None when absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        return max(moment.timestamp() - now, 0.0)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(seconds, 0.0)


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to sleep before retry number ``attempt`` (1 for the first retry).

    With a ``Retry-After``, the wait the service asked for, up to our cap:
    ``min(retry_after, max_retry_after)``. Without one, exponential backoff with full jitter:
    a uniform draw in ``[0, min(cap, base * 2 ** (attempt - 1))]``.

    Args:
        attempt: the retry's number, from 1.
        retry_after: the seconds the service asked for (see :func:`parse_retry_after`), or None.
        base: the first retry's backoff ceiling, in seconds.
        cap: the highest backoff ceiling, in seconds.
        max_retry_after: the longest ``Retry-After`` waited for, in seconds.
        rng: a uniform draw in [0, 1) for the jitter.

    Returns:
        The seconds to sleep.

    Raises:
        ValueError: ``attempt`` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    if retry_after is not None:
        return min(max(retry_after, 0.0), max_retry_after)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling * rng()


def should_retry(outcome: int | BaseException) -> bool:
    """Whether a request that ended with this status code or error is worth another try.

    Connection errors and timeouts, unreadable answers, 408, 429 and 5xx are; any other status
    or error is not.
    """
    if isinstance(outcome, APIStatusError):
        outcome = outcome.status_code
    if isinstance(outcome, int):
        return outcome in RETRY_STATUSES or outcome >= 500
    return isinstance(outcome, APIConnectionError | APIResponseError)
