"""Cut metadata out of JPEG and PNG bytes, leaving the compressed pixels exactly as they were.

A file that already passes is never re-encoded. When it carries personal metadata (EXIF and
its GPS position, XMP, IPTC, comments), the segments or chunks holding it are dropped and
everything else is kept byte for byte:

* JPEG and MPO: between SOI and the first SOS, APP1 (EXIF, XMP), APP13 (Photoshop, IPTC) and
  COM are dropped; APP0 (JFIF), APP2 (ICC profile, the MPO index), APP14 (Adobe: how CMYK is
  stored), tables and the frame header stay. Everything from SOS on (the entropy-coded data)
  is copied as it is. An MPO's later images (which carry their own EXIF, GPS included) are
  stripped the same way, and its index is rewritten with their new sizes and offsets.
* PNG: eXIf, tEXt, zTXt, iTXt and tIME are dropped; every other chunk stays with its CRC, and
  nothing after IEND is kept.

The structure is checked strictly: a file that does not follow it raises
:class:`MetadataStructureError`, and its metadata is better removed by a re-encode.
"""

from __future__ import annotations

import struct
from typing import Final

from ..errors import MetadataStructureError
from ..inspectors.image import PNG_SIGNATURE

JPEG_SOI: Final = b"\xff\xd8"
JPEG_SOS: Final = 0xDA
JPEG_EOI: Final = 0xD9
JPEG_APP2: Final = 0xE2
#: APP1 (EXIF, XMP), APP13 (Photoshop/IPTC) and COM.
DROPPED_JPEG_MARKERS: Final = frozenset({0xE1, 0xED, 0xFE})
#: Markers without a length: TEM and the restart markers RST0-RST7.
STANDALONE_JPEG_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})
MPF_IDENTIFIER: Final = b"MPF\x00"
#: The MP Index IFD tag whose value lists every image of an MPO (16 bytes each).
MP_ENTRY_TAG: Final = 0xB002
MP_ENTRY_SIZE: Final = 16
DROPPED_PNG_CHUNKS: Final = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
#: A PNG chunk's length field is at most 2^31 - 1.
PNG_MAX_CHUNK: Final = 2**31 - 1


def strip_metadata(data: bytes) -> bytes:
    """The JPEG, MPO or PNG ``data`` without its metadata; the compressed pixels untouched.

    Raises:
        MetadataStructureError: ``data`` is not a JPEG or PNG, or its structure is broken.
    """
    if data.startswith(JPEG_SOI):
        return strip_jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return strip_png(data)
    raise MetadataStructureError("neither a JPEG nor a PNG")


def strip_jpeg(data: bytes) -> bytes:
    """A JPEG (or MPO) without APP1, APP13 and COM segments; the rest byte for byte.

    Each image of an MPO is stripped the same way, and its index records where they now are.

    Raises:
        MetadataStructureError: no SOI, a segment cut short, no SOS before the end, or an MPO
            index that does not match the file.
    """
    head, sos, mp_header = _strip_header(data)
    if mp_header is None:
        return bytes(head) + data[sos:]
    return _strip_mpo(data, head, sos, mp_header)


def _strip_header(data: bytes) -> tuple[bytearray, int, tuple[int, int] | None]:
    """Walk a JPEG's segments from SOI to the first SOS, keeping all but the metadata.

    Returns the kept segments, where the SOS starts in ``data``, and where the MPO index header
    is (in ``data``, in the kept segments) when there is one.

    Raises:
        MetadataStructureError: no SOI, a segment cut short, or no SOS before the end.
    """
    if not data.startswith(JPEG_SOI):
        raise MetadataStructureError("not a JPEG: it does not start with an SOI marker")
    head = bytearray(JPEG_SOI)
    position = len(JPEG_SOI)
    mp_header: tuple[int, int] | None = None
    while True:
        start = position
        if position < len(data) and data[position] != 0xFF:
            raise MetadataStructureError(f"no JPEG marker at byte {position}")
        while position < len(data) and data[position] == 0xFF:  # fill bytes may precede one
            position += 1
        if position >= len(data):
            raise MetadataStructureError("the file ends before the image data (no SOS marker)")
        marker = data[position]
        position += 1
        if marker == JPEG_SOS:
            return head, start, mp_header
        if marker in STANDALONE_JPEG_MARKERS:
            head += data[start:position]
            continue
        if marker in (JPEG_SOI[1], JPEG_EOI):
            raise MetadataStructureError(f"an SOI or EOI marker at byte {start}, before any image")
        if position + 2 > len(data):
            raise MetadataStructureError(f"the segment at byte {start} is cut short")
        (length,) = struct.unpack_from(">H", data, position)
        end = position + length
        if length < 2 or end > len(data):
            raise MetadataStructureError(
                f"the segment at byte {start} claims {length} bytes; the file has "
                f"{len(data) - position} left"
            )
        if marker not in DROPPED_JPEG_MARKERS:
            payload = position + 2
            if (
                marker == JPEG_APP2
                and mp_header is None
                and data.startswith(MPF_IDENTIFIER, payload)
            ):
                header = payload + len(MPF_IDENTIFIER)
                mp_header = (header, len(head) + header - start)
            head += data[start:end]
        position = end


