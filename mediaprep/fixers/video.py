"""Repair videos with ffmpeg: plan the smallest steps from a report, then run one ffmpeg command.

Three ways to write a video, cheapest first:

* ``rename``: the bytes already pass but the extension is wrong; copy them under ``.mp4``.
* ``remux``: compliant H.264 in the wrong container (or audio to drop); copy the video stream
  into MP4 without re-encoding.
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
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from PIL import ImageColor

from .. import spec
from ..errors import FixError
from ..ffmpeg import Progress, file_arg, run_ffmpeg
from ..findings import FileReport, Finding
from ..info import VideoInfo
from .output import copy_exact
from .plan import DEFAULT_CRF, DEFAULT_PRESET, Fit, FixOptions, FixPlan, Orientation, Step

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
        ValueError: Pillow does not know the colour.
    """
    try:
        rgb = ImageColor.getrgb(color)
    except ValueError as exc:
        raise ValueError(f"unknown colour {color!r}; use a name or #RRGGBB") from exc
    red, green, blue = rgb[:3]
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
    ask for a change (``mute`` with audio, a ``start``, an ``orientation`` it does not have); a
    wrong extension alone is fixed by copying under ``.mp4``. A passing video stream in the
    wrong container (or with audio to drop) is copied into MP4 without re-encoding; anything
    else is transcoded.
    ``plan.data["job"]`` is the :class:`VideoJob` for :func:`write_video`;
    ``plan.data["warnings"]`` lists what the user should know about the result.

    """
    blur = options.fit == "blur" or options.video_pad_color.lower() == "blur"
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
        return _plan_remux(report, info, mute, suffix)
    if any(f.code == "extension_mismatch" for f in report.findings):
        step = Step("rename", f"{suffix or 'no extension'} -> .mp4 (bytes copied unchanged)")
        job = VideoJob("rename", "mp4", "copy", info.duration or 0.0)
        return FixPlan(report, (step,), suffix=".mp4", data={"job": job, "warnings": []})
    return FixPlan(report, suffix=suffix, data={"warnings": []})


def _plan_remux(report: FileReport, info: VideoInfo, mute: bool, suffix: str) -> FixPlan:
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
    job = VideoJob("remux", container, audio, info.duration or 0.0)
    return FixPlan(report, tuple(steps), suffix=f".{container}", data={"job": job, "warnings": []})


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
    steps.append(
        Step(
            "encode",
            f"H.264 High, yuv420p, CRF {options.crf}, preset {options.preset}, MP4 (faststart)",
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
    return FixPlan(report, tuple(steps), suffix=".mp4", data={"job": job, "warnings": warnings})


def _framing_step(fit: Fit, scale: tuple[int, int], frame: tuple[int, int], pad_color: str) -> Step:
    size = f"{frame[0]} × {frame[1]}"
    if fit == "crop":
        return Step("crop", f"{scale[0]} × {scale[1]} -> {size}, centred")
    if fit == "blur":
        return Step("blur", f"to {size}, centred, bars filled with a blurred copy")
    return Step("pad", f"to {size}, centred, bars {pad_color}")


# --- ffmpeg arguments (pure) ------------------------------------------------------------------


def video_graph(job: VideoJob) -> str:
    """The ``-filter_complex`` graph: input ``[0:V:0]``, output ``[v]``."""
    width, height = job.frame
    head = [f"fps={job.fps}"] if job.fps else []
    tail = [f"tpad=stop_mode=clone:stop_duration={_seconds(job.freeze_seconds)}"]
    tail = (tail if job.freeze_seconds else []) + ["format=yuv420p"]
    if job.scale is None:
        return "[0:V:0]" + ",".join([*head, *tail]) + "[v]"
    scaled_width, scaled_height = job.scale
    x = (width - scaled_width) // 2
    y = (height - scaled_height) // 2
    scale = f"scale={scaled_width}:{scaled_height}:flags=lanczos,setsar=1"
    if job.scale == job.frame:
        return "[0:V:0]" + ",".join([*head, scale, *tail]) + "[v]"
    if job.fit == "crop":
        crop = f"crop={width}:{height}:{-x}:{-y}"
        return "[0:V:0]" + ",".join([*head, scale, crop, *tail]) + "[v]"
    if job.fit == "pad":
        pad = f"pad={width}:{height}:{x}:{y}:color={job.pad_color}"
        return "[0:V:0]" + ",".join([*head, scale, pad, *tail]) + "[v]"
    small = (width // BLUR_SHRINK, height // BLUR_SHRINK)
    small_cover = cover(job.scale, small)
    background = (
        f"[bg]scale={small_cover[0]}:{small_cover[1]},crop={small[0]}:{small[1]},"
        f"boxblur={BLUR_RADIUS}:2,scale={width}:{height},setsar=1[blurred]"
    )
    return ";".join(
        [
            "[0:V:0]" + ",".join([*head, "split=2[bg][fg]"]),
            background,
            f"[fg]{scale}[main]",
            f"[blurred][main]overlay={x}:{y}," + ",".join(tail) + "[v]",
        ]
    )


def _metadata_args(job: VideoJob) -> list[str]:
    return [] if job.keep_metadata else ["-map_metadata", "-1", "-map_chapters", "-1"]


def _output_args(job: VideoJob, destination: Path) -> list[str]:
    return ["-movflags", "+faststart", "-f", job.container, "-y", file_arg(destination)]


def build_transcode_args(source: Path, destination: Path, job: VideoJob, crf: int) -> list[str]:
    """ffmpeg arguments (after the program name) that transcode ``source`` as ``job`` says."""
    arguments: list[str] = []
    if job.loops:
        arguments += ["-stream_loop", str(job.loops)]
    if job.start:
        # Input seeking decodes from the keyframe before and drops up to start: frame-accurate.
        arguments += ["-ss", _seconds(job.start)]
    arguments += ["-i", file_arg(source), "-filter_complex", video_graph(job), "-map", "[v]"]
    if job.audio == "none":
        arguments += ["-an"]
    else:
        arguments += ["-map", "0:a:0?"]
        if job.freeze_seconds:
            arguments += ["-af", "apad"]
        arguments += ["-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", AUDIO_SAMPLE_RATE]
    arguments += [
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-preset",
        job.preset,
        "-crf",
        str(crf),
    ]
    if job.duration is not None:
        arguments += ["-t", _seconds(job.duration)]
    return arguments + _metadata_args(job) + _output_args(job, destination)


def build_remux_args(source: Path, destination: Path, job: VideoJob) -> list[str]:
    """ffmpeg arguments that copy the video stream into a new container (no re-encode)."""
    arguments = ["-i", file_arg(source), "-map", "0:V:0", "-c:v", "copy"]
    if job.audio == "none":
        arguments += ["-an"]
    elif job.audio == "copy":
        arguments += ["-map", "0:a:0?", "-c:a", "copy"]
    else:
        arguments += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    return arguments + _metadata_args(job) + _output_args(job, destination)


def next_crf(crf: int) -> int | None:
    """The CRF to retry with when the output is too large, or None when none is left."""
    return None if crf >= MAX_CRF else min(MAX_CRF, crf + CRF_STEP)


# --- Writing ----------------------------------------------------------------------------------


def write_video(
    source: Path, plan: FixPlan, destination: Path, options: FixOptions
) -> Iterator[Progress]:
    """Carry out a video plan, writing the result to ``destination`` and yielding progress.

    A transcode whose output is over the size limit is re-encoded with a higher CRF until it
    fits; each retry is added to ``plan.data["warnings"]``.

    Raises:
        FixError: the plan holds no job, or no CRF brings the output under the size limit.
        ToolError: ffmpeg failed.
        ToolNotFoundError: ffmpeg is missing.
    """
    job = plan.data.get("job")
    if not isinstance(job, VideoJob):
        raise FixError(f"{source}: the plan holds no video job to carry out")
    if job.mode == "rename":
        copy_exact(source, destination)
        return
    if job.mode == "remux":
        yield from run_ffmpeg(build_remux_args(source, destination, job), job.output_seconds)
        return
    warnings: list[str] = plan.data.setdefault("warnings", [])
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
