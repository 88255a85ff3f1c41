"""``python -m mediaprep``: the same as the ``mediaprep`` command."""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
