"""Repair videos with ffmpeg: plan the smallest steps from a report, then run one ffmpeg command.

Three ways to write a video, cheapest first:

* ``rename``: the bytes already pass but the extension is wrong; copy them under ``.mp4``.
* ``remux``: compliant H.264 in the wrong container (or audio to drop, or a location tag to
  remove from a file that passes); copy the video stream into MP4 without re-encoding.
* ``transcode``: everything else; H.264 High, yuv420p, CRF, AAC, ``+faststart``.

Decisions where the contract is silent (the README's "fix decisions" repeats them):

* Bars around a padded video are ``FixOptions.video_pad_color`` (black by default), not the
  image ``pad_color`` (white by default).
* Frame rates from 24 (23.976 included) to 60 fps are kept; slower clips become 30 fps (15 fps
  doubles exactly), faster ones 60 fps (120 fps halves exactly); a variable rate becomes the
  nearest common rate.
* A file that passes ``check`` is copied as it is, whatever its codec, frame rate or bit depth:
  the contract names none of them. The encoder settings apply when a transcode is needed.
* Cuts aim :data:`DURATION_MARGIN` inside the limits (7.95 s, 3.05 s) because AAC frames and
  the last video frame make the container a few milliseconds longer than the cut.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol, cast

import ffmpeg

from .. import spec
from ..errors import FixError
from ..ffmpeg import Progress, file_arg, run_ffmpeg
from ..findings import FileReport, Finding
from ..info import VideoInfo
from .output import copy_exact
from .plan import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    Fit,
    FixOptions,
    FixPlan,
    Orientation,
    Step,
    is_blur,
    parse_colour,
)

Mode = Literal["rename", "remux", "transcode"]
AudioMode = Literal["none", "copy", "aac"]

#: Seconds kept between a cut and the contract's limit (AAC padding, the last frame's length).
DURATION_MARGIN = 0.05
TRIM_SECONDS = spec.VIDEO_MAX_SECONDS - DURATION_MARGIN
EXTEND_SECONDS = spec.VIDEO_MIN_SECONDS + DURATION_MARGIN

#: 24 fps includes film at NTSC rate, 24000/1001 (ffprobe: 23.976).
MIN_FPS = 23.97
MAX_FPS = 60.0
#: Rate given to clips slower than MIN_FPS (or of unknown rate) and to faster ones.
SLOW_CLIP_FPS = "30"
FAST_CLIP_FPS = "60"
#: Common rates a variable-rate clip is snapped to, as ffmpeg spells them.
COMMON_RATES = ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")

MAX_CRF = 51
#: How much the CRF rises on each retry when the output is over the size limit.
CRF_STEP = 4
AUDIO_BITRATE = "192k"
AUDIO_SAMPLE_RATE = "48000"
#: The blurred background is made at a quarter of the frame size: cheap, and blur hides it.
BLUR_SHRINK = 4
BLUR_RADIUS = 10
BLACK = "0x000000"


@dataclass(frozen=True)
class VideoJob:
    """Everything write_video needs, decided by :func:`plan_video` (pure data).

    ``frame`` is the output's width × height; ``scale`` the size the picture is scaled to
    before padding or cropping (None keeps the pixels). ``start`` and ``duration`` cut the
    input (``duration`` None keeps all of it); ``loops`` repeats the input and
    ``freeze_seconds`` holds the last frame. ``output_seconds`` is the expected output length.
    """

    mode: Mode
    container: Literal["mp4", "mov"]
    audio: AudioMode
    output_seconds: float
    frame: tuple[int, int] = spec.VIDEO_LANDSCAPE
    scale: tuple[int, int] | None = None
    fit: Fit = "pad"
    pad_color: str = BLACK
    fps: str | None = None
    start: float = 0.0
    duration: float | None = None
    loops: int = 0
    freeze_seconds: float = 0.0
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET
    keep_metadata: bool = False


# --- Sizes and rates (pure) -------------------------------------------------------------------


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def fit_inside(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest even size with ``size``'s shape that fits in ``box`` (one side touches)."""
    width, height = size
    box_width, box_height = box
    if width * box_height >= height * box_width:
        return box_width, min(box_height, _even(box_width * height / width))
    return min(box_width, _even(box_height * width / height)), box_height


