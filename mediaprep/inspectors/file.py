"""Inspect any path or URL: tell images from videos by their bytes, then check the rules."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ImageBomb, ImageUnreadable, ToolError, UsageError
from ..ffmpeg import PROBE_TIMEOUT_SECONDS, probe
from ..findings import FileReport, Finding
from .image import IMAGE_SUFFIXES, inspect_image, open_image
from .url import download, is_url
from .video import VIDEO_SUFFIXES, inspect_video, is_still_image, tool_reason

#: Extensions a directory walk inspects; anything else in a folder is listed as skipped.
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
DEFAULT_WORKERS = 4


def inspect_local(
    path: str | os.PathLike[str], *, fast: bool = False, timeout: float = PROBE_TIMEOUT_SECONDS
) -> FileReport:
    """Inspect one local file, whatever it holds; problems become findings.

    Args:
        path: the file.
        fast: read headers only; do not decode every image pixel.
        timeout: the most seconds ffprobe may take.

    Raises:
        ToolNotFoundError: ffprobe is needed and missing.
    """
    name = str(path)
    target = Path(path)
    if not target.exists():
        return FileReport(name, "unknown", (Finding("unreadable", "error", "file not found"),))
    if not target.is_file():
        return FileReport(name, "unknown", (Finding("unreadable", "error", "not a regular file"),))
    try:
        empty = target.stat().st_size == 0
        if not empty:
            with target.open("rb"):
                pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return FileReport(name, "unknown", (Finding("unreadable", "error", reason),))
    if empty:
        return FileReport(name, "unknown", (Finding("unreadable", "error", "file is empty"),))
    try:
        open_image(target).close()
    except ImageBomb:
        return inspect_image(target, decode=not fast)
    except ImageUnreadable:
        pass
    else:
        return inspect_image(target, decode=not fast)
    try:
        probed = probe(target, timeout=timeout)
    except ToolError as exc:
        reason = tool_reason(exc)
        finding = Finding(
            "unreadable", "error", f"not an image or video mediaprep can read ({reason})"
        )
        return FileReport(name, "unknown", (finding,), local_path=name)
    if is_still_image(probed) or not probed.get("streams"):
        finding = Finding("unreadable", "error", "not an image or video mediaprep can read")
        return FileReport(name, "unknown", (finding,), local_path=name)
    return inspect_video(target, probed=probed)


def inspect_file(
    path_or_url: str | os.PathLike[str],
    *,
    fast: bool = False,
    download_dir: str | os.PathLike[str] | None = None,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> FileReport:
    """Inspect a local file or an http(s) URL against the API's rules.

    A URL is fetched first (streaming, stopping past the byte limit). With ``download_dir`` the
    fetched file is kept there and named in ``local_path``; without it, it is deleted after the
    inspection.

    Raises:
        ToolNotFoundError: ffprobe is needed and missing.
    """
    text = os.fspath(path_or_url)
    if not is_url(text):
        return inspect_local(text, fast=fast, timeout=timeout)
    if download_dir is not None:
        return _inspect_url(text, download_dir, fast=fast, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="mediaprep-") as scratch:
        report = _inspect_url(text, scratch, fast=fast, timeout=timeout)
    return FileReport(report.path, report.kind, report.findings, report.info)


def _inspect_url(
    url: str, directory: str | os.PathLike[str], *, fast: bool, timeout: float
) -> FileReport:
    fetched = download(url, directory)
    if fetched.local_path is None:
        return FileReport(url, "unknown", fetched.findings)
    report = inspect_local(fetched.local_path, fast=fast, timeout=timeout)
    # Judge the URL's name, not the temporary file's, for extension_mismatch.
    findings = tuple(f for f in report.findings if f.code != "extension_mismatch")
    return FileReport(
        url,
        report.kind,
        fetched.findings + findings,
        report.info,
        local_path=str(fetched.local_path),
    )


def collect_paths(
    inputs: Iterable[str], *, exclude: Path | None = None
) -> Iterator[tuple[str, bool]]:
    """Expand directories (recursively, sorted) into files; yield ``(path, skip)`` pairs.

    Files named directly, and URLs, are always inspected; inside a directory only files with a
    media extension are, the rest are yielded with ``skip=True``. A walk never enters
    ``exclude`` (fix's output folder, so a second run does not fix its own outputs).

    Raises:
        UsageError: a local path does not exist.
    """
    excluded = exclude.resolve() if exclude is not None else None
    for item in inputs:
        if is_url(item):
            yield item, False
            continue
        target = Path(item)
        if target.is_dir():
            # Only an out-dir strictly inside the walked folder is left out; walking the out-dir
            # itself keeps its files, so that fix can refuse them as inputs.
            inner = excluded if excluded and target.resolve() in excluded.parents else None
            for child in sorted(target.rglob("*")):
                if child.is_dir() or (inner and inner in child.resolve().parents):
                    continue
                # FIFOs, sockets and dangling links are listed as skipped, never opened.
                media = child.is_file() and child.suffix.lower() in MEDIA_SUFFIXES
                yield str(child), not media
        elif target.exists() or target.is_symlink():
            yield item, False
        else:
            raise UsageError(f"{item}: no such file or directory")


def inspect_many(
    paths: Sequence[tuple[str, bool]],
    *,
    fast: bool = False,
    workers: int = DEFAULT_WORKERS,
    download_dir: str | os.PathLike[str] | None = None,
    on_done: Callable[[FileReport], None] | None = None,
) -> list[FileReport]:
    """Inspect many files on a small thread pool; reports keep the input order.

    ``paths`` are ``(path, skip)`` pairs as :func:`collect_paths` yields them; skipped ones get a
    report with ``skipped=True`` and no findings. URLs are fetched into ``download_dir`` (kept,
    see :func:`inspect_file`). ``on_done`` is called as each report is ready (for a progress
    bar).

    Raises:
        ToolNotFoundError: ffprobe is needed and missing.
    """

    def run(item: tuple[str, bool]) -> FileReport:
        path, skip = item
        report = (
            FileReport(path, "unknown", skipped=True)
            if skip
            else inspect_file(path, fast=fast, download_dir=download_dir)
        )
        if on_done is not None:
            on_done(report)
        return report

    if len(paths) <= 1:
        return [run(item) for item in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(run, paths))
