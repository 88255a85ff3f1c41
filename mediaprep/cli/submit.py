"""``mediaprep submit``, ``status`` and ``sandbox``: send an element, follow it, try it locally."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from ..api.client import DEFAULT_WAIT_SECONDS
from ..api.config import ENV_API_KEY, ENV_BASE_URL, Settings, load_settings
from ..api.provider import ElementInfo, Task
from ..errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    CheckFailedError,
    ConflictError,
    FileChangedError,
    MediaprepError,
    TaskFailedError,
    UsageError,
)
from ..findings import ElementReport, FileReport
from ..fixers import FixOptions
from ..spec import size_text
from ..submit import (
    DEFAULT_OUT_DIR,
    Checked,
    Completed,
    Created,
    DryRun,
    Fixed,
    Fixing,
    FixProgress,
    Polled,
    PollFailed,
    Sending,
    SubmitEvent,
    follow,
    submit,
)
from . import (
    EXIT_INTERRUPTED,
    CommandError,
    TranscodeBar,
    emit_json,
    main,
    style,
    use_color,
)
from .check import finding_line
from .options import ElementArgs, element_options, fix_options

F = TypeVar("F", bound=Callable[..., Any])


def wait_timeout_option(help_text: str) -> Callable[[F], F]:
    """``--timeout``: how long to wait for a task, in seconds."""
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_WAIT_SECONDS,
        show_default=True,
        help=help_text,
    )


def api_options(command: F) -> F:
    """Add ``--api-key``, ``--base-url`` and ``--config``."""
    options = [
        click.option(
            "--api-key",
            envvar=ENV_API_KEY,
            show_envvar=True,
            metavar="KEY",
            help="API key (better: the config file or the environment variable).",
        ),
        click.option(
            "--base-url",
            envvar=ENV_BASE_URL,
            show_envvar=True,
            metavar="URL",
            help="The service's base URL (e.g. the sandbox's http://127.0.0.1:8765).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Config file (default ~/.config/mediaprep/config.toml).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def settings_from(
    ctx: click.Context, api_key: str | None, base_url: str | None, config_path: Path | None
) -> Settings:
    """Load the settings; values click took from the environment rank below the config file.

    Raises:
        ConfigError: the config file cannot be used.
    """

    def argument(name: str, value: str | None) -> str | None:
        return value if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE else None

    settings = load_settings(
        api_key=argument("api_key", api_key),
        base_url=argument("base_url", base_url),
        config_path=config_path,
    )
    for warning in settings.warnings:
        click.echo(f"warning: {warning}", err=True)
    return settings


def _file_line(report: FileReport) -> str:
    if report.skipped:
        return f"check   {report.path}: not checked (--no-url-check)"
    errors = [finding.code for finding in report.findings if finding.is_error]
    if not errors:
        return f"check   {report.path}: ok"
    return f"check   {report.path}: {', '.join(errors)}"


def _task_line(task: Task) -> str:
    progress = f" {task.progress}%" if task.progress is not None else ""
    return f"task    {task.task_id}: {task.status_text or task.status}{progress}"


def _summary_lines(element: ElementInfo, receipt: Path | None) -> list[str]:
    """The element's facts worth a glance, one ``name: value`` line each (empty ones left out)."""
    tags = ", ".join(
        f"{tag.tag_id} ({tag.name})" if tag.name else tag.tag_id for tag in element.tags
    )
    units = element.final_unit_deduction
    rows = [
        ("name", element.name),
        ("type", element.reference_type),
        ("tags", tags),
        ("voice id", element.voice_id),
        ("owned by", element.owned_by),
        ("units used", None if units is None else str(units)),
        ("receipt", None if receipt is None else str(receipt)),
    ]
    return [f"  {label + ':':<12}{value}" for label, value in rows if value]


