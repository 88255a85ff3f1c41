"""The rules module: exact ratio arithmetic, tag lookup, the public surface."""

from __future__ import annotations

import pytest

import mediaprep
from mediaprep import spec
from mediaprep.findings import FINDING_CODES


@pytest.mark.parametrize(
    ("width", "height", "allowed"),
    [
        (750, 300, True),
        (751, 300, False),
        (300, 750, True),
        (300, 751, False),
        (5, 2, True),
        (2, 5, True),
        (2500001, 1000000, False),
        (1, 1, True),
        (1000, 1, False),
    ],
)
def test_ratio_allowed_is_exact(width: int, height: int, allowed: bool) -> None:
    assert spec.ratio_allowed(width, height) is allowed


def test_ratio_text_quotes_the_contract() -> None:
    assert spec.ratio_text(spec.IMAGE_RATIO_MIN) == "1:2.5"
    assert spec.ratio_text(spec.IMAGE_RATIO_MAX) == "2.5:1"


@pytest.mark.parametrize(
    ("text", "tag_id"),
    [("o_102", "o_102"), ("O_102", "o_102"), ("character", "o_102"), ("Trending  Meme", "o_101"),
     ("o_109", None), ("", None)],
)  # fmt: skip
def test_tag_id_for(text: str, tag_id: str | None) -> None:
    assert spec.tag_id_for(text) == tag_id


def test_limits_are_mebibytes() -> None:
    assert spec.IMAGE_MAX_BYTES == 10 * 1024 * 1024
    assert spec.VIDEO_MAX_BYTES == 200 * 1024 * 1024
    assert spec.size_text(spec.IMAGE_MAX_BYTES) == "10 MiB"


def test_public_names_are_sorted_and_importable() -> None:
    assert mediaprep.__all__ == sorted(mediaprep.__all__)
    for name in mediaprep.__all__:
        assert hasattr(mediaprep, name), name


def test_issue_codes_are_all_declared() -> None:
    promised = [
        "unreadable",
        "format_unsupported",
        "extension_mismatch",
        "file_too_large",
        "dimension_too_small",
        "aspect_ratio_out_of_range",
        "animated",
        "container_unsupported",
        "no_video_stream",
        "duration_too_short",
        "duration_too_long",
        "resolution_not_1080p",
        "aspect_ratio_not_16_9_or_9_16",
        "audio_present",
        "url_unreachable",
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
    assert set(promised) <= set(FINDING_CODES)
