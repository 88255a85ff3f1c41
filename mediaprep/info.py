"""Facts about one media file, as the inspectors read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ImageInfo:
    """What Pillow tells about an image, without decoding more than needed.

    ``width``/``height`` are the stored pixels; ``display_width``/``display_height`` are the
    picture as shown, after the EXIF orientation (``orientation`` 5-8 swap the sides).
    ``metadata`` names the kinds of personal metadata found, in this order: "exif", "gps" (the
    EXIF holds a GPS block), "xmp", "iptc", "text" (comments and text chunks).
    """

    format: str
    size_bytes: int
    width: int
    height: int
    display_width: int
    display_height: int
    orientation: int
    mode: str
    has_alpha: bool
    animated: bool
    frames: int
    has_icc_profile: bool
    has_exif: bool
    decoded: bool
    metadata: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class AudioStream:
    """One audio stream of a video."""

    codec: str
    channels: int
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe tells about a video.

    ``width``/``height`` are the stored pixels. ``display_width``/``display_height`` are the frame
    as players show it: the width scaled by the sample aspect ratio ``sar``, then the sides swapped
    when ``rotation`` is 90 or 270 degrees. ``metadata`` names the kinds of personal metadata
    found in the tags: "location" (any format or stream tag whose key holds "location").
    """

    container: str
    size_bytes: int
    duration: float | None
    codec: str | None
    width: int
    height: int
    display_width: int
    display_height: int
    rotation: int
    sar: str
    fps: float | None
    variable_frame_rate: bool
    pix_fmt: str | None
    bit_depth: int | None
    video_streams: int
    audio: tuple[AudioStream, ...]
    metadata: tuple[str, ...] = ()

    @property
    def has_video(self) -> bool:
        """Whether the file has a video stream at all."""
        return self.video_streams > 0

    @property
    def is_portrait(self) -> bool:
        """Whether the displayed frame is taller than wide."""
        return self.display_height > self.display_width

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        data = asdict(self)
        data["audio"] = [stream.to_dict() for stream in self.audio]
        return data
