"""A local server that speaks the custom-elements API, to try clients without the real service.

``mediaprep sandbox`` runs it. It speaks ``docs/wire-protocol.md``: it checks create requests the
way the service would (the body rules of :mod:`mediaprep.spec`, Base64 media through the
inspectors), keeps tasks in memory, moves them to ``completed`` over a few polls, and injects
faults on demand: error statuses, dropped connections, slow or garbled answers, failed tasks.
An error status or a garbled answer can come before the request is processed (nothing stored)
or, with ``after_store``, after it (a create stores its task, then the answer is the fault):
the cases that would show a client creating twice.

Admin endpoints, for tests and scripts (no API key needed):

    GET    /_sandbox/faults     the faults in force
    POST   /_sandbox/faults     add faults: a JSON list of specs ("create:1:status=503") or objects
                                ({"on": "create", "nth": 1, "action": "status", "status": 504,
                                "after_store": true})
    DELETE /_sandbox/faults     remove every fault
    GET    /_sandbox/elements   every stored task with its element

The API key is never stored, logged or echoed: tasks belong to a SHA-256 of it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import io
import json
import logging
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple, cast, get_args
from urllib.parse import unquote, urlsplit

from .. import spec
from ..errors import MediaprepError
from ..info import ImageInfo
from ..inspectors import inspect_local

log = logging.getLogger(__name__)

CREATE_PATH: Final = "/v1/videos/generations"
TASK_PATH_PREFIX: Final = "/v1/tasks/"
FAULTS_PATH: Final = "/_sandbox/faults"
ELEMENTS_PATH: Final = "/_sandbox/elements"
DEFAULT_HOST: Final = "127.0.0.1"
#: Bodies above this are refused with 413: a 200 MiB video is about 270 MiB of Base64.
MAX_BODY_BYTES: Final = 300 * spec.MIB
#: A ``slow`` fault sleeps at most this long.
MAX_SLOW_SECONDS: Final = 30.0
#: Element ids start beyond 2^53, so a client that parses them through a float loses digits.
ELEMENT_ID_BASE: Final = 860_000_000_000_000_000
MEDIA_URL_BASE: Final = "https://sandbox.invalid/media/"
DEFAULT_FAIL_REASON: Final = "injected failure"
FINAL_UNIT_DEDUCTION: Final = "1"
#: JSON strings longer than this are kept in files while the body is parsed.
SPILL_BYTES: Final = 64 * 1024
CHUNK_BYTES: Final = 1024 * 1024
MALFORMED_BODY: Final = b'{"task_id": "tsk_'

FaultKind = Literal["create", "get", "any"]
FaultAction = Literal["status", "drop", "drop_after_store", "slow", "malformed_json", "fail_task"]
TaskStatus = Literal["pending", "processing", "completed", "failed"]
FAULT_KINDS: Final[tuple[str, ...]] = get_args(FaultKind)
FAULT_ACTIONS: Final[tuple[str, ...]] = get_args(FaultAction)
#: The actions that can fire after the request was processed, and the spec option that says so.
AFTER_STORE_ACTIONS: Final = ("status", "malformed_json")
AFTER_STORE_OPTION: Final = "after_store"
FAULT_EXAMPLES: Final = (
    "create:1:status=503, get:2:status=429,retry_after=1, create:1:drop, "
    "create:1:drop_after_store, create:1:status=504,after_store, "
    "create:1:malformed_json,after_store, any:3:slow=2.5, get:1:malformed_json, "
    "create:1:fail_task=reason text, create:2+:status=500"
)

_ERROR_CODES: Final = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    501: "not_implemented",
}
_BASE64_HEAD_BYTES: Final = 256
_DATA_URI_MARK: Final = b";base64,"
_STRING_SPECIALS: Final = re.compile(rb'["\\]')
_ARTICLED: Final = {"image": "an image", "video": "a video"}


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``action`` on the ``nth`` request of kind ``on`` (1-based).

    Requests are counted per kind (``create``, ``get``, or ``any`` of the two) from the moment
    the fault is added; with ``every`` it fires on the ``nth`` and every later one.

    Actions: ``status`` answers ``status`` with the error envelope (and ``Retry-After`` when
    ``retry_after`` is set); ``drop`` closes the connection before the request is processed;
    ``drop_after_store`` processes it (a create stores its task), then closes the connection
    unanswered; ``slow`` sleeps ``seconds`` before processing; ``malformed_json`` answers 200 with
    a body that is not JSON, without processing; ``fail_task`` makes the created or polled task
    end ``failed`` with ``reason``. With ``after_store``, ``status`` and ``malformed_json``
    process the request first (a create stores its task, a poll advances it), then answer with
    the fault instead of the task.

    Raises:
        ValueError: a field is out of range or does not go with the action.
    """

    on: FaultKind
    nth: int
    action: FaultAction
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0
    reason: str = ""
    every: bool = False
    after_store: bool = False

    def __post_init__(self) -> None:
        if self.on not in FAULT_KINDS:
            raise ValueError(f"fault 'on' must be one of {', '.join(FAULT_KINDS)}, not {self.on!r}")
        if isinstance(self.nth, bool) or not isinstance(self.nth, int) or self.nth < 1:
            raise ValueError(f"fault 'nth' must be a whole number from 1, not {self.nth!r}")
        if self.action not in FAULT_ACTIONS:
            raise ValueError(
                f"fault action must be one of {', '.join(FAULT_ACTIONS)}, not {self.action!r}"
            )
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"fault 'status' must be an integer, not {self.status!r}")
        if self.action == "status" and not 400 <= self.status <= 599:
            raise ValueError(f"fault status must be an error status (400-599), not {self.status}")
        if self.retry_after is not None and (
            self.action != "status" or not isinstance(self.retry_after, str)
        ):
            raise ValueError("fault 'retry_after' is a string and goes only with the status action")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, (int, float)):
            raise ValueError(f"fault 'seconds' must be a number, not {self.seconds!r}")
        if self.action == "slow" and not 0 < self.seconds <= MAX_SLOW_SECONDS:
            raise ValueError(
                f"a slow fault sleeps more than 0 and at most {MAX_SLOW_SECONDS:g} seconds, "
                f"not {self.seconds!r}"
            )
        if not isinstance(self.reason, str) or not isinstance(self.every, bool):
            raise ValueError("fault 'reason' must be a string and 'every' a boolean")
        if not isinstance(self.after_store, bool):
            raise ValueError(f"fault 'after_store' must be a boolean, not {self.after_store!r}")
        if self.after_store and self.action not in AFTER_STORE_ACTIONS:
            raise ValueError(
                f"fault 'after_store' goes only with {' and '.join(AFTER_STORE_ACTIONS)}"
            )

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Read a compact spec ``ON:NTH[+]:ACTION[=VALUE][,retry_after=VALUE][,after_store]``.

        ``NTH+`` fires on the nth request and every later one. Examples: ``create:1:status=503``,
        ``get:2:status=429,retry_after=1``, ``create:1:drop_after_store``, ``any:3:slow=2.5``,
        ``get:1:malformed_json``, ``create:1:status=504,after_store``,
        ``create:1:malformed_json,after_store``, ``create:1:fail_task=reason text`` (the reason
        runs to the end).

        Raises:
            ValueError: the text is not a fault spec; the message says why and shows the form.
        """
        try:
            return cls._parse(text)
        except ValueError as exc:
            raise ValueError(
                f"bad fault {text!r}: {exc}; expected ON:NTH[+]:ACTION[=VALUE], "
                f"e.g. {FAULT_EXAMPLES}"
            ) from None

    @classmethod
    def _parse(cls, text: str) -> Fault:
        parts = [part.strip() for part in text.strip().split(":", 2)]
        if len(parts) != 3:
            raise ValueError("it needs three parts separated by ':'")
        on, nth_text, rest = parts
        if on not in FAULT_KINDS:
            raise ValueError(f"ON must be one of {', '.join(FAULT_KINDS)}")
        every = nth_text.endswith("+")
        digits = nth_text.removesuffix("+")
        if not _is_number(digits):
            raise ValueError("NTH must be a whole number from 1, optionally followed by '+'")
        nth = int(digits)
        kind = cast(FaultKind, on)
        if rest.startswith("fail_task"):
            action, has_value, reason = rest.partition("=")
            if action != "fail_task":
                raise ValueError(f"unknown action {action!r}")
            reason = reason.strip() if has_value else ""
            return cls(kind, nth, "fail_task", reason=reason or DEFAULT_FAIL_REASON, every=every)
        head, after_mark, after = rest.rpartition(",")
        after_store = bool(after_mark) and after.strip() == AFTER_STORE_OPTION
        if after_store:
            rest = head.strip()
        head, has_option, option = (part.strip() for part in rest.partition(","))
        action, has_value, value = (part.strip() for part in head.partition("="))
        if action == "status":
            if not _is_number(value):
                raise ValueError("status needs a number, e.g. status=503")
            retry_after = None
            if has_option:
                # The value runs to the end: an HTTP date holds a comma.
                name, _, retry_after = (part.strip() for part in option.partition("="))
                if name != "retry_after" or not retry_after:
                    raise ValueError(f"unknown option {option!r}; status takes retry_after=VALUE")
            return cls(
                kind,
                nth,
                "status",
                status=int(value),
                retry_after=retry_after,
                every=every,
                after_store=after_store,
            )
        if has_option:
            raise ValueError(f"{action} takes no options")
        if action == "slow":
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError("slow needs seconds, e.g. slow=2.5") from None
            return cls(kind, nth, "slow", seconds=seconds, every=every, after_store=after_store)
        if action in ("drop", "drop_after_store", "malformed_json"):
            if has_value:
                raise ValueError(f"{action} takes no value")
            return cls(kind, nth, cast(FaultAction, action), every=every, after_store=after_store)
        raise ValueError(f"unknown action {action!r}; one of {', '.join(FAULT_ACTIONS)}")

    def to_spec(self) -> str:
        """The fault as the compact text :meth:`parse` reads."""
        nth = f"{self.nth}+" if self.every else str(self.nth)
        action: str = self.action
        if self.action == "status":
            action = f"status={self.status}"
            if self.retry_after is not None:
                action += f",retry_after={self.retry_after}"
        elif self.action == "slow":
            action = f"slow={self.seconds:g}"
        elif self.action == "fail_task" and self.reason:
            action = f"fail_task={self.reason}"
        if self.after_store:
            action += f",{AFTER_STORE_OPTION}"
        return f"{self.on}:{nth}:{action}"

    @classmethod
    def from_json(cls, value: object) -> Fault:
        """Build a fault from a spec string or an object with the fields (the admin endpoint).

        Raises:
            ValueError: the value is not a fault.
        """
        if isinstance(value, str):
            return cls.parse(value)
        if not isinstance(value, dict):
            raise ValueError(f"a fault is a spec string or an object, not {_show(value)}")
        try:
            return cls(**value)
        except TypeError as exc:
            raise ValueError(f"bad fault {_show(value)}: {exc}") from None


class LoggedRequest(NamedTuple):
    """One request as the sandbox saw it; ``status`` 0 means the connection was dropped."""

    method: str
    path: str
    status: int


@dataclass(frozen=True)
class Answer:
    """What to send back: a status, headers and a JSON body, or ``drop`` the connection."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    close: bool = False


