"""The element's own rules: name, description, media counts, duplicates, voice, tags, callback."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from PIL import Image, ImageOps

from .. import spec
from ..errors import ImageBomb, ImageUnreadable, UsageError
from ..findings import ElementReport, FileReport, Finding
from .file import inspect_file
from .image import open_image
from .url import is_url

HASH_SIZE = 8


@dataclass(frozen=True)
class Element:
    """An element as the user describes it; media are local paths or URLs.

    Raises:
        UsageError: both images and a video are given (an element is one or the other).
    """

    name: str
    description: str
    frontal: str | None = None
    refers: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    voice_id: str | None = None
    callback_url: str | None = None
    external_task_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.videos and (self.frontal is not None or self.refers):
            raise UsageError("an element is defined by images or by a video, not both")

    @property
    def reference_type(self) -> spec.ReferenceType:
        """``video_refer`` when a video is given, else ``image_refer``."""
        return "video_refer" if self.videos else "image_refer"

    @property
    def media(self) -> tuple[str, ...]:
        """Every media path or URL, frontal first."""
        frontal = (self.frontal,) if self.frontal is not None else ()
        return frontal + self.refers + self.videos

    def tag_ids(self) -> list[str]:
        """The known tags as ids, in the order given, without repeats."""
        ids: list[str] = []
        for text in self.tags:
            tag_id = spec.tag_id_for(text)
            if tag_id is not None and tag_id not in ids:
                ids.append(tag_id)
        return ids


def difference_hash(path: str | os.PathLike[str]) -> int | None:
    """A 64-bit difference hash of the upright picture, or None when it cannot be read.

    Re-encoding, resizing and format changes leave it nearly unchanged; a different picture
    changes about half of its bits.
    """
    try:
        with open_image(path) as image:
            image.draft("L", (HASH_SIZE * 16, HASH_SIZE * 16))
            upright = ImageOps.exif_transpose(image)
            small = upright.convert("L").resize(
                (HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS
            )
    except (ImageBomb, ImageUnreadable, OSError, ValueError, SyntaxError):
        return None
    pixels = small.tobytes()
    bits = 0
    for row in range(HASH_SIZE):
        for column in range(HASH_SIZE):
            left = pixels[row * (HASH_SIZE + 1) + column]
            right = pixels[row * (HASH_SIZE + 1) + column + 1]
            bits = (bits << 1) | (left > right)
    return bits


def hash_distance(first: int, second: int) -> int:
    """How many bits two difference hashes differ in."""
    return (first ^ second).bit_count()


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def duplicate_findings(frontal: FileReport, refers: Sequence[FileReport]) -> list[Finding]:
    """``refer_image_duplicates_frontal`` for every refer image that is the frontal picture."""
    if frontal.local_path is None or frontal.kind != "image":
        return []
    frontal_sha = _sha256(frontal.local_path)
    frontal_hash = difference_hash(frontal.local_path)
    findings: list[Finding] = []
    for refer in refers:
        if refer.local_path is None or refer.kind != "image":
            continue
        same = ""
        if frontal_sha is not None and _sha256(refer.local_path) == frontal_sha:
            same = "is byte-identical to the frontal image"
        elif frontal_hash is not None:
            refer_hash = difference_hash(refer.local_path)
            if refer_hash is not None:
                distance = hash_distance(frontal_hash, refer_hash)
                if distance <= spec.DUPLICATE_HASH_MAX_DISTANCE:
                    same = (
                        f"is the same picture as the frontal image (hashes {distance} of 64 bits "
                        f"apart, at most {spec.DUPLICATE_HASH_MAX_DISTANCE} counts as the same)"
                    )
        if same:
            findings.append(
                Finding(
                    "refer_image_duplicates_frontal",
                    "error",
                    f"refer image {refer.path} {same}; refer images must show other angles or "
                    "close-ups: replace it with a different picture",
                )
            )
    return findings


def _text_findings(element: Element) -> list[Finding]:
    findings: list[Finding] = []
    for label, value, limit, missing, too_long in (
        ("name", element.name, spec.NAME_MAX_CHARS, "name_missing", "name_too_long"),
        (
            "description",
            element.description,
            spec.DESCRIPTION_MAX_CHARS,
            "description_missing",
            "description_too_long",
        ),
    ):
        text = value.strip()
        if not text:
            findings.append(Finding(missing, "error", f"element {label} is empty"))  # type: ignore[arg-type]
        elif len(text) > limit:
            findings.append(
                Finding(
                    too_long,  # type: ignore[arg-type]
                    "error",
                    f"element {label} has {len(text)} characters; at most {limit} are allowed",
                )
            )
    return findings


def _callback_finding(url: str) -> Finding | None:
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if host and parts.scheme.lower() in spec.CALLBACK_URL_SCHEMES:
        return None
    return Finding(
        "callback_url_invalid",
        "error",
        f"callback URL {url!r} is not an absolute http(s) URL",
    )


def element_findings(element: Element, reports: Sequence[FileReport]) -> list[Finding]:
    """Check the element's own rules, given its files' reports in ``element.media`` order."""
    findings = _text_findings(element)
    if element.reference_type == "image_refer":
        images = list(reports)
        if element.frontal is None:
            findings.append(
                Finding("refer_images_count", "error", "a frontal image is required (--frontal)")
            )
        refer_reports = images[1:] if element.frontal is not None else images
        count = len(element.refers)
        if not spec.REFER_IMAGES_MIN <= count <= spec.REFER_IMAGES_MAX:
            findings.append(
                Finding(
                    "refer_images_count",
                    "error",
                    f"element has {count} refer images; it needs {spec.REFER_IMAGES_MIN} to "
                    f"{spec.REFER_IMAGES_MAX} besides the frontal image",
                )
            )
        for report in images:
            if report.kind == "video":
                findings.append(
                    Finding("wrong_media_kind", "error", f"{report.path} is a video, not an image")
                )
        if element.frontal is not None and images:
            findings.extend(duplicate_findings(images[0], refer_reports))
        if element.voice_id:
            findings.append(
                Finding(
                    "voice_requires_video",
                    "error",
                    "a voice id can only be bound to a video element (--video)",
                )
            )
    else:
        if len(element.videos) != spec.VIDEO_COUNT:
            findings.append(
                Finding(
                    "video_count",
                    "error",
                    f"element has {len(element.videos)} videos; exactly {spec.VIDEO_COUNT} "
                    "is supported",
                )
            )
        for report in reports:
            if report.kind == "image":
                findings.append(
                    Finding("wrong_media_kind", "error", f"{report.path} is an image, not a video")
                )
    for tag in element.tags:
        if spec.tag_id_for(tag) is None:
            known = ", ".join(f"{tag_id} ({name})" for tag_id, name in spec.TAGS.items())
            findings.append(Finding("tag_unknown", "error", f"unknown tag {tag!r}; known: {known}"))
    if element.callback_url is not None:
        finding = _callback_finding(element.callback_url)
        if finding is not None:
            findings.append(finding)
    return findings


def check_element(
    element: Element,
    *,
    fast: bool = False,
    reports: Sequence[FileReport] | None = None,
    download_dir: str | os.PathLike[str] | None = None,
) -> ElementReport:
    """Inspect every file of the element and check the element's own rules.

    Args:
        element: the element.
        fast: read image headers only.
        reports: reports of ``element.media`` already made (in that order), to reuse them.
        download_dir: where URL media are kept; without it they are fetched to a temporary
            folder that is gone on return (duplicates among URLs are then checked by bytes there).

    Raises:
        ToolNotFoundError: ffprobe is needed and missing.
    """
    if reports is None:
        if download_dir is None:
            with tempfile.TemporaryDirectory(prefix="mediaprep-") as scratch:
                report = check_element(element, fast=fast, download_dir=scratch)
            # The downloads are gone with the scratch folder: no report may point at them.
            files = tuple(
                dataclasses.replace(file, local_path=None) if is_url(file.path) else file
                for file in report.files
            )
            return dataclasses.replace(report, files=files)
        reports = [
            inspect_file(media, fast=fast, download_dir=download_dir) for media in element.media
        ]
    return ElementReport(tuple(element_findings(element, reports)), tuple(reports))
