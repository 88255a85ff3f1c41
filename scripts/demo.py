"""`make demo`: the main job on the built-in sandbox, with sample media, some of it non-compliant.

check -> fix -> submit an image element and a video element to `mediaprep sandbox` on a free
loopback port -> print their element ids -> stop the sandbox.

Runs the real command line (`python -m mediaprep ...`) so what it prints is what a user sees.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    print("$ " + shlex.join(["mediaprep", *args]), flush=True)
    completed = subprocess.run([sys.executable, "-m", "mediaprep", *args], check=False)
    if check and completed.returncode != 0:
        raise SystemExit(
            f"demo: 'mediaprep {args[0]}' failed with exit code {completed.returncode}"
        )
    return completed.returncode


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def sandbox() -> Iterator[str]:
    """Run `mediaprep sandbox` on a free port; yield its URL; stop it afterwards."""
    port = free_port()
    print(f"$ mediaprep sandbox --port {port} &", flush=True)
    server = subprocess.Popen([sys.executable, "-m", "mediaprep", "sandbox", "--port", str(port)])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("demo: the sandbox did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        print("(sandbox stopped)", flush=True)


def submit(url: str, out_dir: Path, *args: str) -> None:
    """Submit one element to the sandbox and print its element id."""
    os.environ["MEDIAPREP_BASE_URL"] = url
    os.environ["MEDIAPREP_API_KEY"] = "sk-demo-key-not-secret"
    mediaprep("submit", *args, "--out-dir", str(out_dir), check=True)


def main() -> None:
    """Generate the samples, check them, fix them, submit two elements to the sandbox."""
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
        with sandbox() as url:
            banner("4. submit an image element (fixed on the way) to the sandbox")
            submit(
                url,
                root / "submitted",
                "--name",
                "Captain Mo",
                "--description",
                "A red-haired pirate captain",
                "--frontal",
                str(samples / "portrait.jpg"),
                "--refer",
                str(samples / "thumbnail.png"),
                "--refer",
                str(samples / "screenshot.webp"),
                "--tag",
                "character",
            )
            banner("5. submit a video element: the 720p clip becomes 1080p on the way")
            submit(
                url,
                root / "submitted",
                "--name",
                "Mo waves",
                "--description",
                "Captain Mo waves at the camera",
                "--video",
                str(samples / "clip-720p.mp4"),
                "--tag",
                "o_102",
            )


if __name__ == "__main__":
    main()
