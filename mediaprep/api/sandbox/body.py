"""The request body as the sandbox receives it: up to 300 MiB of JSON with Base64 media.

:func:`read_body` copies it to a temp file, :class:`Body` parses it with its long strings left
in files, and :func:`decode_base64` decodes one media value from its file, streaming. (The
client side, which writes such a body, is :mod:`mediaprep.api.body`.)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from ... import spec
from .answers import Problem, invalid, is_number

#: Bodies above this are refused with 413: a 200 MiB video is about 270 MiB of Base64.
MAX_BODY_BYTES: Final = 300 * spec.MIB
#: JSON strings longer than this are kept in files while the body is parsed.
SPILL_BYTES: Final = 64 * 1024
CHUNK_BYTES: Final = 1024 * 1024
_BASE64_HEAD_BYTES: Final = 256
_DATA_URI_MARK: Final = b";base64,"
_STRING_SPECIALS: Final = re.compile(rb'["\\]')


@dataclass(frozen=True)
class _Blob:
    """A long JSON string of the body, kept raw (still JSON-escaped) in a file."""

    path: Path
    escaped: bool


class Body:
    """A JSON request body parsed with its long strings left in files.

    Media values are Base64 strings of up to ~270 MiB; holding the body text and the parsed
    strings at once would take several times that. The body is scanned once: strings longer than
    ``SPILL_BYTES`` go to files and a placeholder takes their place in a small skeleton, which
    ``json`` parses. Placeholders stay only where media are expected; the media are then
    decoded one at a time, streaming, from their files.
    """

    def __init__(self, data: object, blobs: dict[str, _Blob]) -> None:
        self.data = data
        self._blobs = blobs

    @classmethod
    def parse(cls, source: IO[bytes], scratch: Path) -> Body:
        """Parse the body in ``source``, spilling long strings into ``scratch``.

        Raises:
            Problem: 400, the body is not JSON.
        """
        marker = f"\x00blob-{secrets.token_hex(8)}-"
        skeleton, blobs = _split_json(source, scratch, marker)
        try:
            data = json.loads(skeleton.decode("utf-8"))
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise invalid(f"request body is not valid JSON ({reason})") from None
        body = cls(data, blobs)
        body.data = body._restore(data, ())
        return body

    def _restore(self, value: object, path: tuple[str | int, ...]) -> object:
        """Put back the long strings everywhere except where media are expected."""
        if isinstance(value, dict):
            return {self._text(k): self._restore(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._restore(item, (*path, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and not _is_media_path(path):
            return self._text(value)
        return value

    def _text(self, value: str) -> str:
        """The string a placeholder stands for (other strings are returned as they are).

        Raises:
            Problem: 400, the string is not a valid JSON string.
        """
        blob = self._blobs.get(value)
        if blob is None:
            return value
        try:
            return str(json.loads(b'"' + blob.path.read_bytes() + b'"'))
        except ValueError:
            raise invalid("request body is not valid JSON (a bad string)") from None

    def open_string(self, value: str) -> IO[bytes]:
        """A binary stream of a string's content, whether it is inline or in a file."""
        blob = self._blobs.get(value)
        if blob is None:
            return io.BytesIO(value.encode("utf-8"))
        if blob.escaped:
            return io.BytesIO(self._text(value).encode("utf-8"))
        return blob.path.open("rb")


def _is_media_path(path: tuple[str | int, ...]) -> bool:
    match path:
        case ("element_image_list", "frontal_image"):
            return True
        case ("element_image_list", "refer_images", int(), "image_url"):
            return True
        case ("element_video_list", "refer_videos", int(), "video_url"):
            return True
    return False


class _StringSink:
    """Collects one JSON string's raw content, moving it to a file once it grows long."""

    def __init__(self, scratch: Path, name: str) -> None:
        self._path = scratch / name
        self._inline = bytearray()
        self._file: IO[bytes] | None = None
        self.escaped = False

    def write(self, data: bytes) -> None:
        if self._file is None and len(self._inline) + len(data) > SPILL_BYTES:
            self._file = self._path.open("wb")
            self._file.write(self._inline)
            self._inline.clear()
        if self._file is not None:
            self._file.write(data)
        else:
            self._inline += data

    def finish(self) -> _Blob | bytes:
        """The blob when the string went to a file, else its raw bytes."""
        if self._file is None:
            return bytes(self._inline)
        self._file.close()
        return _Blob(self._path, self.escaped)