class _Problem(Exception):
    """A request the sandbox refuses with ``status``; ``close`` ends the connection after."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.close = close


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _invalid(message: str) -> _Problem:
    return _Problem(400, message)


def _show(value: object, limit: int = 40) -> str:
    """A short repr of a client's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def new_request_id() -> str:
    """A fresh ``X-Request-Id`` value."""
    return "req_" + secrets.token_hex(8)


def error_answer(
    status: int,
    message: str,
    request_id: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> Answer:
    """The error envelope ``{"error": {"code", "message"}}`` for ``status``."""
    code = _ERROR_CODES.get(status, "internal" if status >= 500 else "error")
    return _json_answer(
        status,
        {"error": {"code": code, "message": message}},
        request_id,
        headers=headers,
        close=close,
    )


def _json_answer(
    status: int,
    payload: object,
    request_id: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> Answer:
    body = json.dumps(payload).encode("utf-8")
    return Answer(status, body, _base_headers(request_id) + headers, close=close)


def _base_headers(request_id: str) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", "application/json"), ("X-Request-Id", request_id))


# --- The request body -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """A long JSON string of the body, kept raw (still JSON-escaped) in a file."""

    path: Path
    escaped: bool


class _Body:
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
    def parse(cls, source: IO[bytes], scratch: Path) -> _Body:
        """Parse the body in ``source``, spilling long strings into ``scratch``.

        Raises:
            _Problem: 400, the body is not JSON.
        """
        marker = f"\x00blob-{secrets.token_hex(8)}-"
        skeleton, blobs = _split_json(source, scratch, marker)
        try:
            data = json.loads(skeleton.decode("utf-8"))
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise _invalid(f"request body is not valid JSON ({reason})") from None
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
            _Problem: 400, the string is not a valid JSON string.
        """
        blob = self._blobs.get(value)
        if blob is None:
            return value
        try:
            return str(json.loads(b'"' + blob.path.read_bytes() + b'"'))
        except ValueError:
            raise _invalid("request body is not valid JSON (a bad string)") from None

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


def _decode_base64(source: IO[bytes], out: IO[bytes]) -> str:
    """Decode strict Base64 (an optional ``data:...;base64,`` prefix) from source to out.

    Returns:
        The SHA-256 of the decoded bytes.

    Raises:
        _Problem: 400 (without the field name), the text is not valid Base64.
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
                raise _invalid("not valid Base64 (data after the '=' padding)")
            try:
                decoded = base64.b64decode(block, validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(
                    "not valid Base64 (only A-Z, a-z, 0-9, '+', '/' and final '=' padding are "
                    "allowed, with a length that is a multiple of 4), nor an http(s) URL"
                ) from None
            padded = block.endswith(b"=")
            digest.update(decoded)
            out.write(decoded)
        if not chunk:
            return digest.hexdigest()


# --- Checking a create request ---------------------------------------------------------------


@dataclass(frozen=True)
class _MediaField:
    field: str
    value: str
    kind: Literal["image", "video"]


@dataclass(frozen=True)
class _Submission:
    name: str
    description: str
    reference_type: spec.ReferenceType
    media: tuple[_MediaField, ...]
    voice_id: str | None
    tag_ids: tuple[str, ...]
    external_task_id: str | None


def _text_field(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        raise _invalid(f"{name}: required")
    if not isinstance(value, str):
        raise _invalid(f"{name}: must be a string")
    text = value.strip()
    if not text:
        raise _invalid(f"{name}: must not be empty")
    if len(text) > limit:
        raise _invalid(f"{name}: has {len(text)} characters; at most {limit} are allowed")
    return text


def _media_field(name: str, value: object, kind: Literal["image", "video"]) -> _MediaField:
    if value is None:
        raise _invalid(f"{name}: required")
    if not isinstance(value, str):
        raise _invalid(f"{name}: must be a string (an http(s) URL or Base64)")
    if not value.strip():
        raise _invalid(f"{name}: must not be empty")
    return _MediaField(name, value, kind)


def _object(data: dict[str, Any], name: str, reference_type: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise _invalid(f"{name}: required object when reference_type is {reference_type}")
    return value


def _image_media(data: dict[str, Any]) -> tuple[_MediaField, ...]:
    images = _object(data, "element_image_list", "image_refer")
    frontal = _media_field("element_image_list.frontal_image", images.get("frontal_image"), "image")
    refers = images.get("refer_images")
    if not isinstance(refers, list):
        raise _invalid('element_image_list.refer_images: required array of {"image_url"} objects')
    if not spec.REFER_IMAGES_MIN <= len(refers) <= spec.REFER_IMAGES_MAX:
        raise _invalid(
            f"element_image_list.refer_images: has {len(refers)} images; "
            f"{spec.REFER_IMAGES_MIN} to {spec.REFER_IMAGES_MAX} are required besides the "
            "frontal image"
        )
    media = [frontal]
    for index, item in enumerate(refers):
        name = f"element_image_list.refer_images[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f'{name}: must be an object {{"image_url": ...}}')
        media.append(_media_field(f"{name}.image_url", item.get("image_url"), "image"))
    return tuple(media)


def _video_media(data: dict[str, Any]) -> tuple[_MediaField, ...]:
    videos = _object(data, "element_video_list", "video_refer").get("refer_videos")
    if not isinstance(videos, list):
        raise _invalid('element_video_list.refer_videos: required array of {"video_url"} objects')
    if len(videos) != spec.VIDEO_COUNT:
        raise _invalid(
            f"element_video_list.refer_videos: has {len(videos)} videos; exactly "
            f"{spec.VIDEO_COUNT} is supported"
        )
    name = "element_video_list.refer_videos[0]"
    if not isinstance(videos[0], dict):
        raise _invalid(f'{name}: must be an object {{"video_url": ...}}')
    return (_media_field(f"{name}.video_url", videos[0].get("video_url"), "video"),)


def _tag_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid('tag_list: must be an array of {"tag_id": ...} objects')
    ids: list[str] = []
    for index, item in enumerate(value):
        tag_id = item.get("tag_id") if isinstance(item, dict) else None
        if tag_id is None:
            raise _invalid(f'tag_list[{index}]: must be an object {{"tag_id": ...}}')
        if not isinstance(tag_id, str) or tag_id not in spec.TAGS:
            raise _invalid(
                f"tag_list[{index}].tag_id: unknown tag {_show(tag_id)}; "
                f"must be one of {', '.join(spec.TAGS)}"
            )
        if tag_id not in ids:
            ids.append(tag_id)
    return tuple(ids)


def _check_submission(data: object) -> _Submission:
    """Check a create body's shape and field rules (not the media bytes).

    Raises:
        _Problem: 400 naming the field and the rule.
    """
    if not isinstance(data, dict):
        raise _invalid("request body must be a JSON object")
    if data.get("model") != spec.MODEL_ID:
        raise _invalid(f"model: must be {spec.MODEL_ID!r}, not {_show(data.get('model'))}")
    name = _text_field(data, "element_name", spec.NAME_MAX_CHARS)
    description = _text_field(data, "element_description", spec.DESCRIPTION_MAX_CHARS)
    reference_type = data.get("reference_type")
    if reference_type == "image_refer":
        other = "element_video_list"
        media = _image_media(data)
    elif reference_type == "video_refer":
        other = "element_image_list"
        media = _video_media(data)
    else:
        raise _invalid(
            f"reference_type: must be one of {', '.join(spec.REFERENCE_TYPES)}, "
            f"not {_show(reference_type)}"
        )
    if data.get(other) is not None:
        raise _invalid(f"{other}: not allowed when reference_type is {reference_type}")
    voice_id = data.get("element_voice_id")
    if voice_id is not None and not isinstance(voice_id, str):
        raise _invalid("element_voice_id: must be a string")
    if voice_id and reference_type != "video_refer":
        raise _invalid("element_voice_id: only video_refer elements can bind a voice")
    tag_ids = _tag_ids(data.get("tag_list"))
    callback_url = data.get("callback_url")
    if callback_url is not None:
        parts = urlsplit(callback_url) if isinstance(callback_url, str) else None
        if parts is None or parts.scheme not in spec.CALLBACK_URL_SCHEMES or not parts.hostname:
            raise _invalid("callback_url: must be an absolute http(s) URL")
    external_task_id = data.get("external_task_id")
    if external_task_id is not None and (
        not isinstance(external_task_id, str) or not external_task_id.strip()
    ):
        raise _invalid("external_task_id: must be a non-empty string")
    return _Submission(
        name,
        description,
        reference_type,
        media,
        voice_id or None,
        tag_ids,
        external_task_id,
    )


def _check_media(body: _Body, media: _MediaField, scratch: Path, index: int) -> tuple[str, str]:
    """Check one media value: a URL as is, else Base64 decoded and inspected.

    Returns:
        The URL to echo (the one sent, or a sandbox URL for Base64) and an identity for
        comparing media (the URL, or the SHA-256 of the bytes).

    Raises:
        _Problem: 400 naming the field, when the value is not Base64 or the media breaks a rule.
    """
    with body.open_string(media.value) as source:
        head = source.read(8)
        if head.lower().startswith((b"http://", b"https://")):
            url = (head + source.read()).decode("utf-8", errors="replace")
            return url, "url:" + url
        source.seek(0)
        target = scratch / f"media-{index}"
        try:
            with target.open("wb") as out:
                sha = _decode_base64(source, out)
        except _Problem as exc:
            raise _invalid(f"{media.field}: {exc.message}") from None
    try:
        report = inspect_local(target)
    except MediaprepError as exc:
        raise _Problem(500, f"the sandbox could not inspect {media.field}: {exc}") from None
    finally:
        target.unlink()
    if report.kind not in (media.kind, "unknown"):
        raise _invalid(f"{media.field}: is {_ARTICLED[report.kind]}; {media.kind}s only here")
    errors = [finding.message for finding in report.findings if finding.is_error]
    if errors:
        raise _invalid(f"{media.field}: {'; '.join(errors)}")
    extension = ".mp4"
    if isinstance(report.info, ImageInfo):
        extension = ".png" if report.info.format == "PNG" else ".jpg"
    return f"{MEDIA_URL_BASE}{sha}{extension}", "sha256:" + sha


# --- Tasks ----------------------------------------------------------------------------------


@dataclass
class _Task:
    task_id: str
    external_task_id: str | None
    owner: str
    element: dict[str, Any]
    created_at: int
    updated_at: int
    fail_reason: str | None = None
    status: TaskStatus = "pending"
    progress: int = 0
    error: str | None = None
    polls: int = 0

    def to_json(self) -> dict[str, Any]:
        task: dict[str, Any] = {
            "task_id": self.task_id,
            "external_task_id": self.external_task_id,
            "status": self.status,
            "progress": self.progress,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.status == "completed":
            text = json.dumps(self.element)
            task["output"] = [{"content": [{"type": "text", "text": text, "url": ""}]}]
        return task

    def advance(self, polls_to_complete: int, now: int) -> None:
        """One poll: pending -> processing -> completed (or failed) over the polls."""
        if self.status in ("completed", "failed"):
            return
        self.polls += 1
        if self.polls < polls_to_complete:
            self.status = "processing"
            self.progress = 100 * self.polls // polls_to_complete
        elif self.fail_reason is not None:
            self.status, self.error = "failed", self.fail_reason
        else:
            self.status, self.progress = "completed", 100
        self.updated_at = now


@dataclass(frozen=True)
class _Armed:
    """A fault and the request count of its kind when it was added."""

    fault: Fault
    base: int

    def fires(self, kind: str, counts: Mapping[str, int]) -> bool:
        """Whether the fault fires on this request of ``kind``, given the counts with it."""
        if self.fault.on not in (kind, "any"):
            return False
        nth = counts[self.fault.on] - self.base
        return nth == self.fault.nth or (self.fault.every and nth >= self.fault.nth)


def _fault_answer(fault: Fault, request_id: str, *, stored: bool) -> Answer | None:
    """The answer ``fault`` puts in place of the real one, before or after the request was
    processed (``stored``); None when it does not answer at that point."""
    if stored != (fault.after_store or fault.action == "drop_after_store"):
        return None
    if fault.action == "status":
        retry = (("Retry-After", fault.retry_after),) if fault.retry_after else ()
        return error_answer(
            fault.status, f"sandbox fault {fault.to_spec()}", request_id, headers=retry
        )
    if fault.action in ("drop", "drop_after_store"):
        return Answer(0, drop=True)
    if fault.action == "malformed_json":
        return Answer(200, MALFORMED_BODY, _base_headers(request_id))
    return None


def _owner(authorization: str | None) -> str:
    """The key's owner id (a SHA-256 of the key); the key itself goes no further.

    Raises:
        _Problem: 401, no bearer key or a refused one (keys starting with ``bad``).
    """
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _Problem(
            401, "missing or malformed Authorization header; send 'Authorization: Bearer KEY'"
        )
    if key.startswith("bad"):
        raise _Problem(401, "the API key was refused")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _tag_info(tag_id: str) -> dict[str, str]:
    name = spec.TAGS[tag_id]
    return {"id": tag_id, "name": name, "description": f"Elements of the {name} kind"}


class Sandbox:
    """The sandbox's state (tasks, faults, request counts, a request log) and its answers.

    Thread-safe: the HTTP server calls :meth:`handle` from one thread per connection.

    Raises:
        ValueError: ``polls_to_complete`` is below 1.
    """

    def __init__(
        self,
        faults: Iterable[Fault] = (),
        *,
        polls_to_complete: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if polls_to_complete < 1:
            raise ValueError(f"polls_to_complete must be at least 1, not {polls_to_complete}")
        self.polls_to_complete = polls_to_complete
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tasks: dict[str, _Task] = {}
        self._external: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._faults: list[_Armed] = []
        self._log: list[LoggedRequest] = []
        self.add_faults(faults)

    # -- state for tests and the admin endpoints --

    def add_faults(self, faults: Iterable[Fault]) -> None:
        """Add faults; each counts its kind of request from now on."""
        with self._lock:
            self._faults.extend(_Armed(fault, self._counts[fault.on]) for fault in faults)

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[Fault]:
        """The faults in force, in the order added."""
        with self._lock:
            return [armed.fault for armed in self._faults]

    def elements(self) -> list[dict[str, Any]]:
        """Every stored task: ``task_id``, ``external_task_id``, ``status`` and ``element``."""
        with self._lock:
            return [
                {
                    "task_id": task.task_id,
                    "external_task_id": task.external_task_id,
                    "status": task.status,
                    "element": copy.deepcopy(task.element),
                }
                for task in self._tasks.values()
            ]

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Every request answered so far: method, path (without query) and status."""
        with self._lock:
            return list(self._log)

    def stop(self) -> None:
        """Wake any request sleeping in a ``slow`` fault (the server is going away)."""
        self._stopping.set()

    # -- requests --

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], stream: io.BufferedIOBase
    ) -> Answer:
        """Answer one request; reads its body (``Content-Length`` bytes) from ``stream``.

        Args:
            method: the HTTP method.
            target: the request target (path and query).
            headers: the request headers, names in lower case.
            stream: the connection, positioned at the body.
        """
        path = urlsplit(target).path
        request_id = new_request_id()
        try:
            with self._read_body(headers, stream) as body:
                answer = self._route(method, path, headers.get("authorization"), body, request_id)
        except _Problem as problem:
            answer = error_answer(
                problem.status,
                problem.message,
                request_id,
                headers=problem.headers,
                close=problem.close,
            )
        except Exception:
            # A bug or a broken connection: answer 500 rather than leave the client hanging.
            log.exception("sandbox: %s %s failed", method, path)
            answer = error_answer(500, "the sandbox failed", request_id, close=True)
        with self._lock:
            self._log.append(LoggedRequest(method, path, 0 if answer.drop else answer.status))
        return answer

    @contextlib.contextmanager
    def _read_body(
        self, headers: Mapping[str, str], stream: io.BufferedIOBase
    ) -> Iterator[IO[bytes]]:
        """Copy the body to an anonymous temp file, in chunks.

        Raises:
            _Problem: 411 (no length), 413 (too large) or 400 (bad length, short body).
        """
        length_text = headers.get("content-length")
        with tempfile.TemporaryFile(prefix="mediaprep-sandbox-") as body:
            if length_text is None:
                if "transfer-encoding" in headers:
                    raise _Problem(411, "Content-Length is required", close=True)
            else:
                if not _is_number(length_text.strip()):
                    raise _Problem(400, "Content-Length is not a number", close=True)
                remaining = int(length_text)
                if remaining > MAX_BODY_BYTES:
                    raise _Problem(
                        413,
                        f"request body is {spec.size_text(remaining)}; at most "
                        f"{spec.size_text(MAX_BODY_BYTES)} is accepted",
                        close=True,
                    )
                while remaining:
                    chunk = stream.read(min(CHUNK_BYTES, remaining))
                    if not chunk:
                        raise _Problem(400, "request body ended early", close=True)
                    body.write(chunk)
                    remaining -= len(chunk)
                body.seek(0)
            yield body

    def _route(
        self, method: str, path: str, authorization: str | None, body: IO[bytes], request_id: str
    ) -> Answer:
        if path == CREATE_PATH:
            self._allow(method, "POST")
            return self._api("create", authorization, body, request_id, "")
        if path.startswith(TASK_PATH_PREFIX) and "/" not in path[len(TASK_PATH_PREFIX) :]:
            task_ref = unquote(path[len(TASK_PATH_PREFIX) :])
            if task_ref:
                self._allow(method, "GET")
                return self._api("get", authorization, body, request_id, task_ref)
        if path == FAULTS_PATH:
            self._allow(method, "GET", "POST", "DELETE")
            if method == "POST":
                self.add_faults(self._faults_from(body))
            elif method == "DELETE":
                self.clear_faults()
            return _json_answer(200, {"faults": [f.to_spec() for f in self.faults()]}, request_id)
        if path == ELEMENTS_PATH:
            self._allow(method, "GET")
            return _json_answer(200, {"elements": self.elements()}, request_id)
        raise _Problem(404, f"no such path: {path}")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _Problem(
                405,
                f"method {method} is not allowed here; use {' or '.join(allowed)}",
                headers=(("Allow", ", ".join(allowed)),),
            )

    @staticmethod
    def _faults_from(body: IO[bytes]) -> list[Fault]:
        try:
            items = json.load(body)
        except ValueError:
            raise _invalid("send a JSON list of faults") from None
        if not isinstance(items, list):
            raise _invalid("send a JSON list of faults")
        try:
            return [Fault.from_json(item) for item in items]
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    def _api(
        self,
        kind: Literal["create", "get"],
        authorization: str | None,
        body: IO[bytes],
        request_id: str,
        task_ref: str,
    ) -> Answer:
        """An API request, with the faults that fire on it."""
        with self._lock:
            self._counts[kind] += 1
            self._counts["any"] += 1
            fired = [armed.fault for armed in self._faults if armed.fires(kind, self._counts)]
        delay = sum(fault.seconds for fault in fired if fault.action == "slow")
        if delay:
            self._stopping.wait(min(delay, MAX_SLOW_SECONDS))
        for fault in fired:
            answer = None if fault.after_store else _fault_answer(fault, request_id, stored=False)
            if answer is not None:
                return answer
        fail_reason = next(
            (fault.reason or DEFAULT_FAIL_REASON for fault in fired if fault.action == "fail_task"),
            None,
        )
        owner = _owner(authorization)
        if kind == "create":
            task = self._create(owner, body, fail_reason)
        else:
            task = self._poll(owner, task_ref, fail_reason)
        for fault in fired:
            answer = _fault_answer(fault, request_id, stored=True)
            if answer is not None:
                return answer
        return _json_answer(200, task, request_id)

    def _create(self, owner: str, stream: IO[bytes], fail_reason: str | None) -> dict[str, Any]:
        """Check a create request and store its task.

        Raises:
            _Problem: 400 (invalid request) or 409 (external_task_id already used).
        """
        with tempfile.TemporaryDirectory(prefix="mediaprep-sandbox-") as scratch:
            body = _Body.parse(stream, Path(scratch))
            submission = _check_submission(body.data)
            urls: list[str] = []
            identities: list[str] = []
            for index, media in enumerate(submission.media):
                url, identity = _check_media(body, media, Path(scratch), index)
                if index > 0 and media.kind == "image" and identity == identities[0]:
                    same = "URL" if identity.startswith("url:") else "bytes"
                    raise _invalid(
                        f"{media.field}: has the same {same} as the frontal image; refer "
                        "images must differ from the frontal image"
                    )
                urls.append(url)
                identities.append(identity)
        element: dict[str, Any] = {
            "element_id": 0,
            "element_name": submission.name,
            "element_description": submission.description,
            "reference_type": submission.reference_type,
        }
        if submission.reference_type == "image_refer":
            element["element_image_list"] = {
                "frontal_image": urls[0],
                "refer_images": [{"image_url": url} for url in urls[1:]],
            }
        else:
            element["element_video_list"] = {"refer_videos": [{"video_url": urls[0]}]}
        element["element_voice_id"] = submission.voice_id
        element["tag_list"] = [_tag_info(tag_id) for tag_id in submission.tag_ids]
        element["owned_by"] = "user_" + owner[:8]
        element["final_unit_deduction"] = FINAL_UNIT_DEDUCTION
        now = int(self._clock())
        external = submission.external_task_id
        with self._lock:
            if external is not None and (owner, external) in self._external:
                raise _Problem(409, f"external_task_id {external} already exists")
            element["element_id"] = ELEMENT_ID_BASE + len(self._tasks) + 1
            task = _Task(
                "tsk_" + secrets.token_hex(12), external, owner, element, now, now, fail_reason
            )
            self._tasks[task.task_id] = task
            if external is not None:
                self._external[(owner, external)] = task.task_id
            return task.to_json()

    def _poll(self, owner: str, task_ref: str, fail_reason: str | None) -> dict[str, Any]:
        """Find a task by id or external id, and advance it one poll.

        Raises:
            _Problem: 404, no such task for this key.
        """
        with self._lock:
            task = self._tasks.get(task_ref)
            if task is None or task.owner != owner:
                task = self._tasks.get(self._external.get((owner, task_ref), ""))
            if task is None or task.owner != owner:
                raise _Problem(404, f"no task {task_ref}")
            now = int(self._clock())
            if fail_reason is not None and task.status in ("pending", "processing"):
                task.status, task.error, task.updated_at = "failed", fail_reason, now
            task.advance(self.polls_to_complete, now)
            return task.to_json()


# --- HTTP -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to the sandbox and writes its answer; logs only at debug level."""

    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    server_version = "mediaprep-sandbox"
    sys_version = ""

    def _serve(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self.server.sandbox.handle(self.command, self.path, headers, self.rfile))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _send(self, answer: Answer) -> None:
        if answer.drop:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(answer.body)
        except OSError:
            # The client is gone (it timed out while a slow fault slept): nothing to answer.
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse, with the error envelope too."""
        text = message or HTTPStatus(code).phrase
        self._send(error_answer(code, text, new_request_id(), close=True))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that carries the sandbox, on IPv4 or IPv6."""

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class SandboxServer:
    """The sandbox on a local port; a context manager that starts and stops it.

    ``port=0`` takes a free port; :attr:`url` tells which. :attr:`sandbox` is the state.

    Raises:
        ValueError: ``polls_to_complete`` is below 1.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        faults: Iterable[Fault] = (),
        polls_to_complete: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.sandbox = Sandbox(faults, polls_to_complete=polls_to_complete, clock=clock)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: the server is not started.
        """
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not started")
        host, port = self._httpd.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def _bind(self) -> _Server:
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already started")
        self._httpd = _Server((self.host, self.port), self.sandbox)
        return self._httpd

    def start(self) -> SandboxServer:
        """Bind and serve in a background thread.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            RuntimeError: the server is already started.
        """
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="mediaprep-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Bind and serve in this thread until KeyboardInterrupt, which ends it quietly.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            RuntimeError: the server is already started.
        """
        httpd = self._bind()
        try:
            if on_ready is not None:
                on_ready(self.url)
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.sandbox.stop()
            httpd.server_close()
            self._httpd = None

    def stop(self) -> None:
        """Stop serving and close the socket; does nothing when not started."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.sandbox.stop()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.server_close()
        self._httpd = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    faults: Iterable[Fault] = (),
    on_ready: Callable[[str], None] | None = None,
    *,
    polls_to_complete: int = 2,
) -> None:
    """Serve the sandbox on ``host:port`` until KeyboardInterrupt (for ``mediaprep sandbox``).

    Args:
        host: the address to listen on; only that one (loopback unless told otherwise).
        port: the port; 0 takes a free one.
        faults: faults to inject.
        on_ready: called with the base URL once the socket listens.
        polls_to_complete: GETs of a task until it is completed.

    Raises:
        OSError: the address cannot be bound (e.g. the port is in use).
        ValueError: ``polls_to_complete`` is below 1.
    """
    SandboxServer(host, port, faults, polls_to_complete).serve_forever(on_ready)
