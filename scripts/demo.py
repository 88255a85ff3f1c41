"""`make demo`: sample media, some of it non-compliant, through mediaprep's commands.

Runs the real command line (`python -m mediaprep ...`) so what it prints is what a user sees.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fixtures.generate import generate  # noqa: E402

SAMPLES = {
    "img_1024x768_circle_jpg": "portrait.jpg",
    "img_200x100_png": "thumbnail.png",
    "img_webp": "screenshot.webp",
    "img_exif_rot6_jpg": "phone-photo.jpg",
    "img_751x300_png": "banner.png",
    "vid_720p_4s_mp4": "clip-720p.mp4",
    "vid_1080p_4s_mov": "clip-1080p.mov",
}


def banner(text: str) -> None:
    """A heading between the steps."""
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def mediaprep(*args: str, check: bool = False) -> int:
    """Run the mediaprep command line and show its output; return its exit code."""
    print("$ mediaprep " + " ".join(args), flush=True)
    completed = subprocess.run([sys.executable, "-m", "mediaprep", *args], check=False)
    if check and completed.returncode != 0:
        raise SystemExit(
            f"demo: 'mediaprep {args[0]}' failed with exit code {completed.returncode}"
        )
    return completed.returncode


def main() -> None:
    """Generate the samples, check them, fix them, check the fixed copies."""
    with tempfile.TemporaryDirectory(prefix="mediaprep-demo-") as scratch:
        root = Path(scratch)
        made = generate(root / ".generated", SAMPLES)
        samples = root / "samples"
        samples.mkdir()
        for name, target in SAMPLES.items():
            (samples / target).write_bytes(made[name].read_bytes())
        banner("1. check: what would the API reject?")
        code = mediaprep("check", str(samples))
        print(f"(exit code {code}: 1 means some file breaks a rule)")
        banner("2. fix: compliant copies, each re-inspected; originals untouched")
        mediaprep("fix", str(samples), "--out-dir", str(root / "fixed"), check=True)
        banner("3. check the fixed copies")
        mediaprep("check", str(root / "fixed"), check=True)


if __name__ == "__main__":
    main()
