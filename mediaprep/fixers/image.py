"""Repair images with Pillow (to be written: see plan_image / write_image contracts)."""

from __future__ import annotations

from pathlib import Path

from ..findings import FileReport
from .plan import FixOptions, FixPlan


def plan_image(report: FileReport, options: FixOptions) -> FixPlan:
    """The smallest set of steps that makes an image pass."""
    raise NotImplementedError


def write_image(source: Path, plan: FixPlan, destination: Path, options: FixOptions) -> None:
    """Carry out an image plan, writing the result to ``destination``."""
    raise NotImplementedError
