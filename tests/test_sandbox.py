"""The sandbox server, over real HTTP on loopback: requests, rules, tasks and injected faults."""

from __future__ import annotations

import _thread
import base64
import hashlib
import io
import json
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from mediaprep import spec
from mediaprep.api.sandbox import (
    DEFAULT_FAIL_REASON,
    ELEMENT_ID_BASE,
    MALFORMED_BODY,
    MAX_BODY_BYTES,
    MEDIA_URL_BASE,
    Fault,
    Sandbox,
    SandboxServer,
    serve,
)

KEY = "sk-test-sandbox-7f3a9c0e51d2b8"
OTHER_KEY = "sk-test-other-user-44d1e0"
CREATE = "/v1/videos/generations"
FRONT_URL = "https://media.example.com/front.jpg"
SIDE_URL = "https://media.example.com/side.jpg"
VIDEO_URL = "https://media.example.com/clip.mp4"


# --- media made for the tests ---------------------------------------------------------------


def jpeg_bytes(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    """A small JPEG: a plain colour with a darker box, so it stays a few KiB (sent inline)."""
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), 0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def noise_png(size: tuple[int, int], seed: int) -> bytes:
    """A PNG of random pixels: hundreds of KiB, so its Base64 is spilled to a file."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(out, "PNG")
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_video(path: Path, size: str, seconds: float) -> bytes:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    command = [
        ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i",
        f"testsrc2=size={size}:rate=25:duration={seconds}", "-c:v", "libx264",
        "-preset", "ultrafast", "-crf", "40", "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return path.read_bytes()


@pytest.fixture(scope="module")
def video_1080p(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid reference video: 3.5 s, 1920 × 1080, H.264 in MP4."""
    return make_video(tmp_path_factory.mktemp("video") / "ok.mp4", "1920x1080", 3.5)


