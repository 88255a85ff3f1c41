"""Plan, then act: from a file's findings the smallest set of steps, then a checked output."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from PIL import ImageColor

from .. import spec
from ..errors import MediaprepError
from ..ffmpeg import Progress
from ..findings import FileReport, Finding, has_errors
from ..inspectors.file import inspect_file, inspect_local
from .output import atomic_output, commit, copy_exact, unique_output_path

if TYPE_CHECKING:
    from .image import ImageJob
    from .video import VideoJob

Fit = Literal["pad", "crop", "blur"]
Orientation = Literal["auto", "landscape", "portrait"]
Extend = Literal["loop", "freeze"]

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
#: What the user can do about a finding no step repairs, by finding code. ``{megapixels}`` is
#: filled in with the decoder's pixel limit.
ADVICE = {
    "unreadable": "check that it opens in a viewer or player and export it again as JPEG, PNG "
    "or MP4; an empty or damaged file needs another copy",
    "url_unreachable": "check that the URL opens in a browser without logging in, or download "
    "the file and give its path",
    "file_too_large": "download it and run mediaprep fix on the file",
    "decompression_bomb": "if the picture is genuine, reduce it in an image editor to under "
    "{megapixels} megapixels and run fix again",
}
#: The pad colour that asks for a blurred extension of the picture instead of a plain colour.
BLUR = "blur"
DEFAULT_CRF = 18
#: x264 preset used when none is given; chosen by measurement (see README, "fix decisions"):
#: ``python -m benchmarks.presets`` shows the best SSIM per CPU second of the presets that keep
#: High profile (ultrafast drops to Baseline) and small files (superfast's are 1.5-4× bigger).
DEFAULT_PRESET = "veryfast"


@dataclass(frozen=True)
class FixOptions:
    """How ``fix`` repairs files. Every field has the default the CLI shows.

    Raises:
        ValueError: a value is out of range (``min_side`` below the minimum side, ``crf``
            outside 0-51, a negative ``start``), or not a known choice, x264 preset or colour.
    """

    fit: Fit = "pad"
    #: Colour of padding ("white", "#202020", ...) or "blur" for a blurred extension.
    pad_color: str = "white"
    #: Colour of the bars around a padded video ("black", "#202020", ...) or "blur". Videos get
    #: their own default: black bars suit moving pictures, white suits product shots.
    video_pad_color: str = "black"
    #: Put transparency on this colour and write JPEG; None keeps transparency (PNG).
    flatten: str | None = None
    min_side: int = spec.IMAGE_MIN_SIDE
    keep_metadata: bool = False
    orientation: Orientation = "auto"
    preset: str = DEFAULT_PRESET
    crf: int = DEFAULT_CRF
    start: float = 0.0
    extend: Extend | None = None
    mute: bool = False

    def __post_init__(self) -> None:
        if self.min_side < spec.IMAGE_MIN_SIDE:
            raise ValueError(
                f"min_side must be at least {spec.IMAGE_MIN_SIDE}, not {self.min_side}"
            )
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, not {self.crf}")
        if self.start < 0:
            raise ValueError(f"start must not be negative, not {self.start:g}")
        _check_choice("fit", self.fit, get_args(Fit))
        _check_choice("orientation", self.orientation, get_args(Orientation))
        if self.extend is not None:
            _check_choice("extend", self.extend, get_args(Extend))
        _check_choice("x264 preset", self.preset, X264_PRESETS)
        _check_colour("pad colour", self.pad_color, allow_blur=True)
        _check_colour("video pad colour", self.video_pad_color, allow_blur=True)
        if self.flatten is not None:
            _check_colour("flatten colour", self.flatten, allow_blur=False)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; use one of: {', '.join(choices)}")


def is_blur(value: str) -> bool:
    """Whether a pad colour asks for a blurred fill: ``"blur"`` in any case."""
    return value.lower() == BLUR


def parse_colour(value: str) -> tuple[int, int, int]:
    """A colour name (any case) or hex code as opaque RGB; an alpha part is ignored.

    Raises:
        ValueError: ``value`` is not a colour (``"blur"`` is not one either).
    """
    try:
        red, green, blue, *_ = ImageColor.getrgb(value)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a colour: use a name such as 'white' or a hex code such as '#202020'"
        ) from exc
    return red, green, blue


def _check_colour(what: str, value: str, *, allow_blur: bool) -> None:
    if allow_blur and is_blur(value):
        return
    try:
        parse_colour(value)
    except ValueError as exc:
        extra = ", or 'blur'" if allow_blur else ""
        raise ValueError(f"{what} {exc}{extra}") from exc


@dataclass(frozen=True)
class Step:
    """One repair step: a short action name and what exactly it does to this file."""

    action: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict."""
        return {"action": self.action, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.action}: {self.detail}"


@dataclass(frozen=True)
class FixPlan:
    """What fix will do to one file.

    ``steps`` empty and ``unfixable`` empty means the file passes and is copied byte for byte.
    ``unfixable`` holds the error findings no step can repair (with a message saying what the
    user can do); a plan with any of them writes nothing. ``suffix`` is the output's extension.
    ``job`` is what the kind's writer follows; ``encoded`` holds the output's bytes when
    planning made them already (an image stripped of its metadata, an optimised PNG), and the
    writer then writes them as they are. ``warnings`` are what the user should know about the
    planned result.
    """

    report: FileReport
    steps: tuple[Step, ...] = ()
    unfixable: tuple[Finding, ...] = ()
    suffix: str = ""
    job: ImageJob | VideoJob | None = None
    encoded: bytes | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def copy_only(self) -> bool:
        """Whether the file already passes and is copied unchanged."""
        return not self.steps and not self.unfixable

    @property
    def can_fix(self) -> bool:
        """Whether the plan can produce an output."""
        return not self.unfixable


