"""The submit library's events, without the CLI: transcode progress reaches the caller."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mediaprep import Element, FixOptions
from mediaprep.api import Secret, Settings
from mediaprep.api.sandbox import SandboxServer
from mediaprep.submit import DryRun, Fixed, Fixing, FixProgress, submit


def test_transcode_progress_is_yielded_between_fixing_and_fixed(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    settings = Settings(api_key=Secret("sk-test-library-0000"), base_url="http://127.0.0.1:9")
    element = Element("Hero", "A hero", videos=(str(media["vid_720p_4s_mp4"]),))
    events = list(
        submit(
            element,
            settings,
            fix_options=FixOptions(preset="ultrafast"),
            out_dir=tmp_path / "out",
            dry_run=True,
        )
    )
    kinds = [type(event) for event in events]
    start, end = kinds.index(Fixing), kinds.index(Fixed)
    progress = [e.progress for e in events[start:end] if isinstance(e, FixProgress)]
    assert progress, "no progress between Fixing and Fixed"
    fractions = [p.fraction for p in progress if p.fraction is not None]
    assert fractions == sorted(fractions)
    assert progress[-1].finished
    assert isinstance(events[-1], DryRun)
    fixed = events[end]
    assert isinstance(fixed, Fixed)
    assert fixed.result.ok


def test_element_id_is_on_disk_before_the_caller_hears_of_it(
    tmp_path: Path, media: Mapping[str, Path], sandbox: SandboxServer
) -> None:
    settings = Settings(api_key=Secret("sk-test-library-0001"), base_url=sandbox.url)
    element = Element(
        "Hero",
        "A hero",
        frontal=str(media["img_1024x768_circle_jpg"]),
        refers=(str(media["img_300x300_png"]),),
    )
    out = tmp_path / "out"
    seen_completed = False
    for event in submit(element, settings, out_dir=out):
        task = getattr(event, "task", None)
        if task is not None and task.status == "completed":
            # Whatever the caller does now, the receipt already holds the element id.
            (receipt,) = out.glob("mediaprep-receipt-*.json")
            saved = json.loads(receipt.read_text())
            assert saved["status"] == "completed"
            assert saved["element_id"] == "860000000000000001"
            seen_completed = True
            break
    assert seen_completed
