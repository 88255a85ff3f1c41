"""Everything provider-specific: paths, the request body's shape, the task object, errors.

The rest of :mod:`mediaprep.api` talks to a :class:`Provider` only, so supporting another
service means writing one more class here. ``kirin`` (the default) follows
``docs/wire-protocol.md``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, get_args

from .. import spec
from ..errors import APIResponseError, UsageError
from ..inspectors.element import Element
from .body import BodyValue

TaskStatus = Literal["pending", "processing", "completed", "failed", "cancelled", "unknown"]
#: Status words and the state each means; other spellings services use are included.
STATUS_WORDS: dict[str, TaskStatus] = {
    **{word: word for word in get_args(TaskStatus)},
    "canceled": "cancelled",
    "queued": "pending",
    "submitted": "pending",
    "running": "processing",
    "succeeded": "completed",
    "success": "completed",
}


@dataclass(frozen=True)
class Task:
    """A task as the service reports it.

    ``status`` is normalised; a word mediaprep does not know becomes ``"unknown"`` and the word
    itself stays in ``status_text``. ``raw`` is the task object as received.
    """

    task_id: str
    external_task_id: str | None
    status: TaskStatus
    progress: int | None = None
    error: str | None = None
    status_text: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the raw object)."""
        return {
            "task_id": self.task_id,
            "external_task_id": self.external_task_id,
            "status": self.status,
            "status_text": self.status_text,
            "progress": self.progress,
            "error": self.error,
        }


@dataclass(frozen=True)
class Tag:
    """A tag bound to an element."""

    tag_id: str
    name: str = ""
    description: str = ""