@dataclass(frozen=True)
class FixResult:
    """What fix did to one file: the plan's steps, the output, findings before and after."""

    path: str
    output: str | None
    steps: tuple[Step, ...]
    before: tuple[Finding, ...]
    after: tuple[Finding, ...]
    warnings: tuple[str, ...] = ()
    error: str | None = None
    #: The output's own inspection (under its final name), so callers need not inspect again.
    output_report: FileReport | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when an output was written and passes every check."""
        return self.output is not None and not has_errors(self.after)

    def to_dict(self) -> dict[str, Any]:
        """The file as ``fix --json`` shows it."""
        return {
            "path": self.path,
            "output": self.output,
            "ok": self.ok,
            "steps": [step.to_dict() for step in self.steps],
            "before": [finding.to_dict() for finding in self.before],
            "after": [finding.to_dict() for finding in self.after],
            "warnings": list(self.warnings),
            "error": self.error,
        }


def plan_fix(report: FileReport, options: FixOptions | None = None) -> FixPlan:
    """The smallest set of steps that makes the file pass, from its report.

    Raises:
        ValueError: an option is not usable for this file (for example a bad colour).
    """
    from .image import plan_image
    from .video import plan_video

    options = options or FixOptions()
    if report.kind == "image":
        return plan_image(report, options)
    if report.kind == "video" and report.info is not None:
        return plan_video(report, options)
    errors = [f for f in report.findings if f.is_error] or [
        Finding("unreadable", "error", "not an image or video mediaprep can read")
    ]
    unfixable = tuple(
        Finding(f.code, "error", f"{f.message}; {ADVICE[f.code]}") if f.code in ADVICE else f
        for f in errors
    )
    return FixPlan(report, unfixable=unfixable, suffix=Path(report.path).suffix)


ProgressCallback = Callable[[Progress], None]


def _write(
    plan: FixPlan, source: Path, temp: Path, options: FixOptions, warnings: list[str]
) -> Iterator[Progress]:
    from .image import write_image
    from .video import write_video

    if plan.copy_only:
        copy_exact(source, temp)
    elif plan.report.kind == "image":
        write_image(source, plan, temp, options, warnings)
    else:
        yield from write_video(source, plan, temp, options, warnings)


def fix_file(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: FixOptions | None = None,
    *,
    report: FileReport | None = None,
    plan: FixPlan | None = None,
    on_progress: ProgressCallback | None = None,
    taken: set[Path] | None = None,
) -> FixResult:
    """Inspect, plan, write a compliant copy into ``out_dir`` and re-inspect it.

    The input is never modified. The output is written under a temporary name, re-inspected with
    exactly the checks of ``check``, and renamed only when it passes; otherwise it is removed and
    the remaining findings are returned in ``after``.

    Args:
        path: the file (or URL) to fix.
        out_dir: an existing folder for the output.
        options: how to fix; the defaults when None.
        report: the file's report when already inspected (saves a second inspection).
        plan: the plan already made from ``report`` with these ``options`` (saves planning
            again); its report is used when ``report`` is not given.
        on_progress: called with ffmpeg progress during video transcodes.
        taken: output paths already claimed in this run (for unique names).

    Raises:
        ToolNotFoundError: ffmpeg/ffprobe is needed and missing.
        ValueError: ``plan`` was made from another report than ``report``.
    """
    options = options or FixOptions()
    if plan is not None:
        if report is not None and plan.report is not report:
            raise ValueError(f"{path}: the plan given was made from another report")
        report = plan.report
    report = report or inspect_file(path, download_dir=out_dir)
    plan = plan or plan_fix(report, options)
    if not plan.can_fix:
        return FixResult(report.path, None, plan.steps, report.findings, plan.unfixable)
    source = Path(report.local_path or report.path)
    stem = _output_stem(report.path)
    final = unique_output_path(
        Path(out_dir), stem, plan.suffix, taken if taken is not None else set()
    )
    # What writing found beyond the plan (a downscale to fit, a retry at a higher CRF).
    written: list[str] = []
    try:
        with atomic_output(final) as temp:
            for progress in _write(plan, source, temp, options, written):
                if on_progress is not None:
                    on_progress(progress)
            after = inspect_local(temp)
            if not after.ok:
                temp.unlink(missing_ok=True)
                return FixResult(
                    report.path,
                    None,
                    plan.steps,
                    report.findings,
                    after.findings,
                    error="the output still fails the checks and was removed",
                )
            commit(temp, final)
    except (MediaprepError, OSError, ValueError) as exc:
        return FixResult(
            report.path, None, plan.steps, report.findings, (), error=str(exc) or repr(exc)
        )
    finally:
        if report.local_path and report.local_path != report.path:
            Path(report.local_path).unlink(missing_ok=True)
    return FixResult(
        report.path,
        str(final),
        plan.steps,
        report.findings,
        after.findings,
        plan.warnings + tuple(written),
        output_report=dataclasses.replace(after, path=str(final), local_path=str(final)),
    )


def _output_stem(path: str) -> str:
    name = Path(path.split("?", 1)[0].rstrip("/")).stem
    return name or "download"
