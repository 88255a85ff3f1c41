"""Submit an element: check, fix, check again, send, keep a receipt, wait for the element.

:func:`submit` and :func:`follow` are generators of events (:data:`SubmitEvent`); the CLI turns
them into output. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shlex
import tempfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api.body import build_request, describe_body, file_sha256
from .api.client import DEFAULT_WAIT_SECONDS, Client, MissedPoll
from .api.config import Settings
from .api.provider import ElementInfo, Task
from .api.receipt import new_receipt, read_receipt, receipt_path, update_receipt, write_receipt
from .errors import (
    APIError,
    APIStatusError,
    CheckFailedError,
    FileChangedError,
    TaskFailedError,
    UsageError,
    WaitTimeoutError,
)
from .ffmpeg import Progress
from .findings import ElementReport, FileReport
from .fixers.output import ensure_out_dir, make_dir
from .fixers.plan import FixOptions, FixPlan, FixResult, fix_file, plan_fix
from .inspectors import Element, check_element, inspect_file, is_url

#: How often the submission looks for transcode progress while a file is being fixed.
PROGRESS_POLL_SECONDS = 0.1
#: Where fixed files and receipts go when no folder is given.
DEFAULT_OUT_DIR = "mediaprep-out"


@dataclass(frozen=True)
class Checked:
    """The element was checked; ``fixed`` tells whether the fixed files stood in."""

    report: ElementReport
    fixed: bool = False


@dataclass(frozen=True)
class Fixing:
    """A file is about to be repaired."""

    path: str


@dataclass(frozen=True)
class FixProgress:
    """ffmpeg's progress while a file is transcoded."""

    path: str
    progress: Progress


@dataclass(frozen=True)
class Fixed:
    """A file was repaired (or could not be)."""

    result: FixResult


