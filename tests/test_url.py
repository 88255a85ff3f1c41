"""URLs instead of files: fetched streaming, within the byte limit, over loopback HTTP."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from mediaprep import inspect_file, spec
from mediaprep.cli import main
from mediaprep.inspectors import download
from mediaprep.inspectors import url as url_module
from mediaprep.inspectors.url import public_address_finding


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def handle(self) -> None:
        # Clients here hang up mid-body on purpose (the byte limit): not the server's error.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, media: Mapping[str, Path]) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a folder holding a few fixtures; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    for name in ("img_300x300_png", "img_299x300_png", "vid_1080p_4s_mov"):
        shutil.copy(media[name], root / media[name].name)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_url_image_is_fetched_and_checked(served: tuple[str, Path]) -> None:
    base, _root = served
    report = inspect_file(f"{base}/300x300.png")
    assert report.path == f"{base}/300x300.png"
    assert report.kind == "image"
    # Loopback passes the rules, but the real service could not fetch it.
    assert report.codes() == ["url_not_public"]
    assert report.ok
    failing = inspect_file(f"{base}/299x300.png")
    assert failing.codes() == ["url_not_public", "dimension_too_small"]


def test_url_video_is_kept_in_download_dir(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _root = served
    keep = tmp_path / "keep"
    keep.mkdir()
    report = inspect_file(f"{base}/1080p_4s.mov", download_dir=keep)
    assert report.kind == "video"
    assert report.local_path is not None
    assert Path(report.local_path).parent == keep
    assert Path(report.local_path).stat().st_size > 0


def test_missing_url_is_unreachable_with_status(served: tuple[str, Path]) -> None:
    base, _root = served
    report = inspect_file(f"{base}/nope.jpg")
    assert "url_unreachable" in report.codes()
    assert "404" in report.findings[-1].message


def test_refused_connection_is_unreachable() -> None:
    report = inspect_file("http://127.0.0.1:9/photo.jpg")
    assert report.codes()[-1] == "url_unreachable"
    assert not report.ok


def test_download_stops_past_the_byte_limit(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = served
    (root / "big.png").write_bytes(b"\x89PNG" + b"\0" * (spec.IMAGE_MAX_BYTES + 10))
    dest = tmp_path / "dest"
    dest.mkdir()
    fetched = download(f"{base}/big.png", dest)
    assert fetched.local_path is None
    assert [f.code for f in fetched.findings] == ["url_not_public", "file_too_large"]
    assert list(dest.iterdir()) == []  # the partial file is gone


def test_malformed_url_is_a_finding() -> None:
    report = inspect_file("http://[::1")
    assert report.codes() == ["url_unreachable"]
    assert "malformed" in report.findings[0].message


def test_public_address_passes_the_public_check() -> None:
    # An IP literal resolves without a network; a global address gets no warning.
    assert public_address_finding("http://93.184.216.34/photo.jpg") is None
    warning = public_address_finding("http://10.1.2.3/photo.jpg")
    assert warning is not None
    assert warning.code == "url_not_public"


class DripHandler(http.server.BaseHTTPRequestHandler):
    """Sends a response one byte at a time, slowly, for ever (until the client gives up)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_slow_download_stops_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(url_module, "DOWNLOAD_DEADLINE_SECONDS", 0.5)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fetched = download(f"http://127.0.0.1:{server.server_address[1]}/drip.png", tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert fetched.local_path is None
    assert fetched.findings[-1].code == "url_unreachable"
    assert "longer than 0.5 s" in fetched.findings[-1].message
    received = int(fetched.findings[-1].message.split("(")[-1].split()[0])
    assert 0 < received < 200  # it gave up long before the server's 200 bytes were sent
    assert list(tmp_path.iterdir()) == []


def test_fix_takes_a_url_and_fetches_it_once(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _root = served
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["fix", f"{base}/299x300.png", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert [path.name for path in out.iterdir()] == ["299x300.png"]
    assert inspect_file(out / "299x300.png").ok
    plan = CliRunner().invoke(main, ["fix", f"{base}/299x300.png", "--dry-run", "-o", str(out)])
    assert plan.exit_code == 0, plan.output
    assert "upscale 299 × 300" in plan.output
