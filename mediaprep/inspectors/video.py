"""Inspect a video with one ffprobe call and check it against the API's video rules."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from .. import spec
from ..errors import ToolError
from ..ffmpeg import PROBE_TIMEOUT_SECONDS, probe
from ..findings import FileReport, Finding, file_too_large
from ..info import AudioStream, VideoInfo

#: Extensions of the videos mediaprep can read (the API takes MP4 and MOV; fix converts the rest).
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts", ".wmv", ".flv"}
    | {".mpg", ".mpeg", ".ts"}
)
#: Codecs ffprobe reports for still pictures: a "video" stream of these is an image, not a clip.
STILL_IMAGE_CODECS = frozenset({"png", "mjpeg", "bmp", "gif", "webp", "tiff", "jpegls"})
#: A tag whose key holds this (any case) is a place: it is removed unless metadata is kept.
LOCATION_KEY = "location"


def _fraction(text: object) -> Fraction | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if result == result else None  # NaN is not a value


def rotation_of(stream: dict[str, Any]) -> int:
    """The clockwise display rotation in degrees (0, 90, 180, 270) of a video stream.

    ffprobe reports it as a display-matrix side data ``rotation`` (counter-clockwise, so -90
    means a quarter turn clockwise) or, from older muxers, as a ``rotate`` tag (clockwise).
    """
    for side_data in stream.get("side_data_list") or []:
        if isinstance(side_data, dict) and "rotation" in side_data:
            degrees = _float(side_data["rotation"])
            if degrees is not None:
                return round(-degrees / 90) * 90 % 360
    tags = stream.get("tags") or {}
    degrees = _float(tags.get("rotate")) if isinstance(tags, dict) else None
    if degrees is not None:
        return round(degrees / 90) * 90 % 360
    return 0


def _bit_depth(stream: dict[str, Any]) -> int | None:
    raw = stream.get("bits_per_raw_sample")
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    pix_fmt = stream.get("pix_fmt") or ""
    for depth in (16, 14, 12, 10, 9):
        if f"p{depth}" in pix_fmt:
            return depth
    return 8 if pix_fmt else None


def _metadata_kinds(fmt: dict[str, Any], streams: list[dict[str, Any]]) -> tuple[str, ...]:
    """The kinds of personal metadata in the format and stream tags: ("location",) or ().

    A location comes under many keys (``location``, ``location-eng``,
    ``com.apple.quicktime.location.ISO6709``); dates and encoder names are not personal.
    """
    for owner in (fmt, *streams):
        tags = owner.get("tags")
        if isinstance(tags, dict) and any(LOCATION_KEY in str(key).lower() for key in tags):
            return ("location",)
    return ()


def video_info_from_probe(data: dict[str, Any], size_bytes: int) -> VideoInfo:
    """Turn ffprobe's JSON into a VideoInfo (pure: no I/O)."""
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    video = videos[0] if videos else {}
    width = int(video.get("width") or 0)
    height = int(video.get("height") or 0)
    sar = _fraction(video.get("sample_aspect_ratio")) or Fraction(1)
    rotation = rotation_of(video) if video else 0
    display_width = round(width * sar) if sar != 1 else width
    display_height = height
    if rotation in (90, 270):
        display_width, display_height = display_height, display_width
    avg_rate = _fraction(video.get("avg_frame_rate"))
    real_rate = _fraction(video.get("r_frame_rate"))
    rate = avg_rate or real_rate
    fps = float(rate) if rate is not None else None
    variable = bool(avg_rate and real_rate and abs(float(avg_rate) - float(real_rate)) > 0.01)
    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [_float(s.get("duration")) for s in streams]
        known = [d for d in durations if d is not None]
        duration = max(known) if known else None
    return VideoInfo(
        container=str(fmt.get("format_name") or "unknown"),
        size_bytes=size_bytes,
        duration=duration,
        codec=video.get("codec_name"),
        width=width,
        height=height,
        display_width=display_width,
        display_height=display_height,
        rotation=rotation,
        sar=f"{sar.numerator}:{sar.denominator}",
        fps=round(fps, 3) if fps else None,
        variable_frame_rate=variable,
        pix_fmt=video.get("pix_fmt"),
        bit_depth=_bit_depth(video) if video else None,
        video_streams=len(videos),
        audio=tuple(
            AudioStream(
                codec=str(a.get("codec_name") or "unknown"),
                channels=int(a.get("channels") or 0),
                sample_rate=int(a.get("sample_rate") or 0),
            )
            for a in audios
        ),
        metadata=_metadata_kinds(fmt, streams),
    )


