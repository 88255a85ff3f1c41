"""`mediaprep check`, `spec` and `tags` through click's runner, and once as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from mediaprep.cli import main, use_color


def run(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=dict(env or {}))
    return result.exit_code, result.output


def test_passing_files_exit_0(media: Mapping[str, Path]) -> None:
    code, output = run("check", str(media["img_300x300_png"]), str(media["vid_1080p_4s_mov"]))
    assert code == 0, output
    assert output.count("PASS") == 2
    assert "2 files: 2 passed, 0 failed; 0 errors, 0 warnings." in output
    assert "\x1b[" not in output  # no colours when not a terminal


def test_warnings_alone_exit_0(media: Mapping[str, Path]) -> None:
    code, output = run("check", str(media["img_png_named_jpg"]))
    assert code == 0
    assert "WARN" in output
    assert "extension_mismatch" in output


def test_failing_file_exit_1_with_findings_indented(media: Mapping[str, Path]) -> None:
    code, output = run("check", str(media["img_100x400_png"]), str(media["img_300x300_png"]))
    assert code == 1
    lines = output.splitlines()
    assert lines[0].startswith("FAIL")
    assert "100 × 400" in lines[0]
    assert lines[1].lstrip().startswith("error")
    assert "dimension_too_small" in lines[1]
    assert "aspect_ratio_out_of_range" in lines[2]
    assert lines[3].startswith("PASS")  # input order kept


def test_json_schema(media: Mapping[str, Path]) -> None:
    code, output = run(
        "check", "--json", str(media["img_299x300_png"]), str(media["vid_1080p_5s_aac_mp4"])
    )
    assert code == 1
    document = json.loads(output)
    assert set(document) == {"ok", "files", "element"}
    assert document["ok"] is False
    assert document["element"] is None
    image, video = document["files"]
    assert image["kind"] == "image"
    assert image["ok"] is False
    assert image["info"]["display_width"] == 299
    assert image["findings"] == [
        {
            "code": "dimension_too_small",
            "severity": "error",
            "message": "image is 299 × 300 px; each side must be at least 300 px",
            "fixable": True,
        }
    ]
    assert video["kind"] == "video"
    assert video["ok"] is True
    assert [f["severity"] for f in video["findings"]] == ["info"]


def test_directories_recurse_and_skip_non_media(tmp_path: Path, media: Mapping[str, Path]) -> None:
    folder = tmp_path / "shots" / "nested"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(media["img_300x300_png"].read_bytes())
    (tmp_path / "shots" / "readme.txt").write_text("not media")
    code, output = run("check", "--json", str(tmp_path / "shots"))
    assert code == 0
    files = json.loads(output)["files"]
    assert [(Path(f["path"]).name, f["skipped"]) for f in files] == [
        ("a.png", False),
        ("readme.txt", True),
    ]


def test_element_mode(media: Mapping[str, Path]) -> None:
    code, output = run(
        "check",
        "--element",
        "--name",
        "Hero",
        "--description",
        "A hero",
        "--frontal",
        str(media["img_1024x768_circle_jpg"]),
        "--refer",
        str(media["img_1024x768_circle_jpg"]),
        "--tag",
        "character",
        "--tag",
        "o_999",
        "--json",
    )
    assert code == 1
    document = json.loads(output)
    assert document["element"]["ok"] is False
    codes = [f["code"] for f in document["element"]["findings"]]
    assert codes == ["refer_image_duplicates_frontal", "tag_unknown"]
    assert len(document["files"]) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["check"],
        ["check", "/definitely/not/here.jpg"],
        ["check", "--bogus"],
        ["check", "--element", "--name", "x", "--description", "y"],
        ["check", "--element", "--frontal", "a.jpg", "--video", "b.mp4"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    code, output = run(*args)
    assert code == 2, output
    assert "Traceback" not in output


def test_ffprobe_missing_is_one_clear_message(media: Mapping[str, Path]) -> None:
    code, output = run(
        "check", str(media["vid_1080p_4s_mov"]), env={"MEDIAPREP_FFPROBE": "/nope/ffprobe"}
    )
    assert code == 1
    assert "MEDIAPREP_FFPROBE" in output
    assert "MEDIAPREP_FFMPEG" in output
    assert "Traceback" not in output


def test_spec_and_tags_print_the_rules() -> None:
    code, output = run("spec")
    assert code == 0
    assert "1:2.5 to 2.5:1" in output
    assert "10 MiB" in output
    code, output = run("tags")
    assert "o_102  Character" in output


def test_real_process_with_a_dash_name(media: Mapping[str, Path]) -> None:
    dash = media["img_dash_name_png"]
    env = {**os.environ, "NO_COLOR": "1"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mediaprep",
            "check",
            "--",
            dash.name,
            str(media["img_unicode_name_jpg"]),
        ],
        cwd=dash.parent,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"PASS  {dash.name}" in completed.stdout
    assert "写真" in completed.stdout


def test_missing_element_media_is_a_usage_error(media: Mapping[str, Path]) -> None:
    code, output = run(
        "check",
        "--element",
        "--name",
        "Hero",
        "--description",
        "A hero",
        "--frontal",
        str(media["img_300x300_png"]),
        "--refer",
        "/definitely/not/here.png",
    )
    assert code == 2
    assert "/definitely/not/here.png: no such file" in output


def test_fifos_and_dangling_links_in_a_folder_are_skipped(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "a.png").write_bytes(media["img_300x300_png"].read_bytes())
    os.mkfifo(folder / "pipe.png")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    code, output = run("check", "--json", str(folder))
    assert code == 0, output
    files = {Path(f["path"]).name: f["skipped"] for f in json.loads(output)["files"]}
    assert files == {"a.png": False, "gone.png": True, "pipe.png": True}


@pytest.mark.parametrize(
    ("isatty", "no_color", "expected"),
    [(True, None, True), (True, "1", False), (False, None, False)],
)
def test_colours_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, isatty: bool, no_color: str | None, expected: bool
) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return isatty

    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert use_color(Stream()) is expected


def test_failing_lines_are_coloured_on_a_terminal(
    media: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("mediaprep.cli.check.use_color", lambda _stream: True)
    code, output = run("check", str(media["img_299x300_png"]))
    assert code == 1
    assert "\x1b[31m" in output  # red FAIL and error
