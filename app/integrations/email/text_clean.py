"""Characters that must not reach the owner's screen or a language model.

Zero-width and bidirectional-control characters hide or reorder text (a file
named ``invoice\u202egpj.exe`` shows as ``invoiceexe.jpg``); Unicode tag
characters and the supplementary variation selectors carry invisible ASCII
("ASCII smuggling" of instructions to a model); control characters other
than newline and tab have no business in mail text.
"""

from __future__ import annotations

import re

# ZWSP/ZWNJ/ZWJ/LRM/RLM, bidi embeddings and overrides, word joiner and
# invisible operators, bidi isolates, BOM, soft hyphen, combining grapheme
# joiner, Arabic letter mark, Hangul fillers, Mongolian vowel separator,
# interlinear annotations, tag characters, supplementary variation selectors.
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\u00ad\u034f\u061c"
    "\u115f\u1160\u3164\uffa0\u180e\ufff9-\ufffb\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
# C0 and C1 controls except tab and newline, lone surrogates, and the line
# and paragraph separators (they are newlines to some renderers).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_SPACE_RUN = re.compile(r"\s+")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def strip_invisible(text: str) -> str:
    """``text`` without zero-width, bidi-control, tag and control characters."""
    return _CONTROL.sub("", _INVISIBLE.sub("", text))


def clean_line(text: str) -> str:
    """One line of header text: no control characters, no CR/LF, single spaces."""
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _SPACE_RUN.sub(" ", text).strip()


def clean_block(text: str) -> str:
    """Body text: ``\\n`` line ends, no invisible characters, at most one blank line."""
    text = _LINE_BREAKS.sub("\n", text)
    text = strip_invisible(text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
