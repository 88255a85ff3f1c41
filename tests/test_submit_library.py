"""The submit library's events, without the CLI: transcode progress reaches the caller."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mediaprep import Element, FixOptions
from mediaprep.api import Secret, Settings
from mediaprep.submit import DryRun, Fixed, Fixing, FixProgress, submit


def test_transcode_progress_is_yielded_between_fixing_and_fixed(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    settings = Settings(api_key=Secret("sk-library-test-key-0000"), base_url="http://127.0.0.1:9")
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
