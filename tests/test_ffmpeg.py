"""The one place that runs ffmpeg: progress, failures, and a hung run stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mediaprep.errors import ToolError, ToolTimeoutError
from mediaprep.ffmpeg import Progress, file_arg, parse_progress_line, run_ffmpeg


def test_progress_is_yielded_and_ends_finished(tmp_path: Path) -> None:
    out = tmp_path / "-out.mp4"
    arguments = ["-f", "lavfi", "-i", "testsrc2=s=160x90:r=10:d=2", "-c:v", "libx264"]
    progress = list(run_ffmpeg([*arguments, "-preset", "ultrafast", file_arg(out)], 2.0))
    assert progress
    assert progress[-1].finished
    assert progress[-1].fraction == 1.0
    assert out.stat().st_size > 0


def test_failure_keeps_the_command_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as caught:
        list(run_ffmpeg(["-i", file_arg(tmp_path / "missing.mp4"), "-f", "null", "-"]))
    assert "No such file" in caught.value.stderr
    assert caught.value.command[-1] == "-"


def test_a_run_that_makes_no_progress_is_stopped(tmp_path: Path) -> None:
    # Opening a FIFO nobody writes to blocks ffmpeg for ever: no progress line ever comes.
    fifo = tmp_path / "stuck.pipe"
    os.mkfifo(fifo)
    arguments = ["-f", "rawvideo", "-s", "16x16", "-i", file_arg(fifo), "-f", "null", "-"]
    with pytest.raises(ToolTimeoutError, match=r"no progress for 0\.5 s"):
        list(run_ffmpeg(arguments, stall_timeout=0.5))


@pytest.mark.parametrize(
    ("lines", "seconds"),
    [
        (["out_time_us=1500000", "progress=continue"], 1.5),
        (["out_time_ms=250000", "progress=end"], 0.25),
    ],
)
def test_progress_lines(lines: list[str], seconds: float) -> None:
    state: dict[str, str] = {}
    closed = [parse_progress_line(line, state) for line in lines]
    assert closed == [False, True]
    progress = Progress(float(state.get("out_time_us", state.get("out_time_ms", "0"))) / 1e6, 3.0)
    assert progress.done_seconds == pytest.approx(seconds)
