"""Repair videos with ffmpeg (to be written: see plan_video / write_video contracts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..ffmpeg import Progress
from ..findings import FileReport
from .plan import FixOptions, FixPlan


def plan_video(report: FileReport, options: FixOptions) -> FixPlan:
    """The smallest set of steps that makes a video pass."""
    raise NotImplementedError


def write_video(
    source: Path, plan: FixPlan, destination: Path, options: FixOptions
) -> Iterator[Progress]:
    """Carry out a video plan, writing the result to ``destination`` and yielding progress."""
    raise NotImplementedError