def _split_json(source: IO[bytes], scratch: Path, marker: str) -> tuple[bytes, dict[str, _Blob]]:
    """Scan JSON text; return it with long strings replaced by placeholders, and the blobs.

    Only ``"`` and ``\\`` matter inside a string, and in UTF-8 neither is ever part of another
    character, so the bytes are scanned without decoding them.
    """
    skeleton = bytearray()
    blobs: dict[str, _Blob] = {}
    sink: _StringSink | None = None
    escape_pending = False
    while chunk := source.read(CHUNK_BYTES):
        position = 0
        while position < len(chunk):
            if sink is None:
                quote = chunk.find(b'"', position)
                if quote < 0:
                    skeleton += chunk[position:]
                    break
                skeleton += chunk[position : quote + 1]
                sink = _StringSink(scratch, f"blob-{len(blobs)}")
                position = quote + 1
                continue
            if escape_pending:
                sink.write(chunk[position : position + 1])
                escape_pending = False
                position += 1
                continue
            special = _STRING_SPECIALS.search(chunk, position)
            if special is None:
                sink.write(chunk[position:])
                break
            sink.write(chunk[position : special.start()])
            position = special.end()
            if special.group() == b"\\":
                sink.write(b"\\")
                sink.escaped = escape_pending = True
                continue
            content = sink.finish()
            sink = None
            if isinstance(content, _Blob):
                name = f"{marker}{len(blobs)}"
                blobs[name] = content
                content = json.dumps(name).encode("ascii")[1:-1]
            skeleton += content + b'"'
    if sink is not None:
        # An unterminated string: keep what there is so json reports the error.
        content = sink.finish()
        skeleton += content if isinstance(content, bytes) else b""
    return bytes(skeleton), blobs


def decode_base64(source: IO[bytes], out: IO[bytes]) -> str:
    """Decode strict Base64 (an optional ``data:...;base64,`` prefix) from source to out.

    Returns:
        The SHA-256 of the decoded bytes.

    Raises:
        Problem: 400 (without the field name), the text is not valid Base64.
    """
    head = source.read(_BASE64_HEAD_BYTES)
    start = 0
    if head.startswith(b"data:"):
        mark = head.find(_DATA_URI_MARK)
        if mark >= 0:
            start = mark + len(_DATA_URI_MARK)
    digest = hashlib.sha256()
    pending = head[start:]
    padded = False
    while True:
        chunk = source.read(CHUNK_BYTES)
        data = pending + chunk
        cut = len(data) if not chunk else len(data) - len(data) % 4
        block, pending = data[:cut], data[cut:]
        if block:
            if padded:
                raise invalid("not valid Base64 (data after the '=' padding)")
            try:
                decoded = base64.b64decode(block, validate=True)
            except (binascii.Error, ValueError):
                raise invalid(
                    "not valid Base64 (only A-Z, a-z, 0-9, '+', '/' and final '=' padding are "
                    "allowed, with a length that is a multiple of 4), nor an http(s) URL"
                ) from None
            padded = block.endswith(b"=")
            digest.update(decoded)
            out.write(decoded)
        if not chunk:
            return digest.hexdigest()


@contextlib.contextmanager
def read_body(headers: Mapping[str, str], stream: io.BufferedIOBase) -> Iterator[IO[bytes]]:
    """Copy the body to an anonymous temp file, in chunks.

    Raises:
        Problem: 411 (no length), 413 (too large) or 400 (bad length, short body).
    """
    length_text = headers.get("content-length")
    with tempfile.TemporaryFile(prefix="mediaprep-sandbox-") as body:
        if length_text is None:
            if "transfer-encoding" in headers:
                raise Problem(411, "Content-Length is required", close=True)
        else:
            if not is_number(length_text.strip()):
                raise Problem(400, "Content-Length is not a number", close=True)
            remaining = int(length_text)
            if remaining > MAX_BODY_BYTES:
                raise Problem(
                    413,
                    f"request body is {spec.size_text(remaining)}; at most "
                    f"{spec.size_text(MAX_BODY_BYTES)} is accepted",
                    close=True,
                )
            while remaining:
                chunk = stream.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    raise Problem(400, "request body ended early", close=True)
                body.write(chunk)
                remaining -= len(chunk)
            body.seek(0)
        yield body
