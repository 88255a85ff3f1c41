"""The submit library's events, without the CLI: transcode progress reaches the caller."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image

from mediaprep import Element, FixOptions, FixPlan
from mediaprep.api import Secret, Settings
from mediaprep.api.sandbox import SandboxServer
from mediaprep.findings import FileReport
from mediaprep.fixers import image as image_fixer
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


def test_each_file_is_planned_once_and_stripped_once(
    tmp_path: Path, media: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # a GPS latitude
    folder = tmp_path / "in"
    folder.mkdir()
    gps = folder / "gps.jpg"
    Image.new("RGB", (400, 300), (40, 150, 220)).save(gps, "JPEG", exif=exif.tobytes())
    plans: list[str] = []
    strips: list[bytes] = []
    plan_image, strip_metadata = image_fixer.plan_image, image_fixer.strip_metadata

    def counted_plan(report: FileReport, options: FixOptions) -> FixPlan:
        plans.append(report.path)
        return plan_image(report, options)

    def counted_strip(data: bytes) -> bytes:
        strips.append(data)
        return strip_metadata(data)

    monkeypatch.setattr(image_fixer, "plan_image", counted_plan)
    monkeypatch.setattr(image_fixer, "strip_metadata", counted_strip)
    settings = Settings(api_key=Secret("sk-test-library-0002"), base_url="http://127.0.0.1:9")
    refer = str(media["img_300x300_png"])
    element = Element("Hero", "A hero", frontal=str(gps), refers=(refer,))
    events = list(submit(element, settings, out_dir=tmp_path / "out", dry_run=True))
    (fixed,) = [event.result for event in events if isinstance(event, Fixed)]
    assert fixed.ok
    assert [step.action for step in fixed.steps] == ["strip"]
    assert sorted(plans) == sorted([str(gps), refer])
    assert len(strips) == 1
