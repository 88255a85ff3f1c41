"""The streamed request body, its description, and the provider's body and task parsing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mediaprep import Element
from mediaprep.api.body import (
    READ_BLOCK_BYTES,
    Base64File,
    RequestBody,
    base64_length,
    build_request,
    describe_body,
    sniff_mime,
)
from mediaprep.api.provider import KirinProvider, Task, get_provider
from mediaprep.errors import APIResponseError, FileChangedError, UsageError

PROVIDER = KirinProvider()
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
JPEG_HEAD = b"\xff\xd8\xff\xe0"


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def naive(value: object, data_uri: bool = False) -> object:
    """The body built the obvious way: every file read whole and encoded at once."""
    if isinstance(value, Base64File):
        encoded = base64.b64encode(value.path.read_bytes()).decode("ascii")
        return value.prefix + encoded
    if isinstance(value, dict):
        return {key: naive(item, data_uri) for key, item in value.items()}
    if isinstance(value, list):
        return [naive(item, data_uri) for item in value]
    return value


@pytest.fixture
def image_element(tmp_path: Path) -> Element:
    frontal = write(tmp_path / "front.png", PNG_HEAD + os.urandom(1000))
    refer = write(tmp_path / "side.jpg", JPEG_HEAD + os.urandom(1001))
    return Element(
        name='Quote " back\\slash',
        description="tab\there, newline\n, unicode é 漢字 \u2028 and </script>",
        frontal=frontal,
        refers=(refer, 'https://example.com/a%20b.jpg?x=1&y="2"'),
        tags=("character", "o_104", "Character"),
        callback_url="https://example.com/hook?a=1",
    )


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 6, READ_BLOCK_BYTES - 1, READ_BLOCK_BYTES + 1])
def test_base64_length_matches_the_encoding(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    item = Base64File.from_path(write(tmp_path / "f.bin", data))
    encoded = b"".join(item.iter_encoded())
    assert encoded == base64.b64encode(data)
    assert len(encoded) == base64_length(size) == item.encoded_length


@pytest.mark.parametrize("data_uri", [False, True])
def test_streamed_body_parses_to_the_naive_body(image_element: Element, data_uri: bool) -> None:
    body = build_request(image_element, PROVIDER, external_task_id="ext-1", data_uri=data_uri)
    streamed = b"".join(body)
    assert len(streamed) == body.content_length
    parsed = json.loads(streamed)
    assert parsed == naive(body.fields, data_uri)
    assert parsed["model"] == "kirin_custom_elements"
    assert parsed["element_name"] == 'Quote " back\\slash'
    assert parsed["reference_type"] == "image_refer"
    assert parsed["tag_list"] == [{"tag_id": "o_102"}, {"tag_id": "o_104"}]
    assert parsed["callback_url"] == "https://example.com/hook?a=1"
    assert parsed["external_task_id"] == "ext-1"
    refers = parsed["element_image_list"]["refer_images"]
    assert refers[1] == {"image_url": 'https://example.com/a%20b.jpg?x=1&y="2"'}
    frontal = parsed["element_image_list"]["frontal_image"]
    if data_uri:
        assert frontal.startswith("data:image/png;base64,")
        assert refers[0]["image_url"].startswith("data:image/jpeg;base64,")
    else:
        assert base64.b64decode(frontal, validate=True).startswith(PNG_HEAD)
    assert "element_voice_id" not in parsed


def test_video_body_has_voice_and_no_image_list(tmp_path: Path) -> None:
    video = write(tmp_path / "v.mp4", b"\x00\x00\x00\x18ftypisom" + os.urandom(100))
    element = Element("Ann", "a person", videos=(video,), voice_id="voice_9")
    body = build_request(element, PROVIDER, data_uri=True)
    parsed = json.loads(b"".join(body))
    assert parsed["reference_type"] == "video_refer"
    assert parsed["element_voice_id"] == "voice_9"
    assert "element_image_list" not in parsed
    assert "tag_list" not in parsed
    (item,) = parsed["element_video_list"]["refer_videos"]
    assert item["video_url"].startswith("data:video/mp4;base64,")
    assert len(body.external_task_id) == 36  # a uuid4 when none is given


def test_external_task_id_from_the_element(tmp_path: Path) -> None:
    frontal = write(tmp_path / "f.png", PNG_HEAD)
    element = Element("A", "B", frontal=frontal, refers=(frontal,), external_task_id="mine")
    assert build_request(element, PROVIDER).external_task_id == "mine"


def test_describe_body_replaces_base64_with_length_and_hash(image_element: Element) -> None:
    body = build_request(image_element, PROVIDER, external_task_id="ext-1")
    described = describe_body(body)
    frontal_bytes = Path(str(image_element.frontal)).read_bytes()
    assert described["element_image_list"]["frontal_image"] == {
        "base64_length": base64_length(len(frontal_bytes)),
        "sha256": hashlib.sha256(frontal_bytes).hexdigest(),
    }
    assert described["element_image_list"]["refer_images"][1]["image_url"].startswith("https://")
    assert described["element_name"] == image_element.name
    assert "base64" not in json.dumps(described).replace("base64_length", "")


def test_chunks_stay_small(tmp_path: Path) -> None:
    data = os.urandom(READ_BLOCK_BYTES * 3 + 7)
    path = write(tmp_path / "big.png", PNG_HEAD + data)
    body = build_request(Element("A", "B", frontal=path, refers=(path,)), PROVIDER)
    sizes = [len(chunk) for chunk in body]
    assert max(sizes) <= base64_length(READ_BLOCK_BYTES)
    assert sum(sizes) == body.content_length


def test_body_can_be_streamed_again_for_a_retry(image_element: Element) -> None:
    body = build_request(image_element, PROVIDER)
    assert b"".join(body) == b"".join(body)


def test_a_file_that_changes_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    write(path, PNG_HEAD + b"x" * 100)
    body = build_request(Element("A", "B", frontal=str(path), refers=(str(path),)), PROVIDER)
    path.write_bytes(PNG_HEAD)
    with pytest.raises(FileChangedError, match="changed size") as caught:
        b"".join(body)
    assert caught.value.path == str(path)


def test_a_file_that_grows_while_sent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    write(path, PNG_HEAD + b"x" * 100)
    body = build_request(Element("A", "B", frontal=str(path), refers=(str(path),)), PROVIDER)
    with path.open("ab") as stream:
        stream.write(b"y")
    with pytest.raises(FileChangedError, match="changed size"):
        b"".join(body)


def test_streaming_50_mib_keeps_memory_flat(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    path = tmp_path / "big.mp4"
    with path.open("wb") as stream:
        block = os.urandom(1 << 20)
        for index in range(50):
            stream.write(bytes([index]) + block[1:])
    element = Element("Big", "fifty mebibytes", videos=(str(path),))
    body = build_request(element, PROVIDER, external_task_id="big")
    digest = hashlib.sha256()
    length = 0
    tracemalloc.start()
    try:
        for chunk in body:
            digest.update(chunk)
            length += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == body.content_length > size * 4 // 3
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while streaming {size} bytes"
    expected = json.dumps(naive(body.fields), separators=(",", ":")).encode("ascii")
    assert digest.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_sniff_mime(tmp_path: Path) -> None:
    assert sniff_mime(write(tmp_path / "a", PNG_HEAD)) == "image/png"
    assert sniff_mime(write(tmp_path / "b", JPEG_HEAD)) == "image/jpeg"
    assert sniff_mime(write(tmp_path / "c", b"\0\0\0\x14ftypqt  ")) == "video/quicktime"
    assert sniff_mime(write(tmp_path / "d", b"\0\0\0\x14ftypisom")) == "video/mp4"


def test_request_body_length_counts_nested_values() -> None:
    body = RequestBody({"a": [1, "x\u00e9", None, True, {"b": []}], "external_task_id": "e"})
    assert body.content_length == len(b"".join(body))
    assert json.loads(b"".join(body))["a"][1] == "x\u00e9"


# --- the provider's task and element parsing -------------------------------------------------


def task_object(**fields: Any) -> dict[str, Any]:
    return {"task_id": "tsk_1", "external_task_id": "ext", "status": "pending", **fields}


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("pending", "pending"),
        ("processing", "processing"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("CANCELED", "cancelled"),
        ("exploding", "unknown"),
        ("", "unknown"),
    ],
)
def test_parse_task_status(word: str, status: str) -> None:
    task = PROVIDER.parse_task(task_object(status=word, progress=40))
    assert task.status == status
    assert task.status_text == word.lower()
    assert task.progress == 40


@pytest.mark.parametrize("data", [None, [], {"status": "pending"}, {"task_id": 5}])
def test_parse_task_refuses_other_objects(data: object) -> None:
    with pytest.raises(APIResponseError):
        PROVIDER.parse_task(data)


def completed(text: str) -> Task:
    raw = task_object(
        status="completed", output=[{"content": [{"type": "text", "text": text, "url": ""}]}]
    )
    return PROVIDER.parse_task(raw)


def test_element_id_beyond_2_53_stays_exact() -> None:
    big = 2**63 - 25
    text = json.dumps(
        {
            "element_id": big,
            "element_name": "Bob",
            "element_description": "d",
            "reference_type": "image_refer",
            "element_image_list": {"frontal_image": "u0", "refer_images": [{"image_url": "u1"}]},
            "element_voice_id": None,
            "tag_list": [{"id": "o_102", "name": "Character", "description": "c"}],
            "owned_by": "user_1",
            "final_unit_deduction": "1",
        }
    )
    info = PROVIDER.parse_element(completed(text))
    assert info.element_id == str(big)
    assert int(info.element_id) != int(float(big))
    assert info.frontal_image == "u0"
    assert info.refer_images == ("u1",)
    assert info.tags[0].tag_id == "o_102"
    assert info.tags[0].name == "Character"
    assert info.to_dict()["element_id"] == str(big)


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"element_id": 1.5e20}', '{"element_id": true}', "{}"]
)
def test_bad_element_info_is_a_response_error(text: str) -> None:
    with pytest.raises(APIResponseError):
        PROVIDER.parse_element(completed(text))


def test_completed_task_without_output_is_a_response_error() -> None:
    with pytest.raises(APIResponseError, match="no element info"):
        PROVIDER.parse_element(PROVIDER.parse_task(task_object(status="completed")))


def test_parse_error_envelope() -> None:
    detail = PROVIDER.parse_error({"error": {"code": "unauthorized", "message": "bad key"}})
    assert (detail.code, detail.message) == ("unauthorized", "bad key")
    assert PROVIDER.parse_error("plain text").message is None


def test_get_provider_overrides_and_refuses() -> None:
    provider = get_provider("kirin", create_path="/x", task_path="/t/{task_id}")
    assert (provider.create_path, provider.task_path) == ("/x", "/t/{task_id}")
    with pytest.raises(UsageError, match="unknown provider"):
        get_provider("nope")
    with pytest.raises(UsageError, match="task_id"):
        get_provider("kirin", task_path="/tasks")
