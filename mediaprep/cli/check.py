"""``mediaprep check``, ``mediaprep spec`` and ``mediaprep tags``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from .. import spec
from ..findings import ElementReport, FileReport, Finding
from ..info import ImageInfo, VideoInfo
from ..inspectors import check_element, collect_paths, inspect_many
from ..inspectors.file import DEFAULT_WORKERS
from ..inspectors.video import container_accepted
from . import (
    EXIT_FAILED,
    EXIT_OK,
    SEVERITY_STYLE,
    emit_json,
    library_errors,
    main,
    progress_bar,
    style,
    use_color,
)
from .options import ElementArgs, element_options, element_or_paths

#: A progress bar is drawn only when there are more files than this.
PROGRESS_MIN_FILES = 4


def describe_info(report: FileReport) -> str:
    """The key facts of a file in a few words: format, displayed size, bytes, duration."""
    info = report.info
    if isinstance(info, ImageInfo):
        turned = f", EXIF orientation {info.orientation}" if info.orientation != 1 else ""
        return (
            f"{info.format} {spec.frame_text((info.display_width, info.display_height))}{turned}, "
            f"{info.mode}, {spec.size_text(info.size_bytes)}"
        )
    if isinstance(info, VideoInfo):
        container = "MP4/MOV" if container_accepted(info.container) else info.container
        duration = f"{info.duration:.2f} s" if info.duration is not None else "? s"
        codec = info.codec or "no video"
        fps = f", {info.fps:g} fps" if info.fps else ""
        audio = ", audio" if info.audio else ""
        return (
            f"{container} {codec} {spec.frame_text((info.display_width, info.display_height))}"
            f"{fps}, "
            f"{duration}{audio}, {spec.size_text(info.size_bytes)}"
        )
    return ""


def verdict(report: FileReport) -> tuple[str, dict[str, Any]]:
    """The verdict word and its style: PASS, WARN (passes with warnings), FAIL or SKIP."""
    if report.skipped:
        return "SKIP", {"dim": True}
    if not report.ok:
        return "FAIL", {"fg": "red", "bold": True}
    if any(finding.severity == "warning" for finding in report.findings):
        return "WARN", {"fg": "yellow", "bold": True}
    return "PASS", {"fg": "green", "bold": True}


def finding_line(finding: Finding, *, color: bool) -> str:
    """One indented line for a finding."""
    severity = style(f"{finding.severity:<7}", color=color, **SEVERITY_STYLE[finding.severity])
    fixable = " (fix can repair this)" if finding.fixable and finding.is_error else ""
    return f"      {severity} {finding.code}: {finding.message}{fixable}"


def render_reports(
    files: Sequence[FileReport], element: ElementReport | None, *, color: bool
) -> list[str]:
    """The human table: a line per file, its findings under it, the element, a summary."""
    lines: list[str] = []
    for report in files:
        word, word_style = verdict(report)
        facts = describe_info(report)
        kind = "" if report.skipped else f"  {report.kind}"
        lines.append(
            f"{style(word, color=color, **word_style)}  {report.path}{kind}"
            + (f"  {facts}" if facts else "")
        )
        lines.extend(finding_line(finding, color=color) for finding in report.findings)
    if element is not None:
        passed = not any(finding.is_error for finding in element.findings)
        word = "PASS" if passed else "FAIL"
        word_style = {"fg": "green" if passed else "red", "bold": True}
        lines.append(f"{style(word, color=color, **word_style)}  element rules")
        lines.extend(finding_line(finding, color=color) for finding in element.findings)
    lines.append(summary_line(files, element))
    return lines


def summary_line(files: Sequence[FileReport], element: ElementReport | None) -> str:
    """``5 files: 3 passed, 1 failed, 1 skipped; 2 errors, 1 warning``."""
    inspected = [report for report in files if not report.skipped]
    failed = sum(1 for report in inspected if not report.ok)
    skipped = len(files) - len(inspected)
    findings = [finding for report in files for finding in report.findings]
    if element is not None:
        findings.extend(element.findings)
    errors = sum(1 for finding in findings if finding.severity == "error")
    warnings = sum(1 for finding in findings if finding.severity == "warning")
    counts = [f"{len(inspected) - failed} passed", f"{failed} failed"]
    if skipped:
        counts.append(f"{skipped} skipped")
    element_part = ""
    if element is not None:
        element_part = " The element passes." if element.ok else " The element fails."
    return (
        f"{len(files)} file{'s' if len(files) != 1 else ''}: {', '.join(counts)}; "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}.{element_part}"
    )


def check_document(files: Sequence[FileReport], element: ElementReport | None) -> dict[str, Any]:
    """The ``--json`` document (schema in the README)."""
    ok = all(report.ok for report in files) and (element is None or element.ok)
    return {
        "ok": ok,
        "files": [report.to_dict() for report in files],
        "element": element.to_dict() if element is not None else None,
    }


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH|URL]...")
@click.option("--element", "as_element", is_flag=True, help="Check a whole element.")
@element_options
@click.option("--fast", is_flag=True, help="Read image headers only; do not decode pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (see README).")
@click.option(
    "-j",
    "--jobs",
    default=DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(1, 32),
    help="How many files to inspect at once.",
)
def check(
    paths: tuple[str, ...],
    as_element: bool,
    element_args: ElementArgs,
    fast: bool,
    as_json: bool,
    jobs: int,
) -> None:
    """Check files, folders, URLs or a whole element against the API's rules.

    Exit code 0 when nothing has an error (warnings allowed), 1 when anything does, 2 for usage
    errors.
    """
    element_report: ElementReport | None = None
    with library_errors():
        element = element_or_paths(as_element, element_args, paths)
        if element is not None:
            element_report = check_element(element, fast=fast)
            files = list(element_report.files)
        else:
            items = list(collect_paths(paths))
            show_bar = not as_json and len(items) > PROGRESS_MIN_FILES
            with progress_bar(len(items), "Checking", enabled=show_bar) as advance:
                files = inspect_many(
                    items, fast=fast, workers=jobs, on_done=lambda _report: advance(1)
                )
    document = check_document(files, element_report)
    if as_json:
        emit_json(document)
    else:
        color = use_color(sys.stdout)
        for line in render_reports(files, element_report, color=color):
            click.echo(line, color=color)
    sys.exit(EXIT_OK if document["ok"] else EXIT_FAILED)


@main.command("spec")
def spec_command() -> None:
    """Print the rules mediaprep checks, with the contract's words and our reading."""
    width = max(len(rule.subject) for rule in spec.RULES)
    for rule in spec.RULES:
        click.echo(f"{rule.subject:<{width}}  {rule.limit}")
        click.echo(f"{'':<{width}}  contract: {rule.contract}")
        if rule.decision:
            click.echo(f"{'':<{width}}  decision: {rule.decision}")


@main.command()
def tags() -> None:
    """List the tags an element can carry (give --tag an id or a name)."""
    for tag_id, tag_name in spec.TAGS.items():
        click.echo(f"{tag_id}  {tag_name}")
