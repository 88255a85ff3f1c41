"""`mediaprep fix` through click's runner: outputs pass, originals untouched, names never clash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from mediaprep import inspect_file
from mediaprep.cli import main


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def stage(tmp_path: Path, media: Mapping[str, Path], *names: str) -> Path:
    """Copy fixtures into a fresh input folder."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(media[name], folder / media[name].name)
    return folder


def test_fix_folder_writes_passing_copies(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(
        tmp_path,
        media,
        "img_300x300_png",
        "img_200x100_png",
        "img_webp",
        "img_751x300_png",
        "img_png_named_jpg",
    )
    before = {path.name: digest(path) for path in folder.iterdir()}
    out = tmp_path / "out"
    code, output = run("fix", str(folder), "--out-dir", str(out), "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["ok"] is True
    results = {Path(item["path"]).name: item for item in document["files"]}
    assert set(results) == set(before)
    for name, item in results.items():
        assert item["ok"] is True, item
        output_path = Path(item["output"])
        assert output_path.parent == out
        assert inspect_file(output_path).ok, name
        assert not [f for f in item["after"] if f["severity"] == "error"]
    # The compliant PNG is copied byte for byte, with no steps.
    assert results["300x300.png"]["steps"] == []
    assert digest(Path(results["300x300.png"]["output"])) == before["300x300.png"]
    # PNG bytes named .jpg come out under .png, unchanged.
    assert Path(results["png_disguised.jpg"]["output"]).suffix == ".png"
    assert Path(results["640x480.webp"]["output"]).suffix in (".jpg", ".png")
    assert results["200x100.png"]["steps"]
    # Originals untouched, and nothing but finished files in the out-dir.
    assert {path.name: digest(path) for path in folder.iterdir()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unfixable_file_fails_with_a_reason(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_truncated_png", "img_300x300_png")
    code, output = run("fix", str(folder), "--out-dir", str(tmp_path / "out"))
    assert code == 1
    assert "FAILED" in output
    assert "truncated.png" in output
    assert "COPIED" in output
    assert (tmp_path / "out" / "300x300.png").exists()
    assert not (tmp_path / "out" / "truncated.png").exists()


def test_dry_run_writes_nothing(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_200x100_png", "img_300x300_png", "img_truncated_png")
    out = tmp_path / "out"
    code, output = run("fix", str(folder), "--out-dir", str(out), "--dry-run")
    assert code == 1, output  # as a real run: the truncated file cannot be fixed
    assert not out.exists()
    assert "FIX   " in output
    assert "COPY  " in output
    assert "CANNOT FIX" in output


def test_dry_run_json(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_200x100_png", "img_300x300_png")
    out = tmp_path / "out"
    code, output = run("fix", str(folder), "--out-dir", str(out), "--dry-run", "--json")
    assert code == 0, output
    document = json.loads(output)
    assert document["ok"] is True
    assert document["dry_run"] is True
    actions = {Path(f["path"]).name: f["action"] for f in document["files"]}
    assert actions == {"200x100.png": "fix", "300x300.png": "copy"}
    small = next(f for f in document["files"] if f["action"] == "fix")
    assert small["steps"][0]["action"] == "resize"
    assert small["before"][0]["code"] == "dimension_too_small"
    assert not out.exists()


def test_dry_run_checks_the_element_and_the_out_dir(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    same = str(media["img_1024x768_circle_jpg"])
    element = ["--element", "--name", "Hero", "--description", "A hero", "--frontal", same]
    code, output = run("fix", *element, "--refer", same, "--dry-run", "-o", str(tmp_path / "o"))
    assert code == 1, output
    assert "refer_image_duplicates_frontal" in output
    folder = stage(tmp_path, media, "img_200x100_png")
    code, output = run("fix", str(folder), "--out-dir", str(folder), "--dry-run")
    assert code == 2, output


def test_a_second_run_leaves_the_out_dir_alone(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_200x100_png")
    out = folder / "mediaprep-out"
    for _ in range(2):
        code, output = run("fix", str(folder), "--out-dir", str(out))
        assert code == 0, output
    assert sorted(path.name for path in out.iterdir()) == ["200x100-1.png", "200x100.png"]


def test_out_dir_holding_an_input_is_refused(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_200x100_png")
    code, output = run("fix", str(folder / "200x100.png"), "--out-dir", str(folder))
    assert code == 2
    assert "--out-dir" in output


def test_names_never_collide_or_overwrite(tmp_path: Path, media: Mapping[str, Path]) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(media["img_300x300_png"], first / "hero.png")
    shutil.copy(media["img_750x300_png"], second / "hero.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "hero.png").write_bytes(b"keep me")
    code, output = run("fix", str(first), str(second), "--out-dir", str(out), "--json")
    assert code == 0, output
    outputs = sorted(Path(item["output"]).name for item in json.loads(output)["files"])
    assert outputs == ["hero-1.png", "hero-2.png"]
    assert (out / "hero.png").read_bytes() == b"keep me"


def test_quiet_prints_only_failures(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_300x300_png")
    code, output = run("fix", str(folder), "--out-dir", str(tmp_path / "out"), "--quiet")
    assert code == 0
    assert output == ""


def test_fix_element_checks_the_rules_with_fixed_files(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    out = tmp_path / "out"
    code, output = run(
        "fix",
        "--element",
        "--name",
        "Hero",
        "--description",
        "A hero",
        "--frontal",
        str(media["img_1024x768_circle_jpg"]),
        "--refer",
        str(media["img_200x100_png"]),
        "--out-dir",
        str(out),
        "--json",
    )
    assert code == 0, output
    document = json.loads(output)
    assert document["element"] == {"ok": True, "findings": []}
    assert len(list(out.iterdir())) == 2


def test_bad_fix_options_are_usage_errors(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_751x300_png")
    for option, value in (("--pad-color", "nonsense"), ("--preset", "warp"), ("--flatten", "x")):
        code, output = run("fix", str(folder), "--out-dir", str(tmp_path / "out"), option, value)
        assert code == 2, output
        assert value in output
        assert "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_outputs_get_ordinary_permissions(tmp_path: Path, media: Mapping[str, Path]) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    folder = stage(tmp_path, media, "img_300x300_png", "img_200x100_png")
    out = tmp_path / "out"
    code, output = run("fix", str(folder), "--out-dir", str(out))
    assert code == 0, output
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_unreadable_files_get_advice(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = stage(tmp_path, media, "img_empty_png", "img_random_bytes_jpg")
    code, output = run("fix", str(folder), "--out-dir", str(tmp_path / "out"))
    assert code == 1
    assert output.count("export it again") == 2


def test_an_out_dir_that_cannot_be_made_is_a_usage_error(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    folder = stage(tmp_path, media, "img_300x300_png")
    blocker = tmp_path / "afile"
    blocker.write_text("in the way")
    code, output = run("fix", str(folder), "--out-dir", str(blocker / "sub"))
    assert code == 2, output
    assert "cannot create the output folder" in output


def test_ctrl_c_exits_130_and_leaves_no_partial_file(
    tmp_path: Path, media: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = stage(tmp_path, media, "img_200x100_png")
    out = tmp_path / "out"

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("mediaprep.fixers.image.write_image", interrupted)
    result = CliRunner().invoke(main, ["fix", str(folder), "--out-dir", str(out)])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert list(out.iterdir()) == []  # neither a final name nor a temp file
