"""mediaprep: check, repair and submit media for the custom-elements creation API."""

from __future__ import annotations

from ._version import __version__
from .api import Client, ElementInfo, Settings, Task
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CheckFailedError,
    ConfigError,
    ConflictError,
    FixError,
    InternalServerError,
    MediaprepError,
    NotFoundError,
    RateLimitError,
    TaskFailedError,
    ToolError,
    ToolNotFoundError,
    ToolTimeoutError,
    UsageError,
    WaitTimeoutError,
)
from .findings import ElementReport, FileReport, Finding
from .fixers import FixOptions, FixPlan, FixResult, Step, fix_file, plan_fix
from .info import AudioStream, ImageInfo, VideoInfo
from .inspectors import Element, check_element, inspect_file

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AudioStream",
    "AuthenticationError",
    "BadRequestError",
    "CheckFailedError",
    "Client",
    "ConfigError",
    "ConflictError",
    "Element",
    "ElementInfo",
    "ElementReport",
    "FileReport",
    "Finding",
    "FixError",
    "FixOptions",
    "FixPlan",
    "FixResult",
    "ImageInfo",
    "InternalServerError",
    "MediaprepError",
    "NotFoundError",
    "RateLimitError",
    "Settings",
    "Step",
    "Task",
    "TaskFailedError",
    "ToolError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "UsageError",
    "VideoInfo",
    "WaitTimeoutError",
    "__version__",
    "check_element",
    "fix_file",
    "inspect_file",
    "plan_fix",
]
