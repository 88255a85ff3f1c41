"""The command line: the only layer that talks to the terminal.

Subcommands live in the modules of this package (check, fix, submit...); each registers itself on
:data:`main`. Library errors become one-line messages: exit 1 for failures, 2 for usage errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

from .._version import __version__
from ..errors import MediaprepError, UsageError
from ..ffmpeg import Progress

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
#: Usage errors exit 2: click does that itself (UsageError, BadParameter).
EXIT_INTERRUPTED = 130


class CommandError(click.ClickException):
    """A library failure, shown as ``Error: message`` with exit code 1."""

    exit_code = EXIT_FAILED


def use_color(stream: IO[str]) -> bool:
    """Colours only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def style(text: str, *, color: bool, **styles: Any) -> str:
    """``click.style`` when colours are on, the plain text otherwise."""
    return click.style(text, **styles) if color else text


SEVERITY_STYLE: dict[str, dict[str, Any]] = {
    "error": {"fg": "red", "bold": True},
    "warning": {"fg": "yellow"},
    "info": {"fg": "cyan"},
}


def emit_json(document: object) -> None:
    """Write one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn library errors into click errors with the right exit code."""
    try:
        yield
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    except MediaprepError as exc:
        raise CommandError(str(exc)) from exc


@contextmanager
def progress_bar(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when enabled and stderr is a terminal; yields ``advance(n)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


class TranscodeBar:
    """A per-file bar on stderr for ffmpeg runs, drawn on a terminal only, and only once ffmpeg
    reports progress (an image fix never shows one). Use as a context manager; feed ``update``.
    """

    STEPS = 1000

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._shown = 0

    def __enter__(self) -> TranscodeBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, progress: Progress) -> None:
        """Move the bar to ``progress``; opens it on the first report."""
        fraction = progress.fraction
        if not self.enabled or fraction is None:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=self.STEPS, label=self.label, file=sys.stderr)
            self._bar.__enter__()
        target = int(fraction * self.STEPS)
        if target > self._shown:
            self._bar.update(target - self._shown)
            self._shown = target

    def close(self) -> None:
        """Finish the bar's line, if one was drawn."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mediaprep")
@click.option("-v", "--verbose", count=True, help="Log more (-vv shows ffmpeg commands).")
def main(verbose: int) -> None:
    """Check, fix and submit media for the custom-elements creation API."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def run() -> None:
    """The console entry point: the command line, with an unexpected failure in one line.

    A failure that reaches here is a bug; ``MEDIAPREP_DEBUG=1`` shows its traceback.
    """
    try:
        main()
    except Exception as exc:
        if os.environ.get("MEDIAPREP_DEBUG"):
            raise
        click.echo(
            f"Error: internal error ({type(exc).__name__}: {exc}); this is a bug in mediaprep: "
            "please report it (MEDIAPREP_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(EXIT_FAILED)


# The subcommands register themselves on `main` when imported.
from . import check, fix, submit  # noqa: E402

__all__ = ["check", "fix", "main", "run", "submit"]
