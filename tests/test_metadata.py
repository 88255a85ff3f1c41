"""Metadata: what inspection reports, and the lossless strippers of mediaprep.fixers.metadata."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageDraw, ImageFile, PngImagePlugin

from mediaprep import Element, FixOptions
from mediaprep.api import Secret, Settings
from mediaprep.errors import FixError, MetadataStructureError
from mediaprep.fixers.metadata import strip_jpeg, strip_metadata, strip_png
from mediaprep.info import ImageInfo
from mediaprep.inspectors import inspect_image, inspect_local, video_info_from_probe
from mediaprep.submit import DryRun, Fixed, submit

GPS_IFD = 0x8825
MAKE = 0x010F
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/"
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
#: A Photoshop APP13 payload holding one IPTC-IIM record (2:120, the caption).
PHOTOSHOP = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0a\x1c\x02\x78\x00\x05hello\x00"


# --- helpers --------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def srgb_profile() -> bytes:
    """An sRGB profile, made once: its header holds the time it was made."""
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def gps_exif() -> bytes:
    exif = Image.Exif()
    exif[MAKE] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (48.0, 51.0, 24.0)
    data: bytes = exif.tobytes()
    return data


def picture(size: tuple[int, int] = (400, 300), mode: str = "RGB") -> Image.Image:
    """A picture with detail in it, so a re-encode could not give the same pixels."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    ImageDraw.Draw(image).ellipse((50, 50, 250, 250), fill=(220, 40, 40))
    return image.convert(mode)


def jpeg_markers(data: bytes) -> list[int]:
    """The markers from SOI up to and including the first SOS."""
    markers, position = [0xD8], 2
    while data[position + 1] != 0xDA:
        markers.append(data[position + 1])
        position += 2 + struct.unpack_from(">H", data, position + 2)[0]
    return [*markers, 0xDA]


