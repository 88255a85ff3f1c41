"""Errors mediaprep raises. Problems *in the media* are findings, not errors; these are for
what stops mediaprep from doing its job.

    MediaprepError
    ├── UsageError               an argument or option mediaprep cannot use
    ├── ConfigError              a config file that cannot be read
    ├── ToolNotFoundError        ffmpeg or ffprobe is not installed
    ├── ToolError                ffmpeg or ffprobe failed (keeps the command and stderr)
    │   └── ToolTimeoutError     ... or ran past its timeout
    ├── ImageUnreadable          Pillow cannot read an image (inspectors make it a finding)
    ├── ImageBomb                an image claims more pixels than is safe to decode
    ├── FixError                 a repair could not be made
    │   └── MetadataStructureError   a file's segments/chunks cannot be walked to strip metadata
    ├── CheckFailedError         an element fails the rules, so it is not sent (keeps reports)
    ├── FileChangedError         a file changed while it was being sent (keeps the path)
    └── APIError                 talking to the service failed
        ├── APIConnectionError   the request did not get an answer
        │   └── APITimeoutError  ... because it timed out
        ├── APIStatusError       the service answered with an error status
        │   ├── BadRequestError      400, 422: the service rejected the request
        │   ├── AuthenticationError  401, 403
        │   ├── NotFoundError        404
        │   ├── ConflictError        409
        │   ├── RateLimitError       429
        │   └── InternalServerError  >= 500
        ├── APIResponseError     the answer could not be understood
        ├── TaskFailedError      the task ended failed or cancelled
        └── WaitTimeoutError     the task did not finish before the deadline
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .findings import ElementReport
    from .fixers.plan import FixResult

STDERR_TAIL_LINES = 12


class MediaprepError(Exception):
    """Base class of every error mediaprep raises."""


class UsageError(MediaprepError):
    """An argument or option that mediaprep cannot use."""


class ConfigError(MediaprepError):
    """A configuration file that cannot be read or holds a bad value."""


class ToolNotFoundError(MediaprepError):
    """ffmpeg or ffprobe cannot be found."""

    def __init__(self, tool: str, env_var: str) -> None:
        self.tool = tool
        self.env_var = env_var
        super().__init__(
            f"{tool} was not found. Install ffmpeg (it includes ffprobe): "
            "'sudo apt-get install ffmpeg' on Debian/Ubuntu, 'brew install ffmpeg' on macOS, "
            "or https://ffmpeg.org/download.html; or point MEDIAPREP_FFMPEG and MEDIAPREP_FFPROBE "
            f"at the binaries (here: {env_var} for {tool})."
        )


class ToolError(MediaprepError):
    """ffmpeg or ffprobe exited with an error; keeps the command and the tail of stderr."""

    def __init__(self, message: str, command: Sequence[str], stderr: str = "") -> None:
        self.command = list(command)
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        super().__init__(f"{message}: {tail}" if tail else message)


class ToolTimeoutError(ToolError):
    """ffmpeg or ffprobe ran past its timeout and was killed."""


class ImageUnreadable(MediaprepError):
    """Pillow could not read the image; the message says why."""


class ImageBomb(MediaprepError):
    """The image claims more pixels than Pillow's decompression-bomb limit."""


class FixError(MediaprepError):
    """A repair could not be made."""


class MetadataStructureError(FixError):
    """The file's segments or chunks do not follow its format: metadata cannot be cut out."""


class CheckFailedError(MediaprepError):
    """The element still fails the API's rules, so nothing was sent; keeps the reports."""

    def __init__(
        self, message: str, report: ElementReport, fixes: Sequence[FixResult] = ()
    ) -> None:
        self.report = report
        self.fixes = tuple(fixes)
        super().__init__(message)


class FileChangedError(MediaprepError):
    """A file changed size while it was being sent; the request went out incomplete."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path} changed size while it was being sent; send it again")


class APIError(MediaprepError):
    """Talking to the service failed."""


class APIConnectionError(APIError):
    """The request got no answer (refused, reset, dropped)."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(APIError):
    """The service answered with an error status."""

    def __init__(
        self, message: str, *, status_code: int, body: object = None, request_id: str | None = None
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        suffix = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status_code}: {message}{suffix}")


class BadRequestError(APIStatusError):
    """400 or 422: the service rejected the request."""


class AuthenticationError(APIStatusError):
    """401 or 403: the API key was refused."""


class NotFoundError(APIStatusError):
    """404: no such task or path."""


class ConflictError(APIStatusError):
    """409: the request conflicts with existing state (a reused external_task_id)."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InternalServerError(APIStatusError):
    """5xx: the service failed."""


class APIResponseError(APIError):
    """The service's answer could not be understood."""


class TaskFailedError(APIError):
    """The task ended failed or cancelled; keeps the service's reason."""

    def __init__(self, task_id: str, status: str, reason: str) -> None:
        self.task_id = task_id
        self.status = status
        self.reason = reason
        super().__init__(f"task {task_id} {status}: {reason or 'no reason given'}")


class WaitTimeoutError(APIError):
    """The task did not finish before the deadline."""

    def __init__(self, task_id: str, timeout: float, last_status: str) -> None:
        self.task_id = task_id
        self.timeout = timeout
        self.last_status = last_status
        super().__init__(
            f"task {task_id} still {last_status} after {timeout:g} s; it goes on at the "
            "service: wait for it again later"
        )
