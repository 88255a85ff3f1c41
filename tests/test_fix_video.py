"""Video repair: the pure planning and argument builders, then real ffmpeg runs through fix_file."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw

from mediaprep import spec
from mediaprep.errors import FixError
from mediaprep.ffmpeg import Progress, file_arg, probe, run_ffmpeg_to_end
from mediaprep.findings import FileReport
from mediaprep.fixers import video
from mediaprep.fixers.plan import DEFAULT_PRESET, FixOptions, FixPlan, FixResult, Step, fix_file
from mediaprep.fixers.video import (
    VideoJob,
    build_remux_args,
    build_transcode_args,
    cover,
    fit_inside,
    next_crf,
    plan_video,
    target_fps,
    write_video,
)
from mediaprep.info import AudioStream, VideoInfo
from mediaprep.inspectors.file import inspect_local
from mediaprep.inspectors.video import video_findings

FAST = FixOptions(preset="ultrafast")
AAC = (AudioStream("aac", 2, 48000),)


def make_info(**changes: Any) -> VideoInfo:
    """A compliant 1920 × 1080 H.264 MP4 of 5 s; ``changes`` override fields."""
    base = VideoInfo(
        container="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=5_000_000,
        duration=5.0,
        codec="h264",
        width=1920,
        height=1080,
        display_width=1920,
        display_height=1080,
        rotation=0,
        sar="1:1",
        fps=30.0,
        variable_frame_rate=False,
        pix_fmt="yuv420p",
        bit_depth=8,
        video_streams=1,
        audio=AAC,
    )
    return dataclasses.replace(base, **changes)


def make_report(info: VideoInfo, name: str = "clip.mp4") -> FileReport:
    """The report ``check`` would make for ``info`` in a file called ``name``."""
    findings = tuple(video_findings(info, name))
    return FileReport(name, "video", findings, info=info, local_path=name)


# --- Pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((1280, 720), (1920, 1080), (1920, 1080)),
        ((640, 480), (1920, 1080), (1440, 1080)),
        ((1920, 1080), (1080, 1920), (1080, 608)),
        ((1000, 1000), (1920, 1080), (1080, 1080)),
        ((3, 1000), (1920, 1080), (4, 1080)),
        ((1, 1), (1920, 1080), (1080, 1080)),
    ],
)
def test_fit_inside(size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_inside(size, box) == expected


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((1280, 720), (1920, 1080), (1920, 1080)),
        ((640, 480), (1920, 1080), (1920, 1440)),
        ((1920, 1080), (1080, 1920), (3414, 1920)),
        ((1000, 1000), (1920, 1080), (1920, 1920)),
    ],
)
def test_cover(size: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    assert cover(size, box) == expected


@pytest.mark.parametrize(
    ("fps", "variable", "expected"),
    [
        (None, False, "30"),
        (15.0, False, "30"),
        (23.9, False, "30"),
        (23.976, False, None),
        (24.0, False, None),
        (60.0, False, None),
        (60.1, False, "60"),
        (120.0, False, "60"),
        (29.5, True, "30000/1001"),
        (24.2, True, "24"),
    ],
)
def test_target_fps(fps: float | None, variable: bool, expected: str | None) -> None:
    assert target_fps(make_info(fps=fps, variable_frame_rate=variable)) == expected


def test_next_crf_rises_by_four_then_stops_at_51() -> None:
    assert [next_crf(18), next_crf(46), next_crf(50), next_crf(51)] == [22, 50, 51, None]


JOB = VideoJob(
    "transcode",
    "mp4",
    "aac",
    7.95,
    frame=(1920, 1080),
    scale=(1440, 1080),
    fit="pad",
    pad_color="0x000000",
    start=2.5,
    duration=7.95,
    crf=18,
    preset="medium",
)


def test_build_transcode_args_exact() -> None:
    arguments = build_transcode_args(Path("in.mov"), Path("out.mp4"), JOB, 22)
    assert arguments == [
        "-ss",
        "2.500",
        "-i",
        file_arg("in.mov"),
        "-filter_complex",
        "[0:V:0]scale=1440:1080:flags=lanczos[s0];[s0]setsar=1[s1];"
        "[s1]pad=1920:1080:240:0:color=0x000000[s2];[s2]format=yuv420p[s3]",
        "-map",
        "[s3]",
        "-map",
        "0:a:0?",
        "-f",
        "mp4",
        "-ar",
        "48000",
        "-b:a",
        "192k",
        "-c:a",
        "aac",
        "-c:v",
        "libx264",
        "-crf",
        "22",
        "-map_chapters",
        "-1",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        "-preset",
        "medium",
        "-profile:v",
        "high",
        "-t",
        "7.950",
        file_arg("out.mp4"),
        "-y",
    ]


def test_build_transcode_args_loop_mute_keep_metadata() -> None:
    job = dataclasses.replace(
        JOB, audio="none", start=0.0, loops=2, scale=None, keep_metadata=True, duration=3.05
    )
    assert build_transcode_args(Path("a.mp4"), Path("b.mp4"), job, 18) == [
        "-stream_loop",
        "2",
        "-i",
        file_arg("a.mp4"),
        "-filter_complex",
        "[0:V:0]format=yuv420p[s0]",
        "-map",
        "[s0]",
        "-f",
        "mp4",
        "-an",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        "-movflags",
        "+faststart",
        "-preset",
        "medium",
        "-profile:v",
        "high",
        "-t",
        "3.050",
        file_arg("b.mp4"),
        "-y",
    ]


def test_build_transcode_args_freeze_pads_audio() -> None:
    job = dataclasses.replace(JOB, start=0.0, scale=None, freeze_seconds=1.5, duration=3.05)
    arguments = build_transcode_args(Path("a.mp4"), Path("b.mp4"), job, 18)
    assert arguments[arguments.index("-filter_complex") + 1] == (
        "[0:V:0]tpad=stop_duration=1.500:stop_mode=clone[s0];[s0]format=yuv420p[s1]"
    )
    assert arguments[arguments.index("-af") + 1] == "apad"


@pytest.mark.parametrize(
    "build",
    [
        lambda source, destination: build_transcode_args(source, destination, JOB, 18),
        lambda source, destination: build_remux_args(
            source, destination, VideoJob("remux", "mp4", "copy", 5.0)
        ),
    ],
    ids=["transcode", "remux"],
)
def test_a_name_starting_with_a_dash_stays_a_file_argument(
    build: Callable[[Path, Path], list[str]],
) -> None:
    arguments = build(Path("-x.mp4"), Path("-y.mp4"))
    source = arguments[arguments.index("-i") + 1]
    assert source == file_arg("-x.mp4")
    assert source.startswith("file:/")
    assert source.endswith("/-x.mp4")
    assert arguments[-2:] == [file_arg("-y.mp4"), "-y"]
    assert "-x.mp4" not in arguments
    assert "-y.mp4" not in arguments


@pytest.mark.parametrize(
    ("changes", "graph"),
    [
        (
            {"fit": "crop", "scale": (1920, 1440), "fps": "30"},
            "[0:V:0]fps=30[s0];[s0]scale=1920:1440:flags=lanczos[s1];[s1]setsar=1[s2];"
            "[s2]crop=1920:1080:0:180[s3];[s3]format=yuv420p[s4]",
        ),
        (
            {"scale": (1920, 1080)},
            "[0:V:0]scale=1920:1080:flags=lanczos[s0];[s0]setsar=1[s1];[s1]format=yuv420p[s2]",
        ),
        (
            {"fit": "blur"},
            "[0:V:0]split=2[s0][s1];"
            "[s0]scale=480:360[s2];[s2]crop=480:270[s3];[s3]boxblur=10:2[s4];"
            "[s4]scale=1920:1080[s5];[s5]setsar=1[s6];"
            "[s1]scale=1440:1080:flags=lanczos[s7];[s7]setsar=1[s8];"
            "[s6][s8]overlay=eof_action=repeat:x=240:y=0[s9];[s9]format=yuv420p[s10]",
        ),
    ],
)
def test_video_graph(changes: dict[str, Any], graph: str) -> None:
    arguments = build_transcode_args(
        Path("in.mp4"), Path("out.mp4"), dataclasses.replace(JOB, **changes), 18
    )
    assert arguments[arguments.index("-filter_complex") + 1] == graph


@pytest.mark.parametrize(
    ("audio", "maps", "options"),
    [
        ("copy", ["-map", "0:a:0?"], ["-c:a", "copy"]),
        ("aac", ["-map", "0:a:0?"], ["-b:a", "192k", "-c:a", "aac"]),
        ("none", [], ["-an"]),
    ],
)
def test_build_remux_args_exact(audio: str, maps: list[str], options: list[str]) -> None:
    job = VideoJob("remux", "mp4", audio, 5.0)  # type: ignore[arg-type]
    assert build_remux_args(Path("in.mkv"), Path("out.mp4"), job) == [
        "-i",
        file_arg("in.mkv"),
        "-map",
        "0:V:0",
        *maps,
        "-f",
        "mp4",
        *options,
        "-c:v",
        "copy",
        "-map_chapters",
        "-1",
        "-map_metadata",
        "-1",
        "-movflags",
        "+faststart",
        file_arg("out.mp4"),
        "-y",
    ]


# --- Planning ---------------------------------------------------------------------------------


def test_plan_compliant_file_has_no_steps() -> None:
    plan = plan_video(make_report(make_info()), FixOptions())
    assert plan.copy_only
    assert plan.suffix == ".mp4"


def test_plan_extension_mismatch_alone_renames() -> None:
    plan = plan_video(make_report(make_info(), "clip.bin"), FixOptions())
    assert [step.action for step in plan.steps] == ["rename"]
    assert plan.suffix == ".mp4"
    assert plan.job.mode == "rename"


@pytest.mark.parametrize(("codec", "mode"), [("aac", "copy"), ("opus", "aac")])
def test_plan_container_only_remuxes(codec: str, mode: str) -> None:
    info = make_info(container="matroska,webm", audio=(AudioStream(codec, 2, 48000),))
    plan = plan_video(make_report(info, "clip.mkv"), FixOptions())
    job = plan.job
    assert (job.mode, job.audio, plan.suffix) == ("remux", mode, ".mp4")
    assert plan.steps[0].action == "remux"


def test_plan_mute_on_compliant_mov_remuxes_into_mov() -> None:
    plan = plan_video(make_report(make_info(), "clip.mov"), FixOptions(mute=True))
    assert [step.action for step in plan.steps] == ["mute"]
    assert (plan.job.mode, plan.job.audio, plan.suffix) == ("remux", "none", ".mov")


def test_plan_mute_on_a_passing_hevc_copies_the_video() -> None:
    plan = plan_video(make_report(make_info(codec="hevc")), FixOptions(mute=True))
    assert (plan.job.mode, plan.job.audio) == ("remux", "none")


def test_write_video_refuses_a_plan_without_job(tmp_path: Path) -> None:
    plan = FixPlan(make_report(make_info()), (Step("scale", "?"),))
    with pytest.raises(FixError, match="no video job"):
        list(write_video(tmp_path / "a.mp4", plan, tmp_path / "b.mp4", FixOptions(), []))


def test_plan_transcode_steps_for_rotated_anamorphic_slow_10_bit() -> None:
    info = make_info(
        width=720,
        height=540,
        display_width=540,
        display_height=960,
        rotation=90,
        sar="4:3",
        fps=15.0,
        pix_fmt="yuv420p10le",
        bit_depth=10,
    )
    plan = plan_video(make_report(info), FixOptions(orientation="auto"))
    assert [str(step) for step in plan.steps] == [
        "rotate: rotation 90° turned into the pixels",
        "scale: 540 × 960, SAR 4:3 -> 1080 × 1920 (lanczos)",
        "fps: 15.0 fps -> constant 30 fps",
        "8-bit: 10-bit yuv420p10le -> 8-bit yuv420p",
        f"encode: H.264 High, yuv420p, CRF 18, preset {DEFAULT_PRESET}, MP4 (faststart)",
        "audio: aac -> AAC 192kb/s",
    ]
    assert plan.job.frame == spec.VIDEO_PORTRAIT
    assert "tone mapping" in plan.warnings[0]


def test_plan_forced_orientation_reframes_a_compliant_file() -> None:
    plan = plan_video(make_report(make_info()), FixOptions(orientation="portrait"))
    job = plan.job
    assert (job.frame, job.scale) == (spec.VIDEO_PORTRAIT, (1080, 608))
    assert "pad" in [step.action for step in plan.steps]


def test_plan_trim_keeps_start_and_stays_inside_the_limit() -> None:
    plan = plan_video(make_report(make_info(duration=12.0)), FixOptions(start=3))
    job = plan.job
    assert (job.start, job.duration) == (3.0, video.TRIM_SECONDS)
    assert video.TRIM_SECONDS < spec.VIDEO_MAX_SECONDS
    assert str(plan.steps[0]) == "trim: 12.000 s -> 7.950 s (keeps 3.000 s to 10.950 s)"


@pytest.mark.parametrize(
    ("duration", "options", "words"),
    [
        (2.0, FixOptions(), "--extend loop|freeze"),
        (5.0, FixOptions(start=3), "an earlier --start"),
        (5.0, FixOptions(start=5), "at or past the end"),
        (5.0, FixOptions(start=9, extend="loop"), "at or past the end"),
    ],
)
def test_plan_unfixable_durations_say_what_to_do(
    duration: float, options: FixOptions, words: str
) -> None:
    plan = plan_video(make_report(make_info(duration=duration)), options)
    assert not plan.can_fix
    assert plan.unfixable[0].code == "duration_too_short"
    assert words in plan.unfixable[0].message


def test_plan_no_video_stream_is_unfixable() -> None:
    info = make_info(video_streams=0, width=0, height=0, display_width=0, display_height=0)
    plan = plan_video(make_report(info), FixOptions())
    assert [f.code for f in plan.unfixable] == ["no_video_stream"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"preset": "warp"}, "x264 preset"),
        ({"video_pad_color": "nope"}, "colour"),
        ({"fit": "stretch"}, "fit"),
        ({"orientation": "diagonal"}, "orientation"),
        ({"extend": "bounce"}, "extend"),
    ],
)
def test_bad_options_are_refused_when_made(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FixOptions(**options)


def test_plan_extend_loop_counts_plays() -> None:
    plan = plan_video(make_report(make_info(duration=1.2)), FixOptions(extend="loop"))
    job = plan.job
    assert (job.loops, job.duration) == (2, video.EXTEND_SECONDS)
    assert video.EXTEND_SECONDS > spec.VIDEO_MIN_SECONDS


@pytest.mark.parametrize(
    ("name", "suffix", "container"),
    [("clip.mp4", ".mp4", "mp4"), ("clip.mov", ".mov", "mov"), ("clip.bin", ".mp4", "mp4")],
)
def test_plan_a_passing_file_with_a_location_is_remuxed_without_tags(
    name: str, suffix: str, container: str
) -> None:
    plan = plan_video(make_report(make_info(metadata=("location",)), name), FixOptions())
    assert [str(step) for step in plan.steps] == [
        "strip: remove the location (every tag goes); streams copied, no re-encode"
    ]
    job = plan.job
    assert (job.mode, job.audio, job.container, job.keep_metadata) == (
        "remux",
        "copy",
        container,
        False,
    )
    assert plan.suffix == suffix
    assert "-map_metadata" in build_remux_args(Path("in"), Path("out"), job)


def test_plan_keep_metadata_copies_a_file_with_a_location() -> None:
    report = make_report(make_info(metadata=("location",)))
    assert plan_video(report, FixOptions(keep_metadata=True)).copy_only


def test_plan_a_silent_file_with_a_location_has_no_audio_to_copy() -> None:
    plan = plan_video(make_report(make_info(metadata=("location",), audio=())), FixOptions())
    assert plan.job.audio == "none"


# --- Real ffmpeg ------------------------------------------------------------------------------

GREY = (128, 128, 128)
SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def ffmpeg(*arguments: str) -> None:
    run_ffmpeg_to_end(list(arguments))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def still_clip(
    path: Path, picture: Image.Image, seconds: float = 3.5, sar: str = "1", audio: bool = True
) -> Path:
    """Loop a picture into an H.264 clip (with a 440 Hz tone unless ``audio`` is False)."""
    png = path.with_suffix(".png")
    picture.save(png)
    sound_in = SINE if audio else []
    sound_out = ["-c:a", "aac", "-shortest"] if audio else []
    ffmpeg(
        *["-loop", "1", "-framerate", "30", "-t", f"{seconds}", "-i", file_arg(png), *sound_in],
        *["-vf", f"setsar={sar}", *X264, *sound_out, "-t", f"{seconds}", "-y", file_arg(path)],
    )
    return path


def circle_picture(size: tuple[int, int], ellipse: tuple[int, int]) -> Image.Image:
    """Grey picture with a centred red ellipse of ``ellipse`` width × height."""
    picture = Image.new("RGB", size, GREY)
    width, height = size
    left, top = (width - ellipse[0]) // 2, (height - ellipse[1]) // 2
    ImageDraw.Draw(picture).ellipse(
        (left, top, left + ellipse[0] - 1, top + ellipse[1] - 1), fill=(255, 0, 0)
    )
    return picture


def frame_at(path: Path, seconds: float) -> Image.Image:
    png = path.with_name(f"{path.stem}-{seconds:g}.png")
    ffmpeg("-ss", f"{seconds}", "-i", file_arg(path), "-frames:v", "1", "-y", file_arg(png))
    with Image.open(png) as image:
        return image.convert("RGB")


def red_box(picture: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the clearly red pixels."""
    red, green, blue = picture.split()
    mask = ImageChops.multiply(
        red.point(lambda v: 255 if v > 180 else 0),
        ImageChops.multiply(
            green.point(lambda v: 255 if v < 80 else 0), blue.point(lambda v: 255 if v < 80 else 0)
        ),
    )
    box = mask.getbbox()
    assert box is not None, "no red in the frame"
    return box


