"""Retry decisions: Retry-After parsing, backoff growth and cap, what is worth another try."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from mediaprep.api.retry import (
    MAX_RETRY_AFTER_SECONDS,
    parse_retry_after,
    retry_delay,
    should_retry,
)
from mediaprep.errors import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    TaskFailedError,
)

NOW = 1_700_000_000.0


def http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, timezone.utc), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after(http_date(NOW + 42), NOW) == pytest.approx(42.0)


def test_parse_retry_after_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after(http_date(NOW - 100), NOW) == 0.0


def test_parse_retry_after_fixed_http_date() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == pytest.approx(60.0)


def test_backoff_grows_exponentially_without_jitter_at_the_top() -> None:
    delays = [retry_delay(attempt, rng=lambda: 1.0) for attempt in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_backoff_is_capped() -> None:
    assert retry_delay(50, rng=lambda: 1.0) == 30.0
    assert retry_delay(10_000, cap=5.0, rng=lambda: 1.0) == 5.0


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
def test_full_jitter_draws_between_zero_and_the_ceiling(draw: float) -> None:
    assert retry_delay(3, rng=lambda: draw) == pytest.approx(2.0 * draw)


def test_retry_after_within_the_cap_is_honoured_exactly() -> None:
    assert retry_delay(1, 7.0, rng=lambda: 0.0) == 7.0
    assert retry_delay(1, 60.0, rng=lambda: 0.0) == 60.0
    assert retry_delay(1, 0.0, rng=lambda: 0.5) == 0.0


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [
        (59.5, 60.0, 59.5),
        (60.0, 60.0, 60.0),
        (60.5, 60.0, 60.0),
        (3600.0, 60.0, 60.0),
        (3600.0, 10.0, 10.0),
        (-5.0, 60.0, 0.0),
    ],
)
def test_retry_after_is_honoured_up_to_the_cap(
    retry_after: float, cap: float, expected: float
) -> None:
    # Never the short jittered backoff instead: the service asked for at least this long.
    assert retry_delay(2, retry_after, max_retry_after=cap, rng=lambda: 1.0) == expected


def test_default_retry_after_cap_is_a_minute() -> None:
    assert MAX_RETRY_AFTER_SECONDS == 60.0
    assert retry_delay(1, 10_000.0, rng=lambda: 0.0) == MAX_RETRY_AFTER_SECONDS


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1"):
        retry_delay(0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (422, False),
    ],
)
def test_should_retry_statuses(status: int, expected: bool) -> None:
    assert should_retry(status) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (APIConnectionError("refused"), True),
        (APITimeoutError("slow"), True),
        (APIResponseError("garbled"), True),
        (RateLimitError("slow down", status_code=429), True),
        (InternalServerError("oops", status_code=503), True),
        (BadRequestError("bad", status_code=400), False),
        (TaskFailedError("tsk", "failed", "why"), False),
        (ValueError("not ours"), False),
    ],
)
def test_should_retry_errors(error: BaseException, expected: bool) -> None:
    assert should_retry(error) is expected
