"""Image repair end to end: real Pillow files in, checked outputs out (mediaprep.fixers.image)."""

from __future__ import annotations

import errno
import functools
import hashlib
import importlib.util
import io
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageCms, ImageDraw, PngImagePlugin, features

from mediaprep import spec
from mediaprep.findings import FileReport
from mediaprep.fixers import image as image_fixer
from mediaprep.fixers import plan as plan_module
from mediaprep.fixers.image import ImageJob, plan_image, plan_layout, scaled_size
from mediaprep.fixers.plan import (
    Fit,
    FixOptions,
    FixResult,
    Step,
    fix_file,
    is_blur,
    parse_colour,
    plan_fix,
)
from mediaprep.inspectors import inspect_local

BACKGROUND = (40, 150, 220)
DISC = (220, 40, 40)
ORIENTATION = 0x0112
GPS_IFD = 0x8825
MIB = spec.MIB


# --- helpers --------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scene(
    size: tuple[int, int],
    diameter: int,
    centre: tuple[int, int] | None = None,
    mode: str = "RGB",
) -> Image.Image:
    """A plain background with one filled disc, ``diameter`` across, at ``centre``."""
    image = Image.new("RGB", size, BACKGROUND)
    cx, cy = centre or (size[0] // 2, size[1] // 2)
    radius = diameter / 2
    ImageDraw.Draw(image).ellipse(
        (cx - radius, cy - radius, cx + radius - 1, cy + radius - 1), fill=DISC
    )
    return image if mode == "RGB" else image.convert(mode)


def _distance(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """Per pixel, the largest channel difference from ``colour``."""
    red, green, blue = ImageChops.difference(image, Image.new("RGB", image.size, colour)).split()
    return ImageChops.lighter(ImageChops.lighter(red, green), blue)


def disc_box(image: Image.Image, colour: tuple[int, int, int] = DISC) -> tuple[int, int, int, int]:
    """The bounding box of the pixels nearer ``colour`` than the background (edges halved)."""
    rgb = image.convert("RGB")
    to_colour = _distance(rgb, colour)
    nearer = ImageChops.subtract(_distance(rgb, BACKGROUND), to_colour).point(
        lambda value: 255 if value > 0 else 0
    )
    close = to_colour.point(lambda value: 255 if value < 110 else 0)
    box = ImageChops.multiply(nearer, close).getbbox()
    assert box is not None, "the disc is gone"
    return box


def disc_size(image: Image.Image) -> tuple[int, int]:
    left, top, right, bottom = disc_box(image)
    return right - left, bottom - top


def disc_centre(image: Image.Image) -> tuple[float, float]:
    left, top, right, bottom = disc_box(image)
    return (left + right) / 2, (top + bottom) / 2


def assert_close(measured: float, expected: float, *, rel: float = 0.02, pixels: float = 2) -> None:
    assert abs(measured - expected) <= max(rel * expected, pixels), (measured, expected)


def assert_round_disc(image: Image.Image, diameter: float) -> None:
    """The disc is still a circle ``diameter`` across: its width and its height within 2%."""
    width, height = disc_size(image)
    assert_close(width, diameter)
    assert_close(height, diameter)


def save(image: Image.Image, path: Path, fmt: str | None = None, **params: Any) -> Path:
    image.save(path, fmt, **params)
    return path


def fix(source: Path, tmp_path: Path, **options: Any) -> tuple[FixResult, Path]:
    """Fix ``source`` into a fresh folder; check the output passes and the input is untouched."""
    before = sha256(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = fix_file(source, out_dir, FixOptions(**options))
    assert sha256(source) == before
    assert result.error is None, result.error
    assert result.ok, result.after
    assert result.output is not None
    output = Path(result.output)
    assert inspect_local(output).ok
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
    return result, output


def jpeg_luma_table_sum(data: bytes | Path) -> int:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        return sum(image.quantization[0])


def reference_table_sum(quality: int) -> int:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
    return jpeg_luma_table_sum(buffer.getvalue())


@functools.cache
def srgb_profile() -> bytes:
    """An sRGB profile, made once: its header holds the time it was made."""
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


# --- files that pass are copied -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "fmt"),
    [
        ("square.jpg", (400, 400), "JPEG"),
        ("exact-min.jpeg", (300, 300), "JPEG"),
        ("ratio-2.5.png", (750, 300), "PNG"),
        ("ratio-0.4.png", (300, 750), "PNG"),
    ],
)
def test_a_passing_file_is_copied_byte_for_byte(
    tmp_path: Path, name: str, size: tuple[int, int], fmt: str
) -> None:
    source = save(scene(size, 100), tmp_path / name, fmt)
    result, output = fix(source, tmp_path)
    assert result.steps == ()
    assert sha256(output) == sha256(source)
    assert output.suffix == source.suffix


def test_extension_mismatch_alone_copies_under_the_right_suffix(tmp_path: Path) -> None:
    source = save(scene((400, 400), 100), tmp_path / "really-a-png.jpg", "PNG")
    result, output = fix(source, tmp_path)
    assert result.steps == ()
    assert output.suffix == ".png"
    assert sha256(output) == sha256(source)
    assert inspect_local(output).codes() == []


def test_extension_mismatch_with_work_gets_the_right_suffix(tmp_path: Path) -> None:
    source = save(scene((200, 200), 50), tmp_path / "small-png.jpeg", "PNG")
    _, output = fix(source, tmp_path)
    assert output.suffix == ".png"
    with Image.open(output) as image:
        assert image.format == "PNG"


# --- size and ratio -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((200, 100), (600, 300)),
        ((299, 300), (300, 301)),
        ((300, 299), (301, 300)),
        ((151, 97), (467, 300)),
        ((120, 300), (300, 750)),
    ],
)
def test_too_small_is_upscaled_keeping_the_ratio(
    tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    diameter = min(size) // 2
    source = save(scene(size, diameter), tmp_path / "small.jpg", "JPEG", quality=95)
    result, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert image.size == expected
        factor = expected[0] / size[0]
        width, height = disc_size(image)
    assert_close(width, diameter * factor)
    assert_close(height, diameter * factor)
    assert [step.action for step in result.steps] == ["resize", "encode"]
    assert bool(result.warnings) == (factor > 2)


def test_an_upscale_above_two_warns(tmp_path: Path) -> None:
    source = save(scene((100, 100), 40), tmp_path / "tiny.png")
    result, _ = fix(source, tmp_path)
    assert any("×3.00" in warning and "detail" in warning for warning in result.warnings)


def test_min_side_option_sets_the_upscale_target(tmp_path: Path) -> None:
    source = save(scene((100, 200), 40), tmp_path / "tiny.png")
    _, output = fix(source, tmp_path, min_side=512)
    with Image.open(output) as image:
        assert image.size == (512, 1024)


@pytest.mark.parametrize(
    ("size", "canvas"),
    [
        ((1000, 100), (1000, 400)),
        ((100, 1000), (400, 1000)),
        ((751, 300), (751, 301)),
        ((300, 751), (301, 751)),
        ((1001, 333), (1001, 401)),
    ],
)
def test_pad_extends_the_canvas_to_the_nearest_ratio_centred(
    tmp_path: Path, size: tuple[int, int], canvas: tuple[int, int]
) -> None:
    diameter = min(size) * 4 // 5
    # The disc sits off-centre along the long side, so only a centred picture puts it right.
    wide = size[0] > size[1]
    centre = (size[0] // 3, size[1] // 2) if wide else (size[0] // 2, size[1] // 3)
    source = save(scene(size, diameter, centre), tmp_path / "long.png")
    result, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert image.size == canvas
        assert spec.ratio_allowed(*image.size)
        offset = ((canvas[0] - size[0]) // 2, (canvas[1] - size[1]) // 2)
        cx, cy = disc_centre(image)
        assert abs(cx - (centre[0] + offset[0])) <= 1
        assert abs(cy - (centre[1] + offset[1])) <= 1
        assert disc_size(image) == (diameter, diameter)
        assert image.getpixel((canvas[0] - 1, canvas[1] - 1)) == (255, 255, 255)
    assert [step.action for step in result.steps] == ["pad", "encode"]


def test_pad_colour_and_blur(tmp_path: Path) -> None:
    source = save(scene((900, 100), 60), tmp_path / "wide.png")
    _, output = fix(source, tmp_path / "grey", pad_color="#202020")
    with Image.open(output) as image:
        assert image.getpixel((0, 0)) == (32, 32, 32)
    _, blurred = fix(source, tmp_path / "blur", pad_color="blur")
    with Image.open(blurred) as image:
        corner = image.getpixel((0, 0))
        assert isinstance(corner, tuple)
        # The fill is the picture itself, blurred: mostly its blue background.
        assert all(abs(a - b) < 40 for a, b in zip(corner, BACKGROUND, strict=True))
        # The fill holds a blurred disc too: measure inside the picture's band only.
        assert image.size == (900, 360)
        assert_round_disc(image.crop((0, 130, 900, 230)), 60)


def test_fit_blur_pads_with_a_blurred_copy(tmp_path: Path) -> None:
    source = save(scene((100, 900), 60), tmp_path / "tall.png")
    result, _ = fix(source, tmp_path, fit="blur")
    assert any(step.action == "pad" and step.detail.endswith("blur") for step in result.steps)


@pytest.mark.parametrize("pad_color", ["BLUR", "Blur"])
def test_blur_is_blur_in_any_case(tmp_path: Path, pad_color: str) -> None:
    source = save(scene((900, 100), 60), tmp_path / "wide.png")
    result, output = fix(source, tmp_path, pad_color=pad_color)
    assert str(result.steps[0]) == "pad: 900 × 100 px -> 900 × 360 px, centred on blur"
    with Image.open(output) as image:
        corner = image.getpixel((0, 0))
        assert isinstance(corner, tuple)
        assert all(abs(a - b) < 40 for a, b in zip(corner, BACKGROUND, strict=True))


@pytest.mark.parametrize(
    ("value", "rgb"),
    [("white", (255, 255, 255)), ("WHITE", (255, 255, 255)), ("#202020", (32, 32, 32))],
)
def test_colours_parse_in_any_case(value: str, rgb: tuple[int, int, int]) -> None:
    assert parse_colour(value) == rgb
    assert not is_blur(value)


def test_blur_is_not_a_colour() -> None:
    assert is_blur("bLuR")
    with pytest.raises(ValueError, match="'BLUR' is not a colour"):
        parse_colour("BLUR")
    with pytest.raises(ValueError, match="flatten colour 'BLUR' is not a colour"):
        FixOptions(flatten="BLUR")


@pytest.mark.parametrize(
    ("size", "crop", "out"),
    [
        ((1000, 400), (1000, 400), None),
        ((1200, 400), (1000, 400), (1000, 400)),
        ((400, 1200), (400, 1000), (400, 1000)),
        ((1000, 100), (250, 100), (750, 300)),
    ],
)
def test_crop_cuts_centred_to_the_nearest_ratio(
    tmp_path: Path,
    size: tuple[int, int],
    crop: tuple[int, int],
    out: tuple[int, int] | None,
) -> None:
    diameter = min(size) // 2
    source = save(scene(size, diameter), tmp_path / "crop.png")
    result, output = fix(source, tmp_path, fit="crop")
    with Image.open(output) as image:
        if out is None:
            assert result.steps == ()
            return
        assert image.size == out
        factor = out[0] / crop[0]
        cx, cy = disc_centre(image)
        assert abs(cx - out[0] / 2) <= 1.5
        assert abs(cy - out[1] / 2) <= 1.5
        assert_round_disc(image, diameter * factor)


def test_pad_and_upscale_together_give_least_distortion(tmp_path: Path) -> None:
    source = save(scene((100, 400), 80), tmp_path / "narrow.jpg", "JPEG", quality=95)
    result, output = fix(source, tmp_path)
    assert [step.action for step in result.steps] == ["resize", "pad", "encode"]
    with Image.open(output) as image:
        assert image.size == (300, 750)
        factor = 750 / 400
        width, height = disc_size(image)
        assert disc_centre(image) == pytest.approx((150, 375), abs=1.5)
    assert_close(width, 80 * factor)
    assert_close(height, 80 * factor)


@pytest.mark.parametrize(
    "size", [(1, 1), (1, 1000), (1000, 1), (1, 2), (3, 7), (2999, 1), (7, 13), (301, 753)]
)
@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_degenerate_and_odd_sizes_still_pass(
    tmp_path: Path, size: tuple[int, int], fit: str
) -> None:
    source = save(Image.new("RGB", size, BACKGROUND), tmp_path / "odd.png")
    _, output = fix(source, tmp_path, fit=fit)
    with Image.open(output) as image:
        assert min(image.size) >= spec.IMAGE_MIN_SIDE
        assert spec.ratio_allowed(*image.size)


# --- orientation ----------------------------------------------------------------------------------


#: How to store an upright picture so that EXIF orientation N shows it upright again: the
#: inverse of the turn orientation N asks a viewer to make.
STORED_FOR: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("keep_metadata", [False, True])
@pytest.mark.parametrize("orientation", sorted(STORED_FOR))
def test_exif_orientation_is_applied_to_the_pixels(
    tmp_path: Path, orientation: int, keep_metadata: bool
) -> None:
    # Upright: 400 × 600, a 60 × 40 green mark in the top-left corner and the disc off-centre
    # both ways, so every mirror and turn puts one of them somewhere else.
    upright = scene((400, 600), 100, (250, 400))
    ImageDraw.Draw(upright).rectangle((0, 0, 59, 39), fill=(0, 200, 0))
    stored = upright.transpose(STORED_FOR[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    source = save(stored, tmp_path / "turned.jpg", "JPEG", quality=95, exif=exif.tobytes())
    assert inspect_local(source).info.orientation == orientation
    result, output = fix(source, tmp_path, keep_metadata=keep_metadata)
    assert result.steps[0].action == "orient"
    with Image.open(output) as image:
        assert image.size == (400, 600)
        assert disc_box(image, (0, 200, 0)) == pytest.approx((0, 0, 60, 40), abs=2)
        assert disc_centre(image) == pytest.approx((250, 400), abs=1.5)
        assert_round_disc(image, 100)
        # Kept EXIF says "as stored" (1); without it there is no orientation tag at all.
        assert image.getexif().get(ORIENTATION) == (1 if keep_metadata else None)


# --- formats and colours --------------------------------------------------------------------------


FORMATS = [
    ("WEBP", ".webp", {"quality": 100}),
    ("BMP", ".bmp", {}),
    ("TIFF", ".tif", {}),
    ("GIF", ".gif", {}),
]
if features.check("avif"):
    FORMATS.append(("AVIF", ".avif", {"quality": 100}))
if importlib.util.find_spec("pillow_heif"):  # the `heif` extra (the dev extra has it)
    FORMATS.append(("HEIF", ".heic", {"quality": 95}))


@pytest.mark.parametrize(("fmt", "suffix", "params"), FORMATS)
def test_unsupported_formats_become_jpeg(
    tmp_path: Path, fmt: str, suffix: str, params: dict[str, Any]
) -> None:
    source = save(scene((500, 400), 200), tmp_path / f"picture{suffix}", fmt, **params)
    result, output = fix(source, tmp_path)
    assert output.suffix == ".jpg"
    assert result.steps[0].detail.startswith(f"{fmt} -> JPEG")
    with Image.open(output) as image:
        assert image.format == "JPEG"
        assert image.size == (500, 400)
        assert_round_disc(image, 200)


def test_animated_gif_keeps_its_first_frame(tmp_path: Path) -> None:
    frames = [scene((400, 400), 200), Image.new("RGB", (400, 400), (0, 200, 0))]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result, output = fix(source, tmp_path)
    assert [step.action for step in result.steps][:2] == ["frame", "convert"]
    with Image.open(output) as image:
        assert_round_disc(image, 200)


def test_animated_png_keeps_its_first_frame_as_png(tmp_path: Path) -> None:
    frames = [scene((400, 400), 200), Image.new("RGB", (400, 400), (0, 200, 0))]
    source = tmp_path / "anim.png"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=100)
    assert "animated" in inspect_local(source).codes()
    result, output = fix(source, tmp_path)
    assert result.steps[0].action == "frame"
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert not getattr(image, "is_animated", False)
        assert_round_disc(image, 200)


def test_mpo_extra_frames_are_left_alone(tmp_path: Path) -> None:
    frames = [scene((400, 400), 200), scene((400, 400), 100)]
    source = tmp_path / "phone.jpg"
    frames[0].save(source, "MPO", save_all=True, append_images=frames[1:])
    report = inspect_local(source)
    assert report.info.format == "MPO"
    assert plan_image(report, FixOptions()).copy_only


def test_an_mpo_with_gps_keeps_both_images_and_loses_the_gps(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    frames = [scene((400, 400), 200), scene((400, 400), 100)]
    source = tmp_path / "phone.jpg"
    frames[0].save(source, "MPO", save_all=True, append_images=frames[1:], exif=exif.tobytes())
    result, output = fix(source, tmp_path)
    assert [step.detail for step in result.steps] == [
        "remove EXIF (with GPS location); pixels untouched"
    ]
    assert b"Exif\x00\x00" not in output.read_bytes()
    with Image.open(output) as image, Image.open(source) as original:
        assert (image.format, image.n_frames) == ("MPO", 2)
        image.seek(1)
        original.seek(1)
        assert image.tobytes() == original.tobytes()


def test_cmyk_converts_with_the_right_colours(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (400, 400), (0, 255, 255, 0))
    ImageDraw.Draw(cmyk).rectangle((200, 0, 399, 399), fill=(0, 0, 0, 128))
    tiff = save(cmyk, tmp_path / "print.tif")
    _, output = fix(tiff, tmp_path / "tiff")
    with Image.open(output) as image:
        assert image.mode == "RGB"
        assert image.getpixel((100, 200)) == pytest.approx((255, 0, 0), abs=4)
        assert image.getpixel((300, 200)) == pytest.approx((127, 127, 127), abs=4)
    # A small CMYK JPEG: Pillow writes it Adobe-style (inverted); it must not come out negative.
    small = save(cmyk.resize((200, 200)), tmp_path / "print.jpg", "JPEG", quality=95)
    _, output = fix(small, tmp_path / "jpeg")
    with Image.open(output) as image:
        assert image.size == (300, 300)
        assert image.getpixel((60, 150)) == pytest.approx((255, 0, 0), abs=8)


def test_an_embedded_profile_converts_to_srgb(tmp_path: Path) -> None:
    # No CMYK profile ships with Pillow; a Lab image with its Lab profile takes the same path.
    lab_profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    red = (136, 208, 195)  # L* 53.2, a* 80, b* 67: sRGB red, in Pillow's 8-bit Lab
    source = save(
        Image.new("LAB", (400, 400), red), tmp_path / "lab.tif", icc_profile=lab_profile.tobytes()
    )
    result, output = fix(source, tmp_path)
    assert "colour: LAB -> RGB through the embedded ICC profile to sRGB" in map(str, result.steps)
    with Image.open(output) as image:
        assert image.getpixel((200, 200)) == pytest.approx((250, 3, 11), abs=6)
        embedded = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        assert ImageCms.getProfileDescription(embedded).strip() == "sRGB built-in"


def test_sixteen_bit_grey_scales_to_eight_bit(tmp_path: Path) -> None:
    grey = Image.new("I;16", (200, 200), 32896)
    ImageDraw.Draw(grey).rectangle((0, 0, 99, 199), fill=65535)
    source = save(grey, tmp_path / "depth.png")
    assert inspect_local(source).info.mode == "I;16"
    result, output = fix(source, tmp_path)
    assert any(step.action == "colour" for step in result.steps)
    with Image.open(output) as image:
        assert image.mode == "RGB"
        assert image.getpixel((250, 150)) == pytest.approx((128, 128, 128), abs=1)
        assert image.getpixel((50, 150)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "fmt"), [("P", "PNG"), ("LA", "PNG"), ("L", "JPEG"), ("1", "PNG"), ("I", "TIFF")]
)
def test_other_modes_become_eight_bit_rgb(tmp_path: Path, mode: str, fmt: str) -> None:
    image = scene((200, 200), 100, mode="L" if mode == "I" else mode)
    if mode == "I":
        image = image.convert("I").point(lambda value: value * 257)
    source = save(image, tmp_path / f"mode.{fmt.lower()}", fmt)
    _, output = fix(source, tmp_path)
    with Image.open(output) as fixed:
        assert fixed.mode == "RGB"
        if mode in ("P", "1"):
            return
        # Greyscale keeps its grey: the background's luma, not white.
        luma = round(0.299 * BACKGROUND[0] + 0.587 * BACKGROUND[1] + 0.114 * BACKGROUND[2])
        assert fixed.getpixel((5, 5)) == pytest.approx((luma,) * 3, abs=3)


def transparent_scene(size: tuple[int, int]) -> Image.Image:
    image = scene(size, min(size) // 2).convert("RGBA")
    ImageDraw.Draw(image).rectangle((0, 0, size[0] // 4, size[1] - 1), fill=(0, 0, 0, 0))
    return image


def test_a_transparent_png_stays_png_with_alpha(tmp_path: Path) -> None:
    source = save(transparent_scene((200, 200)), tmp_path / "cutout.png")
    _, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert (image.format, image.mode) == ("PNG", "RGBA")
        assert image.getpixel((10, 150)) == (0, 0, 0, 0)
        assert_round_disc(image, 150)


def test_a_transparent_webp_becomes_png(tmp_path: Path) -> None:
    source = save(transparent_scene((400, 400)), tmp_path / "cutout.webp", lossless=True)
    _, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert (image.format, image.mode) == ("PNG", "RGBA")
        alpha = image.getpixel((10, 150))
        assert isinstance(alpha, tuple)
        assert alpha[3] == 0


def test_an_opaque_alpha_channel_is_not_transparency(tmp_path: Path) -> None:
    source = save(scene((400, 400), 200).convert("RGBA"), tmp_path / "opaque.webp", lossless=True)
    _, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert (image.format, image.mode) == ("JPEG", "RGB")


def test_flatten_puts_transparency_on_a_colour_and_writes_jpeg(tmp_path: Path) -> None:
    source = save(transparent_scene((400, 400)), tmp_path / "cutout.png")
    result, output = fix(source, tmp_path, flatten="#00ff00")
    assert "flatten" in [step.action for step in result.steps]
    assert output.suffix == ".jpg"
    with Image.open(output) as image:
        assert image.mode == "RGB"
        assert image.getpixel((20, 200)) == pytest.approx((0, 255, 0), abs=4)
        assert_round_disc(image, 200)


# --- metadata -------------------------------------------------------------------------------------


def metadata_source(tmp_path: Path) -> Path:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    return save(
        scene((200, 200), 100),
        tmp_path / "meta.jpg",
        "JPEG",
        quality=95,
        exif=exif.tobytes(),
        icc_profile=srgb_profile(),
        xmp=xmp,
    )


def test_metadata_is_stripped_but_the_icc_profile_kept(tmp_path: Path) -> None:
    source = metadata_source(tmp_path)
    with Image.open(source) as original:
        assert original.getexif().get_ifd(GPS_IFD)
        assert "xmp" in original.info
    _, output = fix(source, tmp_path)
    with Image.open(output) as image:
        assert "exif" not in image.info
        assert not image.getexif()
        assert "xmp" not in image.info
        assert image.info.get("icc_profile") == srgb_profile()


def test_keep_metadata_keeps_exif_and_gps(tmp_path: Path) -> None:
    source = metadata_source(tmp_path)
    _, output = fix(source, tmp_path, keep_metadata=True)
    with Image.open(output) as image:
        exif = image.getexif()
        assert exif[0x010F] == "PhoneMaker"
        assert exif.get_ifd(GPS_IFD)
        assert exif[ORIENTATION] == 1
        assert "xmp" in image.info
        assert image.info.get("icc_profile") == srgb_profile()


def passing_with_metadata(path: Path, fmt: str, **params: Any) -> Path:
    """A file that passes every check but says where it was taken (EXIF GPS) and holds XMP."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    image = scene((400, 300), 150)
    ImageDraw.Draw(image).line((0, 0, 399, 299), fill=(0, 200, 0), width=3)
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", xmp.decode())
        params["pnginfo"] = text
    else:
        params["xmp"] = xmp
    return save(image, path, fmt, exif=exif.tobytes(), icc_profile=srgb_profile(), **params)


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        raw: bytes = image.tobytes()
    return raw


@pytest.mark.parametrize(("name", "fmt"), [("gps.jpg", "JPEG"), ("gps.png", "PNG")])
def test_a_passing_file_with_gps_is_stripped_without_a_re_encode(
    tmp_path: Path, name: str, fmt: str
) -> None:
    source = passing_with_metadata(tmp_path / name, fmt)
    report = inspect_local(source)
    assert report.ok
    assert report.info.metadata == ("exif", "gps", "xmp")
    plan = plan_fix(report, FixOptions())
    assert not plan.copy_only
    assert plan.steps == (Step("strip", "remove EXIF (with GPS location), XMP; pixels untouched"),)
    result, output = fix(source, tmp_path)
    assert result.steps == plan.steps
    assert output.suffix == source.suffix
    assert pixels(output) == pixels(source)
    data = output.read_bytes()
    assert b"Exif\x00\x00" not in data
    assert b"http://ns.adobe.com/xap/1.0/" not in data
    assert b"PhoneMaker" not in data
    with Image.open(output) as image:
        image.load()
        assert not image.getexif()
        assert "xmp" not in image.info
        assert image.info.get("icc_profile") == srgb_profile()
    assert inspect_local(output).info.metadata == ()


@pytest.mark.parametrize("name", ["gps.jpg", "gps.png"])
def test_keep_metadata_copies_a_passing_file_byte_for_byte(tmp_path: Path, name: str) -> None:
    source = passing_with_metadata(tmp_path / name, "JPEG" if name.endswith("jpg") else "PNG")
    result, output = fix(source, tmp_path, keep_metadata=True)
    assert result.steps == ()
    assert sha256(output) == sha256(source)


def test_a_structure_that_cannot_be_cut_is_re_encoded_with_a_warning(tmp_path: Path) -> None:
    whole = passing_with_metadata(tmp_path / "whole.jpg", "JPEG", quality=95).read_bytes()
    # A stray byte after APP0: Pillow skips it, a lossless cut cannot trust the structure.
    app0_end = 4 + struct.unpack_from(">H", whole, 4)[0]
    source = tmp_path / "stray.jpg"
    source.write_bytes(whole[:app0_end] + b"\x00" + whole[app0_end:])
    assert inspect_local(source).ok
    result, output = fix(source, tmp_path)
    assert [step.action for step in result.steps] == ["encode"]
    assert any("no JPEG marker at byte" in warning for warning in result.warnings)
    with Image.open(output) as image:
        assert not image.getexif()
        assert image.info.get("icc_profile") == srgb_profile()


# --- the byte limit -------------------------------------------------------------------------------


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def test_a_jpeg_over_the_limit_fits_with_quality_at_least_80(tmp_path: Path) -> None:
    source = save(noise((2200, 2200)), tmp_path / "huge.jpg", "JPEG", quality=95, subsampling=0)
    assert source.stat().st_size > spec.IMAGE_MAX_BYTES
    result, output = fix(source, tmp_path)
    assert output.stat().st_size <= spec.IMAGE_MAX_BYTES
    assert jpeg_luma_table_sum(output) <= reference_table_sum(80)
    with Image.open(output) as image:
        assert image.size == (2200, 2200)
    assert result.warnings == ()


def test_a_jpeg_too_big_even_at_quality_80_is_downscaled(tmp_path: Path) -> None:
    source = save(noise((3000, 3000)), tmp_path / "huger.jpg", "JPEG", quality=85, subsampling=0)
    result, output = fix(source, tmp_path)
    assert output.stat().st_size <= spec.IMAGE_MAX_BYTES
    assert jpeg_luma_table_sum(output) <= reference_table_sum(80)
    with Image.open(output) as image:
        assert image.width < 3000
        assert image.size[0] == image.size[1]
    assert any("downscaled" in warning for warning in result.warnings)


def test_an_incompressible_opaque_png_over_the_limit_becomes_jpeg(tmp_path: Path) -> None:
    source = save(noise((2000, 2000)), tmp_path / "big.png", "PNG", compress_level=1)
    assert source.stat().st_size > spec.IMAGE_MAX_BYTES
    result, output = fix(source, tmp_path)
    assert output.suffix == ".jpg"
    assert result.steps[0].detail.startswith("PNG -> JPEG (optimised PNG still ")
    assert result.steps[0].detail.endswith(" MiB; no transparency)")
    assert output.stat().st_size <= spec.IMAGE_MAX_BYTES


def padded_png(path: Path, image: Image.Image, total: int) -> Path:
    """A valid PNG grown to ``total`` bytes by a private chunk before IEND."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    base = buffer.getvalue()
    filler = bytes(total - len(base) - 12)
    chunk = struct.pack(">I", len(filler)) + b"prIv" + filler
    chunk += struct.pack(">I", zlib.crc32(b"prIv" + filler))
    iend = base.rindex(b"IEND") - 4
    path.write_bytes(base[:iend] + chunk + base[iend:])
    return path


def test_the_10_mib_plus_1_png_is_optimised_and_stays_png(
    tmp_path: Path, media: Mapping[str, Path]
) -> None:
    source = media["img_png_10mib_plus1"]
    report = inspect_local(source)
    plan = plan_fix(report, FixOptions())
    assert plan.suffix == ".png"
    (step,) = plan.steps
    assert step.action == "encode"
    assert step.detail.startswith("optimised PNG: 10 MiB -> ")
    assert step.detail.endswith(" KiB; EXIF/GPS/XMP removed")
    result, output = fix(source, tmp_path)
    assert result.steps == plan.steps
    assert output.suffix == ".png"
    assert output.read_bytes() == plan.encoded
    assert output.stat().st_size <= spec.IMAGE_MAX_BYTES
    with Image.open(output) as image:
        assert (image.format, image.size) == ("PNG", (640, 480))
    assert pixels(output) == pixels(source)


def test_an_opaque_rgba_png_over_the_limit_stays_png_when_it_fits(tmp_path: Path) -> None:
    image = scene((400, 400), 200).convert("RGBA")
    source = padded_png(tmp_path / "opaque.png", image, spec.IMAGE_MAX_BYTES + 1)
    result, output = fix(source, tmp_path)
    assert [step.action for step in result.steps] == ["encode"]
    with Image.open(output) as fixed:
        assert (fixed.format, fixed.mode) == ("PNG", "RGB")
        assert fixed.tobytes() == image.convert("RGB").tobytes()


def test_a_transparent_png_over_the_limit_is_downscaled(tmp_path: Path) -> None:
    image = noise((1700, 1700), "RGBA")
    source = save(image, tmp_path / "big-cutout.png", "PNG", compress_level=1)
    assert source.stat().st_size > spec.IMAGE_MAX_BYTES
    result, output = fix(source, tmp_path)
    assert output.suffix == ".png"
    assert output.stat().st_size <= spec.IMAGE_MAX_BYTES
    with Image.open(output) as fixed:
        assert fixed.mode == "RGBA"
        assert fixed.width < 1700
    assert any("downscaled" in warning for warning in result.warnings)


def test_a_pad_past_the_pixel_limit_downscales_via_draft(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    source = save(scene((6000, 200), 150), tmp_path / "panorama.jpg", "JPEG", quality=95)
    result, output = fix(source, tmp_path)
    assert "downscale" in " ".join(step.detail for step in result.steps)
    with Image.open(output) as image:
        assert image.width * image.height <= 2_000_000
        factor = image.width / 6000
        assert_round_disc(image, 150 * factor)


# --- what cannot be fixed, and bad options --------------------------------------------------------


def test_an_unreadable_image_is_reported_with_advice(tmp_path: Path) -> None:
    data = (tmp_path / "x.jpg").write_bytes
    save(scene((400, 400), 100), tmp_path / "whole.jpg", "JPEG")
    data((tmp_path / "whole.jpg").read_bytes()[:3000])
    result = fix_file(tmp_path / "x.jpg", tmp_path)
    assert result.output is None
    assert [finding.code for finding in result.after] == ["unreadable"]
    assert "export it again" in result.after[0].message


def test_a_decompression_bomb_is_refused_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = save(scene((200, 200), 100), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    result = fix_file(source, tmp_path)
    assert result.output is None
    assert [finding.code for finding in result.after] == ["decompression_bomb"]
    assert not result.after[0].fixable
    assert "megapixels" in result.after[0].message


def test_a_file_corrupt_past_its_header_fails_cleanly(tmp_path: Path) -> None:
    whole = save(noise((400, 200)), tmp_path / "whole.jpg", "JPEG")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(whole.read_bytes()[:5000])
    report = inspect_local(broken, fast=True)
    assert "dimension_too_small" in report.codes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = fix_file(broken, out_dir, report=report)
    assert result.output is None
    assert result.error is not None
    assert "broken.jpg" in result.error
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pad_color": "sky-ish"}, "pad colour 'sky-ish' is not a colour"),
        ({"flatten": "blur"}, "flatten colour 'blur' is not a colour"),
        ({"fit": "stretch"}, "unknown fit 'stretch'"),
    ],
)
def test_bad_options_raise_value_error(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    source = save(scene((400, 400), 100), tmp_path / "fine.jpg", "JPEG")
    with pytest.raises(ValueError, match=message):
        plan_fix(inspect_local(source), FixOptions(**options))


# --- one plan, each file read once, interrupted writes --------------------------------------------


def counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[object]:
    """Wrap ``module.name`` so every call is recorded; return the record."""
    calls: list[object] = []
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_a_given_plan_is_followed_and_the_strip_is_done_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = passing_with_metadata(tmp_path / "gps.jpg", "JPEG")
    strips = counting(monkeypatch, image_fixer, "strip_metadata")
    plan = plan_fix(inspect_local(source), FixOptions())
    assert plan.encoded is not None
    monkeypatch.setattr(plan_module, "plan_fix", lambda *args: pytest.fail("planned again"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = fix_file(source, out_dir, FixOptions(), plan=plan)
    assert result.ok
    assert result.output is not None
    assert Path(result.output).read_bytes() == plan.encoded
    assert len(strips) == 1


def test_a_plan_of_another_report_is_refused(tmp_path: Path) -> None:
    source = save(scene((200, 200), 100), tmp_path / "small.png")
    plan = plan_fix(inspect_local(source), FixOptions())
    with pytest.raises(ValueError, match="another report"):
        fix_file(source, tmp_path, FixOptions(), report=inspect_local(source), plan=plan)


def test_an_opaque_png_over_the_limit_is_rendered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = save(noise((2000, 2000)), tmp_path / "big.png", "PNG", compress_level=1)
    renders = counting(monkeypatch, image_fixer, "_render")
    plan = plan_fix(inspect_local(source), FixOptions())
    assert plan.suffix == ".jpg"
    assert plan.encoded is not None
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = fix_file(source, out_dir, FixOptions(), plan=plan)
    assert result.ok
    assert result.output is not None
    assert Path(result.output).read_bytes() == plan.encoded
    assert len(renders) == 1


def test_write_warnings_go_to_the_result_and_leave_the_plan_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = save(scene((1200, 800), 300), tmp_path / "big.jpg", "JPEG", quality=95)
    monkeypatch.setattr(spec, "IMAGE_MAX_BYTES", source.stat().st_size // 4)
    plan = plan_fix(inspect_local(source), FixOptions())
    assert plan.warnings == ()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = fix_file(source, out_dir, FixOptions(), plan=plan)
    assert result.ok, result
    assert any("downscaled" in warning for warning in result.warnings)
    assert plan.warnings == ()


class Interrupted(BaseException):
    """Stands for Ctrl-C in the middle of a write."""


def half_then(failure: BaseException) -> Callable[[Path, bytes], int]:
    """A ``Path.write_bytes`` that writes half the data, then fails."""

    def write_bytes(path: Path, data: bytes) -> int:
        with path.open("wb") as handle:
            handle.write(data[: len(data) // 2])
        raise failure

    return write_bytes


def half_copy(failure: BaseException) -> Callable[[Path, Path], None]:
    """A ``copy_exact`` that copies half the file, then fails."""

    def copy_exact(source: Path, temp: Path) -> None:
        half_then(failure)(temp, source.read_bytes())

    return copy_exact


@pytest.mark.parametrize(
    "failure", [Interrupted(), OSError(errno.ENOSPC, "No space left on device")], ids=repr
)
@pytest.mark.parametrize("path", ["convert", "strip", "copy"])
def test_an_interrupted_image_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, failure: BaseException
) -> None:
    if path == "convert":
        source = save(scene((500, 400), 200), tmp_path / "picture.webp", "WEBP")
    elif path == "strip":
        source = passing_with_metadata(tmp_path / "gps.jpg", "JPEG")
    else:
        source = save(scene((400, 400), 100), tmp_path / "fine.jpg", "JPEG")
    before = sha256(source)
    plan = plan_fix(inspect_local(source), FixOptions())
    assert plan.copy_only == (path == "copy")
    monkeypatch.setattr(Path, "write_bytes", half_then(failure))
    monkeypatch.setattr(plan_module, "copy_exact", half_copy(failure))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if isinstance(failure, Interrupted):
        with pytest.raises(Interrupted):
            fix_file(source, out_dir, FixOptions(), plan=plan)
    else:
        result = fix_file(source, out_dir, FixOptions(), plan=plan)
        assert result.output is None
        assert result.error is not None
        assert "No space left" in result.error
    assert list(out_dir.iterdir()) == []
    assert sha256(source) == before


# --- plans and geometry ---------------------------------------------------------------------------


def test_a_plan_is_the_smallest_set_of_steps(tmp_path: Path) -> None:
    source = save(scene((100, 400), 50), tmp_path / "narrow.webp", "WEBP")
    plan = plan_image(inspect_local(source), FixOptions())
    assert [str(step) for step in plan.steps] == [
        "convert: WEBP -> JPEG",
        "resize: upscale 100 × 400 -> 188 × 750 px (Lanczos, ×1.88)",
        "pad: 188 × 750 px -> 300 × 750 px, centred on white",
        "encode: JPEG quality 95 (down to 80, then smaller, if over 10 MiB); EXIF/GPS/XMP removed",
    ]
    assert plan.suffix == ".jpg"
    job = plan.job
    assert isinstance(job, ImageJob)
    assert (job.layout.size, job.layout.canvas, job.layout.offset) == (
        (188, 750),
        (300, 750),
        (56, 0),
    )
    assert plan.warnings == ()


def test_an_image_report_without_info_is_unfixable() -> None:
    report = FileReport("gone.png", "image")
    plan = plan_image(report, FixOptions())
    assert not plan.can_fix
    assert plan.unfixable[0].code == "unreadable"


@pytest.mark.parametrize("fit", ["pad", "crop"])
@pytest.mark.parametrize(
    "size",
    [
        (1, 1),
        (1, 1000),
        (1000, 1),
        (299, 300),
        (300, 300),
        (750, 300),
        (751, 300),
        (300, 750),
        (300, 751),
        (2, 5),
        (5, 2),
        (5, 1),
        (1, 3),
        (7919, 7),
        (40000, 2000),
    ],
)
def test_layouts_are_inside_every_limit(size: tuple[int, int], fit: str) -> None:
    layout, factor = plan_layout(*size, fit, 300, Image.MAX_IMAGE_PIXELS)
    width, height = layout.canvas
    assert spec.ratio_allowed(width, height)
    assert min(width, height) >= spec.IMAGE_MIN_SIDE
    assert Image.MAX_IMAGE_PIXELS is None or width * height <= Image.MAX_IMAGE_PIXELS
    assert layout.size[0] <= width
    assert layout.size[1] <= height
    if layout.crop is None and spec.ratio_allowed(*size) and min(size) >= 300:
        assert layout.canvas == size
        assert factor == 1
    if layout.canvas != layout.size:
        # Padding only ever adds along one axis.
        assert layout.canvas[0] == layout.size[0] or layout.canvas[1] == layout.size[1]


@pytest.mark.parametrize(
    ("size", "factor", "expected"),
    [((750, 300), 0.5, (750, 300)), ((1000, 400), 0.85, (850, 340)), ((401, 999), 0.9, (361, 899))],
)
def test_scaled_size_keeps_the_ratio_and_the_minimum(
    size: tuple[int, int], factor: float, expected: tuple[int, int]
) -> None:
    assert scaled_size(*size, factor, 300) == expected
    assert spec.ratio_allowed(*expected)


# --- property: any size and mode is fixed ---------------------------------------------------------

MODE_FORMATS: dict[str, list[str]] = {
    "RGB": ["PNG", "JPEG", "WEBP"],
    "RGBA": ["PNG", "WEBP"],
    "L": ["PNG", "JPEG"],
    "P": ["PNG", "GIF"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "LA": ["PNG"],
}
FITS: tuple[Fit, ...] = ("pad", "crop", "blur")
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tif"}


def _make(mode: str, size: tuple[int, int]) -> Image.Image:
    image = scene(size, max(1, min(size) // 2))
    if mode == "I;16":
        return image.convert("L").convert("I").point(lambda value: value * 257).convert("I;16")
    return image.convert(mode)


@st.composite
def images(draw: Callable[..., Any]) -> tuple[str, str, tuple[int, int], Fit]:
    mode = draw(st.sampled_from(sorted(MODE_FORMATS)))
    fmt = draw(st.sampled_from(MODE_FORMATS[mode]))
    width = draw(st.integers(1, 3000))
    height = draw(
        st.one_of(
            st.integers(1, 3000),
            st.sampled_from([max(1, width * 2 // 5), width * 5 // 2, width * 5 // 2 + 1]),
        )
    )
    fit: Fit = draw(st.sampled_from(FITS))
    return mode, fmt, (width, max(1, min(height, 3000))), fit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=images())
def test_any_image_is_fixed_or_reported(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, str, tuple[int, int], Fit]
) -> None:
    mode, fmt, size, fit = case
    folder = tmp_path_factory.mktemp("prop")
    source = save(_make(mode, size), folder / f"in{SUFFIXES[fmt]}", fmt)
    before = sha256(source)
    out_dir = folder / "out"
    out_dir.mkdir()
    result = fix_file(source, out_dir, FixOptions(fit=fit))
    assert sha256(source) == before
    if result.output is None:
        errors = [f for f in result.after if f.is_error and not f.fixable]
        assert errors, result
        assert all(not finding.fixable for finding in result.after), result
        assert list(out_dir.iterdir()) == []
    else:
        assert result.ok, result
        after = inspect_local(result.output)
        assert after.ok
        assert after.codes() == []
