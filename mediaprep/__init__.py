"""mediaprep: check, repair and submit media for the custom-elements creation API."""

from __future__ import annotations

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
from .info import AudioStream, ImageInfo, VideoInfo
from .inspectors import Element, check_element, inspect_file

__version__ = "0.1.0"

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
    "ConfigError",
    "ConflictError",
    "Element",
    "ElementReport",
    "FileReport",
    "Finding",
    "FixError",
    "ImageInfo",
    "InternalServerError",
    "MediaprepError",
    "NotFoundError",
    "RateLimitError",
    "TaskFailedError",
    "ToolError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "UsageError",
    "VideoInfo",
    "WaitTimeoutError",
    "__version__",
    "check_element",
    "inspect_file",
]
