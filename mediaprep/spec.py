"""The custom-elements API's rules, as data: the one home of every number mediaprep checks.

Each rule quotes the contract (``shared/api/custom-elements-api.txt``). Where the contract is
vague, the decision mediaprep takes is written beside the rule in ``decision``; the README shows
the same table (``mediaprep spec`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

MIB: Final = 1024 * 1024

MODEL_ID: Final = "kirin_custom_elements"

ReferenceType = Literal["image_refer", "video_refer"]
REFERENCE_TYPES: Final[tuple[ReferenceType, ...]] = ("image_refer", "video_refer")

# --- Images -----------------------------------------------------------------------------------
#: Pillow format names the API accepts. MPO is the multi-picture JPEG phones write: its first
#: image is a plain baseline JPEG, so it is accepted as JPEG.
IMAGE_FORMATS: Final = frozenset({"JPEG", "PNG", "MPO"})
#: File extensions that go with each accepted format (used for ``extension_mismatch``).
IMAGE_EXTENSIONS: Final[dict[str, tuple[str, ...]]] = {
    "JPEG": (".jpg", ".jpeg"),
    "MPO": (".jpg", ".jpeg"),
    "PNG": (".png",),
}
IMAGE_FORMATS_TEXT: Final = "JPEG or PNG"
IMAGE_MAX_BYTES: Final = 10 * MIB
IMAGE_MIN_SIDE: Final = 300
#: The allowed width/height range is 1:2.5 to 2.5:1, ends included, kept as integer fractions
#: (numerator, denominator) so the comparison is exact.
IMAGE_RATIO_MIN: Final = (2, 5)
IMAGE_RATIO_MAX: Final = (5, 2)

# --- Videos -----------------------------------------------------------------------------------
#: ffprobe's ``format_name`` for the ISO-BMFF/QuickTime family (MP4, MOV, M4V, 3GP).
VIDEO_FORMAT_NAMES: Final = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
VIDEO_EXTENSIONS: Final = (".mp4", ".mov", ".m4v")
VIDEO_CONTAINERS_TEXT: Final = "MP4 or MOV"
VIDEO_MAX_BYTES: Final = 200 * MIB
VIDEO_MIN_SECONDS: Final = 3.0
VIDEO_MAX_SECONDS: Final = 8.0
#: "1080P video with 16:9 or 9:16 aspect ratio": the displayed frame, width × height.
VIDEO_LANDSCAPE: Final = (1920, 1080)
VIDEO_PORTRAIT: Final = (1080, 1920)
VIDEO_SIZES: Final = (VIDEO_LANDSCAPE, VIDEO_PORTRAIT)
VIDEO_COUNT: Final = 1


def frame_text(size: tuple[int, int]) -> str:
    """A frame size as messages write it: ``1920 × 1080``."""
    return f"{size[0]} × {size[1]}"


VIDEO_SIZES_TEXT: Final = " or ".join(frame_text(size) for size in VIDEO_SIZES)

# --- The element ------------------------------------------------------------------------------
NAME_MAX_CHARS: Final = 20
DESCRIPTION_MAX_CHARS: Final = 100
REFER_IMAGES_MIN: Final = 1
REFER_IMAGES_MAX: Final = 3

#: Tag ids and their English names, as the contract's table lists them.
TAGS: Final[dict[str, str]] = {
    "o_101": "Trending Meme",
    "o_102": "Character",
    "o_103": "Animal",
    "o_104": "Prop",
    "o_105": "Clothing",
    "o_106": "Scene",
    "o_107": "Effect",
    "o_108": "Other",
}

CALLBACK_URL_SCHEMES: Final = ("http", "https")

#: Two images whose 64-bit difference hashes differ in at most this many bits are taken for the
#: same picture (re-encoded, resized or converted). tests/test_element.py shows re-encodes land at
#: 0-4 bits and different pictures above 20.
DUPLICATE_HASH_MAX_DISTANCE: Final = 10


def ratio_text(ratio: tuple[int, int]) -> str:
    """Return a ratio as the contract writes it: ``(2, 5)`` -> ``"1:2.5"``."""
    numerator, denominator = ratio
    if numerator <= denominator:
        return f"1:{denominator / numerator:g}"
    return f"{numerator / denominator:g}:1"


def size_text(size_bytes: int) -> str:
    """Return a byte count for people: ``10 MiB``, ``1.5 MiB``, ``300 KiB``, ``12 bytes``."""
    if size_bytes >= MIB:
        return f"{size_bytes / MIB:.2f}".rstrip("0").rstrip(".") + " MiB"
    if size_bytes >= 1024:
        return f"{size_bytes / 1024:.1f}".rstrip("0").rstrip(".") + " KiB"
    return f"{size_bytes} bytes"


def ratio_allowed(width: int, height: int) -> bool:
    """Whether ``width / height`` lies within the image ratio range, ends included (exact)."""
    low_n, low_d = IMAGE_RATIO_MIN
    high_n, high_d = IMAGE_RATIO_MAX
    return width * low_d >= height * low_n and width * high_d <= height * high_n


def tag_id_for(text: str) -> str | None:
    """Return the tag id for an id or English name, case-insensitive, or None when unknown."""
    wanted = " ".join(text.split()).casefold()
    for tag_id, name in TAGS.items():
        if wanted in (tag_id.casefold(), name.casefold()):
            return tag_id
    return None


@dataclass(frozen=True)
class Rule:
    """One rule: what it applies to, its limit, the contract's words and our reading."""

    subject: str
    limit: str
    contract: str
    decision: str = ""


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "image format",
        IMAGE_FORMATS_TEXT,
        "Supported formats: .jpg / .jpeg / .png",
        "Read from the file's bytes, never the extension; MPO (phone JPEG) counts as JPEG.",
    ),
    Rule(
        "image file size",
        f"<= {size_text(IMAGE_MAX_BYTES)}",
        "File size must not exceed 10MB",
        "MB means MiB: 10 × 1024 × 1024 bytes.",
    ),
    Rule(
        "image dimensions",
        f"each side >= {IMAGE_MIN_SIDE} px",
        "image dimensions must be at least 300px",
        "Width and height both, as displayed (after EXIF orientation).",
    ),
    Rule(
        "image aspect ratio",
        f"{ratio_text(IMAGE_RATIO_MIN)} to {ratio_text(IMAGE_RATIO_MAX)}",
        "aspect ratio must be between 1:2.5 and 2.5:1",
        "width/height within [0.4, 2.5], ends included, compared exactly.",
    ),
    Rule(
        "video container",
        VIDEO_CONTAINERS_TEXT,
        "Supported formats: MP4/MOV",
        "From ffprobe (ISO-BMFF/QuickTime family), never the extension.",
    ),
    Rule(
        "video duration",
        f"{VIDEO_MIN_SECONDS:g} s to {VIDEO_MAX_SECONDS:g} s",
        "duration between 3s and 8s",
        "The container's duration, ends included.",
    ),
    Rule(
        "video resolution",
        VIDEO_SIZES_TEXT,
        "1080P video with 16:9 or 9:16 aspect ratio",
        "The displayed frame, after rotation metadata and sample aspect ratio.",
    ),
    Rule(
        "video file size",
        f"<= {size_text(VIDEO_MAX_BYTES)}",
        "file size must not exceed 200MB",
        "MB means MiB: 200 × 1024 × 1024 bytes.",
    ),
    Rule("video count", f"exactly {VIDEO_COUNT}", "Only 1 video supported"),
    Rule(
        "element name",
        f"1 to {NAME_MAX_CHARS} characters",
        "Must not exceed 20 characters",
        "Unicode characters after stripping surrounding white space.",
    ),
    Rule(
        "element description",
        f"1 to {DESCRIPTION_MAX_CHARS} characters",
        "Must not exceed 100 characters",
        "Unicode characters after stripping surrounding white space.",
    ),
    Rule(
        "refer images",
        f"{REFER_IMAGES_MIN} to {REFER_IMAGES_MAX}, besides the frontal image",
        "1–3 additional reference images ... must differ from the frontal image",
        "Same picture = byte-identical, or a 64-bit dHash within "
        f"{DUPLICATE_HASH_MAX_DISTANCE} bits (re-encoded or resized).",
    ),
    Rule(
        "voice",
        "video_refer only",
        "Only video-based entities support voice binding.",
    ),
    Rule(
        "tags",
        ", ".join(TAGS),
        "tag_id Options: o_101,...,o_108",
        "Given by id or English name, case-insensitive.",
    ),
    Rule(
        "callback URL", "absolute http(s) URL", "callback_url string", "Scheme and host required."
    ),
)
