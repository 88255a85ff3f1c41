"""The one place that finds and runs ffmpeg and ffprobe.

Commands are argument lists, never a shell. File names go through :func:`file_arg`, so a name
that starts with ``-`` or holds a ``:`` is never read as an option or a protocol.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ToolError, ToolNotFoundError, ToolTimeoutError

log = logging.getLogger(__name__)

FFMPEG_ENV = "MEDIAPREP_FFMPEG"
FFPROBE_ENV = "MEDIAPREP_FFPROBE"
PROBE_TIMEOUT_SECONDS = 30.0
#: A transcode that reports no progress for this long is taken for hung and stopped.
STALL_TIMEOUT_SECONDS = 300.0


def _find(tool: str, env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        if Path(override).is_file() and os.access(override, os.X_OK):
            return override
        found = shutil.which(override)
        if found:
            return found
        raise ToolNotFoundError(tool, env_var)
    found = shutil.which(tool)
    if found is None:
        raise ToolNotFoundError(tool, env_var)
    return found


def find_ffmpeg() -> str:
    """Return the ffmpeg executable: ``$MEDIAPREP_FFMPEG``, else ``ffmpeg`` on PATH.

    Raises:
        ToolNotFoundError: neither is there; the message says how to install ffmpeg.
    """
    return _find("ffmpeg", FFMPEG_ENV)


def find_ffprobe() -> str:
    """Return the ffprobe executable: ``$MEDIAPREP_FFPROBE``, else ``ffprobe`` on PATH.

    Raises:
        ToolNotFoundError: neither is there; the message says how to install ffmpeg.
    """
    return _find("ffprobe", FFPROBE_ENV)


def file_arg(path: str | os.PathLike[str]) -> str:
    """Spell a local path for ffmpeg so it is never taken for an option or a protocol."""
    return "file:" + os.path.abspath(os.fspath(path))


def probe_command(ffprobe: str, path: str | os.PathLike[str]) -> list[str]:
    """The ffprobe command that reads a file's format and streams as JSON."""
    return [
        ffprobe,
        "-v",
        "error",
        "-hide_banner",
        "-show_format",
        "-show_streams",
        "-of",
        "json",
        file_arg(path),
    ]


def probe(path: str | os.PathLike[str], timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Run ffprobe once on a file and return its JSON (``format`` and ``streams``).

    ffmpeg-python's ``probe()`` (0.2.0, the current release) takes no timeout and lets ffprobe
    inherit stdin, so ffprobe is run here directly with the same arguments, killed on timeout.

    Raises:
        ToolNotFoundError: ffprobe is missing.
        ToolTimeoutError: ffprobe ran longer than ``timeout`` seconds.
        ToolError: ffprobe could not read the file, or printed something that is not JSON.
    """
    command = probe_command(find_ffprobe(), path)
    log.debug("running %s", shlex.join(command))
    try:
        completed = subprocess.run(
            command, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolTimeoutError(f"ffprobe took longer than {timeout:g} s", command) from exc
    stderr = completed.stderr.decode("utf-8", "replace")
    if completed.returncode != 0:
        raise ToolError("ffprobe could not read the file", command, stderr)
    try:
        data = json.loads(completed.stdout)
    except json.JSONDecodeError as exc:
        raise ToolError("ffprobe printed no JSON", command, stderr) from exc
    if not isinstance(data, dict):
        raise ToolError("ffprobe printed unexpected JSON", command, stderr)
    return data


@dataclass(frozen=True)
class Progress:
    """How far an ffmpeg run is: seconds of output written out of the expected total."""

    done_seconds: float
    total_seconds: float | None
    finished: bool = False

    @property
    def fraction(self) -> float | None:
        """Done as a fraction in [0, 1], or None when the total is unknown."""
        if self.finished:
            return 1.0
        if not self.total_seconds:
            return None
        return max(0.0, min(1.0, self.done_seconds / self.total_seconds))


def parse_progress_line(line: str, state: dict[str, str]) -> bool:
    """Add one ``key=value`` line of ``-progress`` output to ``state``.

    Returns:
        True when the line closes a block (``progress=continue`` or ``progress=end``).
    """
    key, sep, value = line.strip().partition("=")
    if not sep:
        return False
    state[key] = value
    return key == "progress"


def _progress_seconds(state: dict[str, str]) -> float:
    # ffmpeg 5 prints both; out_time_ms is (despite its name) in microseconds.
    for key in ("out_time_us", "out_time_ms"):
        value = state.get(key, "")
        if value.lstrip("-").isdigit():
            return max(0.0, int(value) / 1_000_000)
    return 0.0


def run_ffmpeg(
    arguments: Sequence[str],
    total_seconds: float | None = None,
    *,
    stall_timeout: float = STALL_TIMEOUT_SECONDS,
) -> Iterator[Progress]:
    """Run ffmpeg with ``arguments`` (everything after the program name) and yield progress.

    Adds ``-nostdin -hide_banner -progress pipe:1 -nostats`` itself. Closing the generator early
    (or Ctrl-C) kills ffmpeg, and so does a run that reports no progress for ``stall_timeout``
    seconds (ffmpeg reports twice a second while it works, so only a hung run is stopped).

    Raises:
        ToolNotFoundError: ffmpeg is missing.
        ToolTimeoutError: ffmpeg made no progress for ``stall_timeout`` seconds and was killed.
        ToolError: ffmpeg exited with an error; ``stderr`` and ``command`` are kept.
    """
    command = [
        find_ffmpeg(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
        "-nostats",
        *arguments,
    ]
    log.debug("running %s", shlex.join(command))
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file
        )
        assert process.stdout is not None
        last_heard = [time.monotonic()]
        stalled = threading.Event()

        def watch() -> None:
            while process.poll() is None:
                if time.monotonic() - last_heard[0] > stall_timeout:
                    stalled.set()
                    process.kill()
                    return
                time.sleep(min(1.0, stall_timeout / 4))

        threading.Thread(target=watch, name="mediaprep-ffmpeg-watch", daemon=True).start()
        try:
            state: dict[str, str] = {}
            for raw in process.stdout:
                last_heard[0] = time.monotonic()
                if parse_progress_line(raw.decode("utf-8", "replace"), state):
                    finished = state.get("progress") == "end"
                    yield Progress(_progress_seconds(state), total_seconds, finished)
            returncode = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        if stalled.is_set():
            raise ToolTimeoutError(
                f"ffmpeg made no progress for {stall_timeout:g} s and was stopped", command
            )
        if returncode != 0:
            stderr_file.seek(0)
            stderr = stderr_file.read().decode("utf-8", "replace")
            raise ToolError(f"ffmpeg failed with exit code {returncode}", command, stderr)


def run_ffmpeg_to_end(arguments: Sequence[str]) -> None:
    """Run ffmpeg to completion, ignoring progress.

    Raises:
        ToolNotFoundError: ffmpeg is missing.
        ToolError: ffmpeg exited with an error.
    """
    for _ in run_ffmpeg(arguments):
        pass
