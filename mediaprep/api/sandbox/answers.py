"""What the sandbox sends back: :class:`Answer`, the error envelope, and :class:`Problem`.

A request the sandbox refuses raises :class:`Problem` anywhere below the handler; the handler
turns it into the envelope ``{"error": {"code", "message"}}`` with :func:`error_answer`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Final

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


@dataclass(frozen=True)
class Answer:
    """What to send back: a status, headers and a JSON body, or ``drop`` the connection."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    close: bool = False


class Problem(Exception):
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


def is_number(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (no sign, no spaces)."""
    return text.isascii() and text.isdigit()


def invalid(message: str) -> Problem:
    """A 400 :class:`Problem` (an invalid request) with ``message``."""
    return Problem(400, message)


def show(value: object, limit: int = 40) -> str:
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
    return json_answer(
        status,
        {"error": {"code": code, "message": message}},
        request_id,
        headers=headers,
        close=close,
    )


def json_answer(
    status: int,
    payload: object,
    request_id: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> Answer:
    """A JSON answer with the base headers (and ``headers`` after them)."""
    body = json.dumps(payload).encode("utf-8")
    return Answer(status, body, base_headers(request_id) + headers, close=close)


def base_headers(request_id: str) -> tuple[tuple[str, str], ...]:
    """The headers of every JSON answer: its content type and the request id."""
    return (("Content-Type", "application/json"), ("X-Request-Id", request_id))
