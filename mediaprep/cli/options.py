"""Options shared by several commands: the element's description and how files are fixed.

Each decorator adds its options and hands the command one object instead of a dozen
parameters: ``element_args`` (:class:`ElementArgs`) and ``fix_options`` (:class:`FixOptions`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from .. import spec
from ..errors import UsageError
from ..fixers.plan import (
    DEFAULT_CRF,
    DEFAULT_PRESET,
    X264_PRESETS,
    Extend,
    Fit,
    FixOptions,
    Orientation,
)
from ..inspectors import Element, is_url

F = TypeVar("F", bound=Callable[..., Any])


ELEMENT_FIELDS = (
    "name",
    "description",
    "frontal",
    "refers",
    "videos",
    "tags",
    "voice_id",
    "callback_url",
)


@dataclass(frozen=True)
class ElementArgs:
    """The element options as given on the command line."""

    name: str | None
    description: str | None
    frontal: str | None
    refers: tuple[str, ...]
    videos: tuple[str, ...]
    tags: tuple[str, ...]
    voice_id: str | None
    callback_url: str | None

    @property
    def media(self) -> tuple[str, ...]:
        """Every media path or URL given."""
        return ((self.frontal,) if self.frontal else ()) + self.refers + self.videos

    def build(self) -> Element:
        """The Element these options describe.

        Raises:
            click.UsageError: images and a video are mixed, or no media is given.
        """
        if not self.media:
            raise click.UsageError("give the element's media: --frontal and --refer, or --video")
        for media in self.media:
            if not is_url(media) and not Path(media).exists():
                raise click.UsageError(f"{media}: no such file or directory")
        try:
            return Element(
                name=self.name or "",
                description=self.description or "",
                frontal=self.frontal,
                refers=self.refers,
                videos=self.videos,
                tags=self.tags,
                voice_id=self.voice_id,
                callback_url=self.callback_url,
            )
        except UsageError as exc:
            raise click.UsageError(str(exc)) from exc


def element_or_paths(
    as_element: bool, element_args: ElementArgs, paths: tuple[str, ...]
) -> Element | None:
    """The element with ``--element`` (then no paths may be given), else None (then some must).

    Raises:
        click.UsageError: paths with ``--element``, none without it, or bad element options.
    """
    if as_element:
        if paths:
            raise click.UsageError("with --element, give the media with --frontal/--refer/--video")
        return element_args.build()
    if not paths:
        raise click.UsageError("give at least one file, folder or URL (or --element)")
    return None


ELEMENT_OPTIONS = [
    click.option("--name", help=f"Element name (1-{spec.NAME_MAX_CHARS} characters)."),
    click.option(
        "--description",
        help=f"Element description (1-{spec.DESCRIPTION_MAX_CHARS} characters).",
    ),
    click.option("--frontal", metavar="PATH|URL", help="Frontal reference image."),
    click.option(
        "--refer",
        "refers",
        multiple=True,
        metavar="PATH|URL",
        help=f"Another reference image ({spec.REFER_IMAGES_MIN}-{spec.REFER_IMAGES_MAX} of "
        "them); repeat the option.",
    ),
    click.option("--video", "videos", multiple=True, metavar="PATH|URL", help="Reference video."),
    click.option(
        "--tag",
        "tags",
        multiple=True,
        metavar="TAG",
        help="Tag id or English name (o_102, character); repeat the option.",
    ),
    click.option("--voice-id", help="Voice to bind (video elements only)."),
    click.option("--callback-url", help="URL the service calls when the task ends."),
]


FIX_FIELDS = (
    "fit",
    "pad_color",
    "flatten",
    "min_side",
    "keep_metadata",
    "orientation",
    "preset",
    "crf",
    "start",
    "extend",
    "mute",
)


FIX_OPTIONS = [
    click.option(
        "--fit",
        type=click.Choice(get_args(Fit)),
        default="pad",
        show_default=True,
        help="Reach the allowed shape by padding, cropping, or padding with a blurred copy.",
    ),
    click.option(
        "--pad-color",
        default=None,
        help="Padding colour (name or #hex), or 'blur'.  [default: white for images, black "
        "for videos]",
    ),
    click.option("--flatten", metavar="COLOR", help="Put transparency on COLOR; write JPEG."),
    click.option(
        "--min-side",
        type=click.IntRange(min=spec.IMAGE_MIN_SIDE),
        default=spec.IMAGE_MIN_SIDE,
        show_default=True,
        help="Upscale small images so the short side is this many pixels.",
    ),
    click.option(
        "--keep-metadata",
        is_flag=True,
        help="Keep metadata: EXIF/GPS/XMP in images, tags (location too) in videos.",
    ),
    click.option(
        "--orientation",
        type=click.Choice(get_args(Orientation)),
        default="auto",
        show_default=True,
        help=f"Video output: {spec.frame_text(spec.VIDEO_LANDSCAPE)} (landscape) or "
        f"{spec.frame_text(spec.VIDEO_PORTRAIT)} (portrait).",
    ),
    click.option(
        "--preset",
        type=click.Choice(X264_PRESETS),
        default=DEFAULT_PRESET,
        show_default=True,
        help="x264 preset for video transcodes.",
    ),
    click.option(
        "--crf",
        type=click.IntRange(0, 51),
        default=DEFAULT_CRF,
        show_default=True,
        help="x264 CRF (lower is better and larger).",
    ),
    click.option(
        "--start",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="Where to start keeping a long video, in seconds.",
    ),
    click.option(
        "--extend",
        type=click.Choice(get_args(Extend)),
        default=None,
        help=f"Lengthen a video shorter than {spec.VIDEO_MIN_SECONDS:g} s by looping it or "
        "holding its last frame.",
    ),
    click.option("--mute", is_flag=True, help="Drop video audio (no voice customization)."),
]


def fix_options_from(
    fit: str,
    pad_color: str | None,
    flatten: str | None,
    min_side: int,
    keep_metadata: bool,
    orientation: str,
    preset: str,
    crf: int,
    start: float,
    extend: str | None,
    mute: bool,
) -> FixOptions:
    """Build FixOptions from the fix options.

    Raises:
        click.BadParameter: a value FixOptions refuses.
    """
    # One --pad-color serves both kinds; left out, images pad white and videos black.
    colors = {"pad_color": pad_color, "video_pad_color": pad_color} if pad_color else {}
    try:
        return FixOptions(
            fit=fit,  # type: ignore[arg-type]
            **colors,
            flatten=flatten,
            min_side=min_side,
            keep_metadata=keep_metadata,
            orientation=orientation,  # type: ignore[arg-type]
            preset=preset,
            crf=crf,
            start=start,
            extend=extend,  # type: ignore[arg-type]
            mute=mute,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _option_group(
    options: list[Callable[[Any], Any]],
    fields: tuple[str, ...],
    keyword: str,
    build: Callable[..., Any],
) -> Callable[[F], F]:
    """A decorator adding ``options`` that hands the command ``build(**their values)`` as one
    ``keyword`` argument instead of one parameter per option."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def grouped(*args: Any, **kwargs: Any) -> Any:
            values = {field: kwargs.pop(field) for field in fields}
            return command(*args, **{keyword: build(**values)}, **kwargs)

        wrapped: Any = grouped
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[no-any-return]

    return decorate


#: The element options (``--name``, ``--frontal``, ``--video``, ``--tag``...), handed to the
#: command as ``element_args: ElementArgs``.
element_options = _option_group(ELEMENT_OPTIONS, ELEMENT_FIELDS, "element_args", ElementArgs)
#: How files are repaired (``--fit``, ``--mute``...), handed to the command as
#: ``fix_options: FixOptions``.
fix_options = _option_group(FIX_OPTIONS, FIX_FIELDS, "fix_options", fix_options_from)
