"""Checking a create request the way the service would.

The field rules come from :mod:`mediaprep.spec`; Base64 media are decoded and checked by
:func:`mediaprep.inspectors.inspect_local`. Every refusal is a 400 :class:`Problem` that names
the field and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ... import spec
from ...errors import MediaprepError
from ...info import ImageInfo
from ...inspectors import inspect_local
from .answers import Problem, invalid, show
from .body import Body, decode_base64

MEDIA_URL_BASE: Final = "https://sandbox.invalid/media/"
_ARTICLED: Final = {"image": "an image", "video": "a video"}


@dataclass(frozen=True)
class MediaField:
    """One media value of a create request, with the field that holds it and its kind."""

    field: str
    value: str
    kind: Literal["image", "video"]


@dataclass(frozen=True)
class Submission:
    """A create request whose fields passed the rules; its media are not checked yet."""

    name: str
    description: str
    reference_type: spec.ReferenceType
    media: tuple[MediaField, ...]
    voice_id: str | None
    tag_ids: tuple[str, ...]
    external_task_id: str | None


def _text_field(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        raise invalid(f"{name}: required")
    if not isinstance(value, str):
        raise invalid(f"{name}: must be a string")
    text = value.strip()
    if not text:
        raise invalid(f"{name}: must not be empty")
    if len(text) > limit:
        raise invalid(f"{name}: has {len(text)} characters; at most {limit} are allowed")
    return text


def _media_field(name: str, value: object, kind: Literal["image", "video"]) -> MediaField:
    if value is None:
        raise invalid(f"{name}: required")
    if not isinstance(value, str):
        raise invalid(f"{name}: must be a string (an http(s) URL or Base64)")
    if not value.strip():
        raise invalid(f"{name}: must not be empty")
    return MediaField(name, value, kind)


def _object(data: dict[str, Any], name: str, reference_type: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise invalid(f"{name}: required object when reference_type is {reference_type}")
    return value


def _image_media(data: dict[str, Any]) -> tuple[MediaField, ...]:
    images = _object(data, "element_image_list", "image_refer")
    frontal = _media_field("element_image_list.frontal_image", images.get("frontal_image"), "image")
    refers = images.get("refer_images")
    if not isinstance(refers, list):
        raise invalid('element_image_list.refer_images: required array of {"image_url"} objects')
    if not spec.REFER_IMAGES_MIN <= len(refers) <= spec.REFER_IMAGES_MAX:
        raise invalid(
            f"element_image_list.refer_images: has {len(refers)} images; "
            f"{spec.REFER_IMAGES_MIN} to {spec.REFER_IMAGES_MAX} are required besides the "
            "frontal image"
        )
    media = [frontal]
    for index, item in enumerate(refers):
        name = f"element_image_list.refer_images[{index}]"
        if not isinstance(item, dict):
            raise invalid(f'{name}: must be an object {{"image_url": ...}}')
        media.append(_media_field(f"{name}.image_url", item.get("image_url"), "image"))
    return tuple(media)


def _video_media(data: dict[str, Any]) -> tuple[MediaField, ...]:
    videos = _object(data, "element_video_list", "video_refer").get("refer_videos")
    if not isinstance(videos, list):
        raise invalid('element_video_list.refer_videos: required array of {"video_url"} objects')
    if len(videos) != spec.VIDEO_COUNT:
        raise invalid(
            f"element_video_list.refer_videos: has {len(videos)} videos; exactly "
            f"{spec.VIDEO_COUNT} is supported"
        )
    name = "element_video_list.refer_videos[0]"
    if not isinstance(videos[0], dict):
        raise invalid(f'{name}: must be an object {{"video_url": ...}}')
    return (_media_field(f"{name}.video_url", videos[0].get("video_url"), "video"),)


def _tag_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid('tag_list: must be an array of {"tag_id": ...} objects')
    ids: list[str] = []
    for index, item in enumerate(value):
        tag_id = item.get("tag_id") if isinstance(item, dict) else None
        if tag_id is None:
            raise invalid(f'tag_list[{index}]: must be an object {{"tag_id": ...}}')
        if not isinstance(tag_id, str) or tag_id not in spec.TAGS:
            raise invalid(
                f"tag_list[{index}].tag_id: unknown tag {show(tag_id)}; "
                f"must be one of {', '.join(spec.TAGS)}"
            )
        if tag_id not in ids:
            ids.append(tag_id)
    return tuple(ids)


def check_submission(data: object) -> Submission:
    """Check a create body's shape and field rules (not the media bytes).

    Raises:
        Problem: 400 naming the field and the rule.
    """
    if not isinstance(data, dict):
        raise invalid("request body must be a JSON object")
    if data.get("model") != spec.MODEL_ID:
        raise invalid(f"model: must be {spec.MODEL_ID!r}, not {show(data.get('model'))}")
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
        raise invalid(
            f"reference_type: must be one of {', '.join(spec.REFERENCE_TYPES)}, "
            f"not {show(reference_type)}"
        )
    if data.get(other) is not None:
        raise invalid(f"{other}: not allowed when reference_type is {reference_type}")
    voice_id = data.get("element_voice_id")
    if voice_id is not None and not isinstance(voice_id, str):
        raise invalid("element_voice_id: must be a string")
    if voice_id and reference_type != "video_refer":
        raise invalid("element_voice_id: only video_refer elements can bind a voice")
    tag_ids = _tag_ids(data.get("tag_list"))
    callback_url = data.get("callback_url")
    if callback_url is not None:
        parts = urlsplit(callback_url) if isinstance(callback_url, str) else None
        if parts is None or parts.scheme not in spec.CALLBACK_URL_SCHEMES or not parts.hostname:
            raise invalid("callback_url: must be an absolute http(s) URL")
    external_task_id = data.get("external_task_id")
    if external_task_id is not None and (
        not isinstance(external_task_id, str) or not external_task_id.strip()
    ):
        raise invalid("external_task_id: must be a non-empty string")
    return Submission(
        name,
        description,
        reference_type,
        media,
        voice_id or None,
        tag_ids,
        external_task_id,
    )


def check_media(body: Body, media: MediaField, scratch: Path, index: int) -> tuple[str, str]:
    """Check one media value: a URL as is, else Base64 decoded and inspected.

    Returns:
        The URL to echo (the one sent, or a sandbox URL for Base64) and an identity for
        comparing media (the URL, or the SHA-256 of the bytes).

    Raises:
        Problem: 400 naming the field, when the value is not Base64 or the media breaks a rule.
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
                sha = decode_base64(source, out)
        except Problem as exc:
            raise invalid(f"{media.field}: {exc.message}") from None
    try:
        report = inspect_local(target)
    except MediaprepError as exc:
        raise Problem(500, f"the sandbox could not inspect {media.field}: {exc}") from None
    finally:
        target.unlink()
    if report.kind not in (media.kind, "unknown"):
        raise invalid(f"{media.field}: is {_ARTICLED[report.kind]}; {media.kind}s only here")
    errors = [finding.message for finding in report.findings if finding.is_error]
    if errors:
        raise invalid(f"{media.field}: {'; '.join(errors)}")
    extension = ".mp4"
    if isinstance(report.info, ImageInfo):
        extension = ".png" if report.info.format == "PNG" else ".jpg"
    return f"{MEDIA_URL_BASE}{sha}{extension}", "sha256:" + sha
