"""Measure x264 presets at mediaprep's CRF on a 1080p clip: encode time, size, SSIM and PSNR.

Run from the repository root::

    .venv/bin/python -m benchmarks.presets            # ultrafast..slow, 5 s, CRF 18
    .venv/bin/python -m benchmarks.presets --presets veryfast medium --seconds 3

The clip is synthetic but camera-like: testsrc2's moving shapes with temporal film grain
(``noise``), made once as lossless H.264 (``-qp 0``) and used as the reference for the
``ssim``/``psnr`` filters. Encodes use ffmpeg's default threading, as ``fix`` does.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mediaprep.ffmpeg import file_arg, probe, run_ffmpeg_to_end
from mediaprep.fixers.plan import DEFAULT_CRF

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
FRAME_RATE = 30
GRAIN = 3


@dataclass(frozen=True)
class Measure:
    """One preset's figures."""

    preset: str
    seconds: float
    cpu_seconds: float
    size_bytes: int
    profile: str
    ssim: float
    psnr: float

    @property
    def ssim_db(self) -> float:
        """SSIM as decibels, ``-10·log10(1 - SSIM)``: differences near 1 become readable."""
        return -10 * math.log10(max(1e-12, 1 - self.ssim))


def make_reference(path: Path, seconds: float, grain: int) -> None:
    """Write the lossless 1080p reference clip (``grain`` 0: no noise)."""
    source = f"testsrc2=s=1920x1080:r={FRAME_RATE}:d={seconds:g}"
    if grain:
        source += f",noise=alls={grain}:allf=t+u"
    lossless = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"]
    run_ffmpeg_to_end(["-f", "lavfi", "-i", source, *lossless, "-y", file_arg(path)])


def encode_args(reference: Path, output: Path, preset: str, crf: int) -> list[str]:
    """The encode being timed: the same video options ``fix`` uses."""
    return [
        "-i",
        file_arg(reference),
        "-c:v",
        "libx264",
        "-profile:v",
        "high",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-y",
        file_arg(output),
    ]


def _average(path: Path, key: str) -> float:
    """Average the ``key:value`` field over the lines of an ssim/psnr stats file."""
    values = []
    for line in path.read_text().splitlines():
        for field in line.split():
            name, _, value = field.partition(":")
            if name == key:
                values.append(float(value))
    return sum(values) / len(values)


def compare(reference: Path, encoded: Path, work: Path) -> tuple[float, float]:
    """Mean SSIM (All) and mean PSNR (average of planes) of ``encoded`` against ``reference``."""
    ssim_log = work / "ssim.log"
    psnr_log = work / "psnr.log"
    graph = (
        "[0:v]split[a0][a1];[1:v]split[b0][b1];"
        f"[a0][b0]ssim=stats_file={ssim_log.name};[a1][b1]psnr=stats_file={psnr_log.name}"
    )
    # The stats files are named relative to the working folder, so no path needs escaping.
    here = os.getcwd()
    os.chdir(work)
    try:
        run_ffmpeg_to_end(
            ["-i", file_arg(encoded), "-i", file_arg(reference), "-lavfi", graph, "-f", "null", "-"]
        )
    finally:
        os.chdir(here)
    return _average(ssim_log, "All"), _average(psnr_log, "psnr_avg")


def measure(reference: Path, work: Path, preset: str, crf: int, repeat: int) -> Measure:
    """Encode ``repeat`` times with ``preset``, keep the fastest run, then score the result.

    Wall time is what a user waits; CPU time (ffmpeg's user + system) hardly depends on what
    else the machine is doing. The fastest of several runs is the least disturbed.
    """
    output = work / f"{preset}.mp4"
    runs = []
    for _ in range(repeat):
        cpu_before = _children_cpu()
        started = time.perf_counter()
        run_ffmpeg_to_end(encode_args(reference, output, preset, crf))
        runs.append((time.perf_counter() - started, _children_cpu() - cpu_before))
    seconds, cpu_seconds = min(runs)
    ssim, psnr = compare(reference, output, work)
    profile = str(probe(output)["streams"][0].get("profile", "?"))
    return Measure(preset, seconds, cpu_seconds, output.stat().st_size, profile, ssim, psnr)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(measures: Sequence[Measure]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| preset | wall s | CPU s | size MiB | profile | SSIM | SSIM dB | PSNR dB |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for m in measures:
        lines.append(
            f"| {m.preset} | {m.seconds:.2f} | {m.cpu_seconds:.2f} | "
            f"{m.size_bytes / 1024 / 1024:.2f} | {m.profile} | "
            f"{m.ssim:.5f} | {m.ssim_db:.2f} | {m.psnr:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run every preset, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF)
    parser.add_argument("--grain", type=int, default=GRAIN, help="film grain strength, 0-100")
    parser.add_argument("--repeat", type=int, default=3, help="encodes per preset (fastest kept)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mediaprep-presets-") as scratch:
        work = Path(scratch)
        reference = work / "reference.mkv"
        make_reference(reference, args.seconds, args.grain)
        measures = [
            measure(reference, work, preset, args.crf, args.repeat) for preset in args.presets
        ]
    print(f"{args.seconds:g} s 1920 × 1080 {FRAME_RATE} fps, grain {args.grain}, CRF {args.crf}")
    print(table(measures))


if __name__ == "__main__":
    main()
