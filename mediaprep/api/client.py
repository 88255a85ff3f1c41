"""The HTTP client: create a task without ever creating it twice, read it, wait for it.

A create carries an ``external_task_id``. When a create fails in a way that leaves its outcome
unknown (a timeout, a dropped connection, a 5xx, an unreadable answer), the client first looks
the task up by that id and only sends the create again when the service answers 404. Rate
limits (429) and connections refused before anything was sent are retried directly.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NoReturn
from urllib.parse import quote

import httpx

from .._version import __version__
from ..errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)
from .body import RequestBody
from .config import ENV_API_KEY, ENV_BASE_URL, Secret, Settings, default_config_path
from .provider import KirinProvider, Provider, Task, get_provider
from .retry import (
    DEFAULT_MAX_RETRIES,
    MAX_RETRY_AFTER_SECONDS,
    parse_retry_after,
    retry_delay,
    should_retry,
)

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - Python 3.10 only

    def assert_never(value: NoReturn) -> NoReturn:
        """The type checker proves this is never reached."""
        raise AssertionError(f"unhandled value: {value!r}")


logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=300.0, pool=10.0)
#: Seconds ``wait`` polls for before giving up.
DEFAULT_WAIT_SECONDS: Final = 900.0
#: Polling starts at 1 s and grows by half each time, up to 10 s.
POLL_FIRST_SECONDS: Final = 1.0
POLL_GROWTH: Final = 1.5
POLL_MAX_SECONDS: Final = 10.0
USER_AGENT: Final = f"mediaprep/{__version__}"
#: Longest stretch of a non-JSON error body kept as the message.
MESSAGE_MAX_CHARS: Final = 300

STATUS_ERRORS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}
#: httpx errors raised before any byte of the request left: a retry cannot duplicate anything.
_NEVER_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _redact(text: str, secret: Secret | None) -> str:
    if secret is None or not secret.get_secret_value():
        return text
    return text.replace(secret.get_secret_value(), secret.masked)


def from_response(
    response: httpx.Response, provider: Provider | None = None, *, secret: Secret | None = None
) -> APIStatusError:
    """The typed error for an error answer: the class by status, the service's own message.

    Args:
        response: a read response with an error status.
        provider: reads the error envelope (``kirin`` when None).
        secret: the API key, removed from the message and body should the service echo it.
    """
    provider = provider or KirinProvider()
    text = _redact(response.text, secret)
    body: object
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    detail = provider.parse_error(body)
    message = detail.message or (text.strip()[:MESSAGE_MAX_CHARS] if isinstance(body, str) else "")
    message = message or response.reason_phrase or "error"
    if detail.code:
        message = f"{message} [{detail.code}]"
    status = response.status_code
    cls = STATUS_ERRORS.get(status, InternalServerError if status >= 500 else APIStatusError)
    return cls(
        message,
        status_code=status,
        body=body,
        request_id=response.headers.get("x-request-id"),
    )


def _translate(exc: httpx.HTTPError, method: str, url: str) -> APIError:
    """The one place httpx's errors become mediaprep's."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{method} {url} timed out ({type(exc).__name__}): {reason}")
    if isinstance(exc, httpx.DecodingError):
        return APIResponseError(f"{method} {url}: the answer could not be decoded: {reason}")
    return APIConnectionError(f"{method} {url} failed: {reason}")


def _never_sent(error: APIError) -> bool:
    return isinstance(error.__cause__, _NEVER_SENT)


def _check_base_url(base_url: str) -> str:
    """The base URL without trailing slashes, once it is known to be usable.

    Raises:
        UsageError: it cannot be parsed, is not http(s), or names no host.
    """
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"base URL {base_url!r} is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise UsageError(f"base URL {base_url!r} must start with http:// or https://")
    if not url.host:
        raise UsageError(f"base URL {base_url!r} names no host")
    return base_url.rstrip("/")


def timeout_for(seconds: float | None) -> httpx.Timeout:
    """The HTTP timeouts for a ``timeout`` setting (seconds to wait for an answer)."""
    if seconds is None:
        return DEFAULT_TIMEOUT
    return httpx.Timeout(connect=min(10.0, seconds), read=seconds, write=300.0, pool=10.0)


@dataclass(frozen=True)
class MissedPoll:
    """A poll that failed while waiting and will be tried again at the next interval.

    ``error`` is the failure; ``consecutive`` counts the failed polls in a row (from 1).
    """

    error: APIError
    consecutive: int


