"""Inspect an image with Pillow and check it against the API's image rules."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import IO

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from .. import spec
from ..errors import ImageBomb, ImageUnreadable
from ..findings import FileReport, Finding, file_too_large
from ..info import ImageInfo

try:  # HEIC/HEIF is optional: pip install 'mediaprep[heif]'
    from pillow_heif import register_heif_opener
except ImportError:
    pass
else:
    register_heif_opener()

#: Extensions of the images mediaprep can read (the API takes JPEG and PNG; fix converts the rest).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
EXIF_ORIENTATION_TAG = 0x0112
#: The EXIF tag that points to the GPS block: present, the picture says where it was taken.
EXIF_GPS_IFD_TAG = 0x8825
#: Orientations 5-8 turn the picture a quarter: width and height swap on display.
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Draft mode decodes JPEGs at 1/8 scale at most; enough to prove every block decodes.
DRAFT_SCALE = 8
#: The kinds of personal metadata ``ImageInfo.metadata`` names, in the order it lists them.
METADATA_KINDS = ("exif", "gps", "xmp", "iptc", "text")
#: JPEG segments that hold metadata: APP1 is EXIF (``Exif\0\0``) or XMP, APP13 is Photoshop's
#: IPTC block, COM is a comment.
JPEG_METADATA_SEGMENTS = {"APP13": "iptc", "COM": "text"}
#: Pillow's ``info`` keys for metadata in the other formats.
INFO_METADATA_KEYS = {"exif": "exif", "xmp": "xmp", "photoshop": "iptc", "comment": "text"}
PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
#: A PNG text chunk's keyword is 1-79 bytes and ends with a NUL.
PNG_KEYWORD_MAX = 79
#: Text chunk keywords that carry a known kind of metadata (ImageMagick writes EXIF and IPTC
#: as "Raw profile" text); any other text is "text".
PNG_TEXT_KINDS = {
    b"XML:com.adobe.xmp": "xmp",
    b"Raw profile type exif": "exif",
    b"Raw profile type APP1": "exif",
    b"Raw profile type iptc": "iptc",
    b"Raw profile type xmp": "xmp",
}


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image lazily, refusing decompression bombs instead of warning about them.

    Raises:
        ImageBomb: the header claims more pixels than ``Image.MAX_IMAGE_PIXELS``.
        ImageUnreadable: the file is not an image Pillow can read.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageBomb(str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageUnreadable("not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageUnreadable(str(exc) or type(exc).__name__) from exc


def _png_metadata(stream: IO[bytes]) -> tuple[bytes | None, set[str]]:
    """Walk a PNG's chunk headers, decoding no pixels: its eXIf data and its text kinds.

    Pillow sees chunks after the pixel data only once it decodes them; the walk sees them all.
    A chunk cut short ends the walk (the decode reports the damage).
    """
    exif = None
    kinds: set[str] = set()
    stream.seek(0)
    if stream.read(8) != PNG_SIGNATURE:
        return exif, kinds
    while True:
        header = stream.read(8)
        if len(header) < 8:
            return exif, kinds
        length, chunk_type = struct.unpack(">I4s", header)
        read = b""
        if chunk_type == b"IEND":
            return exif, kinds
        if chunk_type == b"eXIf" and exif is None:
            read = stream.read(length)
            if len(read) < length:
                return exif, kinds
            exif = read
        elif chunk_type in PNG_TEXT_CHUNKS:
            read = stream.read(min(length, PNG_KEYWORD_MAX + 1))
            kinds.add(PNG_TEXT_KINDS.get(read.split(b"\0", 1)[0], "text"))
        stream.seek(length - len(read) + 4, os.SEEK_CUR)


def _jpeg_kinds(image: JpegImagePlugin.JpegImageFile) -> set[str]:
    """The metadata kinds of the segments Pillow collected while reading a JPEG's header."""
    kinds = set()
    for marker, data in image.applist:
        if marker == "APP1":
            kinds.add("exif" if data.startswith(b"Exif") else "xmp")
        elif marker in JPEG_METADATA_SEGMENTS:
            kinds.add(JPEG_METADATA_SEGMENTS[marker])
    return kinds


def _read_exif(
    image: Image.Image, path: str | os.PathLike[str]
) -> tuple[Image.Exif | None, bool, set[str]]:
    """The parsed EXIF (None when unreadable), whether EXIF is there at all, the metadata kinds.

    On a PNG, Pillow's ``getexif()`` decodes the whole image to find an eXIf chunk after the
    pixel data; here the chunk headers are walked instead. A JPEG's kinds come from the
    segments Pillow collected while reading its header.
    """
    if image.format == "PNG":
        with open(path, "rb") as stream:
            raw, kinds = _png_metadata(stream)
        if not raw:
            return None, False, kinds
        kinds.add("exif")
        exif = Image.Exif()
        try:
            exif.load(raw)
        except (OSError, SyntaxError, ValueError, struct.error):
            return None, True, kinds
        return exif, True, kinds
    if isinstance(image, JpegImagePlugin.JpegImageFile):  # MPO too
        kinds = _jpeg_kinds(image)
    else:
        kinds = {kind for key, kind in INFO_METADATA_KEYS.items() if key in image.info}
    try:
        exif = image.getexif()
    except (OSError, SyntaxError, ValueError, struct.error):
        return None, False, kinds
    return exif, bool(exif) or "exif" in image.info, kinds


