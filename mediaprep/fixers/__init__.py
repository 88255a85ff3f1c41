"""Fixers: plan the smallest repair from a file's findings, write it, re-inspect it."""

from __future__ import annotations

from .plan import FixOptions, FixPlan, FixResult, Step, fix_file, plan_fix

__all__ = ["FixOptions", "FixPlan", "FixResult", "Step", "fix_file", "plan_fix"]