def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` with one more segment right after SOI."""
    return data[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + data[2:]


def png_chunk(chunk_type: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + body)
    return struct.pack(">I", len(body)) + chunk_type + body + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Each chunk's type and raw bytes (length, type, data and CRC)."""
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        chunks.append((data[position + 4 : position + 8], data[position : position + 12 + length]))
        position += 12 + length
    return chunks


def before_iend(data: bytes, *chunks: bytes) -> bytes:
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + b"".join(chunks) + data[iend:]


def pixels(data: bytes | Path, frame: int = 0) -> bytes:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        image.seek(frame)
        raw: bytes = image.tobytes()
    return raw


def meta_jpeg(path: Path, image: Image.Image | None = None, **params: Any) -> Path:
    """A JPEG with EXIF (GPS included), XMP, a comment, an ICC profile and a Photoshop block."""
    buffer = io.BytesIO()
    (image or picture()).save(
        buffer,
        "JPEG",
        quality=90,
        exif=gps_exif(),
        xmp=XMP,
        comment=b"shot at home",
        icc_profile=srgb_profile(),
        **params,
    )
    path.write_bytes(with_segment(buffer.getvalue(), 0xED, PHOTOSHOP))
    return path


def meta_png(path: Path) -> Path:
    """A PNG with eXIf, tEXt, zTXt, iTXt (XMP) and iCCP before IDAT, tIME and tEXt after it."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "shot at home")
    info.add_text("Author", "someone", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    buffer = io.BytesIO()
    picture().save(buffer, "PNG", pnginfo=info, exif=gps_exif(), icc_profile=srgb_profile())
    late = png_chunk(b"tIME", bytes([7, 232, 1, 2, 3, 4, 5])) + png_chunk(b"tEXt", b"Late\x00x")
    path.write_bytes(before_iend(buffer.getvalue(), late))
    return path


# --- JPEG -----------------------------------------------------------------------------------------


def test_jpeg_loses_exif_gps_xmp_iptc_and_comments_but_not_a_pixel(tmp_path: Path) -> None:
    source = meta_jpeg(tmp_path / "meta.jpg")
    data = source.read_bytes()
    assert {0xE1, 0xED, 0xFE} <= set(jpeg_markers(data))
    stripped = strip_jpeg(data)
    head = stripped[: stripped.index(b"\xff\xda")]
    assert EXIF_HEADER not in stripped
    assert XMP_HEADER not in stripped
    assert b"Photoshop 3.0" not in stripped
    assert b"shot at home" not in stripped
    assert struct.pack("<HH", GPS_IFD, 4) not in head
    assert struct.pack(">HH", GPS_IFD, 4) not in head
    assert jpeg_markers(stripped) == [m for m in jpeg_markers(data) if m not in (0xE1, 0xED, 0xFE)]
    # Everything from SOS on is the same bytes.
    assert stripped[len(head) :] == data[data.index(b"\xff\xda") :]
    assert pixels(stripped) == pixels(data)
    with Image.open(io.BytesIO(stripped)) as image:
        assert not image.getexif()
        assert not {"exif", "xmp", "comment", "photoshop"} & set(image.info)
        assert image.info["icc_profile"] == srgb_profile()


def test_adobe_cmyk_jpeg_keeps_app14_and_its_colours(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (400, 400), (0, 255, 255, 0))
    source = meta_jpeg(tmp_path / "print.jpg", cmyk)
    stripped = strip_metadata(source.read_bytes())
    assert 0xEE in jpeg_markers(stripped)
    assert pixels(stripped) == pixels(source)
    with Image.open(io.BytesIO(stripped)) as image:
        assert image.mode == "CMYK"
        assert image.convert("RGB").getpixel((200, 200)) == pytest.approx((255, 0, 0), abs=8)


def test_mpo_keeps_its_second_image_when_metadata_after_the_index_goes(tmp_path: Path) -> None:
    # Pillow writes the comment after the MP index: dropping it moves the second image closer
    # to the index header, so the index's offset must move with it.
    source = tmp_path / "stereo.jpg"
    picture().save(
        source,
        "MPO",
        save_all=True,
        append_images=[picture().rotate(180)],
        exif=gps_exif(),
        comment=b"shot at home",
    )
    markers = jpeg_markers(source.read_bytes())
    assert markers.index(0xE2) < markers.index(0xFE)
    # Pillow writes the EXIF (GPS included) into both images.
    assert source.read_bytes().count(EXIF_HEADER) == 2
    stripped = strip_metadata(source.read_bytes())
    assert EXIF_HEADER not in stripped
    assert b"shot at home" not in stripped
    with Image.open(io.BytesIO(stripped)) as image:
        assert image.format == "MPO"
        assert image.n_frames == 2
        assert "comment" not in image.info
        entries = image.mpinfo[0xB002]
    # The index gives each image's exact place: from its SOI to its EOI.
    header = stripped.index(b"MPF\x00") + 4
    assert entries[0]["DataOffset"] == 0
    assert stripped[: entries[0]["Size"]].endswith(b"\xff\xd9")
    later = header + entries[1]["DataOffset"]
    assert stripped[later : later + entries[1]["Size"]].startswith(b"\xff\xd8")
    assert stripped[later : later + entries[1]["Size"]].endswith(b"\xff\xd9")
    assert later + entries[1]["Size"] == len(stripped)
    assert pixels(stripped, 1) == pixels(source, 1)
    assert pixels(stripped, 0) == pixels(source, 0)


def test_an_mpo_cut_short_raises_a_typed_error(tmp_path: Path) -> None:
    source = tmp_path / "stereo.jpg"
    picture().save(source, "MPO", save_all=True, append_images=[picture()], exif=gps_exif())
    with pytest.raises(MetadataStructureError, match="the MPO index points outside the file"):
        strip_jpeg(source.read_bytes()[:-100])


def test_a_jpeg_without_metadata_is_unchanged(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    picture().save(buffer, "JPEG", icc_profile=srgb_profile())
    assert strip_jpeg(buffer.getvalue()) == buffer.getvalue()


# --- PNG ------------------------------------------------------------------------------------------


def test_png_loses_exif_and_text_chunks_but_not_a_pixel(tmp_path: Path) -> None:
    data = meta_png(tmp_path / "meta.png").read_bytes()
    types = [chunk_type for chunk_type, _ in png_chunks(data)]
    assert {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"} <= set(types)
    stripped = strip_png(data)
    kept = png_chunks(stripped)
    # The kept chunks are the original bytes, CRCs included, in the original order.
    assert kept == [
        chunk
        for chunk in png_chunks(data)
        if chunk[0] not in (b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME")
    ]
    assert b"iCCP" in [chunk_type for chunk_type, _ in kept]
    assert pixels(stripped) == pixels(data)
    with Image.open(io.BytesIO(stripped)) as image:
        image.load()
        assert not image.getexif()
        assert image.info["icc_profile"] == srgb_profile()
        assert not {"Comment", "Author", "Late", "xmp", "exif"} & set(image.info)


def test_animated_png_keeps_its_frames(tmp_path: Path) -> None:
    source = tmp_path / "anim.png"
    picture().save(source, save_all=True, append_images=[picture().rotate(90)], exif=gps_exif())
    stripped = strip_metadata(source.read_bytes())
    assert b"eXIf" not in stripped
    assert pixels(stripped, 1) == pixels(source, 1)


# --- broken structure -----------------------------------------------------------------------------


def _valid_jpeg() -> bytes:
    buffer = io.BytesIO()
    picture((16, 16)).save(buffer, "JPEG", comment=b"x")
    return buffer.getvalue()


def _valid_png() -> bytes:
    buffer = io.BytesIO()
    picture((16, 16)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a" + bytes(20), "neither a JPEG nor a PNG"),
        (b"\xff\xd8", "ends before the image data"),
        (b"\xff\xd8\x00\xff\xe0\x00\x04ab", "no JPEG marker at byte 2"),
        (b"\xff\xd8\xff\xe1\x01\x00Exif", "claims 256 bytes"),
        (b"\xff\xd8\xff\xe1\x00\x01", "claims 1 bytes"),
        (b"\xff\xd8\xff\xe1", "cut short"),
        (b"\xff\xd8\xff\xd9", "an SOI or EOI marker at byte 2"),
        (_valid_jpeg()[:30], "claims"),
        (_valid_png()[:-12], "cut short (no IEND)"),
        (_valid_png()[:50], "claims"),
        (_valid_png()[:12] + b"IH1R" + _valid_png()[16:], "no valid type"),
    ],
)
def test_a_broken_structure_raises_a_typed_error(data: bytes, message: str) -> None:
    with pytest.raises(MetadataStructureError, match=re.escape(message)):
        strip_metadata(data)
    assert issubclass(MetadataStructureError, FixError)


def test_nothing_after_iend_is_kept() -> None:
    data = _valid_png()
    assert strip_png(data + b"trailing secrets") == data


# --- inspection -----------------------------------------------------------------------------------


def _jpeg(path: Path, **params: Any) -> Path:
    picture().save(path, "JPEG", **params)
    return path


def _png(path: Path, *late: bytes, **params: Any) -> Path:
    buffer = io.BytesIO()
    picture().save(buffer, "PNG", **params)
    path.write_bytes(before_iend(buffer.getvalue(), *late))
    return path


def _exif_only() -> bytes:
    exif = Image.Exif()
    exif[MAKE] = "PhoneMaker"
    data: bytes = exif.tobytes()
    return data


def _xmp_itxt() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    return info


@pytest.mark.parametrize(
    ("make", "kinds"),
    [
        (lambda p: meta_jpeg(p / "all.jpg"), ("exif", "gps", "xmp", "iptc", "text")),
        (lambda p: _jpeg(p / "plain.jpg", icc_profile=srgb_profile()), ()),
        (lambda p: _jpeg(p / "exif.jpg", exif=_exif_only()), ("exif",)),
        (lambda p: _jpeg(p / "xmp.jpg", xmp=XMP), ("xmp",)),
        (lambda p: meta_png(p / "all.png"), ("exif", "gps", "xmp", "text")),
        (lambda p: _png(p / "plain.png", icc_profile=srgb_profile()), ()),
        (lambda p: _png(p / "late.png", png_chunk(b"tEXt", b"Comment\x00hi")), ("text",)),
        (lambda p: _png(p / "late-exif.png", png_chunk(b"eXIf", gps_exif()[6:])), ("exif", "gps")),
        (lambda p: _png(p / "xmp.png", pnginfo=_xmp_itxt()), ("xmp",)),
        (lambda p: _png(p / "time.png", png_chunk(b"tIME", bytes(7))), ()),
    ],
)
def test_inspection_names_the_metadata_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any, kinds: tuple[str, ...]
) -> None:
    path = make(tmp_path)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    info = inspect_image(path, decode=False).info
    assert isinstance(info, ImageInfo)
    assert info.metadata == kinds
    assert json.loads(json.dumps(info.to_dict()))["metadata"] == list(kinds)


@pytest.mark.parametrize(
    ("tags", "kinds"),
    [
        ({"format": {"location": "+48.8584+002.2945/"}}, ("location",)),
        (
            {"format": {"com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/"}},
            ("location",),
        ),
        ({"stream": {"location-eng": "+48.8584+002.2945/"}}, ("location",)),
        ({"stream": {"LOCATION": "+48.8584+002.2945/"}}, ("location",)),
        (
            {
                "format": {"creation_time": "2024-05-01T10:00:00Z", "encoder": "Lavf59"},
                "stream": {"handler_name": "VideoHandler", "language": "und"},
            },
            (),
        ),
        ({}, ()),
    ],
)
def test_video_location_tags_are_reported(
    tags: dict[str, dict[str, str]], kinds: tuple[str, ...]
) -> None:
    stream: dict[str, Any] = {
        "codec_type": "video",
        "codec_name": "h264",
        "width": 1920,
        "height": 1080,
    }
    fmt: dict[str, Any] = {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "4.0"}
    if "stream" in tags:
        stream["tags"] = tags["stream"]
    if "format" in tags:
        fmt["tags"] = tags["format"]
    info = video_info_from_probe({"format": fmt, "streams": [stream]}, 1000)
    assert info.metadata == kinds
    assert info.to_dict()["metadata"] == kinds


# --- submit sends the stripped copy ---------------------------------------------------------------


def test_submit_sends_a_passing_photo_without_its_gps(tmp_path: Path) -> None:
    frontal = meta_jpeg(tmp_path / "frontal.jpg", picture((600, 600)))
    refer = tmp_path / "refer.png"
    Image.linear_gradient("L").rotate(270).resize((400, 400)).save(refer)
    assert inspect_local(frontal).ok
    before = sha256(frontal)
    settings = Settings(api_key=Secret("sk-test-metadata-0000"), base_url="http://127.0.0.1:9")
    element = Element("Hero", "A hero", frontal=str(frontal), refers=(str(refer),))
    events = list(submit(element, settings, out_dir=tmp_path / "out", dry_run=True))
    (fixed,) = [event.result for event in events if isinstance(event, Fixed)]
    assert fixed.path == str(frontal)
    assert [step.action for step in fixed.steps] == ["strip"]
    assert fixed.output is not None
    stripped = Path(fixed.output)
    assert EXIF_HEADER not in stripped.read_bytes()
    dry_run = events[-1]
    assert isinstance(dry_run, DryRun)
    sent = dry_run.body["element_image_list"]["frontal_image"]["sha256"]
    assert sent == sha256(stripped) != before
    assert sha256(frontal) == before


def test_submit_keep_metadata_or_no_fix_sends_the_original(tmp_path: Path) -> None:
    frontal = meta_jpeg(tmp_path / "frontal.jpg", picture((600, 600)))
    refer = tmp_path / "refer.png"
    Image.linear_gradient("L").rotate(270).resize((400, 400)).save(refer)
    settings = Settings(api_key=Secret("sk-test-metadata-0001"), base_url="http://127.0.0.1:9")
    element = Element("Hero", "A hero", frontal=str(frontal), refers=(str(refer),))
    for extra in ({"fix_options": FixOptions(keep_metadata=True)}, {"no_fix": True}):
        events = list(submit(element, settings, out_dir=tmp_path / "out", dry_run=True, **extra))
        assert not [event for event in events if isinstance(event, Fixed)]
        dry_run = events[-1]
        assert isinstance(dry_run, DryRun)
        assert dry_run.body["element_image_list"]["frontal_image"]["sha256"] == sha256(frontal)