@dataclass(frozen=True)
class ElementInfo:
    """The element the service created.

    ``element_id`` is a string holding the service's integer exactly (it may exceed 2**53, past
    what a float or a JavaScript number keeps).
    """

    element_id: str
    name: str = ""
    description: str = ""
    reference_type: str = ""
    frontal_image: str | None = None
    refer_images: tuple[str, ...] = ()
    refer_videos: tuple[str, ...] = ()
    voice_id: str | None = None
    tags: tuple[Tag, ...] = ()
    owned_by: str | None = None
    final_unit_deduction: int | float | str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``element_id`` stays a string."""
        data = asdict(self)
        data["refer_images"] = list(self.refer_images)
        data["refer_videos"] = list(self.refer_videos)
        data["tags"] = [asdict(tag) for tag in self.tags]
        return data


@dataclass(frozen=True)
class ErrorDetail:
    """What an error answer's body says: a short code word and the service's message."""

    code: str | None
    message: str | None


class Provider(Protocol):
    """The provider-specific half of the client."""

    @property
    def name(self) -> str:
        """The provider's name in settings and receipts."""

    @property
    def create_path(self) -> str:
        """Path (after the base URL) that creates a task."""

    @property
    def task_path(self) -> str:
        """Path template with ``{task_id}`` that reads a task."""

    def build_body(
        self, element: Element, media: Mapping[str, BodyValue], external_task_id: str
    ) -> dict[str, Any]:
        """The create request's JSON fields; ``media`` maps each of ``element.media`` to its
        encoding (a URL string or a :class:`~mediaprep.api.body.Base64File`)."""

    def parse_task(self, data: object) -> Task:
        """A task object as :class:`Task`.

        Raises:
            APIResponseError: ``data`` is not a task object.
        """

    def parse_element(self, task: Task) -> ElementInfo:
        """The created element from a completed task.

        Raises:
            APIResponseError: the task holds no readable element.
        """

    def parse_error(self, body: object) -> ErrorDetail:
        """The code and message of an error answer's body (both None when absent)."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class KirinProvider:
    """The ``kirin`` service (``docs/wire-protocol.md``)."""

    name: str = "kirin"
    create_path: str = "/v1/videos/generations"
    task_path: str = "/v1/tasks/{task_id}"

    def build_body(
        self, element: Element, media: Mapping[str, BodyValue], external_task_id: str
    ) -> dict[str, Any]:
        """The create request's fields in the order the contract lists them."""
        body: dict[str, Any] = {
            "model": spec.MODEL_ID,
            "element_name": element.name.strip(),
            "element_description": element.description.strip(),
            "reference_type": element.reference_type,
        }
        if element.reference_type == "image_refer":
            if element.frontal is None:
                raise UsageError("an image element needs a frontal image")
            body["element_image_list"] = {
                "frontal_image": media[element.frontal],
                "refer_images": [{"image_url": media[refer]} for refer in element.refers],
            }
        else:
            body["element_video_list"] = {
                "refer_videos": [{"video_url": media[video]} for video in element.videos]
            }
        if element.voice_id:
            body["element_voice_id"] = element.voice_id
        tag_ids = element.tag_ids()
        if tag_ids:
            body["tag_list"] = [{"tag_id": tag_id} for tag_id in tag_ids]
        if element.callback_url:
            body["callback_url"] = element.callback_url.strip()
        body["external_task_id"] = external_task_id
        return body

    def parse_task(self, data: object) -> Task:
        """Read a task object; unknown status words become ``"unknown"``.

        Raises:
            APIResponseError: ``data`` is not an object with a string ``task_id``.
        """
        if not isinstance(data, dict) or not isinstance(data.get("task_id"), str):
            raise APIResponseError("the service's answer is not a task object (no task_id)")
        word = str(data.get("status") or "").strip().lower()
        progress = data.get("progress")
        return Task(
            task_id=data["task_id"],
            external_task_id=_text(data.get("external_task_id")),
            status=STATUS_WORDS.get(word, "unknown"),
            progress=(
                int(progress)
                if isinstance(progress, int | float) and not isinstance(progress, bool)
                else None
            ),
            error=str(data["error"]) if data.get("error") not in (None, "") else None,
            status_text=word,
            raw=data,
        )

    def parse_element(self, task: Task) -> ElementInfo:
        """Read the element info JSON string inside the completed task's ``output``.

        Raises:
            APIResponseError: no text content, bad JSON, or an ``element_id`` that is not an
                integer (or a string of one).
        """
        text = self._output_text(task)
        try:
            info = json.loads(text)  # Python's json keeps big integers exact
        except ValueError as exc:
            raise APIResponseError(f"task {task.task_id}: element info is not JSON") from exc
        if not isinstance(info, dict):
            raise APIResponseError(f"task {task.task_id}: element info is not an object")
        element_id = info.get("element_id")
        if isinstance(element_id, int) and not isinstance(element_id, bool):
            element_id = str(element_id)
        if not isinstance(element_id, str) or not element_id.strip().isdigit():
            raise APIResponseError(
                f"task {task.task_id}: element_id {element_id!r} is not an integer"
            )
        images = info.get("element_image_list") or {}
        videos = info.get("element_video_list") or {}
        tags = info.get("tag_list") or []
        deduction = info.get("final_unit_deduction")
        return ElementInfo(
            element_id=element_id.strip(),
            name=_text(info.get("element_name")) or "",
            description=_text(info.get("element_description")) or "",
            reference_type=_text(info.get("reference_type")) or "",
            frontal_image=_text(images.get("frontal_image")) if isinstance(images, dict) else None,
            refer_images=_urls(images, "refer_images", "image_url"),
            refer_videos=_urls(videos, "refer_videos", "video_url"),
            voice_id=_text(info.get("element_voice_id")) or None,
            tags=tuple(
                Tag(
                    str(tag.get("id", "")),
                    str(tag.get("name", "")),
                    str(tag.get("description", "")),
                )
                for tag in tags
                if isinstance(tag, dict)
            ),
            owned_by=str(info["owned_by"]) if info.get("owned_by") is not None else None,
            final_unit_deduction=(deduction if isinstance(deduction, int | float | str) else None),
        )

    def parse_error(self, body: object) -> ErrorDetail:
        """Read ``{"error": {"code": ..., "message": ...}}``."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return ErrorDetail(_text(error.get("code")), _text(error.get("message")))
        return ErrorDetail(None, _text(error))

    @staticmethod
    def _output_text(task: Task) -> str:
        output = task.raw.get("output")
        for item in output if isinstance(output, list) else []:
            content = item.get("content") if isinstance(item, dict) else None
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    text: str = part["text"]
                    return text
        raise APIResponseError(f"task {task.task_id} is completed but holds no element info")


def _urls(container: object, key: str, field_name: str) -> tuple[str, ...]:
    items = container.get(key) if isinstance(container, dict) else None
    return tuple(
        item[field_name]
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and isinstance(item.get(field_name), str)
    )


#: Providers by the name settings use.
PROVIDERS: dict[str, type[KirinProvider]] = {"kirin": KirinProvider}


def get_provider(
    name: str = "kirin", *, create_path: str | None = None, task_path: str | None = None
) -> Provider:
    """The provider called ``name``, with its paths overridden when given.

    Raises:
        UsageError: no provider has that name, or ``task_path`` lacks ``{task_id}``.
    """
    try:
        cls = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise UsageError(f"unknown provider {name!r}; known: {known}") from None
    if task_path is not None and "{task_id}" not in task_path:
        raise UsageError(f"task_path {task_path!r} must contain {{task_id}}")
    provider = cls()
    return dataclasses.replace(
        provider,
        create_path=create_path or provider.create_path,
        task_path=task_path or provider.task_path,
    )
