"""matplotlib, imported lazily (the ``plots`` extra), with a headless backend, and the text style
for figures whose labels are a model's tokens: Gemma's vocabulary is multilingual, so Latin is
drawn in matplotlib's default font and CJK (and other scripts) fall back to an installed font
that has them."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from saescope.errors import SaescopeError

logger = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "WenQuanYi Zen Hei",  # Debian: fonts-wqy-zenhei (7.5 MB; the README's install notes)
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
)
"""Fonts with CJK glyphs, in order of preference; the first installed one is a fallback."""

OTHER_SCRIPT_FONTS = tuple(
    f"Noto Sans {script}"  # Debian: fonts-noto-core
    for script in (
        "Thai", "Devanagari", "Bengali", "Tamil", "Telugu", "Kannada", "Malayalam", "Gujarati",
        "Gurmukhi", "Sinhala", "Khmer", "Lao", "Myanmar", "Ethiopic",
    )
)  # fmt: skip
"""Fallbacks for scripts DejaVu Sans lacks (it has Latin, Greek, Cyrillic, Arabic, Hebrew,
Armenian, Georgian), used where installed."""

_FONT_FILES = frozenset(
    ["notosanscjk-regular", "wqy-zenhei", "wqy-microhei", "droidsansfallbackfull"]
    + [name.replace(" ", "").lower() + "-regular" for name in OTHER_SCRIPT_FONTS]
)
"""File names (lower case, no extension) of the fonts above, to register when matplotlib's
font cache predates them."""


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise SaescopeError("plots need matplotlib: pip install 'saescope[plots]'") from err
    return plt


@contextmanager
def token_text() -> Iterator[None]:
    """Draw inside this block with the fallback font list: the default sans-serif font first
    (Latin looks as everywhere else), then the installed CJK and other-script fonts. Glyphs
    that no installed font has are drawn as boxes without a warning per glyph; a missing CJK
    font is logged once per process. Scoped: matplotlib's settings and the caller's warning
    filters are as they were afterwards."""
    import matplotlib

    families = ["sans-serif", *fallback_fonts()]
    notice = _DropWeightNotice()
    font_log = logging.getLogger("matplotlib.font_manager")
    font_log.addFilter(notice)
    try:
        with matplotlib.rc_context({"font.family": families}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            yield
    finally:
        font_log.removeFilter(notice)


@functools.cache
def fallback_fonts() -> tuple[str, ...]:
    """The installed fonts of ``CJK_FONTS`` (first one only) and ``OTHER_SCRIPT_FONTS``."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    if not names.issuperset(OTHER_SCRIPT_FONTS) or not names.intersection(CJK_FONTS):
        names |= _register_uncached_fonts(font_manager, names)
    cjk = [name for name in CJK_FONTS if name in names][:1]
    if not cjk:
        logger.warning(
            "no CJK font found (looked for %s): CJK tokens in plots are drawn as empty boxes; "
            "install one, e.g. apt-get install fonts-wqy-zenhei",
            ", ".join(CJK_FONTS),
        )
    return (*cjk, *(name for name in OTHER_SCRIPT_FONTS if name in names))


def _register_uncached_fonts(font_manager: Any, known: set[str]) -> set[str]:
    """matplotlib lists fonts from a cache built on its first run and never refreshed, so a font
    package installed after that is invisible to it: add the files of the fonts above that it
    lacks (the list only grows; no setting changes). Returns the family names added."""
    added = set()
    for path in font_manager.findSystemFonts():
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
        if stem not in _FONT_FILES:
            continue
        try:
            name = font_manager.FontProperties(fname=path).get_name()
            if name not in known:
                font_manager.fontManager.addfont(path)
                added.add(name)
        except (OSError, RuntimeError):  # an unreadable file: skip it, others may do
            continue
    return added


class _DropWeightNotice(logging.Filter):
    """matplotlib logs a warning when a fallback font has no exact "normal" weight (WenQuanYi
    Zen Hei is 500); the font is right all the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("findfont: Failed to find font weight")