class Client:
    """Talks to the service through a :class:`Provider`; httpx inside.

    Args:
        base_url: the service's base URL (``https://...``).
        api_key: the API key.
        provider: the provider-specific half (``kirin`` when None).
        timeout: httpx timeouts per request.
        max_retries: retries after the first attempt of each request.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
        sleep: waits between attempts and polls.
        clock: monotonic seconds, for wait deadlines.
        wall_clock: Unix time, for ``Retry-After`` HTTP dates.
        rng: a uniform draw in [0, 1) for backoff jitter.

    Raises:
        UsageError: the base URL is not a valid http(s) URL with a host, or the key cannot go in
            an HTTP header.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | Secret,
        *,
        provider: Provider | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_url = _check_base_url(base_url)
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        key = self._key.get_secret_value()
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            raise UsageError("the API key is empty or holds characters an HTTP header cannot carry")
        self.provider: Provider = provider or KirinProvider()
        self.max_retries = max_retries
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Client:
        """A client for ``settings`` (base URL, key, provider, paths, timeout).

        Raises:
            UsageError: the base URL or the key is missing, or the provider is unknown.
        """
        config = settings.config_path or default_config_path()
        if not settings.base_url:
            raise UsageError(
                f"no base URL: give --base-url, put base_url in {config}, or set {ENV_BASE_URL}"
            )
        if settings.api_key is None:
            raise UsageError(
                f"no API key: give --api-key, put api_key in {config}, or set {ENV_API_KEY}"
            )
        provider = get_provider(
            settings.provider, create_path=settings.create_path, task_path=settings.task_path
        )
        kwargs.setdefault("timeout", timeout_for(settings.timeout))
        return cls(settings.base_url, settings.api_key, provider=provider, **kwargs)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, provider={self.provider.name!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def url_for(self, path: str) -> str:
        """The full URL of a path below the base URL."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def request_headers(self, *, masked: bool) -> dict[str, str]:
        """The headers every request carries; ``masked`` hides the key (for ``--dry-run``)."""
        key = self._key.masked if masked else self._key.get_secret_value()
        return {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}

    def task_url(self, task_id: str) -> str:
        """The URL that reads a task."""
        return self.url_for(self.provider.task_path.format(task_id=quote(task_id, safe="")))

    # --- one attempt --------------------------------------------------------------------------
    def _send(self, method: str, url: str, body: RequestBody | None = None) -> httpx.Response:
        headers = self.request_headers(masked=False)
        if body is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(body.content_length)
        request = self._http.build_request(method, url, headers=headers, content=body)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            error = _translate(exc, method, url)
            logger.debug("%s %s failed: %s", method, url, error)
            raise error from exc
        logger.debug(
            "%s %s -> %s (request id %s)",
            method,
            url,
            response.status_code,
            response.headers.get("x-request-id"),
        )
        return response

    def _task_from(self, response: httpx.Response) -> Task:
        if not response.is_success:
            raise from_response(response, self.provider, secret=self._key)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise APIResponseError(
                f"the service's answer (HTTP {response.status_code}, request id "
                f"{response.headers.get('x-request-id')}) is not JSON"
            ) from exc
        return self.provider.parse_task(data)

    def _backoff(self, attempt: int, response: httpx.Response | None) -> None:
        """Sleep before retry ``attempt``: the ``Retry-After`` asked for, else backoff."""
        header = response.headers.get("retry-after") if response is not None else None
        delay = retry_delay(attempt, parse_retry_after(header, self._wall_clock()), rng=self._rng)
        logger.debug("retrying in %.2f s (attempt %d)", delay, attempt + 1)
        self._sleep(delay)

    # --- the API ------------------------------------------------------------------------------
    def get(self, task_id: str) -> Task:
        """Read a task by its task id or its ``external_task_id``, retrying transient failures.

        Raises:
            NotFoundError: no such task.
            APIStatusError: another error answer (its subclass says which).
            APIConnectionError: no answer, after every retry.
            APIResponseError: an answer that is not a task, after every retry.
        """
        url = self.task_url(task_id)
        attempt = 1
        while True:
            response: httpx.Response | None = None
            try:
                response = self._send("GET", url)
                return self._task_from(response)
            except APIError as exc:
                if attempt > self.max_retries or not should_retry(exc):
                    raise
            self._backoff(attempt, response)
            attempt += 1

    def _poll_once(self, url: str) -> tuple[Task | None, APIError | None, float | None]:
        """One read of a task while waiting: the task, or the retryable error and the
        ``Retry-After`` seconds it asked for.

        Raises:
            APIError: a failure that polling again cannot mend (a 404, a refused key...).
        """
        response: httpx.Response | None = None
        try:
            response = self._send("GET", url)
            return self._task_from(response), None, None
        except APIError as exc:
            if not should_retry(exc):
                raise
            header = response.headers.get("retry-after") if response is not None else None
            return None, exc, parse_retry_after(header, self._wall_clock())

    def create(self, body: RequestBody) -> Task:
        """Create the task ``body`` describes, at most once.

        After a failure that may have created the task, the task is looked up by the body's
        ``external_task_id`` before anything is sent again; a 409 on a later attempt means an
        earlier one got through, and that task is returned.

        Raises:
            BadRequestError: the service rejected the body (the message names the field).
            AuthenticationError: the key was refused.
            ConflictError: the ``external_task_id`` was already used before this call.
            APIStatusError: another error answer, after every retry.
            APIConnectionError: no answer, after every retry; the task may exist: look it up
                by its ``external_task_id``.
            FileChangedError: a file changed size while it was sent (the request went out
                incomplete; the task may exist: look it up by its ``external_task_id``).
            OSError: a file could not be read while it was sent (likewise).
        """
        url = self.url_for(self.provider.create_path)
        external = body.external_task_id
        maybe_created = False
        attempt = 1
        while True:
            response: httpx.Response | None = None
            try:
                response = self._send("POST", url, body)
                return self._task_from(response)
            except ConflictError:
                if not maybe_created:
                    raise
                # An earlier attempt reached the service after all: that task is this one.
                return self.get(external)
            except APIError as exc:
                if attempt > self.max_retries or not should_retry(exc):
                    raise
                unsent = isinstance(exc, RateLimitError) or _never_sent(exc)
                maybe_created = maybe_created or not unsent
            self._backoff(attempt, response)
            attempt += 1
            if maybe_created:
                try:
                    return self.get(external)
                except NotFoundError:
                    logger.debug("task %s was not created; sending it again", external)

    def poll(
        self, task_id: str, *, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> Generator[Task | MissedPoll, None, Task]:
        """Yield the task at every poll until it completes; return the completed task.

        Polls every 1 s at first, growing by half each time up to 10 s. Status words mediaprep
        does not know are yielded (status ``"unknown"``) and waited on. A poll that fails in a
        way worth another try (no answer, an unreadable one, 408, 429, 5xx) is yielded as a
        :class:`MissedPoll` and polling goes on at the same pace (longer when the service asks
        with ``Retry-After``) until the deadline.

        Raises:
            TaskFailedError: the task failed or was cancelled (with the service's reason).
            WaitTimeoutError: ``timeout`` seconds passed on the clock without completion.
            APIError: a poll failed in a way polling again cannot mend (NotFoundError: no such
                task), or the polls kept failing until the deadline (the last failure).
        """
        url = self.task_url(task_id)
        deadline = self._clock() + timeout
        interval = POLL_FIRST_SECONDS
        misses = 0
        while True:
            task, error, retry_after = self._poll_once(url)
            if task is None:
                assert error is not None
                misses += 1
                yield MissedPoll(error, misses)
            else:
                misses = 0
                yield task
                match task.status:
                    case "completed":
                        return task
                    case "failed" | "cancelled":
                        raise TaskFailedError(task.task_id, task.status, task.error or "")
                    case "pending" | "processing" | "unknown":
                        pass
                    case _:
                        assert_never(task.status)
            remaining = deadline - self._clock()
            if remaining <= 0:
                if error is not None:
                    raise error
                assert task is not None
                raise WaitTimeoutError(task.task_id, timeout, task.status_text or task.status)
            pause = interval
            if retry_after is not None:
                pause = max(pause, min(retry_after, MAX_RETRY_AFTER_SECONDS))
            self._sleep(min(pause, remaining))
            interval = min(interval * POLL_GROWTH, POLL_MAX_SECONDS)

    def wait(
        self,
        task_id: str,
        *,
        timeout: float = DEFAULT_WAIT_SECONDS,
        on_update: Callable[[Task], None] | None = None,
        on_missed: Callable[[MissedPoll], None] | None = None,
    ) -> Task:
        """Poll until the task completes and return it (see :meth:`poll`).

        Args:
            task_id: the task id or its ``external_task_id``.
            timeout: seconds to wait, on the clock.
            on_update: sees the task at every poll.
            on_missed: sees every poll that failed and will be tried again (worth a warning).

        Raises:
            TaskFailedError: the task failed or was cancelled (with the service's reason).
            WaitTimeoutError: ``timeout`` seconds passed on the clock without completion.
            APIError: a poll failed in a way polling again cannot mend, or the polls kept
                failing until the deadline (the last failure).
        """
        updates = self.poll(task_id, timeout=timeout)
        while True:
            try:
                task = next(updates)
            except StopIteration as finished:
                completed: Task = finished.value
                return completed
            if isinstance(task, MissedPoll):
                if on_missed is not None:
                    on_missed(task)
            elif on_update is not None:
                on_update(task)
