"""submit, status and sandbox end to end: real HTTP over loopback against the sandbox.

The ``key_guard`` fixture (tests/conftest.py) checks after every test that the key is in no
output, no file under tmp_path, no log record and no caught error. Fault tests drive
:func:`mediaprep.submit.submit` with an injected ``sleep`` (real HTTP, no mocking) and check the
invariant: exactly one element exists in the sandbox and its id is reported, or can be resumed
from the receipt.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageDraw

from mediaprep.api import client as client_module
from mediaprep.api.body import Base64File
from mediaprep.api.client import Client
from mediaprep.api.config import load_settings
from mediaprep.api.provider import ElementInfo, Tag
from mediaprep.api.receipt import read_receipt
from mediaprep.api.sandbox import Fault, SandboxServer
from mediaprep.cli import main
from mediaprep.cli.submit import _summary_lines
from mediaprep.errors import (
    APIError,
    CheckFailedError,
    FileChangedError,
    InternalServerError,
    TaskFailedError,
)
from mediaprep.inspectors import Element
from mediaprep.submit import Completed, Created, Sending, SubmitEvent, follow, submit

if TYPE_CHECKING:
    from conftest import KeyGuard

KEY = "sk-test-e2e-5b1f0c9d77e4"
REPO = Path(__file__).resolve().parent.parent


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real config file or environment settings; polls that do not really wait."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MEDIAPREP_API_KEY", raising=False)
    monkeypatch.delenv("MEDIAPREP_BASE_URL", raising=False)
    monkeypatch.setattr(client_module, "POLL_FIRST_SECONDS", 0.01)
    monkeypatch.setattr(client_module, "POLL_MAX_SECONDS", 0.02)


@pytest.fixture
def server(sandbox: SandboxServer) -> SandboxServer:
    """The shared ``sandbox`` fixture (a started server on a free loopback port)."""
    return sandbox


def picture(path: Path, seed: int, size: tuple[int, int] = (640, 480)) -> str:
    """A distinct picture: seeded coloured rectangles on white."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle([x, y, x + rng.randrange(50, 300), y + rng.randrange(50, 300)], fill=colour)
    image.save(path)
    return str(path)


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    folder = tmp_path / "in"
    folder.mkdir()
    return [
        picture(folder / "front.png", 1),
        picture(folder / "side.jpg", 2),
        picture(folder / "back.png", 3),
    ]


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=dict(env or {}), catch_exceptions=False)


def image_args(images: list[str], base_url: str, out: Path) -> list[str]:
    return [
        "submit",
        "--name",
        "Bob",
        "--description",
        "A test element",
        "--frontal",
        images[0],
        "--refer",
        images[1],
        "--refer",
        images[2],
        "--tag",
        "character",
        "--base-url",
        base_url,
        "--api-key",
        KEY,
        "--out-dir",
        str(out),
    ]


def stored_ids(server: SandboxServer) -> list[str]:
    return [str(item["element"]["element_id"]) for item in server.sandbox.elements()]


# --- happy paths -------------------------------------------------------------------------------


