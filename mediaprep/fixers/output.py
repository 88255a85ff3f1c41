"""Where fixed files go: names that never overwrite, temp files renamed only when complete."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import UsageError


def temp_path_for(final: Path) -> Path:
    """A fresh, hidden temporary path beside ``final`` that keeps its suffix.

    Keeping the suffix lets ffmpeg pick the muxer and lets the re-inspection judge the extension
    the final file will have.
    """
    while True:
        candidate = final.parent / f".{final.stem}.{secrets.token_hex(4)}.part{final.suffix}"
        try:
            # 0666 less the umask, as for any new file: outputs are not made private.
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it is removed if the block fails.

    The caller renames it with :func:`commit` once it is complete and checked, so nothing
    half-written ever carries the final name.
    """
    temp = temp_path_for(final)
    try:
        yield temp
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def commit(temp: Path, final: Path) -> None:
    """Move a finished temporary file to its final name, refusing to overwrite anything.

    Raises:
        FileExistsError: ``final`` appeared meanwhile (the temp file is left for the caller).
    """
    try:
        os.link(temp, final)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        # No hard links here (some filesystems): fall back to a rename after checking.
        if final.exists():
            raise FileExistsError(str(final)) from exc
        os.replace(temp, final)
        return
    temp.unlink()


def copy_exact(source: Path, temp: Path) -> None:
    """Copy ``source``'s bytes to ``temp`` (for files that already pass)."""
    shutil.copyfile(source, temp)


def unique_output_path(out_dir: Path, stem: str, suffix: str, taken: set[Path]) -> Path:
    """``out_dir/stem+suffix``, or ``stem-1``, ``stem-2``... when that name exists or is taken."""
    candidate = out_dir / f"{stem}{suffix}"
    counter = 1
    while candidate.exists() or candidate in taken:
        candidate = out_dir / f"{stem}-{counter}{suffix}"
        counter += 1
    taken.add(candidate)
    return candidate


def ensure_out_dir(out_dir: Path, inputs: Iterable[str]) -> Path:
    """Create the output folder, refusing one where an output could replace an input.

    Raises:
        UsageError: ``out_dir`` is a file, it is the folder one of the inputs lives in, or it
            cannot be created.
    """
    check_out_dir(out_dir, inputs)
    return make_dir(out_dir)


def check_out_dir(out_dir: Path, inputs: Iterable[str]) -> None:
    """Refuse an output folder where an output could replace an input; create nothing.

    Raises:
        UsageError: ``out_dir`` is a file, or it is the folder one of the inputs lives in.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: the output folder is a file")
    resolved = out_dir.resolve()
    for item in inputs:
        path = Path(item)
        if path.exists() and path.is_file() and path.resolve().parent == resolved:
            raise UsageError(
                f"{out_dir}: it holds the input {item}; choose another --out-dir so originals "
                "stay untouched"
            )


def make_dir(out_dir: Path) -> Path:
    """Create a folder (and its parents) unless it exists.

    Raises:
        UsageError: it cannot be created (a file in the way, no permission...).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{out_dir}: cannot create the output folder: {exc.strerror or exc}"
        ) from exc
    return out_dir
