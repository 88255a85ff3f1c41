"""Repair images with Pillow: plan the smallest change from the findings, then carry it out.

The plan is worked out from the inspection's ``ImageInfo`` (sizes as displayed, format, mode),
so it can be shown before anything is written. The writer then follows one fixed order, the
order that distorts least:

    first frame -> EXIF orientation -> 8-bit RGB(A) in sRGB -> flatten -> crop -> resize -> pad
    -> encode (JPEG quality search, then downscale, while the file is over the size limit)

Every geometric decision is integer arithmetic on the limits in ``spec``, checked before use.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from PIL import Image, ImageCms, ImageFilter, ImageOps, JpegImagePlugin, PngImagePlugin

from .. import spec
from ..errors import FixError, ImageBomb, ImageUnreadable, MetadataStructureError
from ..findings import FileReport, Finding
from ..info import ImageInfo
from ..inspectors.image import EXIF_ORIENTATION_TAG, open_image
from .metadata import strip_metadata
from .plan import ADVICE, BLUR, Fit, FixOptions, FixPlan, Step, is_blur, parse_colour

OutputFormat = Literal["JPEG", "PNG"]

#: JPEG quality of every re-encoded image, and the lowest the size search may go.
JPEG_QUALITY: Final = 95
JPEG_QUALITY_FLOOR: Final = 80
#: Outputs aim this far under the byte limit, so a re-save elsewhere does not tip them over.
SIZE_MARGIN: Final = 0.02
#: How far under Pillow's buffer a JPEG must stay before it is re-encoded with optimised tables.
OPTIMIZE_HEADROOM: Final = 0.1
#: Pillow's own threshold (JpegImagePlugin): from this quality up it gives an optimised JPEG a
#: buffer of two bytes a pixel instead of one.
PILLOW_DOUBLE_BUFFER_QUALITY: Final = 95
#: Each downscale step, once quality alone cannot bring a file under the limit.
DOWNSCALE_STEP: Final = 0.85
#: An upscale by more than this draws a warning: detail cannot be invented.
UPSCALE_WARN_FACTOR: Final = 2.0
#: The blurred fill is drawn this many pixels along its long side, then stretched to the canvas.
BLUR_WORK_SIDE: Final = 64
BLUR_RADIUS: Final = 4
#: Pillow's JPEG ``subsampling`` values.
SUBSAMPLING_444: Final = 0
SUBSAMPLING_420: Final = 2
#: 16-bit samples to 8-bit: 65535 -> 255, mid-grey 32896 -> 128.
SIXTEEN_TO_EIGHT: Final = 255 / 65535
SIXTEEN_BIT_MODES: Final = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
#: The error findings an image fix repairs; any other error makes the file unfixable.
REPAIRED_ERRORS: Final = frozenset(
    {"format_unsupported", "file_too_large", "dimension_too_small", "aspect_ratio_out_of_range"}
)
#: What reading and rendering an image may raise (the writer turns each into a FixError).
RENDER_ERRORS: Final = (
    ImageBomb,
    ImageUnreadable,
    ImageCms.PyCMSError,
    FixError,
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    struct.error,
)
UNPREMULTIPLIED: Final = {"La": "LA", "RGBa": "RGBA"}
#: Which ICC colour space each mode's pixels are in.
PROFILE_SPACES: Final = {"L": "GRAY", "CMYK": "CMYK", "LAB": "Lab", "RGB": "RGB"}
#: How the plan names each kind of metadata ``ImageInfo.metadata`` lists ("gps" goes with EXIF).
METADATA_TEXT: Final = {"exif": "EXIF", "xmp": "XMP", "iptc": "IPTC", "text": "comments"}
ORIENTATION_TEXT: Final = {
    2: "mirror left to right",
    3: "rotate 180°",
    4: "mirror top to bottom",
    5: "mirror along the main diagonal",
    6: "rotate 90° clockwise",
    7: "mirror along the anti-diagonal",
    8: "rotate 90° anticlockwise",
}


@dataclass(frozen=True)
class Layout:
    """Where the picture goes: an optional crop of the upright source, its new size, the canvas.

    The picture (``size``) is centred on the canvas; they differ only when padding.
    """

    crop: tuple[int, int, int, int] | None
    size: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def offset(self) -> tuple[int, int]:
        """The picture's top-left corner on the canvas (centred, odd pixels to the far side)."""
        return (self.canvas[0] - self.size[0]) // 2, (self.canvas[1] - self.size[1]) // 2