def _strip_mpo(data: bytes, head: bytearray, sos: int, mp_header: tuple[int, int]) -> bytes:
    """Strip every image an MPO's index lists and record their new sizes and offsets.

    Offsets count from the index header in the first image; the first image's is 0. Bytes
    between the images (and after the last) are copied as they are.

    Raises:
        MetadataStructureError: the index is cut short or points outside the file, or the
            segments of an image it lists are broken.
    """
    source_header, header = mp_header
    out = bytearray(head)
    endian, entries = _mp_entries(out, header)
    images = []  # (offset, size, where the entry is), in file order
    for at in entries:
        size, offset = struct.unpack_from(f"{endian}II", out, at + 4)
        images.append((offset, size, at))
    images.sort()
    if [offset for offset, _, _ in images].count(0) != 1:
        raise MetadataStructureError("the MPO index does not list its first image exactly once")
    position = sos
    for offset, size, at in images:
        start = source_header + offset if offset else 0
        end = start + size
        if end > len(data) or end < position or (offset and start < position):
            raise MetadataStructureError("the MPO index points outside the file")
        if offset:
            out += data[position:start]
            new_offset = len(out) - header
            later, later_sos, _ = _strip_header(data[start:end])
            out += later + data[start + later_sos : end]
            new_size = len(out) - header - new_offset
        else:
            out += data[position:end]
            new_offset, new_size = 0, len(out)
        struct.pack_into(f"{endian}II", out, at + 4, new_size, new_offset)
        position = end
    return bytes(out + data[position:])


def _mp_entries(head: bytearray, header: int) -> tuple[str, list[int]]:
    """The byte order of an MPO index and where in ``head`` each of its image entries is.

    Raises:
        MetadataStructureError: the index has no byte order mark, or is cut short.
    """
    order = bytes(head[header : header + 2])
    if order not in (b"II", b"MM"):
        raise MetadataStructureError("the MPO index has no byte order mark")
    endian = "<" if order == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(f"{endian}I", head, header + 4)
        (count,) = struct.unpack_from(f"{endian}H", head, header + ifd)
        for index in range(count):
            tag, _, size, value = struct.unpack_from(
                f"{endian}HHII", head, header + ifd + 2 + 12 * index
            )
            if tag == MP_ENTRY_TAG:
                entries = [header + value + MP_ENTRY_SIZE * n for n in range(size // MP_ENTRY_SIZE)]
                if entries and entries[-1] + MP_ENTRY_SIZE > len(head):
                    raise MetadataStructureError("the MPO index is cut short")
                return endian, entries
    except struct.error as exc:
        raise MetadataStructureError(f"the MPO index is cut short: {exc}") from exc
    raise MetadataStructureError("the MPO index lists no images")


def strip_png(data: bytes) -> bytes:
    """A PNG without eXIf, tEXt, zTXt, iTXt and tIME chunks; the rest byte for byte.

    Raises:
        MetadataStructureError: no PNG signature, a chunk cut short or misnamed, or no IEND.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise MetadataStructureError("not a PNG: it does not start with the PNG signature")
    kept = [PNG_SIGNATURE]
    position = len(PNG_SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise MetadataStructureError(f"the chunk at byte {position} is cut short (no IEND)")
        length, chunk_type = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if length > PNG_MAX_CHUNK or end > len(data):
            raise MetadataStructureError(
                f"the chunk at byte {position} claims {length} bytes; the file has "
                f"{len(data) - position - 12} left"
            )
        if not chunk_type.isalpha():
            raise MetadataStructureError(f"the chunk at byte {position} has no valid type")
        if chunk_type not in DROPPED_PNG_CHUNKS:
            kept.append(data[position:end])
        position = end
        if chunk_type == b"IEND":
            return b"".join(kept)
