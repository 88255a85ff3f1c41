"""Findings: what an inspection found, with a stable code, and the reports that carry them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .spec import size_text

Severity = Literal["error", "warning", "info"]
MediaKind = Literal["image", "video", "unknown"]

#: Finding codes are a public interface: add codes, never rename one.
FindingCode = Literal[
    # any file
    "unreadable",
    "file_too_large",
    "url_unreachable",
    "url_not_public",
    "wrong_media_kind",
    # images
    "format_unsupported",
    "extension_mismatch",
    "dimension_too_small",
    "aspect_ratio_out_of_range",
    "animated",
    "decompression_bomb",
    # videos
    "container_unsupported",
    "no_video_stream",
    "duration_too_short",
    "duration_too_long",
    "resolution_not_1080p",
    "aspect_ratio_not_16_9_or_9_16",
    "audio_present",
    # the element
    "name_missing",
    "name_too_long",
    "description_missing",
    "description_too_long",
    "refer_images_count",
    "refer_image_duplicates_frontal",
    "video_count",
    "voice_requires_video",
    "tag_unknown",
    "callback_url_invalid",
]
FINDING_CODES: tuple[str, ...] = get_args(FindingCode)


@dataclass(frozen=True)
class Finding:
    """One thing an inspection found: a stable code, how bad it is, and whether fix repairs it."""

    code: FindingCode
    severity: Severity
    message: str
    fixable: bool = False

    @property
    def is_error(self) -> bool:
        """Whether this finding makes its file or element fail."""
        return self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        """The finding as the ``--json`` schema shows it."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fixable": self.fixable,
        }


def file_too_large(noun: str, size_bytes: int, limit: int, *, fixable: bool) -> Finding:
    """The ``file_too_large`` finding, quoting the size and the limit in MiB and in bytes."""
    return Finding(
        "file_too_large",
        "error",
        f"{noun} is {size_text(size_bytes)} ({size_bytes} bytes); "
        f"the limit is {size_text(limit)} ({limit} bytes)",
        fixable=fixable,
    )


def has_errors(findings: tuple[Finding, ...] | list[Finding]) -> bool:
    """Whether any finding has error severity."""
    return any(finding.is_error for finding in findings)


@dataclass(frozen=True)
class FileReport:
    """What inspecting one file (or URL) found.

    ``path`` is what the user gave (a path or a URL); ``local_path`` is where the bytes were
    read (a temporary download for a URL, which the caller owns and may delete). ``info`` is an
    ``ImageInfo`` or ``VideoInfo`` when the file could be read that far.
    """

    path: str
    kind: MediaKind
    findings: tuple[Finding, ...] = ()
    info: Any = None
    local_path: str | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not has_errors(self.findings)

    def codes(self) -> list[str]:
        """The finding codes, in order (handy in tests and scripts)."""
        return [finding.code for finding in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """The file as the ``--json`` schema shows it."""
        return {
            "path": self.path,
            "kind": self.kind,
            "ok": self.ok,
            "skipped": self.skipped,
            "info": self.info.to_dict() if self.info is not None else {},
            "findings": [finding.to_dict() for finding in self.findings],
        }


@dataclass(frozen=True)
class ElementReport:
    """The element's own findings (name, description, counts, tags...) and its files' reports."""

    findings: tuple[Finding, ...] = ()
    files: tuple[FileReport, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when neither the element nor any of its files has an error finding."""
        return not has_errors(self.findings) and all(report.ok for report in self.files)

    def codes(self) -> list[str]:
        """The element's own finding codes, in order."""
        return [finding.code for finding in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """The element part of the ``--json`` schema (its files are listed under ``files``)."""
        return {
            "ok": self.ok,
            "findings": [finding.to_dict() for finding in self.findings],
        }
