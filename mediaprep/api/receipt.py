"""Receipts: what was sent and what came back, on disk before and after every step.

A receipt is written (atomically) before the create is sent, with status ``"sending"`` and the
``external_task_id``, so even a crash mid-create leaves enough to look the task up; then again
when the create answers, and when the wait ends, with the element id. It never holds the API key
nor any Base64.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from ..errors import UsageError

RECEIPT_VERSION: Final = 1
RECEIPT_PREFIX: Final = "mediaprep-receipt-"


def receipt_path(out_dir: str | os.PathLike[str], external_task_id: str) -> Path:
    """``out_dir/mediaprep-receipt-<external_task_id>.json`` (the id made safe for a name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in external_task_id)
    return Path(out_dir) / f"{RECEIPT_PREFIX}{safe}.json"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_receipt(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temp file beside it, then a rename).

    Raises:
        OSError: the folder is not writable.
    """
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_receipt(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a receipt.

    Raises:
        UsageError: the file cannot be read or is not a mediaprep receipt.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the receipt: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("external_task_id"), str):
        raise UsageError(f"{path}: not a mediaprep receipt (no external_task_id)")
    return data


def update_receipt(path: Path, data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Apply ``changes`` to ``data``, stamp ``updated_at`` and write it; returns ``data``.

    Raises:
        OSError: the folder is not writable.
    """
    data.update(changes)
    data["updated_at"] = now_iso()
    write_receipt(path, data)
    return data


def new_receipt(
    *,
    external_task_id: str,
    base_url: str,
    provider: str,
    request: Mapping[str, Any],
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    """A receipt for a create about to be sent (status ``"sending"``).

    Args:
        external_task_id: the id the create carries.
        base_url: where it goes.
        provider: the provider's name.
        request: the body as :func:`~mediaprep.api.body.describe_body` shows it.
        files: per local file: the path given, the path sent, its size and SHA-256.
    """
    stamp = now_iso()
    return {
        "version": RECEIPT_VERSION,
        "external_task_id": external_task_id,
        "task_id": None,
        "status": "sending",
        "base_url": base_url,
        "provider": provider,
        "created_at": stamp,
        "updated_at": stamp,
        "files": files,
        "request": dict(request),
        "element_id": None,
        "element": None,
        "error": None,
    }