def _orientation(exif: Image.Exif | None) -> int:
    """The EXIF orientation, 1 when absent or not a valid value (1-8)."""
    orientation = exif.get(EXIF_ORIENTATION_TAG, 1) if exif is not None else 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _metadata_kinds(exif: Image.Exif | None, kinds: set[str]) -> tuple[str, ...]:
    """The kinds of metadata found, in ``METADATA_KINDS`` order; "gps" when the EXIF has GPS."""
    if exif is not None and EXIF_GPS_IFD_TAG in exif:
        kinds = kinds | {"gps"}
    return tuple(kind for kind in METADATA_KINDS if kind in kinds)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB", "I;16", "I") and "transparency" in image.info
    )


def _decode(image: Image.Image) -> None:
    """Decode every pixel (JPEGs at reduced scale through draft mode) to catch corrupt data."""
    if image.format in ("JPEG", "MPO"):
        width, height = image.size
        image.draft(image.mode, (max(1, width // DRAFT_SCALE), max(1, height // DRAFT_SCALE)))
    image.load()


def read_image_info(path: str | os.PathLike[str], *, decode: bool = True) -> ImageInfo:
    """Read an image's facts; with ``decode`` every pixel is decoded to prove the file whole.

    Raises:
        ImageBomb: the image claims more pixels than the decompression-bomb limit.
        ImageUnreadable: the file is not an image, or it is truncated or corrupt.
    """
    size_bytes = os.path.getsize(path)
    with open_image(path) as image:
        try:
            width, height = image.size
            exif, has_exif, kinds = _read_exif(image, path)
            orientation = _orientation(exif)
            frames = getattr(image, "n_frames", 1)
            info = ImageInfo(
                format=image.format or "unknown",
                size_bytes=size_bytes,
                width=width,
                height=height,
                display_width=height if orientation in SWAPPING_ORIENTATIONS else width,
                display_height=width if orientation in SWAPPING_ORIENTATIONS else height,
                orientation=orientation,
                mode=image.mode,
                has_alpha=_has_alpha(image),
                animated=bool(getattr(image, "is_animated", False)) and frames > 1,
                frames=frames,
                has_icc_profile=bool(image.info.get("icc_profile")),
                has_exif=has_exif,
                decoded=decode,
                metadata=_metadata_kinds(exif, kinds),
            )
            if decode:
                image.seek(0)
                _decode(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageBomb(str(exc)) from exc
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise ImageUnreadable(str(exc) or type(exc).__name__) from exc
    return info


def image_findings(info: ImageInfo, path: str | os.PathLike[str]) -> list[Finding]:
    """Check an image's facts against every image rule; a file wrong in several ways gets all."""
    findings: list[Finding] = []
    accepted = info.format in spec.IMAGE_FORMATS
    if not accepted:
        findings.append(
            Finding(
                "format_unsupported",
                "error",
                f"image is {info.format}; the API accepts {spec.IMAGE_FORMATS_TEXT}",
                fixable=True,
            )
        )
    else:
        extension = Path(path).suffix.lower()
        expected = spec.IMAGE_EXTENSIONS[info.format]
        if extension not in expected:
            findings.append(
                Finding(
                    "extension_mismatch",
                    "warning",
                    f"file is {info.format} but named {extension or 'without an extension'}; "
                    f"expected {' or '.join(expected)}",
                    fixable=True,
                )
            )
    if info.size_bytes > spec.IMAGE_MAX_BYTES:
        findings.append(
            file_too_large("image", info.size_bytes, spec.IMAGE_MAX_BYTES, fixable=True)
        )
    width, height = info.display_width, info.display_height
    if min(width, height) < spec.IMAGE_MIN_SIDE:
        findings.append(
            Finding(
                "dimension_too_small",
                "error",
                f"image is {spec.frame_text((width, height))} px; each side must be at least "
                f"{spec.IMAGE_MIN_SIDE} px",
                fixable=True,
            )
        )
    if not spec.ratio_allowed(width, height):
        findings.append(
            Finding(
                "aspect_ratio_out_of_range",
                "error",
                f"image is {spec.frame_text((width, height))} px, ratio {width / height:.4g}:1; "
                f"the ratio must be between {spec.ratio_text(spec.IMAGE_RATIO_MIN)} and "
                f"{spec.ratio_text(spec.IMAGE_RATIO_MAX)}",
                fixable=True,
            )
        )
    if info.animated:
        findings.append(
            Finding(
                "animated",
                "warning",
                f"image is animated ({info.frames} frames); the service will see one frame, "
                "fix keeps the first",
                fixable=True,
            )
        )
    return findings


def inspect_image(path: str | os.PathLike[str], *, decode: bool = True) -> FileReport:
    """Inspect one local image; problems become findings, never exceptions."""
    try:
        info = read_image_info(path, decode=decode)
    except ImageBomb as exc:
        finding = Finding(
            "decompression_bomb",
            "error",
            f"image claims too many pixels to decode safely; refused ({exc})",
        )
        return FileReport(str(path), "image", (finding,), local_path=str(path))
    except ImageUnreadable as exc:
        finding = Finding("unreadable", "error", f"image cannot be read: {exc}")
        return FileReport(str(path), "image", (finding,), local_path=str(path))
    findings = image_findings(info, path)
    return FileReport(str(path), "image", tuple(findings), info=info, local_path=str(path))
