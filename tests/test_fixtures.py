"""The media generator keeps its promises: sizes, durations, metadata, and its cache."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from fixtures.generate import (
    FIXTURES,
    IMAGE_MAX_BYTES,
    VIDEO_MAX_BYTES,
    FixtureError,
    LazyFixtures,
    VideoSpec,
    disc_bbox,
    ffprobe_json,
    generate,
    generate_report,
    main,
    png_chunks,
    video_command,
)

CHEAP = ["img_300x300_png", "img_exif_rot6_jpg", "other_notes_txt", "img_empty_png"]


def test_registry_is_consistent() -> None:
    filenames = [fx.filename for fx in FIXTURES.values()]
    assert len(set(filenames)) == len(filenames)
    for name, fx in FIXTURES.items():
        assert fx.name == name
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        assert fx.kind in {"image", "video", "other"}
        assert fx.description


@pytest.mark.parametrize(
    ("name", "size"),
    [("img_png_10mib_exact", IMAGE_MAX_BYTES), ("img_png_10mib_plus1", IMAGE_MAX_BYTES + 1)],
)
def test_10mib_pngs_have_exact_size_and_stay_valid(
    media: Mapping[str, Path], name: str, size: int
) -> None:
    path = media[name]
    assert path.stat().st_size == size
    assert [t for t, _ in png_chunks(path.read_bytes())][-2:] == ["prIv", "IEND"]
    with Image.open(path) as im:
        im.load()
        assert im.size == (640, 480)


@pytest.mark.parametrize(
    ("name", "size"),
    [("vid_200mib_exact_mp4", VIDEO_MAX_BYTES), ("vid_200mib_plus1_mp4", VIDEO_MAX_BYTES + 1)],
)
def test_200mib_mp4s_have_exact_size_and_stay_readable(
    media: Mapping[str, Path], name: str, size: int
) -> None:
    path = media[name]
    assert path.stat().st_size == size
    assert Decimal(ffprobe_json(path)["format"]["duration"]) == Decimal(4)


def test_big_jpeg_is_over_10mib(media: Mapping[str, Path]) -> None:
    assert media["img_jpg_over_10mib"].stat().st_size > IMAGE_MAX_BYTES


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("vid_1080p_2_9s_mp4", "2.9"),
        ("vid_1080p_3_0s_mp4", "3.0"),
        ("vid_1080p_5_0s_mp4", "5.0"),
        ("vid_1080p_8_0s_mp4", "8.0"),
        ("vid_1080p_8_1s_mp4", "8.1"),
        ("vid_1080p_5s_aac_mp4", "5.0"),
        ("vid_720p_12s_aac_mp4", "12.0"),
    ],
)
def test_video_container_durations_are_exact(
    media: Mapping[str, Path], name: str, seconds: str
) -> None:
    duration = Decimal(ffprobe_json(media[name])["format"]["duration"])
    assert duration == Decimal(seconds)


def test_boundary_durations_sit_on_the_right_side(media: Mapping[str, Path]) -> None:
    def duration(name: str) -> Decimal:
        return Decimal(ffprobe_json(media[name])["format"]["duration"])

    assert duration("vid_1080p_2_9s_mp4") < 3
    assert duration("vid_1080p_3_0s_mp4") <= 3
    assert duration("vid_1080p_8_0s_mp4") <= 8
    assert duration("vid_1080p_8_1s_mp4") > 8


def _video_stream(path: Path) -> dict[str, object]:
    streams = ffprobe_json(path)["streams"]
    video: dict[str, object] = next(s for s in streams if s["codec_type"] == "video")
    return video


def test_rotated_video_has_a_90_degree_display_matrix(media: Mapping[str, Path]) -> None:
    stream = _video_stream(media["vid_1080p_rot90_mp4"])
    assert (stream["width"], stream["height"]) == (1920, 1080)
    side_data = stream["side_data_list"]
    assert isinstance(side_data, list)
    rotations = [int(s["rotation"]) for s in side_data if "rotation" in s]
    assert [abs(r) for r in rotations] == [90]


def test_sar_video_displays_16_by_9(media: Mapping[str, Path]) -> None:
    stream = _video_stream(media["vid_1440x1080_sar43_mp4"])
    assert (stream["width"], stream["height"]) == (1440, 1080)
    assert stream["sample_aspect_ratio"] == "4:3"
    assert stream["display_aspect_ratio"] == "16:9"


def test_audio_only_mp4_has_no_video(media: Mapping[str, Path]) -> None:
    types = [s["codec_type"] for s in ffprobe_json(media["vid_audio_only_mp4"])["streams"]]
    assert types == ["audio"]


def test_truncated_mp4_is_unreadable(media: Mapping[str, Path]) -> None:
    with pytest.raises(FixtureError, match="cannot read"):
        ffprobe_json(media["vid_truncated_mp4"])


@pytest.mark.parametrize("name", ["img_exif_rot6_jpg", "img_exif_rot6_png"])
def test_exif_orientation_is_6_and_displays_portrait(media: Mapping[str, Path], name: str) -> None:
    with Image.open(media[name]) as im:
        assert im.size == (400, 300)
        assert im.getexif()[0x0112] == 6
        upright = ImageOps.exif_transpose(im)
    assert upright.size == (300, 400)
    top = upright.convert("RGB").getpixel((150, 10))
    assert isinstance(top, tuple)
    # Once upright, the red band is on top.
    assert top[0] > 180
    assert top[1] < 60


@pytest.mark.parametrize(
    ("name", "size", "diameter"),
    [
        ("img_800x600_circle400_jpg", (800, 600), 400),
        ("img_1024x768_circle_jpg", (1024, 768), 384),
        ("img_750x300_png", (750, 300), 200),
    ],
)
def test_disc_is_centred_with_the_promised_diameter(
    media: Mapping[str, Path], name: str, size: tuple[int, int], diameter: int
) -> None:
    assert FIXTURES[name].circle_diameter == diameter
    with Image.open(media[name]) as im:
        assert im.size == size
        box = disc_bbox(im)
    assert box is not None
    assert abs((box[2] - box[0]) - diameter) <= 2
    assert abs((box[3] - box[1]) - diameter) <= 2
    assert abs((box[0] + box[2]) / 2 - size[0] / 2) <= 1
    assert abs((box[1] + box[3]) / 2 - size[1] / 2) <= 1


def test_bomb_is_refused_by_pillow(media: Mapping[str, Path]) -> None:
    path = media["img_bomb_png"]
    assert path.stat().st_size < 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(Image.DecompressionBombError):
            Image.open(path)


@pytest.mark.parametrize(
    ("name", "mode"),
    [("img_gray16_png", "I;16"), ("img_palette_png", "P"), ("img_cmyk_jpg", "CMYK")],
)
def test_image_modes(media: Mapping[str, Path], name: str, mode: str) -> None:
    with Image.open(media[name]) as im:
        assert im.mode == mode


def test_regenerating_skips_existing_files(tmp_path: Path) -> None:
    first = generate_report(tmp_path, CHEAP)
    assert {o.status for o in first} == {"written"}
    before = {o.name: o.path.stat() for o in first}

    second = generate_report(tmp_path, CHEAP)
    assert {o.status for o in second} == {"cached"}
    for o in second:
        after = o.path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (
            before[o.name].st_ino,
            before[o.name].st_mtime_ns,
        )


def test_changed_file_is_rebuilt_identically(
    tmp_path: Path, file_sha256: Callable[[Path], str]
) -> None:
    path = generate(tmp_path, ["img_300x300_png"])["img_300x300_png"]
    original = file_sha256(path)
    with path.open("ab") as fh:
        fh.write(b"junk")
    (outcome,) = generate_report(tmp_path, ["img_300x300_png"])
    assert outcome.status == "written"
    assert file_sha256(path) == original


def test_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(out: Path, work: Path) -> None:
        out.write_bytes(b"\x89PNG half")
        raise FixtureError("boom")

    broken = dataclasses.replace(FIXTURES["img_300x300_png"], build=half_write)
    monkeypatch.setitem(FIXTURES, "img_300x300_png", broken)
    with pytest.raises(FixtureError, match="boom"):
        generate(tmp_path, ["img_300x300_png"])
    assert [p.name for p in tmp_path.iterdir()] == []


def test_unknown_name_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="no_such_fixture"):
        generate(tmp_path, ["no_such_fixture"])


def test_lazy_mapping_generates_on_first_use(tmp_path: Path) -> None:
    lazy: Mapping[str, Path] = LazyFixtures(tmp_path)
    assert "img_300x300_png" in lazy
    assert len(lazy) == len(FIXTURES)
    assert not (tmp_path / "300x300.png").exists()
    assert lazy["img_300x300_png"] == tmp_path / "300x300.png"
    assert (tmp_path / "300x300.png").exists()
    with pytest.raises(KeyError):
        lazy["no_such_fixture"]


def test_cli_reports_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "other_notes_txt"]) == 0
    assert "written     other_notes_txt" in capsys.readouterr().out
    assert main([str(tmp_path), "other_notes_txt"]) == 0
    assert "cached      other_notes_txt" in capsys.readouterr().out


def test_video_command_is_a_plain_argument_list(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    assert video_command(VideoSpec(duration_ms=3000), out) == [
        *("-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=3.000"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-b:v", "500k", "-pix_fmt", "yuv420p"),
        *("-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", str(out.resolve())),
    ]
    with pytest.raises(ValueError, match="whole number of frames"):
        video_command(VideoSpec(duration_ms=2905), out)
