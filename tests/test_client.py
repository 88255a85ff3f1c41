"""The client's decisions, against httpx.MockTransport: never two creates, typed errors, waits.

Also the settings (argument > config file > environment > default) and the masked key.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mediaprep.api.body import RequestBody
from mediaprep.api.client import Client, MissedPoll, from_response, timeout_for
from mediaprep.api.config import Secret, load_settings
from mediaprep.api.provider import Task
from mediaprep.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from conftest import KeyGuard

KEY = "sk-test-unit-7f3a9c2e51"
BASE = "https://api.test"
EXT = "ext-123"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Answers requests from a list of steps; each step is a response or an exception."""

    def __init__(self, *steps: httpx.Response | Exception | Handler) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    @property
    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def task_json(status: str = "pending", **fields: Any) -> dict[str, Any]:
    return {"task_id": "tsk_1", "external_task_id": EXT, "status": status, **fields}


def ok(status: str = "pending", **fields: Any) -> httpx.Response:
    return httpx.Response(200, json=task_json(status, **fields), headers={"X-Request-Id": "r-ok"})


def error(status: int, message: str = "went wrong", **headers: str) -> httpx.Response:
    code = {404: "not_found", 409: "conflict", 429: "rate_limited"}.get(status, "internal")
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": message}},
        headers={"X-Request-Id": f"r-{status}", **headers},
    )


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[[Script], Client]]:
    clients: list[Client] = []

    def make(script: Script, **kwargs: Any) -> Client:
        client = Client(
            BASE,
            KEY,
            transport=httpx.MockTransport(script),
            sleep=fake_time.sleep,
            clock=fake_time.clock,
            rng=lambda: 1.0,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def body() -> RequestBody:
    return RequestBody({"model": "m", "element_name": "n", "external_task_id": EXT})


# --- create ------------------------------------------------------------------------------------


def test_create_sends_key_length_and_json(make_client: Callable[[Script], Client]) -> None:
    script = Script(ok())
    task = make_client(script).create(body())
    assert task == Task("tsk_1", EXT, "pending", status_text="pending")
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/videos/generations"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert int(request.headers["Content-Length"]) == len(script.bodies[0])
    assert "Transfer-Encoding" not in request.headers
    assert json.loads(script.bodies[0])["external_task_id"] == EXT


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_create_after_an_unknown_outcome_looks_up_first(
    make_client: Callable[[Script], Client], fake_time: FakeTime, status: int
) -> None:
    script = Script(error(status), error(404), ok())
    assert make_client(script).create(body()).task_id == "tsk_1"
    assert script.calls == [
        "POST /v1/videos/generations",
        f"GET /v1/tasks/{EXT}",
        "POST /v1/videos/generations",
    ]
    assert fake_time.sleeps == [0.5]


@pytest.mark.parametrize(
    "fault",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
    ],
)
def test_create_that_got_through_is_found_not_repeated(
    make_client: Callable[[Script], Client], fault: Exception
) -> None:
    script = Script(fault, ok("processing"))
    task = make_client(script).create(body())
    assert task.status == "processing"
    assert script.calls == ["POST /v1/videos/generations", f"GET /v1/tasks/{EXT}"]


@pytest.mark.parametrize("status", [500, 503, 504])
def test_create_with_a_5xx_that_was_stored_is_found_not_repeated(
    make_client: Callable[[Script], Client], status: int
) -> None:
    script = Script(error(status), ok("processing"))
    assert make_client(script).create(body()).status == "processing"
    assert script.calls == ["POST /v1/videos/generations", f"GET /v1/tasks/{EXT}"]


def test_create_malformed_answer_is_looked_up(make_client: Callable[[Script], Client]) -> None:
    script = Script(httpx.Response(200, content=b'{"task_id": "tsk_'), ok())
    assert make_client(script).create(body()).task_id == "tsk_1"
    assert script.calls == ["POST /v1/videos/generations", f"GET /v1/tasks/{EXT}"]