def test_image_element_end_to_end(server: SandboxServer, images: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(*image_args(images, server.url, out))
    assert result.exit_code == 0, result.output
    (element_id,) = stored_ids(server)
    assert int(element_id) > 2**53
    assert f"element id: {element_id}" in result.output
    assert "check   " in result.output
    assert "task    tsk_" in result.output
    (receipt_file,) = out.glob("mediaprep-receipt-*.json")
    receipt = read_receipt(receipt_file)
    assert receipt["status"] == "completed"
    assert receipt["element_id"] == element_id
    assert receipt["task_id"].startswith("tsk_")
    assert receipt_file.name == f"mediaprep-receipt-{receipt['external_task_id']}.json"
    assert [entry["path"] for entry in receipt["files"]] == images
    assert all(len(entry["sha256"]) == 64 for entry in receipt["files"])
    assert receipt["request"]["element_image_list"]["frontal_image"]["base64_length"] > 0
    assert server.sandbox.elements()[0]["element"]["tag_list"][0]["id"] == "o_102"
    owner = server.sandbox.elements()[0]["element"]["owned_by"]
    summary = result.output.split(f"element id: {element_id}\n", 1)[1].splitlines()
    assert summary == [
        "  name:       Bob",
        "  type:       image_refer",
        "  tags:       o_102 (Character)",
        f"  owned by:   {owner}",
        "  units used: 1",
        f"  receipt:    {receipt_file}",
    ]


def test_summary_names_every_fact_and_leaves_out_empty_ones() -> None:
    full = ElementInfo(
        "860000000000000001",
        name="Ann",
        reference_type="video_refer",
        voice_id="voice_1",
        tags=(Tag("o_101", "Person"), Tag("o_999")),
        owned_by="user_1",
        final_unit_deduction=0,
    )
    assert _summary_lines(full, Path("out/r.json")) == [
        "  name:       Ann",
        "  type:       video_refer",
        "  tags:       o_101 (Person), o_999",
        "  voice id:   voice_1",
        "  owned by:   user_1",
        "  units used: 0",
        f"  receipt:    {Path('out/r.json')}",
    ]
    assert _summary_lines(ElementInfo("1", name="Bob"), None) == ["  name:       Bob"]


def test_video_element_end_to_end_json(
    server: SandboxServer,
    media_path: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    video = str(media_path("vid_1080x1920_5s_mp4"))
    out = tmp_path / "out"
    result = invoke(
        "submit",
        "--name",
        "Ann",
        "--description",
        "a person",
        "--video",
        video,
        "--voice-id",
        "voice_1",
        "--json",
        "--out-dir",
        str(out),
        env={"MEDIAPREP_API_KEY": KEY, "MEDIAPREP_BASE_URL": server.url},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    (element_id,) = stored_ids(server)
    assert document["ok"] is True
    assert document["element_id"] == element_id
    assert document["element"]["reference_type"] == "video_refer"
    assert document["element"]["voice_id"] == "voice_1"
    assert document["task_id"] == read_receipt(document["receipt"])["task_id"]


def test_submit_as_a_real_subprocess(
    server: SandboxServer, images: list[str], tmp_path: Path, key_guard: KeyGuard
) -> None:
    out = tmp_path / "out"
    args = image_args(images, server.url, out)
    key_at = args.index("--api-key")
    del args[key_at : key_at + 2]
    env = {
        **os.environ,
        "MEDIAPREP_API_KEY": KEY,
        "PYTHONPATH": str(REPO),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mediaprep", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [document["element_id"]] == stored_ids(server)
    assert "Traceback" not in done.stderr
    key_guard.check("the subprocess's output", done.stdout, done.stderr)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A tiny http.server on loopback serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def test_url_media_are_checked_and_sent_as_urls(
    server: SandboxServer,
    images: list[str],
    file_server: str,
    tmp_path: Path,
) -> None:
    picture(tmp_path / "www" / "online.png", 9)
    url = f"{file_server}/online.png"
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(images[0])] = url
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    (stored,) = server.sandbox.elements()
    assert stored["element"]["element_image_list"]["frontal_image"] == url
    assert f"check   {url}: ok" in result.output


def test_unreachable_url_stops_before_sending(
    server: SandboxServer,
    images: list[str],
    file_server: str,
    tmp_path: Path,
) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(images[0])] = f"{file_server}/missing.png"
    result = invoke(*args)
    assert result.exit_code == 1
    assert "download the file" in result.output
    assert server.sandbox.request_log == []


def test_dry_run_sends_nothing_and_masks_the_key(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = invoke(*image_args(images, server.url, out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert server.sandbox.request_log == []
    assert f"POST {server.url}/v1/videos/generations" in result.output
    assert "Authorization: Bearer sk-...e4" not in result.output
    assert "Authorization: Bearer sk-...77e4" in result.output
    assert "Content-Length: " in result.output
    body = json.loads(result.output[result.output.index("{") :].split("\n(dry run")[0])
    assert body["element_image_list"]["frontal_image"]["base64_length"] > 0
    assert body["element_name"] == "Bob"
    assert not list(out.glob("mediaprep-receipt-*"))


def test_no_wait_then_status_wait(server: SandboxServer, images: list[str], tmp_path: Path) -> None:
    env = {"MEDIAPREP_API_KEY": KEY, "MEDIAPREP_BASE_URL": server.url}
    args = image_args(images, server.url, tmp_path / "out")[
        :-6
    ]  # no --base-url/--api-key/--out-dir
    created = invoke(*args, "--out-dir", str(tmp_path / "out"), "--no-wait", "--json", env=env)
    assert created.exit_code == 0, created.output
    document = json.loads(created.output)
    assert document["ok"] is True
    assert "element_id" not in document
    shown = invoke("status", document["task_id"], env=env)
    assert shown.exit_code == 0
    assert "task    tsk_" in shown.output
    waited = invoke("status", document["task_id"], "--wait", "--json", env=env)
    assert waited.exit_code == 0, waited.output
    assert json.loads(waited.output)["element_id"] == stored_ids(server)[0]
    by_external = invoke(
        "status", "--external-task-id", document["external_task_id"], "--json", env=env
    )
    assert json.loads(by_external.output)["status"] == "completed"
    assert len(stored_ids(server)) == 1


def test_status_receipt_resumes_and_updates_it(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    created = invoke(*image_args(images, server.url, out), "--no-wait")
    assert created.exit_code == 0, created.output
    (receipt_file,) = out.glob("mediaprep-receipt-*.json")
    assert (
        f"not waiting; follow it with: mediaprep status --receipt {receipt_file} --wait"
        in created.output
    )
    assert read_receipt(receipt_file)["element_id"] is None
    resumed = invoke(
        "status", "--receipt", str(receipt_file), "--wait", env={"MEDIAPREP_API_KEY": KEY}
    )
    assert resumed.exit_code == 0, resumed.output
    (element_id,) = stored_ids(server)
    assert f"element id: {element_id}" in resumed.output
    receipt = read_receipt(receipt_file)
    assert receipt["status"] == "completed"
    assert receipt["element_id"] == element_id


# --- failures ----------------------------------------------------------------------------------


def test_reused_external_task_id_keeps_the_first_receipt(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    args = [*image_args(images, server.url, tmp_path / "out"), "--external-task-id", "mine-1"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    receipt_file = tmp_path / "out" / "mediaprep-receipt-mine-1.json"
    before = receipt_file.read_bytes()
    again = invoke(*args)
    assert again.exit_code == 2
    assert "mediaprep status --receipt" in again.output
    assert receipt_file.read_bytes() == before
    (element_id,) = stored_ids(server)
    assert read_receipt(receipt_file)["element_id"] == element_id
    elsewhere = invoke(*args[:-4], "--out-dir", str(tmp_path / "other"), *args[-2:])
    assert elsewhere.exit_code == 1
    assert "mediaprep status --external-task-id mine-1" in elsewhere.output
    assert stored_ids(server) == [element_id]


def test_bad_key_exits_1_saying_authentication(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    bad = "bad-sk-test-0123456789abcdef"
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(KEY)] = bad
    result = invoke(*args)
    assert result.exit_code == 1
    assert "authentication" in result.output.lower()
    assert "Traceback" not in result.output
    assert "mediaprep status" not in result.output  # refused: there is nothing to look up
    assert bad not in result.output
    assert server.sandbox.elements() == []
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert read_receipt(receipt_file)["status"] == "rejected"
    assert bad.encode() not in receipt_file.read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video", "{frontal}"], "images or by a video"),
        (["--api-key", ""], "no API key"),
    ],
)
def test_usage_errors_exit_2(
    server: SandboxServer, images: list[str], tmp_path: Path, extra: list[str], message: str
) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    if extra[0] == "--api-key":
        args[args.index(KEY)] = ""
    else:
        args += [item.format(frontal=images[0]) for item in extra]
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert server.sandbox.request_log == []


@pytest.mark.parametrize("base_url", ["http://[::1", "localhost:8765", "https://:8765"])
def test_a_malformed_base_url_is_a_usage_error(
    server: SandboxServer, images: list[str], tmp_path: Path, base_url: str
) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(server.url)] = base_url
    for result in (
        invoke(*args),
        invoke("status", "tsk_1", "--base-url", base_url, "--api-key", KEY),
    ):
        assert result.exit_code == 2, result.output
        assert f"base URL {base_url!r}" in result.output
        assert "internal error" not in result.output
    assert not (tmp_path / "out").exists()
    assert server.sandbox.request_log == []


def test_missing_base_url_exits_2(images: list[str], tmp_path: Path) -> None:
    result = invoke("submit", "--name", "A", "--description", "B", "--frontal", images[0],
                    "--refer", images[1], "--api-key", KEY)  # fmt: skip
    assert result.exit_code == 2
    assert "no base URL" in result.output


def test_no_fix_refuses_failing_media_before_sending(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    small = picture(tmp_path / "in" / "small.png", 7, size=(200, 200))
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(images[0])] = small
    result = invoke(*args, "--no-fix")
    assert result.exit_code == 1
    assert "dimension" in result.output or "300" in result.output
    assert "--no-fix" in result.output
    assert server.sandbox.request_log == []


def test_failing_image_is_fixed_then_sent(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    small = picture(tmp_path / "in" / "small.png", 7, size=(200, 200))
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(images[0])] = small
    result = invoke(*args, "--fit", "pad")
    assert result.exit_code == 0, result.output
    # Not a terminal: one line per fixed file, not a "..." line and then the result.
    assert [line for line in result.output.splitlines() if line.startswith("fix ")] == [
        line for line in result.output.splitlines() if line.startswith(f"fix     {small} -> ")
    ]
    assert len([line for line in result.output.splitlines() if line.startswith("fix ")]) == 1
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    first = read_receipt(receipt_file)["files"][0]
    assert first["path"] == small
    assert first["sent"] != small
    assert Path(first["sent"]).parent == tmp_path / "out"
    assert len(stored_ids(server)) == 1


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without sleeping between them (the CLI's client sleeps for real)."""
    monkeypatch.setattr(client_module, "retry_delay", lambda *args, **kwargs: 0.0)


def printed_command(output: str, before: str) -> list[str]:
    """The arguments of the ``mediaprep ...`` command printed after ``before`` (to run it)."""
    line = output[output.index(before) + len(before) :].splitlines()[0]
    words = shlex.split(line)
    assert words[0] == "mediaprep", line
    return words[1:]


@pytest.mark.parametrize(
    "spec",
    [
        "get:1+:status=500",
        "get:1+:status=503",
        "get:1+:drop",
        "get:1+:malformed_json",
        "get:1+:status=503,after_store",
    ],
)
def test_a_failure_while_waiting_polls_on_then_says_how_to_resume(
    server: SandboxServer, images: list[str], tmp_path: Path, no_backoff: None, spec: str
) -> None:
    server.sandbox.add_faults([Fault.parse(spec)])
    result = invoke(*image_args(images, server.url, tmp_path / "out"), "--timeout", "0.5")
    assert result.exit_code == 1
    assert len(server.sandbox.elements()) == 1
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    # Polled on at the normal pace until the timeout, not given up after a few retries.
    gets = [entry for entry in server.sandbox.request_log if entry.method == "GET"]
    assert len(gets) > 10
    assert "poll 5 in a row failed" in result.output
    message = result.output[result.output.index("Error: ") :]
    assert f"resume with: mediaprep status --receipt {receipt_file} --wait" in message
    assert f"receipt: {receipt_file}" in message
    server.sandbox.clear_faults()
    # The command works as printed: no --base-url, the receipt knows where the service is.
    command = printed_command(message, "resume with: ")
    resumed = invoke(*command, env={"MEDIAPREP_API_KEY": KEY})
    assert resumed.exit_code == 0, resumed.output
    assert f"element id: {stored_ids(server)[0]}" in resumed.output


@pytest.mark.parametrize("spec", ["create:1+:status=503", "create:1+:drop"])
def test_a_create_with_an_unknown_outcome_says_how_to_look_it_up(
    server: SandboxServer, images: list[str], tmp_path: Path, no_backoff: None, spec: str
) -> None:
    server.sandbox.add_faults([Fault.parse(spec)])
    result = invoke(*image_args(images, server.url, tmp_path / "out"))
    assert result.exit_code == 1
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert f"look it up with: mediaprep status --receipt {receipt_file} --wait" in result.output


def test_a_wait_timeout_says_how_to_resume_once_and_names_the_receipt(
    images: list[str], tmp_path: Path
) -> None:
    with SandboxServer(polls_to_complete=1000) as never_done:
        args = image_args(images, never_done.url, tmp_path / "out")
        result = invoke(*args, "--timeout", "0.05")
        (stored,) = never_done.sandbox.elements()
    assert result.exit_code == 1
    assert "still processing after 0.05 s" in result.output
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert result.output.count("mediaprep status ") == 1
    assert f"task {stored['task_id']} goes on at the service" in result.output
    assert f"mediaprep status --receipt {receipt_file} --wait" in result.output
    assert f"receipt: {receipt_file}" in result.output


def test_status_failing_while_waiting_says_how_to_resume(
    server: SandboxServer, images: list[str], tmp_path: Path, no_backoff: None
) -> None:
    created = invoke(*image_args(images, server.url, tmp_path / "out"), "--no-wait")
    assert created.exit_code == 0, created.output
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    (stored,) = server.sandbox.elements()
    server.sandbox.add_faults([Fault.parse("get:2+:status=500")])
    result = invoke(
        "status", "--receipt", str(receipt_file), "--wait", "--api-key", KEY, "--timeout", "0.3"
    )
    assert result.exit_code == 1
    assert f"task {stored['task_id']} goes on at the service" in result.output
    assert f"resume with: mediaprep status --receipt {receipt_file} --wait" in result.output
    assert f"receipt: {receipt_file}" in result.output


def test_status_by_id_failing_names_the_base_url_in_its_resume_command(
    server: SandboxServer, images: list[str], tmp_path: Path, no_backoff: None
) -> None:
    env = {"MEDIAPREP_API_KEY": KEY, "MEDIAPREP_BASE_URL": server.url}
    created = invoke(*image_args(images, server.url, tmp_path / "out"), "--no-wait")
    assert created.exit_code == 0, created.output
    (stored,) = server.sandbox.elements()
    server.sandbox.add_faults([Fault.parse("get:1+:status=503")])
    result = invoke("status", stored["task_id"], "--wait", "--timeout", "0.3", env=env)
    assert result.exit_code == 1
    command = printed_command(result.output, "look it up with: ")
    assert command == ["status", stored["task_id"], "--base-url", server.url, "--wait"]
    server.sandbox.clear_faults()
    resumed = invoke(*command, env={"MEDIAPREP_API_KEY": KEY})  # no MEDIAPREP_BASE_URL
    assert resumed.exit_code == 0, resumed.output
    assert f"element id: {stored_ids(server)[0]}" in resumed.output


def test_a_run_with_a_config_file_prints_hints_that_work(
    server: SandboxServer, images: list[str], tmp_path: Path, key_guard: KeyGuard
) -> None:
    config = tmp_path / "cfg.toml"
    config.write_text(f'base_url = "{server.url}"\napi_key = "{KEY}"\n', encoding="utf-8")
    config.chmod(0o600)
    key_guard.holds_key(config)
    args = image_args(images, server.url, tmp_path / "out")
    at = args.index("--base-url")
    del args[at : at + 4]
    created = invoke(*args, "--config", str(config), "--no-wait")
    assert created.exit_code == 0, created.output
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    command = printed_command(created.output, "follow it with: ")
    assert command == ["status", "--receipt", str(receipt_file), "--wait", "--config", str(config)]
    resumed = invoke(*command)  # no environment at all
    assert resumed.exit_code == 0, resumed.output
    assert f"element id: {stored_ids(server)[0]}" in resumed.output


def test_a_receipt_that_cannot_be_updated_still_says_how_to_find_the_task(
    server: SandboxServer, images: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mediaprep.submit.update_receipt", disk_full)
    result = invoke(*image_args(images, server.url, tmp_path / "out"))
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert f"mediaprep status --receipt {receipt_file} --wait" in result.output
    assert len(server.sandbox.elements()) == 1


def test_failed_task_exits_1_with_the_reason(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    server.sandbox.add_faults([Fault.parse("create:1:fail_task=no face found")])
    result = invoke(*image_args(images, server.url, tmp_path / "out"))
    assert result.exit_code == 1
    assert "no face found" in result.output
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    receipt = read_receipt(receipt_file)
    assert receipt["status"] == "failed"
    assert receipt["error"] == "no face found"


def test_ctrl_c_while_waiting_prints_how_to_resume(
    server: SandboxServer,
    images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_submit = submit

    def interrupted(*args: Any, **kwargs: Any) -> Iterator[SubmitEvent]:
        for event in real_submit(*args, **kwargs):
            yield event
            if isinstance(event, Created):
                raise KeyboardInterrupt

    monkeypatch.setattr("mediaprep.cli.submit.submit", interrupted)
    result = CliRunner().invoke(main, image_args(images, server.url, tmp_path / "out"))
    assert result.exit_code == 130
    (stored,) = server.sandbox.elements()
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert f"task {stored['task_id']} goes on at the service" in result.output
    assert f"mediaprep status --receipt {receipt_file} --wait" in result.output
    as_json = CliRunner().invoke(main, [*image_args(images, server.url, tmp_path / "o2"), "--json"])
    assert as_json.exit_code == 130
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    assert document["error"] == {"type": "KeyboardInterrupt", "message": "interrupted"}
    assert document["task_id"] == server.sandbox.elements()[1]["task_id"]
    assert document["resume"].startswith("mediaprep status --receipt ")


# --- --json when things fail: one document on stdout, the one-line error on stderr -------------


def failure(result: Result) -> dict[str, Any]:
    """The failure document of a run that exited 1, after checking the streams."""
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") or "\nError: " in result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["ok"] is False
    assert set(document["error"]) >= {"type", "message"}
    return document


def test_json_bad_key(server: SandboxServer, images: list[str], tmp_path: Path) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(KEY)] = "bad-sk-test-0123456789abcdef"
    document = failure(invoke(*args, "--json"))
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    error = document["error"]
    assert (error["type"], error["status_code"]) == ("AuthenticationError", 401)
    assert error["request_id"].startswith("req_")
    assert document["receipt"] == str(receipt_file)
    assert document["external_task_id"] == read_receipt(receipt_file)["external_task_id"]
    assert "task_id" not in document
    assert "resume" not in document  # refused: there is nothing to look up


def test_json_failed_check_lists_the_findings(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    small = picture(tmp_path / "in" / "small.png", 7, size=(200, 200))
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(images[0])] = small
    args[args.index(images[1])] = str(broken)
    document = failure(invoke(*args, "--json", "--no-fix"))
    assert document["error"]["type"] == "CheckFailedError"
    found = {(item["path"], item["code"]) for item in document["error"]["findings"]}
    assert found == {(small, "dimension_too_small"), (str(broken), "unreadable")}
    assert "resume" not in document
    assert server.sandbox.request_log == []


def test_json_failure_after_the_create_answered(
    server: SandboxServer, images: list[str], tmp_path: Path, no_backoff: None
) -> None:
    server.sandbox.add_faults([Fault.parse("get:1+:status=503")])
    args = image_args(images, server.url, tmp_path / "out")
    document = failure(invoke(*args, "--json", "--timeout", "0.3"))
    (stored,) = server.sandbox.elements()
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    error = document["error"]
    assert (error["type"], error["status_code"]) == ("InternalServerError", 503)
    assert error["request_id"].startswith("req_")
    assert document["task_id"] == stored["task_id"]
    assert document["external_task_id"] == stored["external_task_id"]
    assert document["receipt"] == str(receipt_file)
    assert document["resume"] == f"mediaprep status --receipt {receipt_file} --wait"
    assert any("in a row failed" in warning for warning in document["warnings"])


def test_json_failed_task(server: SandboxServer, images: list[str], tmp_path: Path) -> None:
    server.sandbox.add_faults([Fault.parse("create:1:fail_task=no face found")])
    document = failure(invoke(*image_args(images, server.url, tmp_path / "out"), "--json"))
    (stored,) = server.sandbox.elements()
    assert document["error"]["type"] == "TaskFailedError"
    assert document["error"]["reason"] == "no face found"
    assert (document["task_id"], document["status"]) == (stored["task_id"], "failed")
    assert "resume" not in document  # the task ended


def test_json_wait_timeout(images: list[str], tmp_path: Path) -> None:
    with SandboxServer(polls_to_complete=1000) as never_done:
        args = image_args(images, never_done.url, tmp_path / "out")
        document = failure(invoke(*args, "--json", "--timeout", "0.05"))
        (stored,) = never_done.sandbox.elements()
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert document["error"]["type"] == "WaitTimeoutError"
    assert document["task_id"] == stored["task_id"]
    assert document["resume"] == f"mediaprep status --receipt {receipt_file} --wait"


def test_json_status_of_a_failed_task_and_of_a_missing_one(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    created = invoke(*image_args(images, server.url, tmp_path / "out"), "--no-wait", "--json")
    task_id = json.loads(created.stdout)["task_id"]
    server.sandbox.add_faults([Fault.parse("get:1:fail_task=blurry")])
    where = ["--base-url", server.url, "--api-key", KEY, "--json"]
    document = failure(invoke("status", task_id, *where))
    assert (document["error"]["type"], document["error"]["reason"]) == ("TaskFailedError", "blurry")
    assert document["task_id"] == task_id
    assert "resume" not in document
    missing = failure(invoke("status", "tsk_nope", *where))
    assert (missing["error"]["type"], missing["error"]["status_code"]) == ("NotFoundError", 404)
    assert missing["task_id"] == "tsk_nope"
    assert "resume" not in missing


def test_json_usage_errors_exit_2_without_a_document(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index(KEY)] = ""
    result = invoke(*args, "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no API key" in result.stderr


def test_element_findings_have_a_heading_of_their_own(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    args = image_args(images, server.url, tmp_path / "out")
    args[args.index("Bob")] = "A name far too long for it"
    lines = invoke(*args).output.splitlines()
    heading = lines.index("check   element rules:")
    assert lines[heading - 1] == f"check   {images[2]}: ok"
    assert "name_too_long" in lines[heading + 1]
    assert all("name_too_long" not in line for line in lines[:heading])


@pytest.mark.parametrize(
    "fault", [FileChangedError("front.png"), OSError(errno.EIO, "Input/output error")]
)
def test_a_body_cut_short_marks_the_receipt_unknown(
    server: SandboxServer,
    images: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: Exception,
) -> None:
    def cut_short(self: Base64File) -> Iterator[bytes]:
        yield b"AAAA"
        raise fault

    monkeypatch.setattr(Base64File, "iter_encoded", cut_short)
    with pytest.raises(type(fault)):
        run_submit(server, images, tmp_path / "out", [])
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    receipt = read_receipt(receipt_file)
    assert (receipt["status"], receipt["error"]) == ("unknown", str(fault))
    assert server.sandbox.elements() == []
    result = invoke(*image_args(images, server.url, tmp_path / "o2"), "--json")
    document = failure(result)
    assert document["error"]["type"] == type(fault).__name__
    assert document["resume"].startswith("mediaprep status --receipt ")
    assert "the task may exist; look it up with: mediaprep status --receipt" in result.stderr


def test_slow_answer_through_the_cli_with_a_config_timeout(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "{server.url}"\ntimeout = 0.3\n', encoding="utf-8")
    config.chmod(0o600)
    server.sandbox.add_faults([Fault.parse("create:1:slow=1")])
    args = image_args(images, server.url, tmp_path / "out")
    at = args.index("--base-url")
    del args[at : at + 4]
    result = invoke(*args, "--config", str(config), env={"MEDIAPREP_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    (element_id,) = stored_ids(server)
    assert f"element id: {element_id}" in result.output
    server.stop()  # wakes the slow request: it must not store a second element
    assert stored_ids(server) == [element_id]


def test_sandbox_command_serves_only_on_its_address(
    images: list[str], tmp_path: Path, key_guard: KeyGuard
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "mediaprep", "sandbox", "--port", "0", "--polls", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "only" in banner
        assert "not the real service" in banner
        found = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert found is not None, banner
        result = invoke(*image_args(images, found.group(0), tmp_path / "out"))
        assert result.exit_code == 0, result.output
        assert "element id: " in result.output
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "sandbox stopped" in out
    key_guard.check("the sandbox's output", out, err)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("sandbox.example", False),
    ],
)
def test_sandbox_says_only_on_loopback_and_warns_otherwise(
    monkeypatch: pytest.MonkeyPatch, host: str, loopback: bool
) -> None:
    def fake_serve(
        host: str, port: int, faults: object, on_ready: Callable[[str], None], **kwargs: object
    ) -> None:
        on_ready(f"http://{host}:8765")

    monkeypatch.setattr("mediaprep.api.sandbox.serve", fake_serve)
    result = invoke("sandbox", "--host", host)
    assert result.exit_code == 0, result.output
    (banner,) = [line for line in result.stdout.splitlines() if "serving on" in line]
    if loopback:
        assert " only " in banner
        assert result.stderr == ""
    else:
        assert "only" not in banner
        assert "warning: " in result.stderr
        assert "reachable from the network" in result.stderr


def test_sandbox_command_refuses_a_bad_fault() -> None:
    result = invoke("sandbox", "--fault", "create:0:nonsense")
    assert result.exit_code == 2
    assert "--fault" in result.output


# --- faults: the invariant ---------------------------------------------------------------------


def run_submit(
    server: SandboxServer,
    images: list[str],
    out: Path,
    sleeps: list[float],
    *,
    read_timeout: float = 5.0,
) -> list[SubmitEvent]:
    settings = load_settings(api_key=KEY, base_url=server.url, env={})
    timeout = httpx.Timeout(connect=5.0, read=read_timeout, write=30.0, pool=5.0)
    element = Element("Bob", "A test element", frontal=images[0], refers=tuple(images[1:]))
    with Client(server.url, KEY, timeout=timeout, sleep=sleeps.append) as client:
        return list(submit(element, settings, out_dir=out, client=client))


FAULTS = [
    "create:1:status=500,after_store",
    "create:1:status=504,after_store",
    "create:1:malformed_json,after_store",
    "get:1:status=503,after_store",
    "get:1:malformed_json,after_store",
    "create:1:status=500",
    "create:1:status=503",
    "create:1:status=502",
    "create:2:status=503",
    "get:1:status=500",
    "get:2:status=503",
    "create:1:status=429,retry_after=1",
    "create:1:drop",
    "create:1:drop_after_store",
    "create:1:malformed_json",
    "get:1:malformed_json",
    "get:1:drop",
    "any:2:drop_after_store",
]


@pytest.mark.parametrize("spec", FAULTS)
def test_fault_leaves_exactly_one_element_and_reports_its_id(
    server: SandboxServer,
    images: list[str],
    tmp_path: Path,
    spec: str,
) -> None:
    server.sandbox.add_faults([Fault.parse(spec)])
    sleeps: list[float] = []
    events = run_submit(server, images, tmp_path / "out", sleeps)
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert stored_ids(server) == [completed.element.element_id]
    assert completed.receipt is not None
    assert read_receipt(completed.receipt)["element_id"] == completed.element.element_id
    if "retry_after=1" in spec:
        assert 1.0 in sleeps


def test_slow_answer_beyond_the_read_timeout_creates_one_element(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    server.sandbox.add_faults([Fault.parse("create:1:slow=1")])
    events = run_submit(server, images, tmp_path / "out", [], read_timeout=0.3)
    completed = events[-1]
    assert isinstance(completed, Completed)
    server.stop()
    assert stored_ids(server) == [completed.element.element_id]


def test_fail_task_fault_is_reported_and_kept_in_the_receipt(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    server.sandbox.add_faults([Fault.parse("create:1:fail_task=blurry")])
    with pytest.raises(TaskFailedError, match="blurry"):
        run_submit(server, images, tmp_path / "out", [])
    (stored,) = server.sandbox.elements()
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    receipt = read_receipt(receipt_file)
    assert receipt["task_id"] == stored["task_id"]
    assert receipt["status"] == "failed"


def test_persistent_failure_is_resumable_from_the_receipt(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    # The create is stored but its answer lost, and every lookup fails: give up, keep the receipt.
    server.sandbox.add_faults(
        [
            Fault.parse("create:1:drop_after_store"),
            Fault("get", 1, "status", status=503, every=True),
        ]
    )
    with pytest.raises(APIError):
        run_submit(server, images, tmp_path / "out", [])
    (stored,) = server.sandbox.elements()
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert read_receipt(receipt_file)["external_task_id"] == stored["external_task_id"]
    server.sandbox.clear_faults()
    settings = load_settings(api_key=KEY, env={})
    events = list(follow(settings, receipt=receipt_file, wait=True))
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert stored_ids(server) == [completed.element.element_id]
    assert read_receipt(receipt_file)["element_id"] == completed.element.element_id


def test_every_create_failing_leaves_no_element_and_a_receipt(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    server.sandbox.add_faults([Fault("create", 1, "status", status=503, every=True)])
    with pytest.raises(InternalServerError):
        run_submit(server, images, tmp_path / "out", [])
    assert server.sandbox.elements() == []
    (receipt_file,) = (tmp_path / "out").glob("mediaprep-receipt-*.json")
    assert read_receipt(receipt_file)["status"] == "unknown"


def test_receipt_is_on_disk_before_the_create_is_sent(
    server: SandboxServer, images: list[str], tmp_path: Path
) -> None:
    settings = load_settings(api_key=KEY, base_url=server.url, env={})
    element = Element("Bob", "A test element", frontal=images[0], refers=tuple(images[1:]))
    sent: list[Path] = []
    for event in submit(element, settings, out_dir=tmp_path / "out", wait=False):
        if isinstance(event, Sending):
            receipt = read_receipt(event.receipt)
            assert receipt["status"] == "sending"
            assert receipt["task_id"] is None
            assert receipt["external_task_id"] == event.external_task_id
            assert server.sandbox.request_log == []
            sent.append(event.receipt)
    (receipt_file,) = sent
    assert read_receipt(receipt_file)["task_id"] == server.sandbox.elements()[0]["task_id"]


def test_check_failure_carries_the_reports(images: list[str], tmp_path: Path) -> None:
    settings = load_settings(api_key=KEY, base_url="http://127.0.0.1:9", env={})
    element = Element("", "A test element", frontal=images[0], refers=tuple(images[1:]))
    with pytest.raises(CheckFailedError, match="name") as caught:
        list(submit(element, settings, out_dir=tmp_path / "out"))
    assert caught.value.report.codes() == ["name_missing"]


# --- the key guard (tests/conftest.py) -----------------------------------------------------------

GUARDED = """
import logging
import sys

import click
import pytest
from click.testing import CliRunner

KEY = "sk-test-inner-0123456789"


@click.command()
def shout() -> None:
    click.echo(KEY)


def test_clean(tmp_path):
    print("sk-...6789")
    (tmp_path / "receipt.json").write_text("{}")


def test_key_file_declared(tmp_path, key_guard):
    path = tmp_path / "config.toml"
    path.write_text(f'api_key = "{KEY}"')
    key_guard.holds_key(path)


def test_stdout():
    print(KEY)


def test_stderr():
    print(KEY, file=sys.stderr)


def test_capsys_user(capsys):
    print(KEY)


def test_file(tmp_path):
    (tmp_path / "out" / "receipt.json").parent.mkdir()
    (tmp_path / "out" / "receipt.json").write_text(KEY)


def test_log():
    logging.getLogger("mediaprep.inner").debug("sent %s", KEY)


def test_caught():
    with pytest.raises(ValueError):
        raise ValueError(f"bad key {KEY}")


def test_caught_cause():
    with pytest.raises(RuntimeError):
        raise RuntimeError("failed") from ValueError(KEY)


def test_cli_output():
    assert CliRunner().invoke(shout).exit_code == 0


def test_refused_key():
    print("bad-" + KEY)


def test_declared_key(key_guard):
    key_guard.declare("plainsecret0123")
    print("plainsecret0123")
"""


def test_the_key_guard_finds_a_key_wherever_it_leaks(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("guarded")
    (folder / "conftest.py").write_bytes((REPO / "tests" / "conftest.py").read_bytes())
    (folder / "test_guarded.py").write_text(GUARDED, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
         "-rE", "--rootdir", str(folder), "--basetemp", str(folder / "tmp"), str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )  # fmt: skip
    errors = set(re.findall(r"^ERROR \S+::(test_\w+)", done.stdout, re.M))
    tests = set(re.findall(r"^def (test_\w+)", GUARDED, re.M))
    assert errors == tests - {"test_clean", "test_key_file_declared"}, done.stdout
    assert "FAILED" not in done.stdout
    assert f"{len(tests)} passed, {len(errors)} errors" in done.stdout
    assert len(re.findall(r"^a test API key \(.+\) leaked into ", done.stdout, re.M)) == len(errors)