def is_still_image(data: dict[str, Any]) -> bool:
    """Whether ffprobe read the file as a single still picture rather than a video."""
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    names = str(fmt.get("format_name") or "")
    return (
        bool(streams)
        and all(s.get("codec_name") in STILL_IMAGE_CODECS for s in streams)
        and ("image2" in names or "pipe" in names or "_pipe" in names)
    )


def container_accepted(container: str) -> bool:
    """Whether ffprobe's ``format_name`` belongs to the MP4/MOV family."""
    return bool(set(container.split(",")) & spec.VIDEO_FORMAT_NAMES)


def video_findings(info: VideoInfo, path: str | os.PathLike[str]) -> list[Finding]:
    """Check a video's facts against every video rule; a file wrong in several ways gets all."""
    findings: list[Finding] = []
    if not container_accepted(info.container):
        findings.append(
            Finding(
                "container_unsupported",
                "error",
                f"container is {info.container}; the API accepts {spec.VIDEO_CONTAINERS_TEXT}",
                fixable=info.has_video,
            )
        )
    elif Path(path).suffix.lower() not in spec.VIDEO_EXTENSIONS:
        findings.append(
            Finding(
                "extension_mismatch",
                "warning",
                f"file is MP4/MOV but named {Path(path).suffix or 'without an extension'}; "
                f"expected {', '.join(spec.VIDEO_EXTENSIONS)}",
                fixable=True,
            )
        )
    if info.size_bytes > spec.VIDEO_MAX_BYTES:
        findings.append(
            file_too_large("video", info.size_bytes, spec.VIDEO_MAX_BYTES, fixable=info.has_video)
        )
    if not info.has_video:
        findings.append(
            Finding("no_video_stream", "error", "file has no video stream; the API needs a video")
        )
        return findings
    if info.duration is None:
        findings.append(Finding("unreadable", "error", "video duration cannot be read"))
    elif info.duration < spec.VIDEO_MIN_SECONDS:
        findings.append(
            Finding(
                "duration_too_short",
                "error",
                f"video lasts {info.duration:.3f} s; it must last at least "
                f"{spec.VIDEO_MIN_SECONDS:g} s (fix can lengthen it with --extend loop|freeze)",
            )
        )
    elif info.duration > spec.VIDEO_MAX_SECONDS:
        findings.append(
            Finding(
                "duration_too_long",
                "error",
                f"video lasts {info.duration:.3f} s; it may last at most "
                f"{spec.VIDEO_MAX_SECONDS:g} s",
                fixable=True,
            )
        )
    shown = (info.display_width, info.display_height)
    if shown not in spec.VIDEO_SIZES:
        turned = (
            f" (stored {spec.frame_text((info.width, info.height))}"
            if shown != (info.width, info.height)
            else ""
        )
        if turned:
            turned += f", rotation {info.rotation}°, SAR {info.sar})"
        findings.append(
            Finding(
                "resolution_not_1080p",
                "error",
                f"video is {spec.frame_text(shown)}{turned}; it must be {spec.VIDEO_SIZES_TEXT}",
                fixable=True,
            )
        )
        if shown[0] * 9 != shown[1] * 16 and shown[0] * 16 != shown[1] * 9:
            findings.append(
                Finding(
                    "aspect_ratio_not_16_9_or_9_16",
                    "error",
                    f"video is {spec.frame_text(shown)}, ratio "
                    f"{shown[0] / max(shown[1], 1):.3g}:1; it must be 16:9 or 9:16",
                    fixable=True,
                )
            )
    if info.audio:
        findings.append(
            Finding(
                "audio_present",
                "info",
                f"video has audio ({info.audio[0].codec}, {info.audio[0].channels} ch); a human "
                "voice in it triggers voice customization (fix --mute drops it)",
                fixable=True,
            )
        )
    return findings


def inspect_video(
    path: str | os.PathLike[str],
    probed: dict[str, Any] | None = None,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> FileReport:
    """Inspect one local video; problems become findings. Pass ``probed`` to reuse a probe.

    Raises:
        ToolNotFoundError: ffprobe is missing (that is the machine's problem, not the file's).
    """
    try:
        data = probed if probed is not None else probe(path, timeout=timeout)
    except ToolError as exc:
        finding = Finding("unreadable", "error", f"video cannot be read: {tool_reason(exc)}")
        return FileReport(str(path), "video", (finding,), local_path=str(path))
    info = video_info_from_probe(data, os.path.getsize(path))
    findings = video_findings(info, path)
    return FileReport(str(path), "video", tuple(findings), info=info, local_path=str(path))


def tool_reason(exc: ToolError) -> str:
    """The gist of why ffprobe failed: the last line of its stderr, without the file name."""
    lines = [line for line in exc.stderr.strip().splitlines() if line.strip()]
    if not lines:
        return str(exc)
    # ffprobe prefixes its message with the file name; keep only what it says about it.
    return lines[-1].rsplit(": ", 1)[-1]
