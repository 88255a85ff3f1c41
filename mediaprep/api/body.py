"""The create request's body, streamed: JSON whose Base64 is encoded while the files are read.

Media can reach 200 MiB, so the body is never held in memory: :class:`RequestBody` yields the
JSON in chunks, encoding each file in blocks of ``3 * n`` bytes (whole Base64 quanta, so the
encoded blocks concatenate into one valid Base64 string). Its length is known in advance
(Base64 of ``n`` bytes is ``4 * ceil(n / 3)`` characters), so the request carries
``Content-Length``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FileChangedError
from ..inspectors.url import is_url

if TYPE_CHECKING:
    from ..inspectors.element import Element
    from .provider import Provider

#: Bytes read per block: a multiple of 3, so each block encodes to whole Base64 quanta.
READ_BLOCK_BYTES = 3 * 256 * 1024
#: Small JSON pieces are gathered up to this size before being handed to the socket.
FLUSH_BYTES = 64 * 1024


def base64_length(size: int) -> int:
    """Characters of the Base64 encoding of ``size`` bytes (with padding)."""
    return 4 * ((size + 2) // 3)


def sniff_mime(path: str | os.PathLike[str]) -> str:
    """The MIME type of an image or video from its first bytes (for data URIs).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as stream:
        head = stream.read(16)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    return "application/octet-stream"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in blocks.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Base64File:
    """A local file sent as a Base64 string (a ``data:`` URI when ``mime`` is set).

    ``size`` is taken when the body is built; the file must keep it until it is sent.
    """

    path: Path
    size: int
    mime: str | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, data_uri: bool = False) -> Base64File:
        """Describe a local file to send.

        Raises:
            OSError: the file cannot be read.
        """
        target = Path(path)
        return cls(target, target.stat().st_size, sniff_mime(target) if data_uri else None)

    @property
    def prefix(self) -> str:
        """``data:<mime>;base64,`` for a data URI, else empty."""
        return f"data:{self.mime};base64," if self.mime else ""

    @property
    def encoded_length(self) -> int:
        """Length of the JSON string's content (prefix and Base64), in bytes."""
        return len(self.prefix) + base64_length(self.size)

    def iter_encoded(self) -> Iterator[bytes]:
        """The prefix, then the file's Base64 block by block.

        Raises:
            OSError: the file cannot be read.
            FileChangedError: the file's size changed since the body was built.
        """
        if self.prefix:
            yield self.prefix.encode("ascii")
        remaining = self.size
        with self.path.open("rb") as stream:
            while remaining:
                block = stream.read(min(READ_BLOCK_BYTES, remaining))
                if not block:
                    break
                remaining -= len(block)
                yield base64.b64encode(block)
            if remaining or stream.read(1):
                raise FileChangedError(str(self.path))


BodyValue = str | Base64File


def _fragments(value: object) -> Iterator[bytes]:
    """The JSON text of ``value`` in pieces; :class:`Base64File` becomes a JSON string."""
    if isinstance(value, Base64File):
        yield b'"'
        yield from value.iter_encoded()
        yield b'"'
    elif isinstance(value, Mapping):
        yield b"{"
        for index, (key, item) in enumerate(value.items()):
            yield (b"," if index else b"") + json.dumps(str(key)).encode("ascii") + b":"
            yield from _fragments(item)
        yield b"}"
    elif isinstance(value, list | tuple):
        yield b"["
        for index, item in enumerate(value):
            if index:
                yield b","
            yield from _fragments(item)
        yield b"]"
    else:
        yield json.dumps(value).encode("ascii")


def _length(value: object) -> int:
    """Bytes of ``value``'s JSON text as :func:`_fragments` writes it, without reading files."""
    if isinstance(value, Base64File):
        return 2 + value.encoded_length
    if isinstance(value, Mapping):
        keys = sum(len(json.dumps(str(key))) + 1 for key in value)
        return 2 + max(len(value) - 1, 0) + keys + sum(_length(item) for item in value.values())
    if isinstance(value, list | tuple):
        return 2 + max(len(value) - 1, 0) + sum(_length(item) for item in value)
    return len(json.dumps(value))


def _describe(value: object, hashes: Mapping[Path, str]) -> object:
    if isinstance(value, Base64File):
        described: dict[str, object] = {"base64_length": base64_length(value.size)}
        if value.mime:
            described["data_uri_prefix"] = value.prefix
        described["sha256"] = hashes[value.path]
        return described
    if isinstance(value, Mapping):
        return {str(key): _describe(item, hashes) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_describe(item, hashes) for item in value]
    return value


def _files(value: object) -> Iterator[Base64File]:
    if isinstance(value, Base64File):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _files(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _files(item)


@dataclass(frozen=True)
class RequestBody:
    """A create request's JSON body; iterate it (again for each attempt) to stream it."""

    fields: Mapping[str, Any]

    @property
    def external_task_id(self) -> str:
        """The ``external_task_id`` the body carries."""
        return str(self.fields["external_task_id"])

    @property
    def content_length(self) -> int:
        """The exact number of bytes iteration yields."""
        return _length(self.fields)

    def files(self) -> list[Base64File]:
        """The local files the body sends, in body order."""
        return list(_files(self.fields))

    def __iter__(self) -> Iterator[bytes]:
        """Yield the JSON in chunks of at most about one encoded block.

        Raises:
            OSError: a file cannot be read.
            FileChangedError: a file changed size since the body was built.
        """
        pending = bytearray()
        for fragment in _fragments(self.fields):
            if len(fragment) >= FLUSH_BYTES:
                if pending:
                    yield bytes(pending)
                    pending.clear()
                yield fragment
                continue
            pending += fragment
            if len(pending) >= FLUSH_BYTES:
                yield bytes(pending)
                pending.clear()
        if pending:
            yield bytes(pending)


def describe_body(body: RequestBody, hashes: Mapping[Path, str] | None = None) -> dict[str, Any]:
    """The body with each Base64 value replaced by ``{"base64_length", "sha256"}``.

    Args:
        body: the request body.
        hashes: SHA-256 of files already hashed, by path (the rest are hashed here).

    Raises:
        OSError: a file cannot be read.
    """
    known = dict(hashes or {})
    for item in body.files():
        if item.path not in known:
            known[item.path] = file_sha256(item.path)
    return {key: _describe(value, known) for key, value in body.fields.items()}


def new_external_task_id() -> str:
    """A fresh ``external_task_id`` (a random UUID)."""
    return str(uuid.uuid4())


def build_request(
    element: Element,
    provider: Provider,
    *,
    external_task_id: str | None = None,
    data_uri: bool = False,
) -> RequestBody:
    """The body that creates ``element``: local files as Base64, URLs as they are.

    Args:
        element: the element; its media are the files to send (already fixed).
        provider: builds the provider's JSON fields.
        external_task_id: the id to send; ``element.external_task_id``, else a new UUID, when
            not given.
        data_uri: send local files as ``data:<mime>;base64,...`` instead of raw Base64.

    Raises:
        OSError: a local file cannot be read.
    """
    media: dict[str, BodyValue] = {
        item: item if is_url(item) else Base64File.from_path(item, data_uri=data_uri)
        for item in element.media
    }
    task_id = external_task_id or element.external_task_id or new_external_task_id()
    return RequestBody(provider.build_body(element, media, task_id))