def cover(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The smallest even size with ``size``'s shape that covers ``box`` (one side touches)."""
    width, height = size
    box_width, box_height = box
    if width * box_height >= height * box_width:
        return max(box_width, _even(box_height * width / height)), box_height
    return box_width, max(box_height, _even(box_width * height / width))


def target_frame(info: VideoInfo, orientation: Orientation) -> tuple[int, int]:
    """1920 × 1080 or 1080 × 1920: as asked, or following the displayed shape (square: wide)."""
    if orientation == "portrait" or (orientation == "auto" and info.is_portrait):
        return spec.VIDEO_PORTRAIT
    return spec.VIDEO_LANDSCAPE


def target_fps(info: VideoInfo) -> str | None:
    """The constant rate to convert to, as ffmpeg spells it, or None to keep the clip's rate."""
    if info.fps is None or info.fps < MIN_FPS:
        return SLOW_CLIP_FPS
    if info.fps > MAX_FPS:
        return FAST_CLIP_FPS
    if info.variable_frame_rate:
        fps = info.fps
        return min(COMMON_RATES, key=lambda rate: abs(float(Fraction(rate)) - fps))
    return None


def ffmpeg_color(color: str) -> str:
    """A colour name or ``#hex`` as ffmpeg's ``0xRRGGBB`` (never raw text in a filter graph).

    Raises:
        ValueError: ``color`` is not a colour.
    """
    red, green, blue = parse_colour(color)
    return f"0x{red:02X}{green:02X}{blue:02X}"


# --- Planning ---------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _container_only(info: VideoInfo, frame: tuple[int, int]) -> bool:
    """Whether the video stream itself already passes and can be copied as it is."""
    return (
        info.codec == "h264"
        and info.pix_fmt == "yuv420p"
        and info.rotation == 0
        and info.sar == "1:1"
        and (info.width, info.height) == frame
        and target_fps(info) is None
        and info.duration is not None
        and spec.VIDEO_MIN_SECONDS <= info.duration <= spec.VIDEO_MAX_SECONDS
        and info.size_bytes <= spec.VIDEO_MAX_BYTES
    )


def _unfixable(report: FileReport, info: VideoInfo, options: FixOptions) -> tuple[Finding, ...]:
    if not info.has_video:
        return (
            Finding(
                "no_video_stream",
                "error",
                "file has no video stream; nothing to repair: choose a video file",
            ),
        )
    if info.duration is None:
        unreadable = [f for f in report.findings if f.code == "unreadable"]
        return tuple(unreadable) or (
            Finding("unreadable", "error", "video duration cannot be read; re-export the video"),
        )
    if options.start >= info.duration:
        return (
            Finding(
                "duration_too_short",
                "error",
                f"--start {options.start:g} s is at or past the end of the "
                f"{info.duration:.3f} s video; choose a start below {info.duration:.3f} s",
            ),
        )
    remaining = info.duration - options.start
    if remaining < spec.VIDEO_MIN_SECONDS and options.extend is None:
        after = f" after --start {options.start:g} s" if options.start else ""
        return (
            Finding(
                "duration_too_short",
                "error",
                f"video lasts {remaining:.3f} s{after}; it must last at least "
                f"{spec.VIDEO_MIN_SECONDS:g} s: use --extend loop|freeze to lengthen it"
                + (" or an earlier --start" if options.start else ""),
            ),
        )
    return ()


def plan_video(report: FileReport, options: FixOptions) -> FixPlan:
    """The smallest set of steps that makes a video pass.

    A file that passes ``check`` gets no steps and is copied byte for byte, unless the options
    ask for a change (``mute`` with audio, a ``start``, an ``orientation`` it does not have) or
    it carries a location tag (unless ``keep_metadata``): then its streams are copied into a
    new file without tags. A wrong extension alone is fixed by copying under ``.mp4``. A
    passing video stream in the wrong container (or with audio to drop) is copied into MP4
    without re-encoding; anything else is transcoded.
    ``plan.job`` is the :class:`VideoJob` for :func:`write_video`; ``plan.warnings`` lists what
    the user should know about the result.
    """
    blur = options.fit == "blur" or is_blur(options.video_pad_color)
    pad_color = BLACK if blur else ffmpeg_color(options.video_pad_color)
    info: VideoInfo = report.info
    suffix = Path(report.path).suffix
    unfixable = _unfixable(report, info, options)
    if unfixable:
        return FixPlan(report, unfixable=unfixable, suffix=suffix)

    frame = target_frame(info, options.orientation)
    mute = options.mute and bool(info.audio)
    shown = (info.display_width, info.display_height)
    reframe = options.orientation != "auto" and shown != frame
    if options.start > 0 or reframe or not (report.ok or _container_only(info, frame)):
        return _plan_transcode(report, info, options, frame, blur, pad_color)
    if mute or not report.ok:
        return _plan_remux(report, info, mute, suffix, options.keep_metadata)
    if "location" in info.metadata and not options.keep_metadata:
        return _plan_strip(report, info, suffix)
    if any(f.code == "extension_mismatch" for f in report.findings):
        step = Step("rename", f"{suffix or 'no extension'} -> .mp4 (bytes copied unchanged)")
        job = VideoJob("rename", "mp4", "copy", info.duration or 0.0)
        return FixPlan(report, (step,), suffix=".mp4", job=job)
    return FixPlan(report, suffix=suffix)


def _plan_strip(report: FileReport, info: VideoInfo, suffix: str) -> FixPlan:
    """A passing video that says where it was filmed: its streams copied, its tags left out."""
    container: Literal["mp4", "mov"] = "mov" if suffix.lower() == ".mov" else "mp4"
    step = Step("strip", "remove the location (every tag goes); streams copied, no re-encode")
    job = VideoJob("remux", container, "copy" if info.audio else "none", info.duration or 0.0)
    return FixPlan(report, (step,), suffix=f".{container}", job=job)


def _plan_remux(
    report: FileReport, info: VideoInfo, mute: bool, suffix: str, keep_metadata: bool
) -> FixPlan:
    container: Literal["mp4", "mov"] = "mov" if suffix.lower() == ".mov" else "mp4"
    steps = []
    if any(f.code == "container_unsupported" for f in report.findings):
        steps.append(Step("remux", f"{info.container} -> MP4, video stream copied (no re-encode)"))
    audio: AudioMode = "none"
    if mute:
        steps.append(Step("mute", "audio dropped"))
    elif info.audio and info.audio[0].codec == "aac":
        audio = "copy"
    elif info.audio:
        audio = "aac"
        steps.append(Step("audio", f"{info.audio[0].codec} -> AAC {AUDIO_BITRATE}b/s"))
    job = VideoJob("remux", container, audio, info.duration or 0.0, keep_metadata=keep_metadata)
    return FixPlan(report, tuple(steps), suffix=f".{container}", job=job)


def _plan_transcode(
    report: FileReport,
    info: VideoInfo,
    options: FixOptions,
    frame: tuple[int, int],
    blur: bool,
    pad_color: str,
) -> FixPlan:
    assert info.duration is not None  # _unfixable refused it
    steps: list[Step] = []
    warnings: list[str] = []
    remaining = info.duration - options.start
    duration: float | None = None
    loops = 0
    freeze = 0.0
    output_seconds = remaining
    if remaining > TRIM_SECONDS:
        duration = output_seconds = TRIM_SECONDS
        end = options.start + TRIM_SECONDS
        steps.append(
            Step(
                "trim",
                f"{info.duration:.3f} s -> {TRIM_SECONDS:.3f} s "
                f"(keeps {options.start:.3f} s to {end:.3f} s)",
            )
        )
    elif options.start > 0:
        steps.append(Step("trim", f"starts at {options.start:.3f} s ({remaining:.3f} s kept)"))
    if remaining < spec.VIDEO_MIN_SECONDS:
        duration = output_seconds = EXTEND_SECONDS
        if options.extend == "loop":
            loops = math.ceil(EXTEND_SECONDS / remaining) - 1
            how = f"looped ({loops + 1} plays)"
        else:
            freeze = EXTEND_SECONDS - remaining + DURATION_MARGIN
            how = "last frame held"
        steps.append(Step("extend", f"{remaining:.3f} s -> {EXTEND_SECONDS:.3f} s, {how}"))
    if info.rotation:
        steps.append(Step("rotate", f"rotation {info.rotation}° turned into the pixels"))

    shown = (info.display_width, info.display_height)
    scale: tuple[int, int] | None = None
    fit: Fit = "blur" if blur else options.fit
    if shown != frame or info.sar != "1:1":
        scale = cover(shown, frame) if fit == "crop" else fit_inside(shown, frame)
        sar = f", SAR {info.sar}" if info.sar != "1:1" else ""
        steps.append(
            Step("scale", f"{shown[0]} × {shown[1]}{sar} -> {scale[0]} × {scale[1]} (lanczos)")
        )
        if scale != frame:
            steps.append(_framing_step(fit, scale, frame, pad_color))

    fps = target_fps(info)
    if fps is not None:
        was = "variable" if info.variable_frame_rate else f"{info.fps or 'unknown'} fps"
        steps.append(Step("fps", f"{was} -> constant {fps} fps"))
    if info.bit_depth is not None and info.bit_depth > 8:
        steps.append(Step("8-bit", f"{info.bit_depth}-bit {info.pix_fmt} -> 8-bit yuv420p"))
        warnings.append(
            f"{info.bit_depth}-bit video converted to 8-bit without tone mapping; "
            "HDR colours may look flat"
        )
    # ultrafast turns off CABAC and 8x8 transforms, so x264 writes Constrained Baseline.
    profile = "Constrained Baseline" if options.preset == "ultrafast" else "High"
    steps.append(
        Step(
            "encode",
            f"H.264 {profile}, yuv420p, CRF {options.crf}, preset {options.preset}, "
            "MP4 (faststart)",
        )
    )
    if info.size_bytes > spec.VIDEO_MAX_BYTES:
        limit = spec.size_text(spec.VIDEO_MAX_BYTES)
        steps.append(Step("compress", f"CRF raised by {CRF_STEP} per retry until under {limit}"))
    audio: AudioMode = "none"
    if info.audio and options.mute:
        steps.append(Step("mute", "audio dropped"))
    elif info.audio:
        audio = "aac"
        steps.append(Step("audio", f"{info.audio[0].codec} -> AAC {AUDIO_BITRATE}b/s"))
    job = VideoJob(
        "transcode",
        "mp4",
        audio,
        output_seconds,
        frame=frame,
        scale=scale,
        fit=fit,
        pad_color=pad_color,
        fps=fps,
        start=options.start,
        duration=duration,
        loops=loops,
        freeze_seconds=freeze,
        crf=options.crf,
        preset=options.preset,
        keep_metadata=options.keep_metadata,
    )
    return FixPlan(report, tuple(steps), suffix=".mp4", job=job, warnings=tuple(warnings))


def _framing_step(fit: Fit, scale: tuple[int, int], frame: tuple[int, int], pad_color: str) -> Step:
    size = f"{frame[0]} × {frame[1]}"
    if fit == "crop":
        return Step("crop", f"{scale[0]} × {scale[1]} -> {size}, centred")
    if fit == "blur":
        return Step("blur", f"to {size}, centred, bars filled with a blurred copy")
    return Step("pad", f"to {size}, centred, bars {pad_color}")


# --- ffmpeg arguments (pure) ------------------------------------------------------------------
#
# Commands are built with ffmpeg-python's graph API and compiled to a list, never run by it:
# mediaprep.ffmpeg.run_ffmpeg adds the program, its global flags and the progress reader.
# ffmpeg-python ships no types, so the two protocols below name the part of it used here and
# the helpers cast at the boundary; nothing else in this module sees an untyped value.
#
# How ffmpeg-python spells things, where it differs from writing the list by hand:
# * Options given as keywords come out sorted by name (``-ss`` before ``-stream_loop``,
#   ``-ar`` before ``-c:a``); every one of them belongs to the same input or output file, so
#   their order changes nothing. ``-f`` comes first among the output options, ``-y`` last
#   (after the file name: it is a global option, read wherever it stands).
# * Each filter link is named ``[s0]``, ``[s1]``… in order: ``scale,setsar`` becomes
#   ``scale…[s0];[s0]setsar…``, the same graph.
# * A stream selector is copied verbatim after the input index, so ``source["V:0"]`` is
#   ``[0:V:0]`` in the graph (capital V: a video stream that is not a cover picture) and
#   ``source["a:0?"]`` is ``-map 0:a:0?`` (the first audio stream, if there is one).


class _Stream(Protocol):
    """The part of ffmpeg-python's ``FilterableStream`` this module uses."""

    def __getitem__(self, selector: str) -> _Stream: ...

    def filter(self, name: str, *args: object, **kwargs: object) -> _Stream: ...

    def split(self) -> _Outputs: ...


class _Outputs(Protocol):
    """The outputs of a filter with several (``split``), by index."""

    def __getitem__(self, index: int) -> _Stream: ...


def _input(source: Path, options: Mapping[str, str]) -> _Stream:
    return cast(_Stream, ffmpeg.input(file_arg(source), **options))


def _overlay(main: _Stream, top: _Stream, x: int, y: int) -> _Stream:
    # ffmpeg-python adds eof_action=repeat, which is ffmpeg's default: the same filter.
    return cast(_Stream, ffmpeg.overlay(main, top, x=x, y=y))


def _compile(
    streams: Sequence[_Stream], destination: Path, options: Mapping[str, str | None]
) -> list[str]:
    """The arguments after the program name; an option whose value is None is a bare flag."""
    output = ffmpeg.output(*streams, file_arg(destination), **options).overwrite_output()
    command: list[str] = output.compile(cmd="ffmpeg")
    return command[1:]


def _scaled(video: _Stream, size: tuple[int, int]) -> _Stream:
    return video.filter("scale", size[0], size[1], flags="lanczos").filter("setsar", 1)


def _framed(video: _Stream, job: VideoJob, scale: tuple[int, int]) -> _Stream:
    """Scale to ``scale``, then pad, crop or blur-fill to ``job.frame``."""
    if scale == job.frame:
        return _scaled(video, scale)
    width, height = job.frame
    x = (width - scale[0]) // 2
    y = (height - scale[1]) // 2
    if job.fit == "crop":
        return _scaled(video, scale).filter("crop", width, height, -x, -y)
    if job.fit == "pad":
        return _scaled(video, scale).filter("pad", width, height, x, y, color=job.pad_color)
    copies = video.split()
    small = (width // BLUR_SHRINK, height // BLUR_SHRINK)
    small_cover = cover(scale, small)
    background = (
        copies[0]
        .filter("scale", small_cover[0], small_cover[1])
        .filter("crop", small[0], small[1])
        .filter("boxblur", BLUR_RADIUS, 2)
        .filter("scale", width, height)
        .filter("setsar", 1)
    )
    return _overlay(background, _scaled(copies[1], scale), x, y)


def _filtered_video(source: _Stream, job: VideoJob) -> _Stream:
    video = source["V:0"]
    if job.fps:
        video = video.filter("fps", job.fps)
    if job.scale is not None:
        video = _framed(video, job, job.scale)
    if job.freeze_seconds:
        stop = _seconds(job.freeze_seconds)
        video = video.filter("tpad", stop_mode="clone", stop_duration=stop)
    return video.filter("format", "yuv420p")


def _file_options(job: VideoJob) -> dict[str, str | None]:
    options: dict[str, str | None] = {"movflags": "+faststart", "f": job.container}
    if not job.keep_metadata:
        options.update({"map_metadata": "-1", "map_chapters": "-1"})
    return options


def build_transcode_args(source: Path, destination: Path, job: VideoJob, crf: int) -> list[str]:
    """ffmpeg arguments (after the program name) that transcode ``source`` as ``job`` says."""
    input_options: dict[str, str] = {}
    if job.loops:
        input_options["stream_loop"] = str(job.loops)
    if job.start:
        # Input seeking decodes from the keyframe before and drops up to start: frame-accurate.
        input_options["ss"] = _seconds(job.start)
    source_stream = _input(source, input_options)
    streams = [_filtered_video(source_stream, job)]
    options = _file_options(job)
    if job.audio == "none":
        options["an"] = None
    else:
        streams.append(source_stream["a:0?"])
        if job.freeze_seconds:
            # An output option, not a graph filter: a graph input cannot be optional ("?").
            options["af"] = "apad"
        options.update({"c:a": "aac", "b:a": AUDIO_BITRATE, "ar": AUDIO_SAMPLE_RATE})
    options.update({"c:v": "libx264", "profile:v": "high", "preset": job.preset, "crf": str(crf)})
    if job.duration is not None:
        options["t"] = _seconds(job.duration)
    return _compile(streams, destination, options)


def build_remux_args(source: Path, destination: Path, job: VideoJob) -> list[str]:
    """ffmpeg arguments that copy the video stream into a new container (no re-encode)."""
    source_stream = _input(source, {})
    streams = [source_stream["V:0"]]
    options = _file_options(job)
    options["c:v"] = "copy"
    if job.audio == "none":
        options["an"] = None
    else:
        streams.append(source_stream["a:0?"])
        options["c:a"] = "copy" if job.audio == "copy" else "aac"
        if job.audio == "aac":
            options["b:a"] = AUDIO_BITRATE
    return _compile(streams, destination, options)


def next_crf(crf: int) -> int | None:
    """The CRF to retry with when the output is too large, or None when none is left."""
    return None if crf >= MAX_CRF else min(MAX_CRF, crf + CRF_STEP)


# --- Writing ----------------------------------------------------------------------------------


def write_video(
    source: Path, plan: FixPlan, destination: Path, options: FixOptions, warnings: list[str]
) -> Iterator[Progress]:
    """Carry out a video plan, writing the result to ``destination`` and yielding progress.

    A transcode whose output is over the size limit is re-encoded with a higher CRF until it
    fits; each retry is appended to ``warnings``.

    Raises:
        FixError: the plan holds no job, or no CRF brings the output under the size limit.
        ToolError: ffmpeg failed.
        ToolNotFoundError: ffmpeg is missing.
    """
    job = plan.job
    if not isinstance(job, VideoJob):
        raise FixError(f"{source}: the plan holds no video job to carry out")
    if job.mode == "rename":
        copy_exact(source, destination)
        return
    if job.mode == "remux":
        yield from run_ffmpeg(build_remux_args(source, destination, job), job.output_seconds)
        return
    crf: int | None = job.crf
    while crf is not None:
        arguments = build_transcode_args(source, destination, job, crf)
        yield from run_ffmpeg(arguments, job.output_seconds)
        size = destination.stat().st_size
        if size <= spec.VIDEO_MAX_BYTES:
            return
        retry = next_crf(crf)
        if retry is not None:
            warnings.append(
                f"output was {spec.size_text(size)} at CRF {crf}; re-encoded at CRF {retry} "
                f"to stay within {spec.size_text(spec.VIDEO_MAX_BYTES)}"
            )
        crf = retry
    raise FixError(
        f"{source}: the output is still over {spec.size_text(spec.VIDEO_MAX_BYTES)} at CRF "
        f"{MAX_CRF}; use a shorter part of the video or a smaller source"
    )
