"""Shared pytest fixtures: the generated test media, made lazily into a cache folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from fixtures.generate import FixtureUnavailable, LazyFixtures
from mediaprep.api.sandbox import SandboxServer

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
