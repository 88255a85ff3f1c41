"""Every finding code of a file, triggered and on the passing side of its boundary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image

from mediaprep import ImageInfo, VideoInfo, inspect_file
from mediaprep.inspectors import inspect_image

IMAGE_CASES = [
    ("img_300x300_png", []),
    ("img_299x300_png", ["dimension_too_small"]),
    ("img_300x299_png", ["dimension_too_small"]),
    ("img_750x300_png", []),
    ("img_300x750_png", []),
    ("img_751x300_png", ["aspect_ratio_out_of_range"]),
    ("img_300x751_png", ["aspect_ratio_out_of_range"]),
    ("img_200x100_png", ["dimension_too_small"]),
    ("img_100x400_png", ["dimension_too_small", "aspect_ratio_out_of_range"]),
    ("img_png_10mib_exact", []),
    ("img_png_10mib_plus1", ["file_too_large"]),
    ("img_jpg_over_10mib", ["file_too_large"]),
    ("img_1024x768_circle_jpg", []),
    ("img_png_named_jpg", ["extension_mismatch"]),
    ("img_webp", ["format_unsupported"]),
    ("img_bmp", ["format_unsupported"]),
    ("img_tiff", ["format_unsupported"]),
    ("img_gif_animated", ["format_unsupported", "animated"]),
    ("img_apng", ["animated"]),
    ("img_cmyk_jpg", []),
    ("img_exif_rot6_jpg", []),
    ("img_exif_rot6_png", []),
    ("img_rgba_transparent_png", []),
    ("img_palette_png", []),
    ("img_gray16_png", []),
    ("img_truncated_png", ["unreadable"]),
    ("img_truncated_jpg", ["unreadable"]),
    ("img_empty_png", ["unreadable"]),
    ("img_random_bytes_jpg", ["unreadable"]),
    ("img_bomb_png", ["decompression_bomb"]),
    ("img_dash_name_png", []),
    ("img_unicode_name_jpg", []),
]

VIDEO_CASES = [
    ("vid_1080p_2_9s_mp4", ["duration_too_short"]),
    ("vid_1080p_3_0s_mp4", []),
    ("vid_1080p_8_0s_mp4", []),
    ("vid_1080p_8_1s_mp4", ["duration_too_long"]),
    ("vid_1080p_5s_aac_mp4", ["audio_present"]),
    ("vid_1080x1920_5s_mp4", []),
    ("vid_1080p_4s_mov", []),
    ("vid_1080p_rot90_mp4", []),
    ("vid_720p_4s_mp4", ["resolution_not_1080p"]),
    ("vid_1440x1080_sar43_mp4", []),
    ("vid_1080x1080_4s_mp4", ["resolution_not_1080p", "aspect_ratio_not_16_9_or_9_16"]),
    ("vid_1080p_4s_mkv", ["container_unsupported"]),
    ("vid_webm_vp9_360p", ["container_unsupported", "resolution_not_1080p"]),
    ("vid_audio_only_mp4", ["no_video_stream"]),
    ("vid_720p_12s_aac_mp4", ["duration_too_long", "resolution_not_1080p", "audio_present"]),
    ("vid_200mib_exact_mp4", []),
    ("vid_200mib_plus1_mp4", ["file_too_large"]),
]


@pytest.mark.parametrize(("name", "codes"), IMAGE_CASES)
def test_image_findings(media: Mapping[str, Path], name: str, codes: list[str]) -> None:
    report = inspect_file(media[name])
    assert report.codes() == codes
    assert report.ok == all(f.severity != "error" for f in report.findings)
    for finding in report.findings:
        assert finding.message, finding


@pytest.mark.parametrize(("name", "codes"), VIDEO_CASES)
def test_video_findings(media: Mapping[str, Path], name: str, codes: list[str]) -> None:
    report = inspect_file(media[name])
    assert report.kind == "video"
    assert report.codes() == codes


def test_truncated_mp4_is_unreadable_with_ffprobes_reason(media: Mapping[str, Path]) -> None:
    report = inspect_file(media["vid_truncated_mp4"])
    assert report.codes() == ["unreadable"]
    assert "moov" in report.findings[0].message or "Invalid" in report.findings[0].message


def test_messages_state_the_value_and_the_rule(media: Mapping[str, Path]) -> None:
    small = inspect_file(media["img_299x300_png"]).findings[0]
    assert small.message == "image is 299 × 300 px; each side must be at least 300 px"
    assert small.fixable
    wide = inspect_file(media["img_751x300_png"]).findings[0]
    assert "751 × 300 px, ratio 2.503:1" in wide.message
    assert "1:2.5" in wide.message
    assert "2.5:1" in wide.message
    big = inspect_file(media["img_png_10mib_plus1"]).findings[0]
    assert "10485761 bytes" in big.message
    assert "10485760 bytes" in big.message
    short = inspect_file(media["vid_1080p_2_9s_mp4"]).findings[0]
    assert "2.900 s" in short.message
    assert "3 s" in short.message
    assert not short.fixable


def test_image_info_reads_exif_orientation_without_decoding(media: Mapping[str, Path]) -> None:
    for name in ("img_exif_rot6_jpg", "img_exif_rot6_png"):
        report = inspect_image(media[name], decode=False)
        info = report.info
        assert isinstance(info, ImageInfo)
        assert (info.width, info.height) == (400, 300)
        assert (info.display_width, info.display_height) == (300, 400)
        assert info.orientation == 6
        assert not info.decoded


def test_image_info_facts(media: Mapping[str, Path]) -> None:
    rgba = inspect_file(media["img_rgba_transparent_png"]).info
    assert isinstance(rgba, ImageInfo)
    assert rgba.has_alpha
    assert rgba.mode == "RGBA"
    cmyk = inspect_file(media["img_cmyk_jpg"]).info
    assert isinstance(cmyk, ImageInfo)
    assert cmyk.mode == "CMYK"
    gif = inspect_file(media["img_gif_animated"]).info
    assert isinstance(gif, ImageInfo)
    assert gif.animated
    assert gif.frames == 3
    plain = inspect_file(media["img_300x300_png"]).info
    assert isinstance(plain, ImageInfo)
    assert not plain.has_alpha
    assert plain.size_bytes == media["img_300x300_png"].stat().st_size


def test_fast_mode_reads_headers_only(media: Mapping[str, Path]) -> None:
    # The truncated JPEG's header is whole: only decoding finds the damage.
    assert inspect_file(media["img_truncated_jpg"], fast=True).codes() == []
    assert inspect_file(media["img_truncated_jpg"]).codes() == ["unreadable"]


def test_video_info_facts(media: Mapping[str, Path]) -> None:
    rotated = inspect_file(media["vid_1080p_rot90_mp4"]).info
    assert isinstance(rotated, VideoInfo)
    assert (rotated.width, rotated.height) == (1920, 1080)
    assert (rotated.display_width, rotated.display_height) == (1080, 1920)
    assert rotated.rotation in (90, 270)
    anamorphic = inspect_file(media["vid_1440x1080_sar43_mp4"]).info
    assert isinstance(anamorphic, VideoInfo)
    assert anamorphic.sar == "4:3"
    assert (anamorphic.display_width, anamorphic.display_height) == (1920, 1080)
    with_audio = inspect_file(media["vid_1080p_5s_aac_mp4"]).info
    assert isinstance(with_audio, VideoInfo)
    assert with_audio.codec == "h264"
    assert with_audio.audio[0].codec == "aac"
    assert with_audio.audio[0].channels >= 1
    assert with_audio.duration is not None
    assert with_audio.fps is not None
    assert with_audio.pix_fmt == "yuv420p"


def test_missing_file_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    report = inspect_file(tmp_path / "nope.jpg")
    assert report.codes() == ["unreadable"]
    assert "not found" in report.findings[0].message


def test_ffprobe_missing_names_the_override(
    media: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mediaprep import ToolNotFoundError

    monkeypatch.setenv("MEDIAPREP_FFPROBE", "/nonexistent/ffprobe")
    with pytest.raises(ToolNotFoundError) as caught:
        inspect_file(media["vid_1080p_4s_mov"])
    assert "MEDIAPREP_FFPROBE" in str(caught.value)
    assert "apt-get install ffmpeg" in str(caught.value)


def test_video_names_are_never_options(
    tmp_path: Path, media: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("-y.mp4", "-i clip é.mov", "a:b.mp4"):
        (tmp_path / name).write_bytes(media["vid_1080p_4s_mov"].read_bytes())
    monkeypatch.chdir(tmp_path)
    for name in ("-y.mp4", "-i clip é.mov", "a:b.mp4"):
        report = inspect_file(name)
        assert report.kind == "video", name
        assert report.ok, report.findings
        assert report.path == name


def test_large_but_safe_image_is_not_a_bomb(tmp_path: Path) -> None:
    # 9000 × 9000 = 81 Mpx, under Pillow's 89.5 Mpx limit: decoded and judged like any other.
    path = tmp_path / "big.png"
    Image.new("1", (9000, 9000)).save(path)
    report = inspect_file(path)
    assert report.codes() == []
    assert isinstance(report.info, ImageInfo)
    assert report.info.decoded