def stream(path: Path, kind: str) -> list[dict[str, Any]]:
    return [s for s in probe(path)["streams"] if s.get("codec_type") == kind]


def fixed(
    source: Path,
    out_dir: Path,
    options: FixOptions = FAST,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[FixResult, Path]:
    """Run fix_file, check the original is untouched and the output passes every check."""
    before = sha256(source)
    result = fix_file(source, out_dir, options, on_progress=on_progress)
    assert sha256(source) == before
    assert result.ok, (result.error, result.after)
    assert result.output is not None
    output = Path(result.output)
    assert inspect_local(output).ok
    return result, output


def assert_compliant_h264(output: Path, size: tuple[int, int]) -> dict[str, Any]:
    (picture,) = stream(output, "video")
    assert (picture["codec_name"], picture["pix_fmt"]) == ("h264", "yuv420p")
    assert (picture["width"], picture["height"]) == size
    assert picture.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1")
    assert not picture.get("side_data_list")
    assert "rotate" not in (picture.get("tags") or {})
    return picture


def duration_of(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


@pytest.fixture(scope="module")
def circle_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("circle")
    return still_clip(folder / "circle.mp4", circle_picture((320, 240), (120, 120)))


@pytest.mark.parametrize(
    ("orientation", "fit", "picture", "diameter"),
    [
        # 320 × 240 with a 120 px circle: pad scales by 1080 / 240, crop by 1920 / 320.
        ("landscape", "pad", (1440, 1080), 540),
        ("landscape", "crop", (1920, 1080), 720),
        ("landscape", "blur", (1440, 1080), 540),
        # Portrait 1080 × 1920: pad scales by 1080 / 320, crop by 1920 / 240.
        ("portrait", "pad", (1080, 810), 405),
        ("portrait", "crop", (1080, 1920), 960),
        ("portrait", "blur", (1080, 810), 405),
    ],
)
def test_fit_keeps_the_circle_round_and_centred(
    circle_clip: Path,
    tmp_path: Path,
    orientation: str,
    fit: str,
    picture: tuple[int, int],
    diameter: int,
) -> None:
    options = dataclasses.replace(FAST, fit=fit, orientation=orientation)  # type: ignore[arg-type]
    result, output = fixed(circle_clip, tmp_path, options)
    assert output.suffix == ".mp4"
    assert fit in [step.action for step in result.steps]
    frame_size = spec.VIDEO_PORTRAIT if orientation == "portrait" else spec.VIDEO_LANDSCAPE
    assert_compliant_h264(output, frame_size)
    (sound,) = stream(output, "audio")
    assert sound["codec_name"] == "aac"
    frame = frame_at(output, 1)
    # Measure inside the picture (less the chroma bleeding over its edges): a blurred fill
    # holds a bigger, blurred circle of its own.
    x, y = (frame_size[0] - picture[0]) // 2 + 4, (frame_size[1] - picture[1]) // 2 + 4
    inside = frame.crop((x, y, x + picture[0] - 8, y + picture[1] - 8))
    left, top, right, bottom = red_box(inside)
    left, top, right, bottom = left + x, top + y, right + x, bottom + y
    assert right - left == pytest.approx(diameter, rel=0.02)
    assert bottom - top == pytest.approx(diameter, rel=0.02)
    # The circle sits in the middle of the source, so a centred pad or crop keeps it there.
    assert abs((left + right) / 2 - frame_size[0] / 2) <= 2
    assert abs((top + bottom) / 2 - frame_size[1] / 2) <= 2
    bar = {"pad": (0, 0, 0), "blur": GREY}.get(fit)
    if bar is not None:  # pad bars are black; blur bars are the blurred grey picture
        in_bar = (540, 20) if orientation == "portrait" else (20, 540)
        assert frame.getpixel(in_bar) == pytest.approx(bar, abs=6)


def test_an_upper_case_blur_pad_colour_fills_the_bars_with_the_picture() -> None:
    info = make_info(width=640, height=480, display_width=640, display_height=480)
    plan = plan_video(make_report(info), FixOptions(video_pad_color="BLUR"))
    assert isinstance(plan.job, VideoJob)
    assert plan.job.fit == "blur"
    assert "blur" in [step.action for step in plan.steps]


def test_anamorphic_source_comes_out_round(tmp_path: Path) -> None:
    # 240 × 240 stored at SAR 4:3 shows 320 × 240: a 90 × 120 ellipse is shown as a circle.
    source = still_clip(tmp_path / "sar.mp4", circle_picture((240, 240), (90, 120)), sar="4/3")
    assert inspect_local(source).info.sar == "4:3"
    out = tmp_path / "out"
    out.mkdir()
    _, output = fixed(source, out)
    assert_compliant_h264(output, spec.VIDEO_LANDSCAPE)
    left, top, right, bottom = red_box(frame_at(output, 1))
    assert right - left == pytest.approx(bottom - top, rel=0.02)
    assert bottom - top == pytest.approx(540, rel=0.02)


def test_rotated_phone_clip_comes_out_upright_with_default_preset(tmp_path: Path) -> None:
    picture = Image.new("RGB", (320, 180), GREY)
    ImageDraw.Draw(picture).rectangle((0, 0, 39, 39), fill=(255, 0, 0))
    stored = still_clip(tmp_path / "stored.mp4", picture, seconds=3.2, audio=False)
    phone = tmp_path / "phone.mp4"
    ffmpeg("-i", file_arg(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90", file_arg(phone))
    rotation = inspect_local(phone).info.rotation
    assert rotation in (90, 270)
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(phone, out, FixOptions())
    assert "rotate" in [step.action for step in result.steps]
    picture_stream = assert_compliant_h264(output, spec.VIDEO_PORTRAIT)
    assert picture_stream["profile"] == "High"
    left, top, right, bottom = red_box(frame_at(output, 1))
    # Turning clockwise by 90° takes the stored top-left corner to the top-right; by 270° to
    # the bottom-left. The mark is 40 px of 180: 240 px of 1080.
    corner = (1080, 0) if rotation == 90 else (0, 1920)
    assert right - left == pytest.approx(240, abs=6)
    assert bottom - top == pytest.approx(240, abs=6)
    assert min(abs(left - corner[0]), abs(right - corner[0])) <= 4
    assert min(abs(top - corner[1]), abs(bottom - corner[1])) <= 4


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s: red, green from 4 s, blue from 8 s; with a tone."""
    path = tmp_path_factory.mktemp("colours") / "colours.mp4"
    colours = (
        "color=c=red:s=160x90:r=30:d=12,"
        "drawbox=c=green:t=fill:enable='gte(t,4)',drawbox=c=blue:t=fill:enable='gte(t,8)'"
    )
    ffmpeg("-f", "lavfi", "-i", colours, *SINE, *X264, "-c:a", "aac", "-t", "12", file_arg(path))
    return path


def colour_name(pixel: tuple[int, int, int]) -> str:
    return ("red", "green", "blue")[max(range(3), key=lambda i: pixel[i])]


def test_trim_honours_start_frame_accurately(colour_clip: Path, tmp_path: Path) -> None:
    result, output = fixed(colour_clip, tmp_path, dataclasses.replace(FAST, start=3.0))
    assert result.steps[0].action == "trim"
    assert spec.VIDEO_MAX_SECONDS - 0.1 < duration_of(output) <= spec.VIDEO_MAX_SECONDS
    # Source 4 s (green) is output 1 s, source 8 s (blue) output 5 s: check either side.
    seen = [colour_name(frame_at(output, t).getpixel((960, 540))) for t in (0, 0.9, 1.1, 4.9, 5.1)]
    assert seen == ["red", "red", "green", "green", "blue"]
    assert len(stream(output, "audio")) == 1


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("short") / "short.mp4"
    source = "testsrc2=s=160x90:r=30:d=1.5"
    ffmpeg("-f", "lavfi", "-i", source, *SINE, *X264, "-c:a", "aac", "-t", "1.5", file_arg(path))
    return path


@pytest.mark.parametrize("extend", ["loop", "freeze"])
def test_extend_reaches_three_seconds(short_clip: Path, tmp_path: Path, extend: str) -> None:
    options = dataclasses.replace(FAST, extend=extend)  # type: ignore[arg-type]
    result, output = fixed(short_clip, tmp_path, options)
    assert "extend" in [step.action for step in result.steps]
    assert spec.VIDEO_MIN_SECONDS <= duration_of(output) < spec.VIDEO_MIN_SECONDS + 0.2
    assert duration_of(output) >= spec.VIDEO_MIN_SECONDS


def test_short_clip_without_extend_is_not_written(short_clip: Path, tmp_path: Path) -> None:
    result = fix_file(short_clip, tmp_path, FAST)
    assert result.output is None
    assert "--extend loop|freeze" in result.after[0].message
    assert list(tmp_path.iterdir()) == []


def video_hash(path: Path) -> str:
    target = path.with_name(path.name + ".md5")
    ffmpeg("-i", file_arg(path), "-map", "0:v:0", "-c", "copy", "-f", "md5", "-y", file_arg(target))
    return target.read_text().strip()


@pytest.fixture(scope="module")
def compliant_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compliant") / "ok.mp4"
    ffmpeg(
        *["-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=3.2", *SINE, *X264],
        *["-c:a", "aac", "-t", "3.2", file_arg(path)],
    )
    return path


def test_mkv_remux_copies_the_video_bitstream(compliant_clip: Path, tmp_path: Path) -> None:
    source = tmp_path / "clip.mkv"
    ffmpeg("-i", file_arg(compliant_clip), "-c:v", "copy", "-c:a", "libopus", file_arg(source))
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(source, out)
    assert [step.action for step in result.steps] == ["remux", "audio"]
    assert output.suffix == ".mp4"
    assert video_hash(output) == video_hash(source)
    (sound,) = stream(output, "audio")
    assert sound["codec_name"] == "aac"


def test_mute_drops_audio(compliant_clip: Path, tmp_path: Path) -> None:
    result, output = fixed(compliant_clip, tmp_path, dataclasses.replace(FAST, mute=True))
    assert [step.action for step in result.steps] == ["mute"]
    assert stream(output, "audio") == []
    assert video_hash(output) == video_hash(compliant_clip)


def test_compliant_file_is_copied_byte_for_byte(compliant_clip: Path, tmp_path: Path) -> None:
    result, output = fixed(compliant_clip, tmp_path)
    assert result.steps == ()
    assert sha256(output) == sha256(compliant_clip)


def audio_hash(path: Path) -> str:
    target = path.with_name(path.name + ".audio.md5")
    ffmpeg("-i", file_arg(path), "-map", "0:a:0", "-c", "copy", "-f", "md5", "-y", file_arg(target))
    return target.read_text().strip()


def all_tags(path: Path) -> list[str]:
    data = probe(path)
    owners = [data["format"], *data["streams"]]
    return [key for owner in owners for key in owner.get("tags", {})]


def tagged(source: Path, target: Path, *tags: str) -> Path:
    """``source``'s streams copied into ``target`` with ``tags`` (``key=value``) added."""
    metadata = [argument for tag in tags for argument in ("-metadata", tag)]
    ffmpeg("-i", file_arg(source), "-c", "copy", *metadata, file_arg(target))
    return target


def test_a_passing_clip_loses_its_location_without_a_re_encode(
    compliant_clip: Path, tmp_path: Path
) -> None:
    source = tagged(compliant_clip, tmp_path / "paris.mp4", "location=+48.8584+002.2945/")
    assert inspect_local(source).info.metadata == ("location",)
    assert {"location", "location-eng"} <= set(all_tags(source))
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(source, out)
    assert [step.action for step in result.steps] == ["strip"]
    assert output.suffix == ".mp4"
    assert not [tag for tag in all_tags(output) if "location" in tag.lower()]
    assert b"+48.8584" not in output.read_bytes()
    assert inspect_local(output).info.metadata == ()
    assert video_hash(output) == video_hash(source)
    assert audio_hash(output) == audio_hash(source)


def test_a_clip_with_only_a_creation_time_is_copied_byte_for_byte(
    compliant_clip: Path, tmp_path: Path
) -> None:
    source = tagged(compliant_clip, tmp_path / "dated.mp4", "creation_time=2024-05-01T10:00:00Z")
    assert "creation_time" in all_tags(source)
    assert inspect_local(source).info.metadata == ()
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(source, out)
    assert result.steps == ()
    assert sha256(output) == sha256(source)


def test_keep_metadata_keeps_the_location(compliant_clip: Path, tmp_path: Path) -> None:
    source = tagged(compliant_clip, tmp_path / "paris.mp4", "location=+48.8584+002.2945/")
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(source, out, dataclasses.replace(FAST, keep_metadata=True))
    assert result.steps == ()
    assert sha256(output) == sha256(source)


def test_a_rotated_phone_clip_keeps_its_rotation_when_its_location_goes(
    compliant_clip: Path, tmp_path: Path
) -> None:
    rotated = tmp_path / "rotated.mp4"
    ffmpeg(
        "-i",
        file_arg(compliant_clip),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        "-metadata",
        "location=+48.8584+002.2945/",
        file_arg(rotated),
    )
    before = inspect_local(rotated)
    assert before.ok
    assert before.info.rotation in (90, 270)
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(rotated, out)
    assert [step.action for step in result.steps] == ["strip"]
    after = inspect_local(output).info
    assert (after.rotation, after.display_width, after.display_height) == (
        before.info.rotation,
        1080,
        1920,
    )
    assert after.metadata == ()


def test_ten_bit_slow_mkv_becomes_8_bit_30_fps(tmp_path: Path) -> None:
    source = tmp_path / "deep.mkv"
    ffmpeg(
        *["-f", "lavfi", "-i", "testsrc2=s=320x180:r=15:d=3.2", "-c:v", "ffv1"],
        *["-pix_fmt", "yuv420p10le", file_arg(source)],
    )
    out = tmp_path / "out"
    out.mkdir()
    result, output = fixed(source, out)
    assert {"fps", "8-bit"} <= {step.action for step in result.steps}
    picture = assert_compliant_h264(output, spec.VIDEO_LANDSCAPE)
    assert (picture["r_frame_rate"], picture["avg_frame_rate"]) == ("30/1", "30/1")
    assert stream(output, "audio") == []


class Interrupted(Exception):
    """Raised from the progress callback to stop a conversion."""


def test_interrupted_conversion_leaves_nothing(circle_clip: Path, tmp_path: Path) -> None:
    def stop(progress: Progress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        fix_file(circle_clip, tmp_path, FAST, on_progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_progress_counts_up_to_the_output_duration(circle_clip: Path, tmp_path: Path) -> None:
    seen: list[Progress] = []
    fixed(circle_clip, tmp_path, FAST, on_progress=seen.append)
    assert seen[-1].finished
    assert all(p.total_seconds == pytest.approx(3.5) for p in seen)


def test_too_large_output_is_re_encoded_with_a_higher_crf(
    circle_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _, output = fixed(circle_clip, first)
    limit = output.stat().st_size * 3 // 4
    monkeypatch.setattr(spec, "VIDEO_MAX_BYTES", limit)
    result, smaller = fixed(circle_clip, second)
    assert smaller.stat().st_size <= limit
    assert "re-encoded at CRF 22" in result.warnings[0]


@pytest.mark.parametrize(
    ("preset", "profile"), [("ultrafast", "Constrained Baseline"), ("fast", "High")]
)
def test_encode_step_names_the_profile_x264_will_write(preset: str, profile: str) -> None:
    info = make_info(width=1280, height=720, display_width=1280, display_height=720)
    plan = plan_video(make_report(info), FixOptions(preset=preset))
    (encode,) = [step for step in plan.steps if step.action == "encode"]
    assert encode.detail.startswith(f"H.264 {profile}, yuv420p")


@pytest.mark.parametrize("keep", [True, False])
def test_remux_honours_keep_metadata(keep: bool) -> None:
    info = make_info(container="matroska,webm")
    plan = plan_video(make_report(info, "clip.mkv"), FixOptions(keep_metadata=keep))
    job = plan.job
    assert job.mode == "remux"
    arguments = build_remux_args(Path("clip.mkv"), Path("clip.mp4"), job)
    assert ("-map_metadata" in arguments) is not keep
