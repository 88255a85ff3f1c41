"""Talking to the service: the streamed body, retries, the client, settings and receipts.

Everything provider-specific lives in :mod:`mediaprep.api.provider`; :mod:`mediaprep.api.sandbox`
is a local stand-in for the service.
"""

from __future__ import annotations

from .body import Base64File, RequestBody, build_request, describe_body
from .client import Client, from_response
from .config import Secret, Settings, load_settings
from .provider import ElementInfo, KirinProvider, Provider, Tag, Task, TaskStatus, get_provider
from .receipt import read_receipt, receipt_path
from .retry import parse_retry_after, retry_delay, should_retry

__all__ = [
    "Base64File",
    "Client",
    "ElementInfo",
    "KirinProvider",
    "Provider",
    "RequestBody",
    "Secret",
    "Settings",
    "Tag",
    "Task",
    "TaskStatus",
    "build_request",
    "describe_body",
    "from_response",
    "get_provider",
    "load_settings",
    "parse_retry_after",
    "read_receipt",
    "receipt_path",
    "retry_delay",
    "should_retry",
]