@dataclass(frozen=True)
class DryRun:
    """The exact request a real run would send (key masked, Base64 described)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "body": dict(self.body),
        }


@dataclass(frozen=True)
class Sending:
    """The create is about to be sent; the receipt already names its ``external_task_id``."""

    external_task_id: str
    url: str
    content_length: int
    receipt: Path


@dataclass(frozen=True)
class Created:
    """The service answered the create."""

    task: Task
    receipt: Path | None


@dataclass(frozen=True)
class Polled:
    """The task as one poll found it (``status`` ``"unknown"`` is worth a warning)."""

    task: Task


@dataclass(frozen=True)
class PollFailed:
    """A poll failed while waiting; polling goes on until the deadline (worth a warning)."""

    task_id: str
    error: APIError
    consecutive: int


@dataclass(frozen=True)
class Completed:
    """The task completed and the element exists."""

    task: Task
    element: ElementInfo
    receipt: Path | None


SubmitEvent = (
    Checked
    | Fixing
    | FixProgress
    | Fixed
    | DryRun
    | Sending
    | Created
    | Polled
    | PollFailed
    | Completed
)


def _error_lines(report: ElementReport) -> list[str]:
    lines = [f"element: {f.message}" for f in report.findings if f.is_error]
    for file in report.files:
        lines.extend(f"{file.path}: {f.message}" for f in file.findings if f.is_error)
    return lines


def _refuse(
    report: ElementReport, advice: str, fixes: Sequence[FixResult] = ()
) -> CheckFailedError:
    return CheckFailedError(f"{'; '.join(_error_lines(report))}; {advice}", report, fixes)


def _inspect_all(element: Element, scratch: str, *, url_check: bool) -> ElementReport:
    reports = [
        FileReport(item, "unknown", skipped=True)
        if is_url(item) and not url_check
        else inspect_file(item, download_dir=scratch)
        for item in element.media
    ]
    return check_element(element, reports=reports)


def _needs_fix(file: FileReport, options: FixOptions | None) -> FixPlan | None:
    """The plan when fix would change a local file (it fails, or its plan does more than copy).

    A passing file is changed when it carries metadata such as a GPS position. URLs are sent
    as URLs, never fixed.
    """
    if is_url(file.path):
        return None
    plan = plan_fix(file, options)
    return plan if not file.ok or not plan.copy_only else None


def _fix_files(
    report: ElementReport,
    plans: Sequence[FixPlan],
    out_dir: Path,
    options: FixOptions | None,
) -> Generator[SubmitEvent, None, dict[str, FixResult]]:
    """Carry out ``plans`` (for files of ``report``); yield events, return original -> result."""
    taken: set[Path] = set()
    results: list[FixResult] = []
    fixed: dict[str, FixResult] = {}
    for plan in plans:
        path = plan.report.path
        yield Fixing(path)
        result = yield from _fix_with_progress(plan, out_dir, options, taken)
        results.append(result)
        yield Fixed(result)
        if result.ok:
            fixed[path] = result
    if len(fixed) < len(results):
        raise _refuse(report, "these files could not be repaired: fix them by hand", results)
    return fixed


def _fix_with_progress(
    plan: FixPlan, out_dir: Path, options: FixOptions | None, taken: set[Path]
) -> Generator[SubmitEvent, None, FixResult]:
    """Run fix_file on a worker thread so its ffmpeg progress can be yielded as events."""
    path = plan.report.path
    reports: queue.Queue[Progress] = queue.Queue()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mediaprep-fix") as pool:
        future = pool.submit(
            fix_file, path, out_dir, options, plan=plan, taken=taken, on_progress=reports.put
        )
        while not (future.done() and reports.empty()):
            try:
                yield FixProgress(path, reports.get(timeout=PROGRESS_POLL_SECONDS))
            except queue.Empty:
                continue
        return future.result()


def _with_media(element: Element, fixed: Mapping[str, str]) -> Element:
    def swap(item: str) -> str:
        return fixed.get(item, item)

    return dataclasses.replace(
        element,
        frontal=swap(element.frontal) if element.frontal is not None else None,
        refers=tuple(swap(item) for item in element.refers),
        videos=tuple(swap(item) for item in element.videos),
    )


def _prepare(
    element: Element,
    out_dir: Path,
    scratch: str,
    *,
    fix_options: FixOptions | None,
    no_fix: bool,
    url_check: bool,
) -> Generator[SubmitEvent, None, Element]:
    """Check and fix; yield events, return the element to send (fixed files in place)."""
    report = _inspect_all(element, scratch, url_check=url_check)
    yield Checked(report)
    if report.ok and no_fix:
        return element
    if any(finding.is_error for finding in report.findings):
        raise _refuse(report, "change the element: fix cannot repair these")
    urls = [file for file in report.files if is_url(file.path) and not file.ok]
    if urls:
        raise _refuse(
            report,
            "URL media are sent as they are: download the file, repair it with 'mediaprep fix' "
            "and give the fixed file instead",
        )
    if no_fix:
        raise _refuse(report, "run without --no-fix to repair the files, or fix them by hand")
    plans = [plan for file in report.files if (plan := _needs_fix(file, fix_options)) is not None]
    if not plans:
        return element
    ensure_out_dir(out_dir, [item for item in element.media if not is_url(item)])
    fixed = yield from _fix_files(report, plans, out_dir, fix_options)
    fixed_element = _with_media(
        element, {original: str(result.output) for original, result in fixed.items()}
    )
    # Each output was inspected under its final name by fix_file: reuse that, not a new probe.
    reports = [
        fixed[original].output_report or file if original in fixed else file
        for original, file in zip(element.media, report.files, strict=True)
    ]
    again = check_element(fixed_element, reports=reports)
    yield Checked(again, fixed=True)
    if not again.ok:
        raise _refuse(again, "the fixed files still fail the rules")
    return fixed_element


def _files_entry(original: str, sent: str, hashes: Mapping[Path, str]) -> dict[str, Any]:
    if is_url(sent):
        return {"path": original, "url": sent}
    path = Path(sent)
    return {
        "path": original,
        "sent": sent,
        "size": path.stat().st_size,
        "sha256": hashes[path],
    }


def submit(
    element: Element,
    settings: Settings,
    *,
    fix_options: FixOptions | None = None,
    no_fix: bool = False,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float = DEFAULT_WAIT_SECONDS,
    url_check: bool = True,
    data_uri: bool = False,
    client: Client | None = None,
) -> Iterator[SubmitEvent]:
    """Check, fix, send ``element`` and wait for it; yield what happens as events.

    Args:
        element: the element; media are local paths or URLs.
        settings: where and how to reach the service.
        fix_options: how files are repaired. Files that pass are fixed too when they carry
            metadata (EXIF, GPS, XMP, a video's location): the stripped copy is sent, unless
            ``keep_metadata``.
        no_fix: refuse to send failing files instead of repairing them; files that pass are
            sent as they are, metadata included.
        out_dir: where fixed files and the receipt go.
        dry_run: stop before sending; the last event is :class:`DryRun`.
        wait: wait for the task to end (else stop after :class:`Created`).
        timeout: seconds to wait for the task.
        url_check: fetch URL media to check them (else send them unchecked).
        data_uri: send local files as ``data:`` URIs instead of raw Base64.
        client: a client to use (built from ``settings`` and closed at the end when None).

    Raises:
        UsageError: the settings lack a base URL or key, ``out_dir`` holds an input, or it
            already holds a receipt for this ``external_task_id``.
        CheckFailedError: the element fails the rules and cannot be (or may not be) repaired.
        APIError: sending or waiting failed (subclasses say how); the receipt keeps the ids.
        ToolNotFoundError: ffmpeg/ffprobe is needed and missing.
    """
    own_client = client is None
    client = client or Client.from_settings(settings)
    target = Path(out_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="mediaprep-") as scratch:
            to_send = yield from _prepare(
                element,
                target,
                scratch,
                fix_options=fix_options,
                no_fix=no_fix,
                url_check=url_check,
            )
            yield from _send(client, element, to_send, target, dry_run, wait, timeout, data_uri)
    finally:
        if own_client:
            client.close()


def _send(
    client: Client,
    element: Element,
    to_send: Element,
    out_dir: Path,
    dry_run: bool,
    wait: bool,
    timeout: float,
    data_uri: bool,
) -> Iterator[SubmitEvent]:
    body = build_request(to_send, client.provider, data_uri=data_uri)
    hashes = {item.path: file_sha256(item.path) for item in body.files()}
    described = describe_body(body, hashes)
    url = client.url_for(client.provider.create_path)
    if dry_run:
        headers = client.request_headers(masked=True)
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(body.content_length)
        yield DryRun("POST", url, headers, described)
        return
    make_dir(out_dir)
    path = receipt_path(out_dir, body.external_task_id)
    if path.exists():
        # Its task was sent before: never overwrite the receipt that may hold its element id.
        raise UsageError(
            f"{path} exists: external task id {body.external_task_id} was sent before; look it "
            f"up with: mediaprep status --receipt {shlex.quote(str(path))} --wait"
        )
    receipt = new_receipt(
        external_task_id=body.external_task_id,
        base_url=client.base_url,
        provider=client.provider.name,
        request=described,
        files=[
            _files_entry(original, sent, hashes)
            for original, sent in zip(element.media, to_send.media, strict=True)
        ],
    )
    write_receipt(path, receipt)
    yield Sending(body.external_task_id, url, body.content_length, path)
    try:
        task = client.create(body)
    except APIError as exc:
        refused = isinstance(exc, APIStatusError) and exc.status_code < 500
        update_receipt(path, receipt, status="rejected" if refused else "unknown", error=str(exc))
        raise
    except (FileChangedError, OSError) as exc:
        # The body went out incomplete: the service most likely dropped it, but look it up.
        update_receipt(path, receipt, status="unknown", error=str(exc))
        raise
    update_receipt(path, receipt, task_id=task.task_id, status=task.status)
    yield Created(task, path)
    if wait:
        yield from _follow(client, task.task_id, path, receipt, timeout)


def _record(receipt: Path | None, data: dict[str, Any], **changes: Any) -> None:
    if receipt is not None:
        update_receipt(receipt, data, **changes)


def _completed(client: Client, task: Task, receipt: Path | None, data: dict[str, Any]) -> Completed:
    element = client.provider.parse_element(task)
    _record(
        receipt,
        data,
        task_id=task.task_id,
        status=task.status,
        element_id=element.element_id,
        element=element.to_dict(),
        error=None,
    )
    return Completed(task, element, receipt)


def _follow(
    client: Client, task_id: str, receipt: Path | None, data: dict[str, Any], timeout: float
) -> Iterator[SubmitEvent]:
    """Poll until the task ends, keeping the receipt up to date.

    Raises:
        TaskFailedError: the task failed or was cancelled (recorded in the receipt).
        WaitTimeoutError: ``timeout`` passed (recorded in the receipt).
        APIError: a poll failed for good, or the polls kept failing until the deadline.
    """
    try:
        for task in client.poll(task_id, timeout=timeout):
            if isinstance(task, MissedPoll):
                yield PollFailed(task_id, task.error, task.consecutive)
                continue
            # The receipt is written before the caller sees the event, so nothing the caller
            # does can lose the element id.
            if task.status == "completed":
                completed = _completed(client, task, receipt, data)
                yield Polled(task)
                yield completed
                continue
            if receipt is not None and task.status != data.get("status"):
                _record(receipt, data, task_id=task.task_id, status=task.status)
            yield Polled(task)
    except TaskFailedError as exc:
        _record(receipt, data, status=exc.status, error=exc.reason)
        raise
    except WaitTimeoutError as exc:
        _record(receipt, data, error=str(exc))
        raise


def follow(
    settings: Settings,
    *,
    task_id: str | None = None,
    external_task_id: str | None = None,
    receipt: str | os.PathLike[str] | None = None,
    wait: bool = False,
    timeout: float = DEFAULT_WAIT_SECONDS,
    client: Client | None = None,
) -> Iterator[SubmitEvent]:
    """Read a task (once, or until it ends with ``wait``) by id, external id or receipt.

    With a receipt, its base URL and provider are used and the receipt is updated.

    Args:
        settings: the key (and, without a receipt, the base URL and provider).
        task_id: the task id.
        external_task_id: the ``external_task_id`` the task was created with.
        receipt: a receipt file written by :func:`submit`.
        wait: poll until the task completes, fails or ``timeout`` passes.
        timeout: seconds to wait.
        client: a client to use (built from the settings and closed at the end when None).

    Raises:
        UsageError: not exactly one of ``task_id``, ``external_task_id``, ``receipt``; an
            unreadable receipt; settings without a base URL or key.
        TaskFailedError: the task failed or was cancelled.
        APIError: reading the task failed (NotFoundError: no such task).
    """
    if sum(value is not None for value in (task_id, external_task_id, receipt)) != 1:
        raise UsageError("give one of: a task id, --external-task-id, or --receipt")
    data: dict[str, Any] = {}
    path: Path | None = None
    if receipt is not None:
        path = Path(receipt)
        data = read_receipt(path)
        settings = dataclasses.replace(
            settings,
            base_url=data.get("base_url") or settings.base_url,
            provider=data.get("provider") or settings.provider,
        )
        task_id = data.get("task_id") or data["external_task_id"]
    ident = task_id or external_task_id or ""
    own_client = client is None
    client = client or Client.from_settings(settings)
    try:
        if wait:
            yield from _follow(client, ident, path, data, timeout)
            return
        task = client.get(ident)
        yield Polled(task)
        if task.status == "completed":
            yield _completed(client, task, path, data)
        elif task.status in ("failed", "cancelled"):
            _record(path, data, task_id=task.task_id, status=task.status, error=task.error)
            raise TaskFailedError(task.task_id, task.status, task.error or "")
        else:
            _record(path, data, task_id=task.task_id, status=task.status)
    finally:
        if own_client:
            client.close()


__all__ = [
    "DEFAULT_OUT_DIR",
    "Checked",
    "Completed",
    "Created",
    "DryRun",
    "Fixed",
    "Fixing",
    "PollFailed",
    "Polled",
    "Sending",
    "SubmitEvent",
    "follow",
    "submit",
]