class _Run:
    """Turns events into output and keeps what the final summary, a failure (with ``--json``,
    its document) and an interruption need.

    Args:
        as_json: print one JSON document at the end instead of lines as events come.
        document: the document's first fields.
    """

    def __init__(self, *, as_json: bool, document: dict[str, Any]) -> None:
        self.as_json = as_json
        self.color = use_color(sys.stdout)
        self.tty = bool(getattr(sys.stdout, "isatty", lambda: False)())
        self.document: dict[str, Any] = {"ok": False, **document, "warnings": []}
        self.task: Task | None = None
        self.receipt: Path | None = None
        self.external_task_id: str | None = None
        #: How the user named the task (``status``), for a resume before any poll answered.
        self.ident: list[str] = []
        #: Where the settings came from, for resume commands that work as printed.
        self.base_url: str | None = None
        self.config_path: Path | None = None
        self.bar = TranscodeBar("", enabled=False)

    def say(self, line: str) -> None:
        if not self.as_json:
            click.echo(line, color=self.color)

    def warn(self, text: str) -> None:
        self.document["warnings"].append(text)
        click.echo(f"warning: {text}", err=True)

    def show(self, event: SubmitEvent) -> None:
        """Print one event (human mode) and record it (for --json)."""
        if isinstance(event, Checked):
            self.document["files"] = [report.to_dict() for report in event.report.files]
            self.document["element_findings"] = [f.to_dict() for f in event.report.findings]
            if event.fixed:
                self.say("check   element passes with the fixed files")
            else:
                self._checked(event.report)
        elif isinstance(event, Fixing):
            if self.tty:  # a terminal shows the file while it is fixed; a log gets one line
                self.say(f"fix     {event.path} ...")
            self.bar = TranscodeBar(Path(event.path).name, enabled=not self.as_json)
        elif isinstance(event, FixProgress):
            self.bar.update(event.progress)
        elif isinstance(event, Fixed):
            self.bar.close()
            self.document["fixes"].append(event.result.to_dict())
            result = event.result
            steps = "; ".join(str(step) for step in result.steps) or "copied"
            if result.ok:
                self.say(f"fix     {result.path} -> {result.output} ({steps})")
            else:
                self.say(f"fix     {result.path}: FAILED {result.error or ''}".rstrip())
        elif isinstance(event, DryRun):
            self._dry_run(event)
        elif isinstance(event, Sending):
            self.receipt = event.receipt
            self.external_task_id = event.external_task_id
            self.document.update(
                external_task_id=event.external_task_id, receipt=str(event.receipt)
            )
            self.say(
                f"send    POST {event.url} ({size_text(event.content_length)}, "
                f"external task id {event.external_task_id})"
            )
            self.say(f"receipt {event.receipt}")
        elif isinstance(event, Created | Polled):
            self._task(event.task)
        elif isinstance(event, PollFailed):
            self.warn(
                f"task {event.task_id}: poll {event.consecutive} in a row failed ({event.error}); "
                "polling on until the timeout"
            )
        elif isinstance(event, Completed):
            self._task(event.task)
            self.document.update(
                ok=True, element_id=event.element.element_id, element=event.element.to_dict()
            )
            if event.receipt is not None:
                self.document["receipt"] = str(event.receipt)
            self.say(f"element id: {event.element.element_id}")
            for line in _summary_lines(event.element, event.receipt):
                self.say(line)

    def _checked(self, report: ElementReport) -> None:
        for file in report.files:
            self.say(_file_line(file))
            for finding in file.findings:
                self.say(finding_line(finding, color=self.color))
        if report.findings:
            # A heading of its own, so these do not read as the last file's findings.
            self.say("check   element rules:")
            for finding in report.findings:
                self.say(finding_line(finding, color=self.color))

    def _task(self, task: Task) -> None:
        changed = self.task is None or (task.status, task.progress) != (
            self.task.status,
            self.task.progress,
        )
        self.task = task
        self.document.update(task_id=task.task_id, status=task.status, task=task.to_dict())
        if task.status == "unknown":
            self.warn(f"task {task.task_id}: unknown status {task.status_text!r}; still waiting")
        elif changed:
            self.say(_task_line(task))

    def _dry_run(self, event: DryRun) -> None:
        self.document.update(ok=True, dry_run=True, request=event.to_dict())
        if self.as_json:
            return
        click.echo(f"{event.method} {event.url}")
        for name, value in event.headers.items():
            click.echo(f"{name}: {value}")
        click.echo("")
        click.echo(json.dumps(event.body, indent=2, ensure_ascii=False))
        click.echo("(dry run: nothing was sent)", err=True)

    def _status_command(self, *ident: str) -> str:
        """``mediaprep status IDENT --wait`` with the settings that found the service: the
        receipt holds the base URL; otherwise ``--base-url``; ``--config`` when one was given.
        Never the key."""
        where = ["--base-url", self.base_url] if self.base_url and ident[0] != "--receipt" else []
        config = ["--config", str(self.config_path)] if self.config_path is not None else []
        return shlex.join(["mediaprep", "status", *ident, *where, "--wait", *config])

    def resume_command(self) -> str | None:
        """The command that picks the task up again: by the receipt when there is one, else by
        the task id; None before anything was sent."""
        if self.receipt is not None:
            return self._status_command("--receipt", str(self.receipt))
        if self.task is not None:
            return self._status_command(self.task.task_id)
        return self._status_command(*self.ident) if self.ident else None

    def resume_hint(self) -> str | None:
        """How to pick the task up again, in words; None before anything was sent."""
        command = self.resume_command()
        if command is None:
            return None
        if self.task is None:
            return f"the task may exist; look it up with: {command}"
        hint = f"task {self.task.task_id} goes on at the service; resume with: {command}"
        return f"{hint}\nreceipt: {self.receipt}" if self.receipt is not None else hint

    def _resumable(self, exc: BaseException) -> bool:
        """Whether the task exists or may exist after ``exc``.

        Once the create answered, every failure but a failed task leaves it. Before that, only
        failures that leave the create's outcome unknown (no answer, an unreadable one, a 5xx,
        a body cut short) do: any other answer refused it.
        """
        if isinstance(exc, TaskFailedError):
            return False  # the task ended: there is nothing to resume
        return (
            self.task is not None
            or isinstance(exc, APIConnectionError | APIResponseError | FileChangedError | OSError)
            or (isinstance(exc, APIStatusError) and exc.status_code >= 500)
        )

    def _explain(self, exc: MediaprepError | OSError) -> tuple[str, str | None]:
        """The one-line message for ``exc`` (with how to resume) and the resume command."""
        if isinstance(exc, ConflictError):
            command = self._status_command("--external-task-id", self.external_task_id or "")
            return f"{exc}; if that task was sent before, look it up with: {command}", command
        message = str(exc)
        if isinstance(exc, AuthenticationError):
            message = f"authentication failed (check the API key): {exc}"
        if not self._resumable(exc):
            return message, None
        hint = self.resume_hint()
        return (f"{message}\n{hint}" if hint else message), self.resume_command()

    def fail(self, exc: BaseException, message: str, resume: str | None) -> None:
        """With --json, print the failure document: what is known, ``error`` and ``resume``."""
        if not self.as_json:
            return
        error: dict[str, Any] = {"type": type(exc).__name__, "message": message}
        if isinstance(exc, APIStatusError):
            error["status_code"] = exc.status_code
            if exc.request_id:
                error["request_id"] = exc.request_id
        if isinstance(exc, TaskFailedError):
            error["reason"] = exc.reason
        if isinstance(exc, CheckFailedError):
            error["findings"] = _error_findings(exc.report)
        self.document.update(ok=False, error=error)
        if resume is not None:
            self.document["resume"] = resume
        emit_json(self.document)

    @contextmanager
    def failures(self) -> Iterator[None]:
        """Library errors become one-line messages on stderr (exit 1; usage errors exit 2,
        without a document), with --json also the failure document on stdout; Ctrl-C prints
        how to resume and exits 130."""
        try:
            yield
        except UsageError as exc:
            raise click.UsageError(str(exc)) from exc
        except KeyboardInterrupt:
            self.interrupted()
        except (MediaprepError, OSError) as exc:  # OSError: e.g. the disk filled up
            message, resume = self._explain(exc)
            self.fail(exc, str(exc), resume)
            raise CommandError(message) from exc

    def interrupted(self) -> NoReturn:
        """Say how to pick the task up again, then exit 130."""
        hint = self.resume_hint()
        self.fail(KeyboardInterrupt(), "interrupted", self.resume_command())
        click.echo(f"\ninterrupted; {hint or 'nothing was sent'}", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _error_findings(report: ElementReport) -> list[dict[str, Any]]:
    """The error findings that stopped the element, each with its file's path (None: the
    element's own)."""
    found: list[dict[str, Any]] = [
        {"path": None, **finding.to_dict()} for finding in report.findings if finding.is_error
    ]
    for file in report.files:
        found.extend(
            {"path": file.path, **finding.to_dict()}
            for finding in file.findings
            if finding.is_error
        )
    return found


@main.command("submit")
@element_options
@click.option("--external-task-id", metavar="ID", help="Your id for the task (default: a UUID).")
@click.option("--no-fix", is_flag=True, help="Refuse to send failing files instead of fixing.")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT_DIR,
    show_default=True,
    help="Folder for fixed files and the receipt.",
)
@click.option("--dry-run", is_flag=True, help="Print the exact request; send nothing.")
@click.option("--no-wait", is_flag=True, help="Stop once the task is created.")
@wait_timeout_option("Seconds to wait for the element.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@api_options
@click.option("--data-uri", is_flag=True, help="Send local files as data: URIs, not raw Base64.")
@click.option("--no-url-check", is_flag=True, help="Send URL media without fetching them first.")
@fix_options
@click.pass_context
def submit_command(
    ctx: click.Context,
    /,
    element_args: ElementArgs,
    external_task_id: str | None,
    no_fix: bool,
    out_dir: Path,
    dry_run: bool,
    no_wait: bool,
    timeout: float,
    as_json: bool,
    api_key: str | None,
    base_url: str | None,
    config_path: Path | None,
    data_uri: bool,
    no_url_check: bool,
    fix_options: FixOptions,
) -> None:
    """Check, fix and send an element, then wait for its element id.

    A receipt (mediaprep-receipt-<external task id>.json in --out-dir) is written before the
    request is sent and updated as the task moves; `mediaprep status --receipt FILE` resumes
    from it. Exit code 0 on success, 1 on failure, 2 for usage errors, 130 when interrupted.
    """
    element = element_args.build()
    if external_task_id:
        element = dataclasses.replace(element, external_task_id=external_task_id.strip())
    run = _Run(as_json=as_json, document={"files": [], "fixes": []})
    run.config_path = config_path
    with run.failures():
        settings = settings_from(ctx, api_key, base_url, config_path)
        run.base_url = settings.base_url
        events = submit(
            element,
            settings,
            fix_options=fix_options,
            no_fix=no_fix,
            out_dir=out_dir,
            dry_run=dry_run,
            wait=not no_wait,
            timeout=timeout,
            url_check=not no_url_check,
            data_uri=data_uri,
        )
        for event in events:
            run.show(event)
    if no_wait and run.task is not None:
        run.document.update(ok=True, resume=run.resume_command())
        run.say(f"not waiting; follow it with: {run.resume_command()}")
    if as_json:
        emit_json(run.document)


@main.command("status")
@click.argument("task_id", required=False)
@click.option("--external-task-id", metavar="ID", help="Look the task up by your id.")
@click.option(
    "--receipt",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Resume from a receipt written by submit (and update it).",
)
@click.option("--wait", is_flag=True, help="Wait until the task ends.")
@wait_timeout_option("Seconds to wait with --wait.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@api_options
@click.pass_context
def status_command(
    ctx: click.Context,
    /,
    task_id: str | None,
    external_task_id: str | None,
    receipt: Path | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    api_key: str | None,
    base_url: str | None,
    config_path: Path | None,
) -> None:
    """Show a task (by TASK_ID, --external-task-id or --receipt); --wait until it ends.

    Exit code 0 when the task exists and has not failed, 1 on failure, 2 for usage errors.
    """
    if sum(value is not None for value in (task_id, external_task_id, receipt)) != 1:
        raise click.UsageError("give one of: TASK_ID, --external-task-id, or --receipt")
    known = {"task_id": task_id, "external_task_id": external_task_id}
    if receipt is not None:
        known["receipt"] = str(receipt)
    run = _Run(as_json=as_json, document={k: v for k, v in known.items() if v is not None})
    run.receipt = receipt
    run.config_path = config_path
    run.ident = [task_id] if task_id else ["--external-task-id", external_task_id or ""]
    with run.failures():
        settings = settings_from(ctx, api_key, base_url, config_path)
        run.base_url = settings.base_url
        events = follow(
            settings,
            task_id=task_id,
            external_task_id=external_task_id,
            receipt=receipt,
            wait=wait,
            timeout=timeout,
        )
        for event in events:
            run.show(event)
    if run.task is not None and run.task.status != "completed":
        run.document["ok"] = True
    if as_json:
        emit_json(run.document)


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any)."
)
@click.option(
    "--fault",
    "fault_specs",
    multiple=True,
    metavar="SPEC",
    help="Inject a fault, e.g. create:1:status=503, get:2:status=429,retry_after=1, "
    "create:1:drop_after_store, any:3:slow=2.5, get:1:malformed_json, create:1:fail_task=why. "
    "Add ',after_store' to a status or malformed_json fault to fire it after the request was "
    "processed (the create stored): create:1:status=504,after_store.",
)
@click.option(
    "--polls",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Polls before a task completes.",
)
def sandbox_command(host: str, port: int, fault_specs: tuple[str, ...], polls: int) -> None:
    """Serve a local stand-in for the service (for trying mediaprep); Ctrl-C stops it."""
    from ..api.sandbox import Fault, serve

    try:
        faults = [Fault.parse(spec) for spec in fault_specs]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from exc
    color = use_color(sys.stdout)
    err_color = use_color(sys.stderr)

    def ready(url: str) -> None:
        if _is_loopback(host):
            where = f"on {url} only (loopback: reachable from this machine alone)"
        else:
            where = f"on {url}"
            warning = (
                f"warning: {host} is not a loopback address: the sandbox is reachable from the "
                "network, and it accepts any key; use --host 127.0.0.1 to keep it local"
            )
            click.echo(style(warning, color=err_color, fg="yellow"), err=True, color=err_color)
        click.echo(
            f"sandbox serving {where}; it is not the real service. Ctrl-C stops it.", color=color
        )
        click.echo(
            f"try: MEDIAPREP_BASE_URL={url} MEDIAPREP_API_KEY=sk-sandbox mediaprep submit ..."
        )
        if faults:
            shown = ", ".join(fault.to_spec() for fault in faults)
            click.echo(style(f"faults: {shown}", color=color, fg="yellow"), color=color)

    try:
        serve(host, port, faults, on_ready=ready, polls_to_complete=polls)
    except OSError as exc:
        raise CommandError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    click.echo("sandbox stopped")
