"""``mediaprep fix``: write compliant copies, re-inspected, originals untouched."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from ..findings import ElementReport, FileReport, has_errors
from ..fixers import FixOptions, FixPlan, FixResult, fix_file, plan_fix
from ..fixers.output import check_out_dir, ensure_out_dir
from ..inspectors import (
    Element,
    check_element,
    collect_paths,
    element_findings,
    inspect_many,
)
from . import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    TranscodeBar,
    emit_json,
    library_errors,
    main,
    style,
    use_color,
)
from .check import finding_line
from .options import ElementArgs, element_options, element_or_paths, fix_options

DEFAULT_OUT_DIR = "mediaprep-out"


def result_lines(result: FixResult, *, color: bool) -> list[str]:
    """The human lines for one file: verdict, path -> output, steps, findings before/after."""
    if result.ok:
        word = style("FIXED", color=color, fg="green", bold=True)
        if not result.steps:
            word = style("COPIED", color=color, fg="green", bold=True)
        fixed = sorted({finding.code for finding in result.before if finding.severity != "info"})
        was = f"  (was: {', '.join(fixed)})" if fixed else ""
        lines = [f"{word}  {result.path} -> {result.output}{was}"]
    else:
        lines = [f"{style('FAILED', color=color, fg='red', bold=True)}  {result.path}"]
    lines.extend(f"      step    {step}" for step in result.steps)
    if not result.ok:
        remaining = {finding.code for finding in result.after}
        lines.extend(
            f"      before  {finding.code}: {finding.message}"
            for finding in result.before
            if finding.is_error and finding.code not in remaining
        )
    lines.extend(f"      warning {text}" for text in result.warnings)
    lines.extend(finding_line(finding, color=color) for finding in result.after if not result.ok)
    if result.error:
        lines.append(f"      {style('error', color=color, fg='red')}   {result.error}")
    return lines


def plan_action(plan: FixPlan) -> str:
    """What a dry run says fix would do: ``fix``, ``copy`` or ``cannot_fix``."""
    if not plan.can_fix:
        return "cannot_fix"
    return "copy" if plan.copy_only else "fix"


def plan_document(plan: FixPlan) -> dict[str, Any]:
    """One file of ``fix --dry-run --json``."""
    return {
        "path": plan.report.path,
        "action": plan_action(plan),
        "ok": plan.can_fix,
        "steps": [step.to_dict() for step in plan.steps],
        "before": [finding.to_dict() for finding in plan.report.findings],
        "unfixable": [finding.to_dict() for finding in plan.unfixable],
    }


def plan_lines(plan: FixPlan) -> list[str]:
    """The human lines for a dry run: what fix would do to one file."""
    report = plan.report
    if not plan.can_fix:
        lines = [f"CANNOT FIX  {report.path}"]
        lines.extend(f"      {finding.code}: {finding.message}" for finding in plan.unfixable)
        return lines
    if plan.copy_only:
        return [f"COPY  {report.path} (already passes; copied byte for byte)"]
    lines = [f"FIX   {report.path}"]
    lines.extend(f"      step    {step}" for step in plan.steps)
    return lines


@main.command()
@click.argument("paths", nargs=-1, metavar="[PATH|URL]...")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_OUT_DIR,
    show_default=True,
    help="Folder for the compliant copies.",
)
@click.option("--element", "as_element", is_flag=True, help="Fix every file of an element.")
@element_options
@fix_options
@click.option("--dry-run", is_flag=True, help="Print the plans; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (see README).")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures.")
def fix(
    paths: tuple[str, ...],
    out_dir: Path,
    as_element: bool,
    element_args: ElementArgs,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
    fix_options: FixOptions,
) -> None:
    """Write compliant copies of files, folders, URLs or an element's media into --out-dir.

    Originals are never modified; every output is re-inspected with the checks of `check` and
    kept only if it passes. Exit code 0 when every output passes, 1 when any file failed, 2 for
    usage errors.
    """
    # URL media are fetched once, into a folder that lives as long as the command.
    with library_errors(), tempfile.TemporaryDirectory(prefix="mediaprep-") as downloads:
        element = element_or_paths(as_element, element_args, paths)
        if element is not None:
            items = [(media, False) for media in element.media]
        else:
            items = list(collect_paths(paths, exclude=out_dir))
        reports = inspect_many(items, download_dir=downloads)
        inputs = [path for path, skip in items if not skip]
        if dry_run:
            check_out_dir(out_dir, inputs)
            _dry_run(reports, element, fix_options, out_dir, as_json=as_json, quiet=quiet)
        ensure_out_dir(out_dir, inputs)
        try:
            results = _fix_all(
                reports, out_dir, fix_options, show_progress=not as_json and not quiet
            )
        except KeyboardInterrupt:
            click.echo(
                f"\ninterrupted; the file being written was removed, finished ones are in "
                f"{out_dir}",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
        element_report = _element_after(element, results) if element is not None else None
    ok = all(result.ok for result in results) and (element_report is None or element_report.ok)
    if as_json:
        emit_json(
            {
                "ok": ok,
                "out_dir": str(out_dir),
                "files": [result.to_dict() for result in results],
                "element": element_report.to_dict() if element_report is not None else None,
            }
        )
    else:
        color = use_color(sys.stdout)
        for result in results:
            if quiet and result.ok:
                continue
            for line in result_lines(result, color=color):
                click.echo(line, color=color)
        if element_report is not None and (element_report.findings or not quiet):
            word = "PASS" if element_report.ok else "FAIL"
            click.echo(f"{word}  element rules (with the fixed files)")
            for finding in element_report.findings:
                click.echo(finding_line(finding, color=color), color=color)
        if not quiet:
            fixed = sum(1 for result in results if result.ok)
            click.echo(
                f"{len(results)} file{'' if len(results) == 1 else 's'}: {fixed} written to "
                f"{out_dir}, {len(results) - fixed} failed."
            )
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _dry_run(
    reports: Sequence[FileReport],
    element: Element | None,
    options: FixOptions,
    out_dir: Path,
    *,
    as_json: bool,
    quiet: bool,
) -> NoReturn:
    """Print what fix would do, write nothing, exit 1 when something cannot be fixed."""
    plans = [plan_fix(report, options) for report in reports if not report.skipped]
    # Rules of the element itself (name, counts, duplicates...) are not fixed by fixing files.
    element_report = (
        ElementReport(tuple(element_findings(element, reports)), tuple(reports))
        if element is not None
        else None
    )
    element_ok = element_report is None or not has_errors(element_report.findings)
    ok = all(plan.can_fix for plan in plans) and element_ok
    if as_json:
        emit_json(
            {
                "ok": ok,
                "dry_run": True,
                "out_dir": str(out_dir),
                "files": [plan_document(plan) for plan in plans],
                "element": element_report.to_dict() if element_report is not None else None,
            }
        )
    else:
        color = use_color(sys.stdout)
        for report in reports:
            if report.skipped and not quiet:
                click.echo(f"SKIP  {report.path}")
        for plan in plans:
            if not (quiet and plan.can_fix):
                for line in plan_lines(plan):
                    click.echo(line)
        if element_report is not None and (element_report.findings or not quiet):
            click.echo(f"{'PASS' if element_ok else 'FAIL'}  element rules")
            for finding in element_report.findings:
                click.echo(finding_line(finding, color=color), color=color)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _fix_all(
    reports: Sequence[FileReport], out_dir: Path, options: FixOptions, *, show_progress: bool
) -> list[FixResult]:
    results: list[FixResult] = []
    taken: set[Path] = set()
    for report in reports:
        if report.skipped:
            continue
        with TranscodeBar(Path(report.path).name, enabled=show_progress) as bar:
            results.append(
                fix_file(
                    report.path,
                    out_dir,
                    options,
                    report=report,
                    on_progress=bar.update,
                    taken=taken,
                )
            )
    return results


def _element_after(element: Element, results: Sequence[FixResult]) -> ElementReport:
    """The element's rules checked again with the fixed files standing in for the originals."""
    reports = [result.output_report for result in results]
    if any(report is None for report in reports):
        return check_element(element)
    fixed = [report for report in reports if report is not None]
    return ElementReport(tuple(element_findings(element, fixed)), tuple(fixed))