@pytest.fixture(scope="module")
def video_small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A video that breaks the rules: 1 s, 320 × 240."""
    return make_video(tmp_path_factory.mktemp("video") / "small.mp4", "320x240", 1)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An httpx client for the sandbox, with the test key."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=60) as http:
        yield http


def image_body(**fields: Any) -> dict[str, Any]:
    """A valid image_refer body with URL media; keyword arguments replace or add fields."""
    body: dict[str, Any] = {
        "model": spec.MODEL_ID,
        "element_name": "Red fox",
        "element_description": "A red fox plush toy",
        "reference_type": "image_refer",
        "element_image_list": {
            "frontal_image": FRONT_URL,
            "refer_images": [{"image_url": SIDE_URL}],
        },
        "tag_list": [{"tag_id": "o_102"}],
    }
    body.update(fields)
    return body


def video_body(video_url: str = VIDEO_URL, **fields: Any) -> dict[str, Any]:
    """A valid video_refer body; keyword arguments replace or add fields."""
    body: dict[str, Any] = {
        "model": spec.MODEL_ID,
        "element_name": "Presenter",
        "element_description": "A presenter facing the camera",
        "reference_type": "video_refer",
        "element_video_list": {"refer_videos": [{"video_url": video_url}]},
    }
    body.update(fields)
    return body


def images(frontal: str, *refers: object) -> dict[str, Any]:
    return {"frontal_image": frontal, "refer_images": [{"image_url": url} for url in refers]}


def poll_until_done(client: httpx.Client, task_ref: str, limit: int = 10) -> dict[str, Any]:
    for _ in range(limit):
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_ref}").json()
        if task["status"] in ("completed", "failed"):
            return task
    raise AssertionError(f"task {task_ref} did not finish in {limit} polls")


def element_text(task: dict[str, Any]) -> str:
    text: str = task["output"][0]["content"][0]["text"]
    return text


def assert_error(response: httpx.Response, status: int, code: str, *needles: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert error["code"] == code
    for needle in needles:
        assert needle in error["message"]
    message: str = error["message"]
    return message


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes and read the whole answer until the server closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- creating and polling -----------------------------------------------------------------------


def test_image_element_in_base64_is_created_and_completes(client: httpx.Client) -> None:
    frontal = jpeg_bytes((400, 400), (200, 40, 40))
    refer = noise_png((400, 400), seed=1)
    body = image_body(
        element_name="  Red fox  ",
        element_image_list=images(b64(frontal), b64(refer)),
        tag_list=[{"tag_id": "o_102"}, {"tag_id": "o_103"}, {"tag_id": "o_102"}],
        external_task_id="ext-image-1",
    )
    created = client.post(CREATE, json=body)
    assert created.status_code == 200, created.text
    task = created.json()
    assert task["task_id"].startswith("tsk_")
    assert (task["status"], task["progress"], task["error"]) == ("pending", 0, None)
    assert task["external_task_id"] == "ext-image-1"
    assert "output" not in task

    first = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert (first["status"], first["progress"]) == ("processing", 50)
    done = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["output"][0]["content"][0]["type"] == "text"
    assert done["output"][0]["content"][0]["url"] == ""
    info = json.loads(element_text(done))
    assert info["element_name"] == "Red fox"
    assert info["element_description"] == "A red fox plush toy"
    assert info["reference_type"] == "image_refer"
    assert info["element_image_list"] == {
        "frontal_image": f"{MEDIA_URL_BASE}{hashlib.sha256(frontal).hexdigest()}.jpg",
        "refer_images": [{"image_url": f"{MEDIA_URL_BASE}{hashlib.sha256(refer).hexdigest()}.png"}],
    }
    assert "element_video_list" not in info
    assert info["element_voice_id"] is None
    assert [(tag["id"], tag["name"]) for tag in info["tag_list"]] == [
        ("o_102", "Character"),
        ("o_103", "Animal"),
    ]
    assert all(tag["description"] for tag in info["tag_list"])
    assert info["owned_by"] == "user_" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert info["final_unit_deduction"] == "1"
    # Completed tasks stay completed.
    assert client.get("/v1/tasks/ext-image-1").json()["status"] == "completed"


def test_video_element_in_base64_is_created_and_completes(
    client: httpx.Client, video_1080p: bytes
) -> None:
    body = video_body(b64(video_1080p), element_voice_id="voice_42", tag_list=[{"tag_id": "o_101"}])
    created = client.post(CREATE, json=body)
    assert created.status_code == 200, created.text
    info = json.loads(element_text(poll_until_done(client, created.json()["task_id"])))
    sha = hashlib.sha256(video_1080p).hexdigest()
    assert info["reference_type"] == "video_refer"
    assert info["element_video_list"] == {
        "refer_videos": [{"video_url": f"{MEDIA_URL_BASE}{sha}.mp4"}]
    }
    assert "element_image_list" not in info
    assert info["element_voice_id"] == "voice_42"


def test_element_id_is_an_exact_integer_beyond_2_to_the_53(client: httpx.Client) -> None:
    task_id = client.post(CREATE, json=image_body()).json()["task_id"]
    text = element_text(poll_until_done(client, task_id))
    element_id = json.loads(text)["element_id"]
    assert isinstance(element_id, int)
    assert element_id > 2**53
    assert element_id == ELEMENT_ID_BASE + 1
    assert f'"element_id": {element_id}' in text  # a JSON number, not a string
    assert int(float(element_id)) != element_id  # a client parsing through float loses digits


def test_url_media_are_accepted_and_echoed_as_sent(client: httpx.Client) -> None:
    upper = "HTTPS://Media.Example.com/Other.PNG"
    body = image_body(element_image_list=images(FRONT_URL, SIDE_URL, upper))
    task_id = client.post(CREATE, json=body).json()["task_id"]
    info = json.loads(element_text(poll_until_done(client, task_id)))
    assert info["element_image_list"] == images(FRONT_URL, SIDE_URL, upper)


def test_data_uri_media_are_accepted(client: httpx.Client) -> None:
    frontal = jpeg_bytes((400, 400), (10, 120, 10))
    refer = jpeg_bytes((500, 400), (10, 10, 120))
    body = image_body(
        element_image_list=images(
            "data:image/jpeg;base64," + b64(frontal), "data:image/jpeg;base64," + b64(refer)
        )
    )
    assert client.post(CREATE, json=body).status_code == 200


def test_spilled_base64_with_escaped_slashes_is_decoded(client: httpx.Client) -> None:
    refer = noise_png((400, 400), seed=2)
    body = image_body(element_image_list=images(FRONT_URL, b64(refer)))
    # Some JSON encoders escape "/" as "\/"; the long string must still decode to the same bytes.
    text = json.dumps(body).replace("/", "\\/")
    created = client.post(CREATE, content=text, headers={"Content-Type": "application/json"})
    assert created.status_code == 200, created.text
    info = json.loads(element_text(poll_until_done(client, created.json()["task_id"])))
    sha = hashlib.sha256(refer).hexdigest()
    assert (
        info["element_image_list"]["refer_images"][0]["image_url"] == f"{MEDIA_URL_BASE}{sha}.png"
    )


@pytest.mark.parametrize(("polls", "progress"), [(1, []), (2, [50]), (3, [33, 66])])
def test_tasks_complete_after_the_configured_polls(polls: int, progress: list[int]) -> None:
    with (
        SandboxServer(polls_to_complete=polls, clock=lambda: 1_700_000_000.9) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        task = http.post(CREATE, json=image_body()).json()
        assert (task["created_at"], task["updated_at"]) == (1_700_000_000, 1_700_000_000)
        seen = []
        for _ in progress:
            polled = http.get(f"/v1/tasks/{task['task_id']}").json()
            assert polled["status"] == "processing"
            seen.append(polled["progress"])
        assert seen == progress
        assert http.get(f"/v1/tasks/{task['task_id']}").json()["status"] == "completed"


def test_polls_to_complete_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="polls_to_complete"):
        Sandbox(polls_to_complete=0)


# --- external ids, keys and owners ------------------------------------------------------------


def test_task_is_found_by_its_external_task_id(client: httpx.Client) -> None:
    created = client.post(CREATE, json=image_body(external_task_id="order 7/b")).json()
    found = client.get("/v1/tasks/order%207%2Fb")
    assert found.status_code == 200
    assert found.json()["task_id"] == created["task_id"]


def test_a_reused_external_task_id_is_a_conflict(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    assert client.post(CREATE, json=image_body(external_task_id="dup-1")).status_code == 200
    again = client.post(CREATE, json=image_body(external_task_id="dup-1"))
    assert_error(again, 409, "conflict", "external_task_id dup-1 already exists")
    # Unique per key: another key may use the same external id.
    other = client.post(
        CREATE,
        json=image_body(external_task_id="dup-1"),
        headers={"Authorization": f"Bearer {OTHER_KEY}"},
    )
    assert other.status_code == 200
    assert len(sandbox.sandbox.elements()) == 2


def test_a_task_of_another_key_is_not_found(client: httpx.Client) -> None:
    task = client.post(CREATE, json=image_body(external_task_id="mine")).json()
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    for ref in (task["task_id"], "mine"):
        assert_error(client.get(f"/v1/tasks/{ref}", headers=other), 404, "not_found")
    assert_error(client.get("/v1/tasks/tsk_nope"), 404, "not_found", "no task tsk_nope")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Token abc", f"Basic {KEY}", KEY, "bad-sk-test-1", "Bearer bad-sk-test-1"],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_missing_malformed_or_refused_keys_are_unauthorized(
    sandbox: SandboxServer, authorization: str | None, method: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    path = CREATE if method == "POST" else "/v1/tasks/anything"
    with httpx.Client(base_url=sandbox.url) as http:
        response = http.request(
            method, path, json=image_body() if method == "POST" else None, headers=headers
        )
    assert_error(response, 401, "unauthorized")
    assert sandbox.sandbox.elements() == []


def test_the_key_never_appears_in_answers_or_logs(sandbox: SandboxServer) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:4:status=503,retry_after=2")])
    bad = "bad-" + KEY
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        answers.append(http.post(CREATE, json=image_body(external_task_id="k1")))
        answers.append(http.post(CREATE, json=image_body(external_task_id="k1")))
        answers.append(http.post(CREATE, json=image_body(model="nope")))
        answers.append(http.post(CREATE, json=image_body()))
        answers.extend(http.get("/v1/tasks/k1") for _ in range(3))
        answers.append(http.get("/v1/tasks/missing"))
        answers.append(
            http.post(CREATE, json=image_body(), headers={"Authorization": f"Bearer {bad}"})
        )
        answers.append(http.get("/nowhere"))
        answers.append(http.get("/_sandbox/elements"))
    statuses = [response.status_code for response in answers]
    assert statuses == [200, 409, 400, 503, 200, 200, 200, 404, 401, 404, 200]
    for response in answers:
        for secret in (KEY, bad):
            assert secret not in response.text
            assert all(secret not in value for value in response.headers.values())
    kept = repr(sandbox.sandbox.request_log) + repr(sandbox.sandbox.elements())
    assert KEY not in kept
    assert bad not in kept


# --- request rules ------------------------------------------------------------------------------


def _without(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(field)


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__(field, value)


def _set_images(value: Any) -> Callable[[dict[str, Any]], None]:
    return _set("element_image_list", value)


RULES = [
    pytest.param(
        _set("model", "kirin_other"), "model: must be 'kirin_custom_elements'", id="model"
    ),
    pytest.param(_without("model"), "model: must be", id="model-missing"),
    pytest.param(_without("element_name"), "element_name: required", id="name-missing"),
    pytest.param(_set("element_name", 7), "element_name: must be a string", id="name-type"),
    pytest.param(_set("element_name", "   "), "element_name: must not be empty", id="name-blank"),
    pytest.param(
        _set("element_name", "é" * 21),
        "element_name: has 21 characters; at most 20",
        id="name-21-chars",
    ),
    pytest.param(
        _without("element_description"), "element_description: required", id="desc-missing"
    ),
    pytest.param(
        _set("element_description", "x" * 101),
        "element_description: has 101 characters; at most 100",
        id="desc-101-chars",
    ),
    pytest.param(
        _set("reference_type", "text_refer"),
        "reference_type: must be one of image_refer, video_refer",
        id="reference-type",
    ),
    pytest.param(
        _without("element_image_list"),
        "element_image_list: required object when reference_type is image_refer",
        id="image-list-missing",
    ),
    pytest.param(
        _set_images({"refer_images": [{"image_url": SIDE_URL}]}),
        "element_image_list.frontal_image: required",
        id="frontal-missing",
    ),
    pytest.param(
        _set_images(images("", SIDE_URL)),
        "element_image_list.frontal_image: must not be empty",
        id="frontal-empty",
    ),
    pytest.param(
        _set_images(images(FRONT_URL)),
        "element_image_list.refer_images: has 0 images; 1 to 3 are required",
        id="refers-0",
    ),
    pytest.param(
        _set_images(images(FRONT_URL, *(f"https://e.example/{n}.jpg" for n in range(4)))),
        "element_image_list.refer_images: has 4 images",
        id="refers-4",
    ),
    pytest.param(
        _set_images({"frontal_image": FRONT_URL}),
        "element_image_list.refer_images: required array",
        id="refers-missing",
    ),
    pytest.param(
        _set_images({"frontal_image": FRONT_URL, "refer_images": [{"url": SIDE_URL}]}),
        "element_image_list.refer_images[0].image_url: required",
        id="refer-without-image-url",
    ),
    pytest.param(
        _set_images({"frontal_image": FRONT_URL, "refer_images": [SIDE_URL]}),
        "element_image_list.refer_images[0]: must be an object",
        id="refer-not-object",
    ),
    pytest.param(
        _set_images(images(FRONT_URL, SIDE_URL, 42)),
        "element_image_list.refer_images[1].image_url: must be a string",
        id="refer-not-string",
    ),
    pytest.param(
        _set_images(images(FRONT_URL, FRONT_URL)),
        "element_image_list.refer_images[0].image_url: has the same URL as the frontal image",
        id="refer-same-url",
    ),
    pytest.param(
        _set("element_video_list", {"refer_videos": [{"video_url": VIDEO_URL}]}),
        "element_video_list: not allowed when reference_type is image_refer",
        id="video-list-on-image-element",
    ),
    pytest.param(
        _set("element_voice_id", "voice_1"),
        "element_voice_id: only video_refer elements can bind a voice",
        id="voice-on-image-element",
    ),
    pytest.param(
        _set("tag_list", [{"tag_id": "o_999"}]),
        "tag_list[0].tag_id: unknown tag 'o_999'; must be one of o_101",
        id="tag-unknown",
    ),
    pytest.param(
        _set("tag_list", [{"tag_id": "o_101"}, {"id": "o_102"}]),
        "tag_list[1]: must be an object",
        id="tag-without-tag-id",
    ),
    pytest.param(_set("tag_list", "o_101"), "tag_list: must be an array", id="tag-list-type"),
    pytest.param(
        _set("callback_url", "ftp://hooks.example.com/x"),
        "callback_url: must be an absolute http(s) URL",
        id="callback-scheme",
    ),
    pytest.param(
        _set("callback_url", "https:///no-host"),
        "callback_url: must be an absolute http(s) URL",
        id="callback-host",
    ),
    pytest.param(
        _set("external_task_id", ""),
        "external_task_id: must be a non-empty string",
        id="external-id-empty",
    ),
    pytest.param(
        _set("external_task_id", 12),
        "external_task_id: must be a non-empty string",
        id="external-id-type",
    ),
]

VIDEO_RULES = [
    pytest.param(
        _without("element_video_list"),
        "element_video_list: required object when reference_type is video_refer",
        id="video-list-missing",
    ),
    pytest.param(
        _set("element_video_list", {"refer_videos": []}),
        "element_video_list.refer_videos: has 0 videos; exactly 1 is supported",
        id="videos-0",
    ),
    pytest.param(
        _set("element_video_list", {"refer_videos": [{"video_url": VIDEO_URL}] * 2}),
        "element_video_list.refer_videos: has 2 videos; exactly 1",
        id="videos-2",
    ),
    pytest.param(
        _set("element_video_list", {"refer_videos": [{"video_url": ""}]}),
        "element_video_list.refer_videos[0].video_url: must not be empty",
        id="video-url-empty",
    ),
    pytest.param(
        _set("element_image_list", images(FRONT_URL, SIDE_URL)),
        "element_image_list: not allowed when reference_type is video_refer",
        id="image-list-on-video-element",
    ),
    pytest.param(
        _set("element_voice_id", 5), "element_voice_id: must be a string", id="voice-type"
    ),
]


@pytest.mark.parametrize(("mutate", "message"), RULES)
def test_each_image_element_rule_is_a_400_naming_the_field(
    client: httpx.Client,
    sandbox: SandboxServer,
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    body = image_body()
    mutate(body)
    assert_error(client.post(CREATE, json=body), 400, "invalid_request", message)
    assert sandbox.sandbox.elements() == []


@pytest.mark.parametrize(("mutate", "message"), VIDEO_RULES)
def test_each_video_element_rule_is_a_400_naming_the_field(
    client: httpx.Client, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    body = video_body()
    mutate(body)
    assert_error(client.post(CREATE, json=body), 400, "invalid_request", message)


@pytest.mark.parametrize(
    ("name", "description"),
    [("n" * 20, "d" * 100), ("é" * 20, "\u00e9" * 100), ("  " + "n" * 20 + "\n", "d")],
)
def test_texts_at_the_limits_are_accepted(
    client: httpx.Client, name: str, description: str
) -> None:
    body = image_body(element_name=name, element_description=description, element_voice_id="")
    assert client.post(CREATE, json=body).status_code == 200


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"model": ', b"[1, 2]", b'"text"', b"\xff\xfe{}", b""],
    ids=["text", "truncated", "array", "string", "not-utf8", "empty"],
)
def test_a_body_that_is_not_a_json_object_is_refused(client: httpx.Client, content: bytes) -> None:
    response = client.post(CREATE, content=content, headers={"Content-Type": "application/json"})
    message = assert_error(response, 400, "invalid_request")
    assert "JSON" in message


@pytest.mark.parametrize(
    "value",
    ["not base64!!", "QUJD\nREVG", "QUJDRA=", "QQ==QUJD", "data:image/png,QUJD", "ÀÁÂÃ"],
    ids=["symbols", "newline", "bad-padding", "data-after-padding", "data-uri-not-base64", "latin"],
)
def test_invalid_base64_is_refused(client: httpx.Client, value: str) -> None:
    body = image_body(element_image_list=images(value, SIDE_URL))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.frontal_image: not valid Base64",
    )


def test_a_long_invalid_base64_string_is_refused(client: httpx.Client) -> None:
    value = b64(noise_png((400, 400), seed=3))
    broken = value[:200_000] + "*" + value[200_001:]
    body = image_body(element_image_list=images(FRONT_URL, broken))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.refer_images[0].image_url: not valid Base64",
    )


def test_a_too_small_image_is_refused_naming_the_rule(client: httpx.Client) -> None:
    small = jpeg_bytes((280, 900), (40, 40, 200))
    body = image_body(element_image_list=images(FRONT_URL, SIDE_URL, b64(small)))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.refer_images[1].image_url: image is 280 × 900 px; "
        "each side must be at least 300 px",
        "the ratio must be between 1:2.5 and 2.5:1",
    )


def test_bytes_that_are_no_image_are_refused(client: httpx.Client) -> None:
    body = image_body(element_image_list=images(b64(b"hello, not an image" * 10), SIDE_URL))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.frontal_image: not an image or video mediaprep can read",
    )


def test_a_refer_image_identical_to_the_frontal_is_refused(client: httpx.Client) -> None:
    picture = b64(jpeg_bytes((400, 400), (90, 90, 0)))
    body = image_body(element_image_list=images(picture, "data:image/jpeg;base64," + picture))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.refer_images[0].image_url: has the same bytes as the frontal image",
    )


def test_a_video_where_an_image_is_expected_is_refused(
    client: httpx.Client, video_1080p: bytes
) -> None:
    body = image_body(element_image_list=images(FRONT_URL, b64(video_1080p)))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_image_list.refer_images[0].image_url: is a video; images only here",
    )


def test_an_image_where_a_video_is_expected_is_refused(client: httpx.Client) -> None:
    body = video_body(b64(jpeg_bytes((1920, 1080), (0, 0, 0))))
    assert_error(
        client.post(CREATE, json=body),
        400,
        "invalid_request",
        "element_video_list.refer_videos[0].video_url: is an image; videos only here",
    )


def test_a_video_breaking_the_rules_is_refused_with_every_rule(
    client: httpx.Client, video_small: bytes
) -> None:
    assert_error(
        client.post(CREATE, json=video_body(b64(video_small))),
        400,
        "invalid_request",
        "element_video_list.refer_videos[0].video_url: video lasts 1.000 s",
        "it must be 1920 × 1080 or 1080 × 1920",
    )


# --- HTTP details -------------------------------------------------------------------------------


def test_unknown_paths_are_404_and_wrong_methods_405(client: httpx.Client) -> None:
    assert_error(client.get("/v2/whatever"), 404, "not_found", "no such path: /v2/whatever")
    assert_error(client.get("/v1/tasks/"), 404, "not_found")
    assert_error(client.get("/v1/tasks/a/b"), 404, "not_found")
    wrong = client.get(CREATE)
    assert_error(wrong, 405, "method_not_allowed", "use POST")
    assert wrong.headers["allow"] == "POST"
    assert client.delete("/v1/tasks/x").headers["allow"] == "GET"
    head = client.head("/v1/tasks/x")
    assert head.status_code == 405
    assert head.content == b""
    # The connection survived all of that.
    assert client.post(CREATE, json=image_body()).status_code == 200


def test_every_answer_has_a_request_id_and_json_type(client: httpx.Client) -> None:
    responses = [
        client.post(CREATE, json=image_body()),
        client.get("/v1/tasks/none"),
        client.get("/_sandbox/elements"),
        client.put(CREATE),
    ]
    ids = {response.headers["x-request-id"] for response in responses}
    assert len(ids) == len(responses)
    assert {response.headers["content-type"] for response in responses} == {"application/json"}


def test_a_body_without_content_length_is_411(sandbox: SandboxServer) -> None:
    answer = raw_exchange(
        sandbox.url,
        b"POST /v1/videos/generations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert b'"code": "length_required"' in answer


def test_a_body_over_the_limit_is_413(sandbox: SandboxServer) -> None:
    answer = raw_exchange(
        sandbox.url,
        b"POST /v1/videos/generations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: " + str(MAX_BODY_BYTES + 1).encode() + b"\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"code": "payload_too_large"' in answer


def test_a_request_http_server_cannot_parse_gets_the_envelope(sandbox: SandboxServer) -> None:
    answer = raw_exchange(sandbox.url, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 501 ")
    assert b"X-Request-Id: req_" in answer
    assert b"Content-Type: application/json" in answer
    assert b'"code": "not_implemented"' in answer


def test_the_request_log_keeps_method_path_and_status(sandbox: SandboxServer) -> None:
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        http.post(CREATE, json=image_body(external_task_id="log-1"))
        http.get("/v1/tasks/log-1?verbose=1")
    assert sandbox.sandbox.request_log == [
        ("POST", CREATE, 200),
        ("GET", "/v1/tasks/log-1", 200),
    ]


# --- faults ---------------------------------------------------------------------------------------


def test_status_fault_answers_the_status_with_retry_after(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:1:status=429,retry_after=1")])
    limited = client.post(CREATE, json=image_body())
    assert_error(limited, 429, "rate_limited", "create:1:status=429,retry_after=1")
    assert limited.headers["retry-after"] == "1"
    assert sandbox.sandbox.elements() == []
    assert client.post(CREATE, json=image_body()).status_code == 200


def test_status_faults_count_per_kind_and_every_fires_from_nth_on(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults(
        [Fault.parse("get:1:status=503"), Fault.parse("create:2+:status=500")]
    )
    task = client.post(CREATE, json=image_body()).json()
    assert_error(client.get(f"/v1/tasks/{task['task_id']}"), 503, "internal")
    assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 200
    for _ in range(2):
        assert_error(client.post(CREATE, json=image_body()), 500, "internal")


def test_any_fault_counts_creates_and_gets_together(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("any:2:status=502")])
    task = client.post(CREATE, json=image_body()).json()
    assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 502
    assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 200


def test_drop_closes_the_connection_before_storing(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:1:drop")])
    with pytest.raises(httpx.TransportError):
        client.post(CREATE, json=image_body(external_task_id="dropped"))
    assert sandbox.sandbox.elements() == []
    assert_error(client.get("/v1/tasks/dropped"), 404, "not_found")
    assert sandbox.sandbox.request_log[0] == ("POST", CREATE, 0)


def test_drop_after_store_stores_the_task_yet_gives_no_answer(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:1:drop_after_store")])
    with pytest.raises(httpx.TransportError):
        client.post(CREATE, json=image_body(external_task_id="trap-1"))
    found = client.get("/v1/tasks/trap-1")
    assert found.status_code == 200
    assert found.json()["external_task_id"] == "trap-1"
    listed = client.get("/_sandbox/elements").json()["elements"]
    assert len(listed) == 1
    assert listed[0]["external_task_id"] == "trap-1"
    assert listed[0]["element"]["element_name"] == "Red fox"
    # Retrying blindly would now be a conflict, not a second element.
    assert client.post(CREATE, json=image_body(external_task_id="trap-1")).status_code == 409
    assert len(sandbox.sandbox.elements()) == 1


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ("create:1:status=504,after_store", 504),
        ("create:1:status=503,retry_after=1,after_store", 503),
        ("create:1:malformed_json,after_store", 200),
    ],
)
def test_after_store_faults_store_the_task_then_answer_the_fault(
    client: httpx.Client, sandbox: SandboxServer, spec: str, status: int
) -> None:
    sandbox.sandbox.add_faults([Fault.parse(spec)])
    answer = client.post(CREATE, json=image_body(external_task_id="stored-1"))
    assert answer.status_code == status
    if status == 200:
        assert answer.content == MALFORMED_BODY
    else:
        assert_error(answer, status, "internal", spec)
    (stored,) = sandbox.sandbox.elements()
    assert stored["external_task_id"] == "stored-1"
    assert client.get("/v1/tasks/stored-1").status_code == 200
    assert client.post(CREATE, json=image_body(external_task_id="stored-1")).status_code == 409


def test_an_after_store_fault_on_a_get_advances_the_task(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    task = client.post(CREATE, json=image_body()).json()
    sandbox.sandbox.add_faults([Fault.parse("get:1:status=500,after_store")])
    assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 500
    assert sandbox.sandbox.elements()[0]["status"] == "processing"


def test_slow_fault_delays_the_answer(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.sandbox.add_faults([Fault.parse("any:1:slow=0.4")])
    started = time.monotonic()
    assert client.post(CREATE, json=image_body()).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_a_client_timing_out_on_a_slow_fault_does_not_hold_up_stop() -> None:
    started = time.monotonic()
    with SandboxServer(faults=[Fault.parse("create:1:slow=20")]) as server:
        headers = {"Authorization": f"Bearer {KEY}"}
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=0.3) as http,
            pytest.raises(httpx.ReadTimeout),
        ):
            http.post(CREATE, json=image_body())
    assert time.monotonic() - started < 10


def test_malformed_json_fault_answers_200_with_a_body_that_is_not_json(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:1:malformed_json")])
    response = client.post(CREATE, json=image_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert sandbox.sandbox.elements() == []


def test_fail_task_fault_makes_the_created_task_fail(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault.parse("create:1:fail_task=voice model rejected the clip")])
    task = client.post(CREATE, json=image_body()).json()
    assert task["status"] == "pending"
    assert client.get(f"/v1/tasks/{task['task_id']}").json()["status"] == "processing"
    failed = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"] == "voice model rejected the clip"
    assert "output" not in failed
    # Only the first create fails.
    assert (
        poll_until_done(client, client.post(CREATE, json=image_body()).json()["task_id"])["status"]
        == "completed"
    )


def test_fail_task_fault_on_a_get_fails_the_polled_task(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.sandbox.add_faults([Fault("get", 1, "fail_task")])
    task = client.post(CREATE, json=image_body()).json()
    failed = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert (failed["status"], failed["error"]) == ("failed", DEFAULT_FAIL_REASON)


def test_faults_from_the_constructor_count_from_the_start() -> None:
    with (
        SandboxServer(faults=[Fault.parse("create:2:status=503")]) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        assert [http.post(CREATE, json=image_body()).status_code for _ in range(3)] == [
            200,
            503,
            200,
        ]


def test_faults_admin_endpoint_adds_lists_and_clears(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    assert client.post(CREATE, json=image_body()).status_code == 200
    added = client.post(
        "/_sandbox/faults",
        json=[
            "create:1:status=503",
            {"on": "get", "nth": 1, "action": "malformed_json"},
            {"on": "get", "nth": 2, "action": "status", "status": 504, "after_store": True},
        ],
        headers={"Authorization": ""},
    )
    assert added.status_code == 200
    assert added.json() == {
        "faults": ["create:1:status=503", "get:1:malformed_json", "get:2:status=504,after_store"]
    }
    assert client.get("/_sandbox/faults").json() == added.json()
    # Added faults count from when they were added: this is the first create since.
    assert client.post(CREATE, json=image_body()).status_code == 503
    assert client.delete("/_sandbox/faults").json() == {"faults": []}
    assert sandbox.sandbox.faults() == []
    assert client.post(CREATE, json=image_body()).status_code == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["create:1:explode"], "unknown action 'explode'"),
        ([{"on": "create", "nth": 0, "action": "drop"}], "'nth' must be a whole number"),
        ([{"on": "create", "nth": 1, "action": "drop", "colour": "red"}], "colour"),
        ([7], "a fault is a spec string or an object"),
        ([{"on": "get", "nth": 1, "action": "drop", "after_store": True}], "goes only with"),
        ([{"on": "get", "nth": 1, "action": "status", "after_store": 1}], "must be a boolean"),
        ({"on": "create"}, "send a JSON list of faults"),
    ],
)
def test_faults_admin_endpoint_refuses_bad_faults(
    client: httpx.Client, sandbox: SandboxServer, payload: object, message: str
) -> None:
    assert_error(client.post("/_sandbox/faults", json=payload), 400, "invalid_request", message)
    assert sandbox.sandbox.faults() == []


# --- Fault.parse --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("create:1:status=503", Fault("create", 1, "status", status=503)),
        ("get:2:status=429,retry_after=1", Fault("get", 2, "status", status=429, retry_after="1")),
        ("create:1:drop", Fault("create", 1, "drop")),
        ("create:1:drop_after_store", Fault("create", 1, "drop_after_store")),
        ("any:3:slow=2.5", Fault("any", 3, "slow", seconds=2.5)),
        ("get:1:malformed_json", Fault("get", 1, "malformed_json")),
        ("create:1:fail_task=reason text", Fault("create", 1, "fail_task", reason="reason text")),
        ("create:1:fail_task=a, b: c", Fault("create", 1, "fail_task", reason="a, b: c")),
        ("create:1:fail_task", Fault("create", 1, "fail_task", reason=DEFAULT_FAIL_REASON)),
        ("create:2+:status=500", Fault("create", 2, "status", status=500, every=True)),
        (
            "create:1:status=504,after_store",
            Fault("create", 1, "status", status=504, after_store=True),
        ),
        (
            "get:2+:status=429,retry_after=1,after_store",
            Fault("get", 2, "status", status=429, retry_after="1", every=True, after_store=True),
        ),
        (
            "create:1:malformed_json,after_store",
            Fault("create", 1, "malformed_json", after_store=True),
        ),
        (" get : 4 : status = 502 ", Fault("get", 4, "status", status=502)),
        (
            "get:1:status=503,retry_after=Wed, 21 Oct 2015 07:28:00 GMT",
            Fault("get", 1, "status", status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
        ),
    ],
)
def test_fault_parse_reads_the_compact_form(text: str, fault: Fault) -> None:
    parsed = Fault.parse(text)
    assert parsed == fault
    assert Fault.parse(parsed.to_spec()) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "three parts"),
        ("create", "three parts"),
        ("create:1", "three parts"),
        ("post:1:drop", "ON must be one of create, get, any"),
        ("create:0:drop", "'nth' must be a whole number from 1"),
        ("create:x:drop", "NTH must be a whole number"),
        ("create:-1:drop", "NTH must be a whole number"),
        ("create:²:drop", "NTH must be a whole number"),
        ("create:1:explode", "unknown action 'explode'"),
        ("create:1:fail_taskx", "unknown action 'fail_taskx'"),
        ("create:1:status", "status needs a number"),
        ("create:1:status=abc", "status needs a number"),
        ("create:1:status=200", "must be an error status (400-599)"),
        ("create:1:status=503,colour=red", "status takes retry_after=VALUE"),
        ("create:1:status=503,retry_after=", "status takes retry_after=VALUE"),
        ("create:1:slow", "slow needs seconds"),
        ("create:1:slow=0", "more than 0 and at most 30 seconds"),
        ("create:1:slow=31", "more than 0 and at most 30 seconds"),
        ("create:1:slow=nan", "more than 0 and at most 30 seconds"),
        ("create:1:drop=1", "drop takes no value"),
        ("create:1:drop,retry_after=1", "drop takes no options"),
        ("create:1:drop,after_store", "'after_store' goes only with status and malformed_json"),
        ("create:1:slow=1,after_store", "'after_store' goes only with status and malformed_json"),
        ("create:1:status=503,after_stor", "status takes retry_after=VALUE"),
    ],
)
def test_fault_parse_refuses_bad_text_with_a_helpful_message(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad fault") as caught:
        Fault.parse(text)
    message = str(caught.value)
    assert why in message
    assert "expected ON:NTH[+]:ACTION[=VALUE]" in message
    assert "create:1:drop_after_store" in message


@pytest.mark.parametrize(
    "fields",
    [
        {"on": "create", "nth": True, "action": "drop"},
        {"on": "create", "nth": 1, "action": "slow"},
        {"on": "create", "nth": 1, "action": "drop", "retry_after": "1"},
        {"on": "create", "nth": 1, "action": "status", "status": "503"},
        {"on": "create", "nth": 1, "action": "drop", "every": "yes"},
    ],
)
def test_fault_fields_are_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="fault"):
        Fault(**fields)


# --- the server itself ----------------------------------------------------------------------------


def test_server_lifecycle_errors() -> None:
    server = SandboxServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    server.stop()  # harmless when not started
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_serve_blocks_until_keyboard_interrupt_and_then_returns() -> None:
    seen: list[tuple[str, int]] = []

    def on_ready(url: str) -> None:
        def visit() -> None:
            try:
                with httpx.Client(base_url=url) as http:
                    seen.append((url, http.get("/_sandbox/faults").status_code))
            finally:
                _thread.interrupt_main()

        threading.Thread(target=visit).start()

    serve("127.0.0.1", 0, [Fault.parse("get:1:drop")], on_ready)
    assert len(seen) == 1
    assert seen[0][0].startswith("http://127.0.0.1:")
    assert seen[0][1] == 200