def test_rate_limit_is_retried_directly_after_retry_after(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(error(429, "slow down", **{"Retry-After": "3"}), ok())
    make_client(script).create(body())
    assert script.calls == ["POST /v1/videos/generations"] * 2
    assert fake_time.sleeps == [3.0]


@pytest.mark.parametrize(("header", "slept"), [("61", 60.0), ("86400", 60.0), ("59", 59.0)])
def test_retry_after_is_honoured_up_to_the_cap(
    make_client: Callable[..., Client], fake_time: FakeTime, header: str, slept: float
) -> None:
    script = Script(error(429, "slow down", **{"Retry-After": header}), ok())
    make_client(script).create(body())
    assert fake_time.sleeps == [slept]


@pytest.mark.parametrize(("ahead", "slept"), [(42.0, 42.0), (3600.0, 60.0), (-30.0, 0.0)])
def test_retry_after_http_date_is_read_on_the_injected_wall_clock(
    make_client: Callable[..., Client], fake_time: FakeTime, ahead: float, slept: float
) -> None:
    now = 1_700_000_000.0
    when = format_datetime(datetime.fromtimestamp(now + ahead, timezone.utc), usegmt=True)
    script = Script(error(429, "slow down", **{"Retry-After": when}), ok())
    make_client(script, wall_clock=lambda: now).get("tsk_1")
    assert fake_time.sleeps == [pytest.approx(slept)]


def test_connection_refused_is_retried_directly(make_client: Callable[[Script], Client]) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectTimeout("no route"), ok())
    make_client(script).create(body())
    assert script.calls == ["POST /v1/videos/generations"] * 3


def test_conflict_after_a_lost_answer_means_the_first_create_won(
    make_client: Callable[[Script], Client],
) -> None:
    script = Script(httpx.ReadTimeout("slow"), error(404), error(409, "used"), ok("processing"))
    assert make_client(script).create(body()).status == "processing"
    assert script.calls == [
        "POST /v1/videos/generations",
        f"GET /v1/tasks/{EXT}",
        "POST /v1/videos/generations",
        f"GET /v1/tasks/{EXT}",
    ]


def test_conflict_on_the_first_create_is_an_error(make_client: Callable[[Script], Client]) -> None:
    script = Script(error(409, "external_task_id already used"))
    with pytest.raises(ConflictError, match="already used") as caught:
        make_client(script).create(body())
    assert caught.value.status_code == 409
    assert len(script.requests) == 1


def test_bad_request_keeps_status_body_request_id(make_client: Callable[[Script], Client]) -> None:
    script = Script(error(400, "element_name: must not exceed 20 characters"))
    with pytest.raises(BadRequestError) as caught:
        make_client(script).create(body())
    exc = caught.value
    assert exc.status_code == 400
    assert exc.request_id == "r-400"
    assert exc.body == {
        "error": {"code": "internal", "message": "element_name: must not exceed 20 characters"}
    }
    assert "element_name: must not exceed 20 characters" in str(exc)
    assert len(script.requests) == 1


