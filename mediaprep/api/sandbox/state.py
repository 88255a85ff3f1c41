"""The sandbox's state and its answers: tasks, faults in force, request counts, the log.

:class:`Sandbox` routes one request (API or admin endpoint), applies the faults that fire on it,
and stores or advances tasks. It knows nothing of sockets; :mod:`.server` feeds it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from ... import spec
from .answers import Answer, Problem, error_answer, invalid, json_answer, new_request_id
from .body import Body, read_body
from .faults import (
    DEFAULT_FAIL_REASON,
    FAULT_KINDS,
    MAX_SLOW_SECONDS,
    Armed,
    Fault,
    fault_answer,
)
from .validate import check_media, check_submission

# One logger for the whole sandbox, named after the package.
log = logging.getLogger("mediaprep.api.sandbox")

CREATE_PATH: Final = "/v1/videos/generations"
TASK_PATH_PREFIX: Final = "/v1/tasks/"
FAULTS_PATH: Final = "/_sandbox/faults"
ELEMENTS_PATH: Final = "/_sandbox/elements"
#: Element ids start beyond 2^53, so a client that parses them through a float loses digits.
ELEMENT_ID_BASE: Final = 860_000_000_000_000_000
FINAL_UNIT_DEDUCTION: Final = "1"

TaskStatus = Literal["pending", "processing", "completed", "failed"]


class LoggedRequest(NamedTuple):
    """One request as the sandbox saw it; ``status`` 0 means the connection was dropped."""

    method: str
    path: str
    status: int


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


def _owner(authorization: str | None) -> str:
    """The key's owner id (a SHA-256 of the key); the key itself goes no further.

    Raises:
        Problem: 401, no bearer key or a refused one (keys starting with ``bad``).
    """
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Problem(
            401, "missing or malformed Authorization header; send 'Authorization: Bearer KEY'"
        )
    if key.startswith("bad"):
        raise Problem(401, "the API key was refused")
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
        self._faults: list[Armed] = []
        self._log: list[LoggedRequest] = []
        self.add_faults(faults)

    # -- state for tests and the admin endpoints --

    def add_faults(self, faults: Iterable[Fault]) -> None:
        """Add faults; each counts its kind of request from now on."""
        with self._lock:
            self._faults.extend(Armed(fault, self._counts[fault.on]) for fault in faults)

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
            with read_body(headers, stream) as body:
                answer = self._route(method, path, headers.get("authorization"), body, request_id)
        except Problem as problem:
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
            return json_answer(200, {"faults": [f.to_spec() for f in self.faults()]}, request_id)
        if path == ELEMENTS_PATH:
            self._allow(method, "GET")
            return json_answer(200, {"elements": self.elements()}, request_id)
        raise Problem(404, f"no such path: {path}")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise Problem(
                405,
                f"method {method} is not allowed here; use {' or '.join(allowed)}",
                headers=(("Allow", ", ".join(allowed)),),
            )

    @staticmethod
    def _faults_from(body: IO[bytes]) -> list[Fault]:
        try:
            items = json.load(body)
        except ValueError:
            raise invalid("send a JSON list of faults") from None
        if not isinstance(items, list):
            raise invalid("send a JSON list of faults")
        try:
            return [Fault.from_json(item) for item in items]
        except ValueError as exc:
            raise invalid(str(exc)) from None

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
            answer = None if fault.after_store else fault_answer(fault, request_id, stored=False)
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
            answer = fault_answer(fault, request_id, stored=True)
            if answer is not None:
                return answer
        return json_answer(200, task, request_id)

    def _create(self, owner: str, stream: IO[bytes], fail_reason: str | None) -> dict[str, Any]:
        """Check a create request and store its task.

        Raises:
            Problem: 400 (invalid request) or 409 (external_task_id already used).
        """
        with tempfile.TemporaryDirectory(prefix="mediaprep-sandbox-") as scratch:
            body = Body.parse(stream, Path(scratch))
            submission = check_submission(body.data)
            urls: list[str] = []
            identities: list[str] = []
            for index, media in enumerate(submission.media):
                url, identity = check_media(body, media, Path(scratch), index)
                if index > 0 and media.kind == "image" and identity == identities[0]:
                    same = "URL" if identity.startswith("url:") else "bytes"
                    raise invalid(
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
                raise Problem(409, f"external_task_id {external} already exists")
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
            Problem: 404, no such task for this key.
        """
        with self._lock:
            task = self._tasks.get(task_ref)
            if task is None or task.owner != owner:
                task = self._tasks.get(self._external.get((owner, task_ref), ""))
            if task is None or task.owner != owner:
                raise Problem(404, f"no task {task_ref}")
            now = int(self._clock())
            if fail_reason is not None and task.status in ("pending", "processing"):
                task.status, task.error, task.updated_at = "failed", fail_reason, now
            task.advance(self.polls_to_complete, now)
            return task.to_json()