@dataclass(frozen=True)
class ImageJob:
    """What ``write_image`` needs, as decided by ``plan_image`` (kept in ``plan.job``).

    ``fill`` is a pad colour, or :data:`BLUR` for a blurred extension of the picture.
    """

    format: OutputFormat
    source_size: tuple[int, int]
    layout: Layout
    fill: str
    flatten: str | None


# --- Geometry -----------------------------------------------------------------------------------


def _too_wide(width: int, height: int) -> bool:
    high_n, high_d = spec.IMAGE_RATIO_MAX
    return width * high_d > height * high_n


def _centred_crop(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred box of an allowed ratio."""
    if _too_wide(width, height):
        high_n, high_d = spec.IMAGE_RATIO_MAX
        new_width = height * high_n // high_d
        left = (width - new_width) // 2
        return left, 0, left + new_width, height
    low_n, low_d = spec.IMAGE_RATIO_MIN
    new_height = width * low_d // low_n
    top = (height - new_height) // 2
    return 0, top, width, top + new_height


def _padded(width: int, height: int) -> tuple[int, int]:
    """The smallest canvas of an allowed ratio holding ``width`` × ``height``."""
    if spec.ratio_allowed(width, height):
        return width, height
    if _too_wide(width, height):
        high_n, high_d = spec.IMAGE_RATIO_MAX
        return width, -(-width * high_d // high_n)
    low_n, low_d = spec.IMAGE_RATIO_MIN
    return -(-height * low_n // low_d), height


def _pad_short_side(width: int, height: int) -> float:
    """The short side of the padded canvas before rounding (the padding stretches it)."""
    if _too_wide(width, height):
        high_n, high_d = spec.IMAGE_RATIO_MAX
        return width * high_d / high_n
    low_n, low_d = spec.IMAGE_RATIO_MIN
    return height * low_n / low_d


def scaled_size(width: int, height: int, factor: float, min_side: int) -> tuple[int, int]:
    """Scale an allowed-ratio size by ``factor``, keeping the ratio allowed and each side >= min.

    Rounding may move the long side by a pixel; it is clamped so the ratio stays in range.
    """
    short, long = sorted((width, height))
    new_short = max(min_side, round(short * factor))
    if width >= height:
        high_n, high_d = spec.IMAGE_RATIO_MAX
        limit = new_short * high_n // high_d
    else:
        low_n, low_d = spec.IMAGE_RATIO_MIN
        limit = new_short * low_d // low_n
    new_long = max(new_short, min(round(long * new_short / short), limit))
    return (new_long, new_short) if width >= height else (new_short, new_long)


def _scaled_layout(
    width: int, height: int, crop: tuple[int, int, int, int] | None, factor: float
) -> Layout:
    if spec.ratio_allowed(width, height):
        size = (width, height)
        if factor != 1:
            size = scaled_size(width, height, factor, spec.IMAGE_MIN_SIDE)
        return Layout(crop, size, size)
    size = (width, height)
    if factor != 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return Layout(crop, size, _padded(*size))


def plan_layout(
    width: int, height: int, fit: Fit, min_side: int, max_pixels: int | None
) -> tuple[Layout, float]:
    """Crop or pad to an allowed ratio and upscale when too small; return layout and factor.

    Args:
        width: the upright source's width.
        height: the upright source's height.
        fit: "crop" cuts to the nearest allowed ratio; "pad" and "blur" pad.
        min_side: the short side an image below the API's minimum is upscaled to.
        max_pixels: the most pixels the output may have (Pillow's bomb limit), or None.

    Raises:
        FixError: no layout satisfies the limits (only with an unusually small ``max_pixels``).
    """
    crop = None
    if fit == "crop" and not spec.ratio_allowed(width, height):
        crop = _centred_crop(width, height)
        width, height = crop[2] - crop[0], crop[3] - crop[1]
    factor = 1.0
    if min(_padded(width, height)) < spec.IMAGE_MIN_SIDE:
        if spec.ratio_allowed(width, height):
            factor = min_side / min(width, height)
        else:
            factor = min_side / _pad_short_side(width, height)
    layout = _scaled_layout(width, height, crop, factor)
    if max_pixels is not None:
        while layout.canvas[0] * layout.canvas[1] > max_pixels:
            factor *= min(0.99, math.sqrt(max_pixels / (layout.canvas[0] * layout.canvas[1])))
            layout = _scaled_layout(width, height, crop, factor)
            if min(layout.canvas) < spec.IMAGE_MIN_SIDE:
                break
    canvas_w, canvas_h = layout.canvas
    if (
        not spec.ratio_allowed(canvas_w, canvas_h)
        or min(canvas_w, canvas_h) < spec.IMAGE_MIN_SIDE
        or (max_pixels is not None and canvas_w * canvas_h > max_pixels)
        or layout.size[0] > canvas_w
        or layout.size[1] > canvas_h
    ):
        raise FixError(
            f"no output size fits: {width} × {height} px would need {canvas_w} × {canvas_h} px "
            f"(at least {spec.IMAGE_MIN_SIDE} px a side, at most {max_pixels} pixels)"
        )
    return layout, factor


# --- Planning -------------------------------------------------------------------------------------


def _source_suffix(path: str) -> str:
    return Path(path.split("?", 1)[0]).suffix


def _suffix_for(fmt: str, path: str) -> str:
    expected = spec.IMAGE_EXTENSIONS[fmt]
    suffix = _source_suffix(path)
    return suffix if suffix.lower() in expected else expected[0]


def uses_transparency(path: str | Path) -> bool:
    """Whether an image has a pixel that is not fully opaque (decodes the first frame).

    A file that cannot be decoded counts as transparent, the choice that loses nothing.
    """
    try:
        with open_image(path) as image:
            if not image.has_transparency_data:
                return False
            minimum, _ = image.convert("RGBA").getchannel("A").getextrema()
    except (ImageBomb, ImageUnreadable, OSError, ValueError, EOFError, struct.error):
        return True
    return int(minimum) < 255


def _output_format(report: FileReport, info: ImageInfo, options: FixOptions) -> OutputFormat:
    if options.flatten is not None and info.has_alpha:
        return "JPEG"
    too_large = "file_too_large" in report.codes()
    if info.format == "PNG" and not too_large:
        return "PNG"
    if not info.has_alpha:
        return "JPEG"
    return "PNG" if uses_transparency(report.local_path or report.path) else "JPEG"


def _unfixable(report: FileReport) -> tuple[Finding, ...]:
    unfixable = []
    for finding in report.findings:
        if not finding.is_error or finding.code in REPAIRED_ERRORS:
            continue
        limit = Image.MAX_IMAGE_PIXELS
        advice = ADVICE.get(finding.code, "").format(megapixels=f"{(limit or 0) / 1e6:.0f}")
        message = f"{finding.message}; {advice}" if advice else finding.message
        unfixable.append(Finding(finding.code, "error", message, fixable=False))
    return tuple(unfixable)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]} × {size[1]} px"


def _colour_step(info: ImageInfo, out_mode: str) -> Step | None:
    if info.mode in ("RGB", "RGBA"):
        return None
    if info.mode in SIXTEEN_BIT_MODES:
        return Step("colour", f"{info.mode} -> 8-bit {out_mode} (65535 -> 255)")
    if info.has_icc_profile and info.mode not in ("P", "PA"):
        return Step("colour", f"{info.mode} -> {out_mode} through the embedded ICC profile to sRGB")
    return Step("colour", f"{info.mode} -> {out_mode}")


def _layout_steps(info: ImageInfo, layout: Layout, factor: float, fill: str) -> list[Step]:
    steps: list[Step] = []
    size = (info.display_width, info.display_height)
    if layout.crop is not None:
        left, top, right, bottom = layout.crop
        cropped = (right - left, bottom - top)
        ratio = f"{cropped[0] / cropped[1]:.3g}:1"
        steps.append(Step("crop", f"centred {_size_text(size)} -> {_size_text(cropped)} ({ratio})"))
        size = cropped
    if layout.size != size:
        verb, reason = ("upscale", "") if factor > 1 else ("downscale", ", decoder pixel limit")
        steps.append(
            Step(
                "resize",
                f"{verb} {size[0]} × {size[1]} -> {_size_text(layout.size)} "
                f"(Lanczos, ×{layout.size[0] / size[0]:.2f}{reason})",
            )
        )
    if layout.canvas != layout.size:
        detail = f"{_size_text(layout.size)} -> {_size_text(layout.canvas)}, centred on {fill}"
        steps.append(Step("pad", detail))
    return steps


def _needs_work(report: FileReport, info: ImageInfo, options: FixOptions) -> bool:
    """Whether the pixels must change; otherwise the file is copied byte for byte."""
    return (
        bool(set(report.codes()) & REPAIRED_ERRORS)
        or (info.animated and info.format != "MPO")
        or info.orientation != 1
        or (options.flatten is not None and info.has_alpha)
    )


def _strip_step(kinds: tuple[str, ...]) -> Step:
    names = [
        "EXIF (with GPS location)" if kind == "exif" and "gps" in kinds else METADATA_TEXT[kind]
        for kind in kinds
        if kind in METADATA_TEXT
    ]
    return Step("strip", f"remove {', '.join(names)}; pixels untouched")


def _stripped(source: Path) -> bytes | str:
    """``source``'s bytes with the metadata cut out, or why that cannot be done losslessly.

    Raises:
        OSError: ``source`` cannot be read.
    """
    try:
        return strip_metadata(source.read_bytes())
    except MetadataStructureError as exc:
        return str(exc)


def _try_png(
    source: Path, job: ImageJob, options: FixOptions, warnings: list[str]
) -> tuple[ImageJob, bytes | None, str]:
    """Encode an opaque PNG that is over the size limit as an optimised PNG, else as JPEG.

    Returns the job to follow (PNG when the optimised PNG fits, else ``job``), the encoded
    bytes (the PNG, or the JPEG made from the same render) and, when it is not PNG, why the
    image becomes JPEG. A render or encode that fails gives no bytes and leaves ``job`` as it
    is: the writer meets the same problem and reports it.
    """
    png = dataclasses.replace(job, format="PNG")
    found: list[str] = []
    try:
        rendered = _render(source, png, options, found)
        data = _encode(rendered, "PNG")
    except RENDER_ERRORS:
        return job, None, " (over the size limit, no transparency)"
    if len(data) <= size_target():
        warnings.extend(found)
        return png, data, ""
    reason = f" (optimised PNG still {spec.size_text(len(data))}; no transparency)"
    try:
        jpeg = encode_within_limit(rendered, "JPEG", found)
    except RENDER_ERRORS:
        return job, None, reason
    warnings.extend(found)
    return job, jpeg, reason


def plan_image(report: FileReport, options: FixOptions) -> FixPlan:
    """The smallest set of steps that makes an image pass.

    A file that passes gets no steps and is copied byte for byte, under the right extension
    when ``extension_mismatch``; an MPO's extra frames are left as they are, since the service
    reads the first. When it carries metadata (and ``keep_metadata`` is off) its one step is
    ``strip``: the metadata is cut out here, the pixels left untouched, and the result kept in
    ``plan.encoded``; when the file's structure does not allow that, it is re-encoded with a
    warning. Otherwise the steps are listed and ``plan.job`` holds the ``ImageJob`` the writer
    follows. Only an image with an alpha channel that must change format is decoded here, to
    learn whether any pixel is transparent (PNG) or none is (JPEG); an opaque PNG over the size
    limit is encoded here, as an optimised PNG when that fits and else as JPEG, and the bytes
    kept in ``plan.encoded``.
    """
    info = report.info
    suffix = _source_suffix(report.path)
    if not isinstance(info, ImageInfo):
        unfixable = _unfixable(report) or (
            Finding("unreadable", "error", f"image cannot be read; {ADVICE['unreadable']}"),
        )
        return FixPlan(report, unfixable=unfixable, suffix=suffix)
    unfixable = _unfixable(report)
    if unfixable:
        return FixPlan(report, unfixable=unfixable, suffix=suffix)
    source = Path(report.local_path or report.path)
    warnings: list[str] = []
    if not _needs_work(report, info, options):
        kept_suffix = _suffix_for(info.format, report.path)
        if options.keep_metadata or not info.metadata:
            return FixPlan(report, suffix=kept_suffix)
        try:
            stripped = _stripped(source)
        except OSError as exc:
            message = f"cannot read the image: {exc.strerror or exc}; {ADVICE['unreadable']}"
            unreadable = Finding("unreadable", "error", message)
            return FixPlan(report, unfixable=(unreadable,), suffix=suffix)
        if isinstance(stripped, bytes):
            step = _strip_step(info.metadata)
            return FixPlan(report, (step,), suffix=kept_suffix, encoded=stripped)
        warnings.append(
            f"the metadata cannot be cut out without re-encoding ({stripped}); the image is "
            "re-encoded without it"
        )
    upright = (info.display_width, info.display_height)
    try:
        layout, factor = plan_layout(
            *upright, options.fit, options.min_side, Image.MAX_IMAGE_PIXELS
        )
    except FixError as exc:
        finding = Finding("aspect_ratio_out_of_range", "error", str(exc))
        return FixPlan(report, unfixable=(finding,), suffix=suffix)
    fmt = _output_format(report, info, options)
    fill = BLUR if options.fit == "blur" or is_blur(options.pad_color) else options.pad_color
    flatten = options.flatten if info.has_alpha and fmt == "JPEG" else None
    job = ImageJob(format=fmt, source_size=upright, layout=layout, fill=fill, flatten=flatten)
    encoded: bytes | None = None
    reason = ""
    if fmt == "JPEG" and info.format == "PNG" and flatten is None:
        # Only an opaque PNG over the size limit comes here: an optimised PNG is tried first.
        job, encoded, reason = _try_png(source, job, options, warnings)
        fmt = job.format
    steps: list[Step] = []
    if info.animated and info.format != "MPO":
        steps.append(Step("frame", f"keep the first of {info.frames} frames"))
    if info.orientation != 1:
        turn = ORIENTATION_TEXT.get(info.orientation, "unknown")
        steps.append(
            Step(
                "orient",
                f"apply EXIF orientation {info.orientation} ({turn}): "
                f"{_size_text((info.width, info.height))} stored, {_size_text(upright)} upright",
            )
        )
    if info.format not in (fmt, "MPO"):
        steps.append(Step("convert", f"{info.format} -> {fmt}{reason}"))
    colour = _colour_step(info, "RGBA" if fmt == "PNG" and info.has_alpha else "RGB")
    if colour is not None:
        steps.append(colour)
    if flatten is not None:
        steps.append(Step("flatten", f"transparency onto {flatten}"))
    steps.extend(_layout_steps(info, layout, factor, fill))
    limit = spec.size_text(spec.IMAGE_MAX_BYTES)
    if fmt == "JPEG":
        encoding = (
            f"JPEG quality {JPEG_QUALITY} (down to {JPEG_QUALITY_FLOOR}, then smaller, "
            f"if over {limit})"
        )
    elif encoded is not None:  # the optimised PNG fits
        encoding = (
            f"optimised PNG: {spec.size_text(info.size_bytes)} -> {spec.size_text(len(encoded))}"
        )
    else:
        encoding = f"optimised PNG (smaller if over {limit})"
    metadata = "EXIF kept (orientation 1)" if options.keep_metadata else "EXIF/GPS/XMP removed"
    steps.append(Step("encode", f"{encoding}; {metadata}"))
    if factor > UPSCALE_WARN_FACTOR:
        warnings.append(
            f"upscaled ×{factor:.2f} from {_size_text(upright)}: detail cannot be invented; "
            "use a larger original if there is one"
        )
    return FixPlan(
        report,
        tuple(steps),
        suffix=_suffix_for(fmt, report.path),
        job=job,
        encoded=encoded,
        warnings=tuple(warnings),
    )


# --- Writing --------------------------------------------------------------------------------------


@dataclass
class _Metadata:
    """What the encoder embeds: the ICC profile always, EXIF and XMP only when kept."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None


@dataclass(frozen=True)
class _Rendered:
    """The finished pixels, ready to encode."""

    image: Image.Image
    metadata: _Metadata
    subsampling: int


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale to 8-bit by scaling, not clipping."""
    return image.convert("I").point(lambda value: value * SIXTEEN_TO_EIGHT, "L")


def _profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def _to_srgb(
    image: Image.Image, icc: bytes | None, warnings: list[str]
) -> tuple[Image.Image, bytes | None]:
    """The image as 8-bit RGB or RGBA, and the ICC profile to embed with it.

    An RGB image keeps its pixels and its RGB profile. Another colour space with a matching
    profile is converted through it to sRGB, and sRGB is embedded; without one, Pillow converts
    (it reads Adobe's inverted CMYK JPEGs correctly) and no profile is embedded.

    Raises:
        ImageCms.PyCMSError: the embedded profile cannot transform these pixels.
        ValueError: Pillow cannot convert this mode to RGB.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        image = _eight_bit(image)
    elif image.mode in UNPREMULTIPLIED:
        image = image.convert(UNPREMULTIPLIED[image.mode])
    elif image.mode in ("1", "P", "PA") or "transparency" in image.info:
        transparent = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "L" if image.mode == "1" else "RGB")
    # Not "A" in getbands(): LAB has an "A" band too (a*, green to red).
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    if alpha is not None:
        image = image.convert("L" if image.mode == "LA" else "RGB")
    profile = _profile(icc) if icc else None
    if icc and profile is None:
        warnings.append("the embedded ICC profile is unreadable and was left out")
    space = str(profile.profile.xcolor_space).strip() if profile is not None else None
    if image.mode != "RGB":
        if profile is not None and PROFILE_SPACES.get(image.mode) == space:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, profile, srgb, outputMode="RGB")
            if converted is None:  # only when converting in place, which this is not
                raise ValueError("the ICC conversion returned no image")
            image, icc = converted, srgb.tobytes()
        else:
            image, icc = image.convert("RGB"), None
    elif space != "RGB":
        icc = None
    if alpha is not None:
        image.putalpha(alpha)
    return image, icc


def _blur_fill(picture: Image.Image, canvas: tuple[int, int]) -> Image.Image:
    """A blurred copy of the picture covering the whole canvas."""
    long = max(canvas)
    work = (
        max(1, round(canvas[0] * BLUR_WORK_SIDE / long)),
        max(1, round(canvas[1] * BLUR_WORK_SIDE / long)),
    )
    small = ImageOps.fit(picture, work, Image.Resampling.BILINEAR)
    blurred = small.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
    return blurred.resize(canvas, Image.Resampling.BICUBIC)


def _place(picture: Image.Image, layout: Layout, fill: str) -> Image.Image:
    if layout.canvas == picture.size:
        return picture
    if is_blur(fill):
        canvas = _blur_fill(picture, layout.canvas)
    else:
        # An RGBA canvas takes the colour fully opaque.
        canvas = Image.new(picture.mode, layout.canvas, parse_colour(fill))
    canvas.paste(picture, layout.offset)
    return canvas


def _draft(image: Image.Image, job: ImageJob) -> bool:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when the plan shrinks it that much anyway."""
    if image.format not in ("JPEG", "MPO"):
        return False
    left, top, right, bottom = job.layout.crop or (0, 0, *job.source_size)
    factor = max(job.layout.size[0] / (right - left), job.layout.size[1] / (bottom - top))
    if factor > 0.5:
        return False
    requested = (math.ceil(image.width * factor), math.ceil(image.height * factor))
    return image.draft(image.mode, requested) is not None


def _metadata(image: Image.Image, keep: bool) -> _Metadata:
    metadata = _Metadata(icc_profile=image.info.get("icc_profile") or None)
    if not keep:
        return metadata
    exif = image.getexif()
    if exif or "exif" in image.info:
        # The pixels are upright now: a kept orientation tag would turn them again.
        exif[EXIF_ORIENTATION_TAG] = 1
        metadata.exif = exif.tobytes()
    xmp = image.info.get("xmp", image.info.get("XML:com.adobe.xmp"))
    if xmp:
        metadata.xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp)
    return metadata


def _crop(image: Image.Image, job: ImageJob) -> Image.Image:
    if job.layout.crop is None:
        return image
    # A drafted JPEG is smaller than the planned source: scale the box with it.
    scale_x = image.width / job.source_size[0]
    scale_y = image.height / job.source_size[1]
    left, top, right, bottom = job.layout.crop
    box = (
        round(left * scale_x),
        round(top * scale_y),
        max(round(right * scale_x), round(left * scale_x) + 1),
        max(round(bottom * scale_y), round(top * scale_y) + 1),
    )
    return image.crop(box)


def _render(source: Path, job: ImageJob, options: FixOptions, warnings: list[str]) -> _Rendered:
    with open_image(source) as opened:
        subsampling = SUBSAMPLING_444
        if opened.format in ("JPEG", "MPO"):
            sampling = JpegImagePlugin.get_sampling(opened)
            subsampling = sampling if sampling >= 0 else SUBSAMPLING_420
        drafted = _draft(opened, job)
        opened.load()
        ImageOps.exif_transpose(opened, in_place=True)
        if not drafted and opened.size != job.source_size:
            raise FixError(
                f"{source} is {_size_text(opened.size)} upright, not "
                f"{_size_text(job.source_size)} as inspected; inspect it again"
            )
        metadata = _metadata(opened, options.keep_metadata)
        image, metadata.icc_profile = _to_srgb(opened, metadata.icc_profile, warnings)
        if image.mode == "RGBA":
            if job.format == "JPEG":
                background = Image.new("RGB", image.size, parse_colour(job.flatten or "white"))
                background.paste(image, mask=image.getchannel("A"))
                image = background
            elif image.getchannel("A").getextrema()[0] == 255:
                image = image.convert("RGB")
        image = _crop(image, job)
        if image.size != job.layout.size:
            image = image.resize(job.layout.size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        image = _place(image, job.layout, job.fill)
    image.info = {}
    return _Rendered(image, metadata, subsampling)


def _encode(
    rendered: _Rendered, fmt: OutputFormat, quality: int = JPEG_QUALITY, *, optimize: bool = False
) -> bytes:
    params: dict[str, Any] = {}
    meta = rendered.metadata
    if meta.icc_profile:
        params["icc_profile"] = meta.icc_profile
    if meta.exif:
        params["exif"] = meta.exif
    buffer = io.BytesIO()
    if fmt == "JPEG":
        if meta.xmp:
            params["xmp"] = meta.xmp
        rendered.image.save(
            buffer,
            "JPEG",
            quality=quality,
            subsampling=rendered.subsampling,
            optimize=optimize,
            **params,
        )
    else:
        if meta.xmp:
            text = PngImagePlugin.PngInfo()
            text.add_itxt("XML:com.adobe.xmp", meta.xmp.decode("utf-8", "replace"))
            params["pnginfo"] = text
        rendered.image.save(buffer, "PNG", optimize=True, **params)
    return buffer.getvalue()


def _optimised_jpeg(rendered: _Rendered, quality: int, plain: bytes) -> bytes:
    """Re-encode the chosen JPEG with optimised Huffman tables, which only ever shrinks it.

    Pillow encodes an optimised JPEG into one buffer of width × height bytes (twice that at
    quality 95 and up); data that would overflow it (noise) fails, so it keeps the plain one.
    """
    width, height = rendered.image.size
    buffer_bytes = width * height * (2 if quality >= PILLOW_DOUBLE_BUFFER_QUALITY else 1)
    if len(plain) > buffer_bytes * (1 - OPTIMIZE_HEADROOM):
        return plain
    optimised = _encode(rendered, "JPEG", quality, optimize=True)
    return optimised if len(optimised) < len(plain) else plain


def _best_jpeg(rendered: _Rendered, target: int) -> tuple[bytes | None, int]:
    """The highest-quality JPEG of at most ``target`` bytes, searching down to the floor.

    Returns the bytes (None when even the floor is too big) and the byte count at the floor.
    """
    data = _encode(rendered, "JPEG", JPEG_QUALITY)
    if len(data) <= target:
        return _optimised_jpeg(rendered, JPEG_QUALITY, data), len(data)
    best = _encode(rendered, "JPEG", JPEG_QUALITY_FLOOR)
    floor_bytes = len(best)
    if floor_bytes > target:
        return None, floor_bytes
    low, high = JPEG_QUALITY_FLOOR, JPEG_QUALITY
    while high - low > 1:
        middle = (low + high) // 2
        attempt = _encode(rendered, "JPEG", middle)
        if len(attempt) <= target:
            best, low = attempt, middle
        else:
            high = middle
    return _optimised_jpeg(rendered, low, best), floor_bytes


def size_target() -> int:
    """The most bytes an encoded image may have: the API's limit less the margin."""
    return int(spec.IMAGE_MAX_BYTES * (1 - SIZE_MARGIN))


def encode_within_limit(rendered: _Rendered, fmt: OutputFormat, warnings: list[str]) -> bytes:
    """Encode under the byte limit (less a margin): JPEG quality first, then downscale.

    A PNG is always optimised; when still too big it is downscaled (an opaque PNG that did not
    fit as an optimised PNG was made a JPEG by the plan already). Every attempt is encoded in
    memory.

    Raises:
        FixError: the file is still too big at the API's minimum side.
    """
    target = size_target()
    full = rendered.image
    scale = 1.0
    while True:
        if fmt == "JPEG":
            data, smallest = _best_jpeg(rendered, target)
        else:
            data = _encode(rendered, "PNG")
            smallest = len(data)
        if data is not None and len(data) <= target:
            if scale < 1:
                warnings.append(
                    f"downscaled {_size_text(full.size)} -> {_size_text(rendered.image.size)} "
                    f"to fit under {spec.size_text(spec.IMAGE_MAX_BYTES)}"
                )
            return data
        # Bytes shrink no faster than pixels, so this jump never overshoots the size needed.
        scale *= min(DOWNSCALE_STEP, math.sqrt(target / smallest))
        size = scaled_size(*full.size, scale, spec.IMAGE_MIN_SIDE)
        if size == rendered.image.size:
            raise FixError(
                f"the image is still over {spec.size_text(spec.IMAGE_MAX_BYTES)} at "
                f"{_size_text(size)}, the smallest allowed"
            )
        image = full.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        rendered = _Rendered(image, rendered.metadata, rendered.subsampling)


def write_image(
    source: Path, plan: FixPlan, destination: Path, options: FixOptions, warnings: list[str]
) -> None:
    """Carry out an image plan, writing the result to ``destination``.

    A plan that holds the output's bytes already (``plan.encoded``: the source stripped of its
    metadata, or an image encoded while planning) writes those bytes. What happened beyond the
    plan (a downscale to fit the byte limit, an unusable ICC profile) is appended to
    ``warnings``.

    Raises:
        FixError: the plan holds neither bytes nor an image job; the image cannot be read,
            decoded, converted, brought under the byte limit or written.
    """
    data = (
        plan.encoded if plan.encoded is not None else _image_bytes(source, plan, options, warnings)
    )
    try:
        destination.write_bytes(data)
    except OSError as exc:
        raise FixError(f"{destination}: cannot write the output: {exc}") from exc


def _image_bytes(source: Path, plan: FixPlan, options: FixOptions, warnings: list[str]) -> bytes:
    job = plan.job
    if not isinstance(job, ImageJob):
        raise FixError(f"{source}: the plan has no image steps to carry out")
    try:
        rendered = _render(source, job, options, warnings)
        data = encode_within_limit(rendered, job.format, warnings)
    except ImageBomb as exc:
        raise FixError(f"{source}: refused to decode: {exc}") from exc
    except ImageUnreadable as exc:
        raise FixError(f"{source}: cannot read the image: {exc}") from exc
    except ImageCms.PyCMSError as exc:
        raise FixError(f"{source}: the embedded ICC profile cannot convert it: {exc}") from exc
    except (OSError, ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise FixError(f"{source}: cannot process the image: {exc}") from exc
    return data