def test_create_gives_up_after_max_retries(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(*[error(429)] * 4)
    with pytest.raises(RateLimitError):
        make_client(script).create(body())
    assert len(script.requests) == 4
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


def test_lookup_failure_after_unknown_outcome_propagates(
    make_client: Callable[[Script], Client],
) -> None:
    script = Script(httpx.ReadTimeout("slow"), error(401, "bad key"))
    with pytest.raises(AuthenticationError):
        make_client(script).create(body())


# --- get and wait ------------------------------------------------------------------------------


def test_get_retries_transient_failures(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(
        error(502), httpx.Response(200, content=b"<html>"), httpx.ReadError("reset"), ok()
    )
    assert make_client(script).get("tsk_1").task_id == "tsk_1"
    assert len(script.requests) == 4
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


def test_get_not_found_is_not_retried(make_client: Callable[[Script], Client]) -> None:
    script = Script(error(404, "no such task"))
    with pytest.raises(NotFoundError, match="no such task"):
        make_client(script).get("a/b c")
    assert script.requests[0].url.raw_path == b"/v1/tasks/a%2Fb%20c"


def test_wait_polls_with_growing_interval_until_completed(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(ok("pending"), ok("processing", progress=10), ok("thinking"), ok("completed"))
    seen: list[str] = []
    task = make_client(script).wait("tsk_1", on_update=lambda t: seen.append(t.status))
    assert task.status == "completed"
    assert seen == ["pending", "processing", "unknown", "completed"]
    assert fake_time.sleeps == [1.0, 1.5, 2.25]


def test_poll_interval_is_capped_at_ten_seconds(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(*[ok("processing")] * 9, ok("completed"))
    make_client(script).wait("tsk_1", timeout=10_000)
    assert max(fake_time.sleeps) == 10.0
    assert fake_time.sleeps[:4] == [1.0, 1.5, 2.25, 3.375]


def test_failing_polls_never_sleep_past_the_deadline(
    make_client: Callable[..., Client], fake_time: FakeTime
) -> None:
    script = Script(ok("pending"), error(503), error(503), error(503))
    with pytest.raises(InternalServerError):
        make_client(script).wait("tsk_1", timeout=1.2)
    # 1 s poll, then the 1.5 s interval cut to the 0.2 s left; then no time for another poll.
    assert fake_time.sleeps == [1.0, pytest.approx(0.2)]
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    "fault",
    [
        error(503),
        error(500),
        error(429),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.Response(200, content=b"<html>"),
    ],
)
def test_failing_polls_are_missed_polls_until_the_deadline(
    make_client: Callable[..., Client], fake_time: FakeTime, fault: httpx.Response | Exception
) -> None:
    script = Script(ok("processing"), *[fault] * 30)
    missed: list[MissedPoll] = []
    with pytest.raises(APIError) as caught:
        make_client(script).wait("tsk_1", timeout=60, on_missed=missed.append)
    # The normal pace, growing to 10 s, cut at the deadline: no give-up after a few retries.
    assert fake_time.sleeps == [1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 10.0, 10.0, 10.0,
                                pytest.approx(9.21875)]  # fmt: skip
    assert sum(fake_time.sleeps) == pytest.approx(60.0)
    assert [m.consecutive for m in missed] == list(range(1, 11))
    assert caught.value is missed[-1].error
    assert type(caught.value) is type(missed[0].error)


def test_polls_recover_after_the_service_fails_for_a_while(
    make_client: Callable[..., Client], fake_time: FakeTime
) -> None:
    script = Script(
        ok("processing"), error(503), httpx.ReadError("reset"), error(502), ok("completed")
    )
    missed: list[MissedPoll] = []
    seen: list[str] = []
    task = make_client(script).wait(
        "tsk_1", on_update=lambda t: seen.append(t.status), on_missed=missed.append
    )
    assert task.status == "completed"
    assert seen == ["processing", "completed"]
    assert [(type(m.error), m.consecutive) for m in missed] == [
        (InternalServerError, 1),
        (APIConnectionError, 2),
        (InternalServerError, 3),
    ]
    assert fake_time.sleeps == [1.0, 1.5, 2.25, 3.375]


def test_poll_yields_missed_polls_and_a_missed_poll_does_not_end_it(
    make_client: Callable[..., Client],
) -> None:
    script = Script(error(503), ok("completed"))
    polls = list(make_client(script).poll("tsk_1"))
    assert isinstance(polls[0], MissedPoll)
    assert isinstance(polls[1], Task)
    assert polls[1].status == "completed"


@pytest.mark.parametrize(("status", "cls"), [(404, NotFoundError), (401, AuthenticationError)])
def test_a_poll_failure_that_cannot_mend_ends_the_wait_at_once(
    make_client: Callable[..., Client],
    fake_time: FakeTime,
    status: int,
    cls: type[APIStatusError],
) -> None:
    script = Script(ok("processing"), error(status))
    with pytest.raises(cls):
        make_client(script).wait("tsk_1")
    assert fake_time.sleeps == [1.0]


def test_a_long_retry_after_while_waiting_is_cut_to_the_time_left(
    make_client: Callable[..., Client], fake_time: FakeTime
) -> None:
    script = Script(
        ok("pending"), error(429, "slow down", **{"Retry-After": "30"}), ok("completed")
    )
    assert make_client(script).wait("tsk_1", timeout=5).status == "completed"
    assert fake_time.sleeps == [1.0, 4.0]


def test_get_outside_a_wait_still_honours_retry_after(
    make_client: Callable[..., Client], fake_time: FakeTime
) -> None:
    script = Script(error(503, **{"Retry-After": "30"}), ok())
    make_client(script).get("tsk_1")
    assert fake_time.sleeps == [30.0]


@pytest.mark.parametrize(("word", "status"), [("failed", "failed"), ("canceled", "cancelled")])
def test_wait_raises_task_failed_with_the_reason(
    make_client: Callable[[Script], Client], word: str, status: str
) -> None:
    script = Script(ok("processing"), ok(word, error="face not found"))
    with pytest.raises(TaskFailedError, match="face not found") as caught:
        make_client(script).wait("tsk_1")
    assert caught.value.status == status
    assert caught.value.reason == "face not found"


def test_wait_times_out_on_the_injected_clock(
    make_client: Callable[[Script], Client], fake_time: FakeTime
) -> None:
    script = Script(*[ok("processing")] * 50)
    with pytest.raises(WaitTimeoutError, match="still processing after 5 s") as caught:
        make_client(script).wait("tsk_1", timeout=5)
    assert caught.value.last_status == "processing"
    assert "mediaprep status" not in str(caught.value)  # the CLI knows the command that works
    assert sum(fake_time.sleeps) == pytest.approx(5.0)
    assert fake_time.sleeps == [1.0, 1.5, 2.25, 0.25]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (422, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
def test_from_response_picks_the_class(status: int, cls: type[APIStatusError]) -> None:
    response = error(status, "the service's words")
    exc = from_response(response)
    assert type(exc) is cls
    assert exc.status_code == status
    assert exc.request_id == f"r-{status}"
    assert "the service's words" in str(exc)


def test_from_response_plain_text_body() -> None:
    exc = from_response(httpx.Response(502, text="Bad gateway from the proxy"))
    assert isinstance(exc, InternalServerError)
    assert "Bad gateway from the proxy" in str(exc)
    assert exc.request_id is None


FORCED: list[tuple[httpx.Response | Exception, type[APIError]]] = [
    (error(401, f"key {KEY} is not valid"), AuthenticationError),
    (error(400, f"echo {KEY}"), BadRequestError),
    (httpx.Response(500, text=f"Traceback ... Bearer {KEY}"), InternalServerError),
    (httpx.ConnectError("refused"), APIConnectionError),
    (httpx.ReadTimeout("slow"), APITimeoutError),
    (httpx.Response(200, content=b"garbage"), APIResponseError),
]


@pytest.mark.parametrize(("fault", "cls"), FORCED)
def test_the_key_never_appears_in_errors_or_logs(
    make_client: Callable[[Script], Client],
    caplog: pytest.LogCaptureFixture,
    fault: httpx.Response | Exception,
    cls: type[APIError],
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(Script(*[fault] * 4), max_retries=0)
    with pytest.raises(cls) as caught:
        client.get("tsk_1")
    exc = caught.value
    shown = [str(exc), repr(exc), repr(client), str(getattr(exc, "body", ""))]
    shown += [record.getMessage() for record in caplog.records]
    assert caplog.records
    for text in shown:
        assert KEY not in text


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://[::1", "not a valid URL"),
        ("api.test", "must start with http:// or https://"),
        ("ftp://api.test", "must start with http:// or https://"),
        ("http://", "names no host"),
        ("https://:8765", "names no host"),
    ],
)
def test_client_refuses_a_malformed_base_url(base_url: str, why: str) -> None:
    with pytest.raises(UsageError, match=why) as caught:
        Client(base_url, KEY)
    assert repr(base_url) in str(caught.value)


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8765", "HTTPS://api.test/v2/", "http://[::1]:80"]
)
def test_client_accepts_a_good_base_url(base_url: str) -> None:
    with Client(base_url, KEY) as client:
        assert client.base_url == base_url.rstrip("/")


def test_client_refuses_bad_settings() -> None:
    with pytest.raises(UsageError, match="API key") as caught:
        Client(BASE, "sk-test-abc\r\nX-Evil: 1")
    assert "sk-test-abc" not in str(caught.value)


def test_timeout_setting_sets_the_read_timeout() -> None:
    assert timeout_for(2.5).read == 2.5
    assert timeout_for(2.5).connect == 2.5
    assert timeout_for(None).read == 60.0
    assert timeout_for(None).write == 300.0


# --- settings and the secret -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("sk-test-abcdefghijklmnop1234", "sk-...1234"),
        ("abcdefghijklmnop5678", "...5678"),
        ("short", "***"),
        ("sk-test-123", "***"),
    ],
)
def test_secret_is_masked(value: str, masked: str, key_guard: KeyGuard) -> None:
    key_guard.declare(value)
    secret = Secret(value)
    assert str(secret) == masked
    assert repr(secret) == f"Secret('{masked}')"
    assert value not in repr(secret)
    assert secret.get_secret_value() == value


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_settings_precedence(tmp_path: Path, key_guard: KeyGuard) -> None:
    config = write_config(
        tmp_path / "c.toml",
        'api_key = "sk-test-file-0123456789"\ntimeout = 2.5\nprovider = "kirin"\n',
    )
    key_guard.holds_key(config)
    env = {"MEDIAPREP_API_KEY": "sk-test-env-0123456789", "MEDIAPREP_BASE_URL": "http://env/"}
    settings = load_settings(config_path=config, env=env)
    assert settings.api_key == Secret("sk-test-file-0123456789")
    assert settings.base_url == "http://env"
    assert settings.timeout == 2.5
    assert settings.warnings == ()
    settings = load_settings(api_key="sk-test-arg-0123456789", config_path=config, env=env)
    assert settings.api_key == Secret("sk-test-arg-0123456789")
    assert "sk-test-arg" not in repr(settings)
    default = load_settings(env={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert (default.api_key, default.base_url, default.provider) == (None, None, "kirin")


def test_default_config_file_is_read_from_xdg(tmp_path: Path) -> None:
    folder = tmp_path / "mediaprep"
    folder.mkdir()
    write_config(folder / "config.toml", 'base_url = "http://file"\n')
    settings = load_settings(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert settings.base_url == "http://file"
    assert settings.config_path == folder / "config.toml"


def test_readable_config_gives_a_warning(tmp_path: Path, key_guard: KeyGuard) -> None:
    config = write_config(tmp_path / "c.toml", 'api_key = "sk-test-0123456789abc"\n', mode=0o644)
    key_guard.holds_key(config)
    (warning,) = load_settings(config_path=config, env={}).warnings
    assert "chmod 600" in warning
    assert "sk-test-" not in warning
    assert stat.S_IMODE(config.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_key = ", "not valid TOML"),
        ('apikey = "x"', "unknown key"),
        ("timeout = -1", "positive"),
        ('timeout = "soon"', "number"),
        ("base_url = 5", "string"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    config = write_config(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_path=config, env={})


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(config_path=tmp_path / "absent.toml", env={})


def test_client_from_settings_needs_url_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    default = tmp_path / "mediaprep" / "config.toml"
    with pytest.raises(UsageError, match="no base URL") as caught:
        Client.from_settings(load_settings(api_key=KEY, env={}))
    assert f"put base_url in {default}, or set MEDIAPREP_BASE_URL" in str(caught.value)
    with pytest.raises(UsageError, match="no API key") as caught:
        Client.from_settings(load_settings(base_url=BASE, env={}))
    assert f"put api_key in {default}, or set MEDIAPREP_API_KEY" in str(caught.value)
    given = write_config(tmp_path / "given.toml", 'base_url = "https://api.test"\n')
    with pytest.raises(UsageError, match=f"put api_key in {given}"):
        Client.from_settings(load_settings(config_path=given, env={}))
    with Client.from_settings(load_settings(api_key=KEY, base_url=BASE, env={})) as client:
        assert KEY not in repr(client)
        assert client.base_url == BASE
