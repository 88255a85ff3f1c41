"""Inspectors: read media facts (Pillow, ffprobe) and turn them into findings."""

from __future__ import annotations

from .element import Element, check_element, difference_hash, element_findings, hash_distance
from .file import collect_paths, inspect_file, inspect_local, inspect_many
from .image import image_findings, inspect_image, read_image_info
from .url import download, is_url
from .video import inspect_video, video_findings, video_info_from_probe

__all__ = [
    "Element",
    "check_element",
    "collect_paths",
    "difference_hash",
    "download",
    "element_findings",
    "hash_distance",
    "image_findings",
    "inspect_file",
    "inspect_image",
    "inspect_local",
    "inspect_many",
    "inspect_video",
    "is_url",
    "read_image_info",
    "video_findings",
    "video_info_from_probe",
]
