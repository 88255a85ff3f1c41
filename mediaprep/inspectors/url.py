"""Fetch media given as an http(s) URL into a local file, streaming, within the byte limit."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from .. import spec
from ..findings import Finding
from .image import IMAGE_SUFFIXES

DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: The most a whole download may take, however steadily a slow server keeps sending.
DOWNLOAD_DEADLINE_SECONDS = 300.0
USER_AGENT = "mediaprep (+https://pypi.org/project/mediaprep/)"


def is_url(text: str) -> bool:
    """Whether ``text`` is meant as an http(s) URL rather than a local path.

    Only the scheme is looked at: a malformed URL (``http://[::1``) is still a URL, and its fetch
    reports what is wrong with it.
    """
    scheme, separator, _rest = text.partition("://")
    return bool(separator) and scheme.lower() in ("http", "https")


@dataclass(frozen=True)
class Download:
    """The outcome of fetching a URL: the local file, or the finding that says why not."""

    url: str
    local_path: Path | None
    findings: tuple[Finding, ...]


def byte_limit_for(url: str, content_type: str) -> int:
    """The most bytes worth fetching: the image limit for images, else the video limit."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    if content_type.startswith("image/") or suffix in IMAGE_SUFFIXES:
        return spec.IMAGE_MAX_BYTES
    return spec.VIDEO_MAX_BYTES


def public_address_finding(url: str) -> Finding | None:
    """A warning when the URL's host is not a public address the service could reach."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return None  # the fetch itself reports the name that does not resolve
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        if not ip.is_global:
            return Finding(
                "url_not_public",
                "warning",
                f"{host} resolves to {address}, which the service cannot reach; the API needs "
                "a publicly accessible URL",
            )
    return None


def _suffix_for(url: str) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return suffix if suffix.isascii() and len(suffix) <= 6 else ""


def download(
    url: str, dest_dir: str | os.PathLike[str], client: httpx.Client | None = None
) -> Download:
    """Fetch ``url`` into a new file in ``dest_dir``, stopping once past the byte limit.

    Never raises for network trouble: that becomes a ``url_unreachable`` finding, and a body over
    the limit a ``file_too_large`` finding (the partial file is removed).
    """
    findings: list[Finding] = []
    try:
        httpx.URL(url)
        _ = urlsplit(url).hostname  # raises ValueError on a malformed authority
    except (httpx.InvalidURL, ValueError) as exc:
        finding = Finding("url_unreachable", "error", f"URL is malformed: {exc}")
        return Download(url, None, (finding,))
    warning = public_address_finding(url)
    if warning is not None:
        findings.append(warning)
    own_client = client is None
    http = client or httpx.Client(
        timeout=DOWNLOAD_TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT}
    )
    handle, name = tempfile.mkstemp(prefix="download-", suffix=_suffix_for(url), dir=dest_dir)
    target = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, http.stream("GET", url) as response:
            if response.status_code >= 400:
                reason = response.reason_phrase or "error"
                raise _Unreachable(f"the server answered HTTP {response.status_code} {reason}")
            limit = byte_limit_for(url, response.headers.get("content-type", ""))
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge(int(declared), limit)
            received = 0
            deadline = time.monotonic() + DOWNLOAD_DEADLINE_SECONDS
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise _Unreachable(
                        f"the download took longer than {DOWNLOAD_DEADLINE_SECONDS:g} s "
                        f"({received} bytes received)"
                    )
                received += len(chunk)
                if received > limit:
                    raise _TooLarge(received, limit)
                out.write(chunk)
    except _Unreachable as exc:
        target.unlink(missing_ok=True)
        findings.append(Finding("url_unreachable", "error", f"URL cannot be fetched: {exc}"))
        return Download(url, None, tuple(findings))
    except _TooLarge as exc:
        target.unlink(missing_ok=True)
        findings.append(Finding("file_too_large", "error", str(exc)))
        return Download(url, None, tuple(findings))
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        reason = str(exc) or type(exc).__name__
        findings.append(Finding("url_unreachable", "error", f"URL cannot be fetched: {reason}"))
        return Download(url, None, tuple(findings))
    finally:
        if own_client:
            http.close()
    return Download(url, target, tuple(findings))


class _Unreachable(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, received: int, limit: int) -> None:
        super().__init__(
            f"URL serves more than {spec.size_text(limit)} ({received} bytes or more); "
            f"the limit is {limit} bytes"
        )
