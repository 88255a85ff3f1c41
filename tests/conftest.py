"""Shared pytest fixtures: the generated test media, made lazily into a cache folder, and the
guard that fails any test whose API key shows up in its output, files, logs or errors."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fixtures.generate import FixtureUnavailable, LazyFixtures
from mediaprep.api.sandbox import SandboxServer
from mediaprep.submit import DEFAULT_OUT_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent


def fixture_cache_dir() -> Path:
    """Where generated media live: ``$MEDIAPREP_FIXTURE_CACHE``, else ``<repo>/.cache/fixtures``."""
    configured = os.environ.get("MEDIAPREP_FIXTURE_CACHE")
    return Path(configured) if configured else REPO_ROOT / ".cache" / "fixtures"


def sha256(path: Path) -> str:
    """Return the hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _SkippingMedia(LazyFixtures):
    """``LazyFixtures`` that skips the calling test when a file cannot be made here."""

    def __getitem__(self, name: str) -> Path:
        try:
            return super().__getitem__(name)
        except FixtureUnavailable as exc:
            pytest.skip(f"test media unavailable: {exc}")


@pytest.fixture(scope="session")
def media() -> Mapping[str, Path]:
    """All test media by name (see ``fixtures/README.md``), each generated on first use."""
    return _SkippingMedia(fixture_cache_dir())


@pytest.fixture(scope="session")
def media_path(media: Mapping[str, Path]) -> Callable[[str], Path]:
    """``media_path(name)`` returns the path of one test file, generating it if needed."""
    return media.__getitem__


@pytest.fixture(scope="session")
def file_sha256() -> Callable[[Path], str]:
    """``file_sha256(path)`` returns the file's hex SHA-256 (e.g. to prove an input untouched)."""
    return sha256


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A started sandbox server (``mediaprep.api.sandbox``) on a free loopback port."""
    with SandboxServer() as server:
        yield server


# --- the key guard ------------------------------------------------------------------------------

#: Every API key a test uses starts with this (``sk-test-e2e-5b1f0c9d77e4``; a key the sandbox
#: refuses: ``bad-sk-test-...``), so the guard finds any of them, whole or cut, without being
#: told. A masked key (``sk-...77e4``) does not contain it.
TEST_KEY_PREFIX = "sk-test-"
#: The capture fixtures; the guard reads the one the test uses, else ``capfd``.
_CAPTURE_FIXTURES = ("capfd", "capsys", "capteesys", "capfdbinary", "capsysbinary")


class KeyGuard:
    """Finds test keys in text: ``TEST_KEY_PREFIX``, and keys declared with :meth:`declare`."""

    def __init__(self) -> None:
        self.needles = {TEST_KEY_PREFIX}
        self.key_files: set[Path] = set()
        self.caught: list[BaseException] = []
        self.cli_results: list[Result] = []

    def declare(self, *keys: str) -> None:
        """Also look for these keys (for the few tests whose keys cannot start with the prefix)."""
        self.needles.update(keys)

    def holds_key(self, path: Path) -> None:
        """``path`` holds a key on purpose (a config file the test wrote): it is not scanned."""
        self.key_files.add(path.resolve())

    def check(self, where: str, *texts: str | bytes) -> None:
        """Fail the test when a key is in one of ``texts`` (``where`` names them).

        Raises:
            pytest.fail.Exception: a key was found.
        """
        for text in texts:
            data = text.encode("utf-8", "replace") if isinstance(text, str) else text
            found = sorted(n for n in self.needles if n.encode("utf-8", "replace") in data)
            if found:
                pytest.fail(
                    f"a test API key ({', '.join(found)}) leaked into {where}", pytrace=False
                )

    def check_files(self, folders: Iterable[Path]) -> None:
        """Fail the test when a file below ``folders`` holds a key (``holds_key`` files aside).

        Raises:
            pytest.fail.Exception: a key was found.
        """
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if (
                    path.is_file()
                    and not path.is_symlink()
                    and path.resolve() not in self.key_files
                ):
                    self.check(f"file {path}", path.read_bytes())

    def check_errors(self) -> None:
        """Fail the test when an exception it caught (and what caused it) names a key.

        Raises:
            pytest.fail.Exception: a key was found.
        """
        for error in self.caught:
            seen: BaseException | None = error
            while seen is not None:
                self.check(f"a caught {type(seen).__name__}", str(seen), repr(seen))
                seen = seen.__cause__


class _RecordingRaises:
    """``pytest.raises(...)`` as a context manager that also hands the exception to the guard."""

    def __init__(self, inner: Any, caught: list[BaseException]) -> None:
        self._inner = inner
        self._caught = caught

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> Any:
        return self._inner.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        __tracebackhide__ = True
        if exc is not None:
            self._caught.append(exc)
        return bool(self._inner.__exit__(exc_type, exc, traceback))


def _record_caught(monkeypatch: pytest.MonkeyPatch, guard: KeyGuard) -> None:
    """Make ``pytest.raises`` (both forms) keep what it catches in ``guard.caught``."""
    real_raises = pytest.raises

    def raises(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        result = real_raises(*args, **kwargs)
        if isinstance(result, pytest.ExceptionInfo):  # pytest.raises(Error, function, ...)
            guard.caught.append(result.value)
            return result
        return _RecordingRaises(result, guard.caught)

    monkeypatch.setattr(pytest, "raises", raises)


def _record_cli_results(monkeypatch: pytest.MonkeyPatch, guard: KeyGuard) -> None:
    """Make ``CliRunner.invoke`` keep its results (their output) in ``guard.cli_results``."""
    real_invoke = CliRunner.invoke

    def invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Result:
        result = real_invoke(self, *args, **kwargs)
        guard.cli_results.append(result)
        return result

    monkeypatch.setattr(CliRunner, "invoke", invoke)


@pytest.fixture(autouse=True)
def key_guard(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[KeyGuard]:
    """In every test, after it ran: no test key in what it printed (stdout/stderr, CLI output),
    in a file under ``tmp_path`` (or a default out-dir it made), in a log record (DEBUG
    included) or in an exception it caught with ``pytest.raises``.

    Keys start with :data:`TEST_KEY_PREFIX`; call ``key_guard.declare(KEY)`` for any other, and
    ``key_guard.check(where, text)`` for output the guard cannot see (a subprocess's).
    """
    caplog.set_level(logging.DEBUG)
    capture_name = next((n for n in _CAPTURE_FIXTURES if n in request.fixturenames), "capfd")
    capture = request.getfixturevalue(capture_name)
    default_out = Path(DEFAULT_OUT_DIR).resolve()
    made_default_out = not default_out.exists()
    guard = KeyGuard()
    _record_caught(monkeypatch, guard)
    _record_cli_results(monkeypatch, guard)
    yield guard
    out, err = capture.readouterr()
    guard.check(f"the output ({capture_name})", out, err)
    for result in guard.cli_results:
        guard.check("CLI output", result.output)
        if result.exception is not None:
            guard.caught.append(result.exception)
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    for record in records + caplog.records:
        guard.check(f"log record {record.name}", record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            guard.caught.append(record.exc_info[1])
    guard.check_errors()
    folders = [tmp_path]
    if made_default_out and default_out.is_dir():
        folders.append(default_out)
    guard.check_files(folders)
