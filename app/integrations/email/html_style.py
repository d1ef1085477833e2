"""Is an element's text visible? Inline styles and attributes, read cheaply.

Mail clients ignore most stylesheets, so senders who hide text (preheaders,
and prompt injections aimed at a model reading the mail) use inline styles:
``display:none``, ``visibility:hidden``, ``opacity:0``, ``font-size:0``,
zero height with ``overflow:hidden``, ``mso-hide:all``, text pushed far off
screen, or text in the colour of its background. Those are recognised here;
class-based rules in a ``<style>`` block are not (the block itself is
dropped, and no cascade is computed).
"""

from __future__ import annotations

import re

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
TRANSPARENT: Color = (-1, -1, -1)
_SAME_COLOR = 16  # channels this close are the same colour to a reader

_NAMED = {
    "white": WHITE,
    "black": (0, 0, 0),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "silver": (192, 192, 192),
    "navy": (0, 0, 128),
    "snow": (255, 250, 250),
    "ivory": (255, 255, 240),
    "whitesmoke": (245, 245, 245),
    "transparent": TRANSPARENT,
}
_MAX_STYLE = 4096
_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)
_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})\b")
_CHANNEL = r"([\d.]+%?)"
_RGB = re.compile(
    rf"rgba?\(\s*{_CHANNEL}[\s,]+{_CHANNEL}[\s,]+{_CHANNEL}(?:[\s,/]+{_CHANNEL})?\s*\)"
)
_SCALE_ZERO = re.compile(r"scale[xy]?\(\s*0*\.?0*\s*[,)]")
_LENGTH = re.compile(r"(-?[\d.]+)\s*(px|pt|em|rem|%|)?")


def declarations(style: str) -> dict[str, str]:
    """``{"display": "none", ...}`` from an inline style; the last one wins."""
    if not style:
        return {}
    text = _COMMENT.sub("", style[:_MAX_STYLE].lower())
    found: dict[str, str] = {}
    for item in text.split(";")[:64]:
        name, colon, value = item.partition(":")
        if colon:
            found[name.strip()] = value.replace("!important", "").strip()
    return found


def parse_color(value: str) -> Color | None:
    """An RGB triple (or :data:`TRANSPARENT`) from a CSS/HTML colour; None if unknown."""
    value = value.strip().lower()
    if value in _NAMED:
        return _NAMED[value]
    if hex_match := _HEX.match(value) or _HEX.match("#" + value):
        return _hex_color(hex_match.group(1))
    if rgb := _RGB.match(value):
        if rgb.group(4) is not None and _number(rgb.group(4), 1.0) == 0:
            return TRANSPARENT
        red, green, blue = (round(_number(rgb.group(i), 255.0)) for i in (1, 2, 3))
        return (red, green, blue)
    return None


def _hex_color(digits: str) -> Color:
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    if len(digits) == 8 and digits[6:] == "00":
        return TRANSPARENT
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def background(value: str) -> Color | None:
    """The colour in a ``background`` shorthand (``#fff url(x.png) no-repeat``)."""
    for word in value.replace(",", " ").split():
        color = parse_color(word)
        if color is not None:
            return color
    return None


def same_color(text: Color | None, back: Color | None) -> bool:
    if text is None or back is None:
        return False
    if text == TRANSPARENT:
        return True
    if back == TRANSPARENT:
        return False
    return all(abs(a - b) <= _SAME_COLOR for a, b in zip(text, back, strict=True))


def style_hides(style: dict[str, str]) -> bool:
    """Whether these declarations make an element's content invisible."""
    if not style:
        return False
    clipped = style.get("overflow") == "hidden" or "clip" in style
    return (
        style.get("display") == "none"
        or style.get("visibility") in ("hidden", "collapse")
        or style.get("mso-hide") == "all"
        or _number(style.get("opacity", "1"), 1.0, default=1.0) < 0.1
        or _tiny_length(style.get("font-size", ""), limit=1.5)
        or bool(_SCALE_ZERO.search(style.get("transform", "")))
        or (clipped and any(_tiny_length(style.get(key, ""), 1.5) for key in _BOX_KEYS))
        or any(_far_off(style[key]) for key in _OFFSET_KEYS if key in style)
    )


_BOX_KEYS = ("height", "max-height", "width", "max-width")
_OFFSET_KEYS = ("text-indent", "left", "top", "margin-left")


def pixels(value: str) -> float | None:
    """A length in CSS pixels (``2``, ``2px``, ``1.5pt``), or None if not one."""
    match = _LENGTH.match(value.strip())
    if match is None:
        return None
    try:
        number = float(match.group(1))
    except ValueError:
        return None
    unit = match.group(2) or "px"
    return number * {"px": 1.0, "pt": 4 / 3, "em": 16.0, "rem": 16.0, "%": 0.16}[unit]


def _tiny_length(value: str, limit: float = 0.5) -> bool:
    size = pixels(value)
    return size is not None and size < limit


def _far_off(value: str) -> bool:
    size = pixels(value)
    return size is not None and size <= -500


def _number(text: str, scale: float, default: float = 0.0) -> float:
    """``"50%"`` -> ``scale / 2``; ``"0.3"`` -> ``0.3``; junk -> ``default``."""
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100 * scale
        return float(text)
    except ValueError:
        return default
