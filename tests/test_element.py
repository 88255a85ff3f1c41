"""The element's own rules, and the duplicate-picture threshold."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mediaprep import Element, UsageError, check_element, spec
from mediaprep.inspectors import difference_hash, element_findings, hash_distance, inspect_file


def scene(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A picture of random discs; another seed is another picture."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (230, 230, 220))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y, width = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 200)
        draw.ellipse((x, y, x + width, y + width), fill=tuple(rng.randrange(256) for _ in "rgb"))
    return image


@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, Path]:
    """A frontal picture, copies of it in other encodings and sizes, and other pictures."""
    original = scene(1)
    paths = {name: tmp_path / name for name in ("front.jpg", "copy.jpg")}
    original.save(paths["front.jpg"], quality=95)
    paths["copy.jpg"].write_bytes(paths["front.jpg"].read_bytes())
    variants = {
        "q60.jpg": lambda p: original.save(p, quality=60),
        "half.jpg": lambda p: original.resize((400, 300)).save(p, quality=90),
        "double.png": lambda p: original.resize((1600, 1200)).save(p),
        "closeup.jpg": lambda p: original.crop((100, 75, 700, 525)).save(p),
        "mirrored.jpg": lambda p: original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(p),
    }
    for name, save in variants.items():
        paths[name] = tmp_path / name
        save(paths[name])
    for seed in range(2, 8):
        paths[f"other{seed}.jpg"] = tmp_path / f"other{seed}.jpg"
        scene(seed).save(paths[f"other{seed}.jpg"])
    return paths


def test_hash_threshold_separates_copies_from_other_pictures(pictures: dict[str, Path]) -> None:
    front = difference_hash(pictures["front.jpg"])
    assert front is not None

    def distance(name: str) -> int:
        other = difference_hash(pictures[name])
        assert other is not None
        return hash_distance(front, other)

    same = [distance(n) for n in ("copy.jpg", "q60.jpg", "half.jpg", "double.png")]
    different = [distance(n) for n in pictures if n.startswith(("other", "closeup", "mirror"))]
    # Re-encoded and resized copies land far below the threshold, other pictures far above.
    assert max(same) <= 4 < spec.DUPLICATE_HASH_MAX_DISTANCE
    assert min(different) >= 2 * spec.DUPLICATE_HASH_MAX_DISTANCE


def element(**changes: object) -> Element:
    values: dict[str, object] = {
        "name": "Hero",
        "description": "A hero in red",
        "frontal": "front.jpg",
        "refers": ("side.jpg",),
    }
    values.update(changes)
    return Element(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "codes"),
    [
        ({}, []),
        ({"name": "x" * 20}, []),
        ({"name": "写" * 20}, []),
        ({"name": "  padded name  "}, []),
        ({"name": "x" * 21}, ["name_too_long"]),
        ({"name": "写" * 21}, ["name_too_long"]),
        ({"name": "   "}, ["name_missing"]),
        ({"name": ""}, ["name_missing"]),
        ({"description": "d" * 100}, []),
        ({"description": "d" * 101}, ["description_too_long"]),
        ({"description": "\t\n"}, ["description_missing"]),
        ({"refers": ()}, ["refer_images_count"]),
        ({"refers": ("a", "b", "c")}, []),
        ({"refers": ("a", "b", "c", "d")}, ["refer_images_count"]),
        ({"voice_id": "voice_1"}, ["voice_requires_video"]),
        ({"tags": ("o_101", "character", "TRENDING meme", "Other")}, []),
        ({"tags": ("o_109",)}, ["tag_unknown"]),
        ({"tags": ("hero",)}, ["tag_unknown"]),
        ({"callback_url": "https://example.com/hook"}, []),
        ({"callback_url": "http://example.com"}, []),
        ({"callback_url": "ftp://example.com/hook"}, ["callback_url_invalid"]),
        ({"callback_url": "/relative/hook"}, ["callback_url_invalid"]),
        ({"callback_url": "https://"}, ["callback_url_invalid"]),
    ],
)
def test_element_rules(changes: dict[str, object], codes: list[str]) -> None:
    findings = element_findings(element(**changes), [])
    assert [finding.code for finding in findings] == codes


@pytest.mark.parametrize(
    ("videos", "codes"), [(("a.mp4",), []), (("a.mp4", "b.mp4"), ["video_count"])]
)
def test_video_element_count(videos: tuple[str, ...], codes: list[str]) -> None:
    video_element = Element("Hero", "A hero", videos=videos, voice_id="voice_1")
    assert video_element.reference_type == "video_refer"
    assert [f.code for f in element_findings(video_element, [])] == codes


def test_images_and_video_together_are_a_usage_error() -> None:
    with pytest.raises(UsageError):
        Element("Hero", "A hero", frontal="a.jpg", videos=("a.mp4",))


def test_tag_ids_accept_names_case_insensitively() -> None:
    tagged = element(tags=("CHARACTER", "o_104", "prop", "nonsense"))
    assert tagged.tag_ids() == ["o_102", "o_104"]


@pytest.mark.parametrize("copy", ["copy.jpg", "q60.jpg", "half.jpg", "double.png"])
def test_refer_duplicating_frontal_is_found(pictures: dict[str, Path], copy: str) -> None:
    report = check_element(
        element(
            frontal=str(pictures["front.jpg"]),
            refers=(str(pictures["other2.jpg"]), str(pictures[copy])),
        )
    )
    assert report.codes() == ["refer_image_duplicates_frontal"]
    assert copy in report.findings[0].message
    assert not report.ok


@pytest.mark.parametrize("other", ["closeup.jpg", "mirrored.jpg", "other3.jpg"])
def test_other_angles_are_not_duplicates(pictures: dict[str, Path], other: str) -> None:
    report = check_element(
        element(frontal=str(pictures["front.jpg"]), refers=(str(pictures[other]),))
    )
    assert report.codes() == []
    assert report.ok


def test_element_reports_its_files(media: Mapping[str, Path]) -> None:
    report = check_element(
        Element(
            "Hero",
            "A hero",
            frontal=str(media["img_1024x768_circle_jpg"]),
            refers=(str(media["img_299x300_png"]), str(media["vid_1080p_4s_mov"])),
        )
    )
    assert [r.codes() for r in report.files] == [[], ["dimension_too_small"], []]
    assert report.codes() == ["wrong_media_kind"]
    assert not report.ok


def test_video_element_with_an_image_is_wrong_kind(media: Mapping[str, Path]) -> None:
    report = check_element(Element("Hero", "A hero", videos=(str(media["img_300x300_png"]),)))
    assert report.codes() == ["wrong_media_kind"]
    ok = check_element(Element("Hero", "A hero", videos=(str(media["vid_1080p_4s_mov"]),)))
    assert ok.ok
    assert inspect_file(media["vid_1080p_4s_mov"]).ok
