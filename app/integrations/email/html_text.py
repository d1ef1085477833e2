"""HTML mail reduced to plain text that is safe to show and to give a model.

Mail HTML is hostile by default: scripts, tracking pixels, and text hidden
from the reader (``display:none``, zero-size fonts, ``aria-hidden``) that a
language model would still read and might obey. :func:`html_to_text` keeps
only what a person sees: visible text, link targets where they differ from
the link text (never ``javascript:``), short image alt text, and the block
structure as line breaks. Zero-width and bidi-control characters are
removed. It never raises and never runs longer than the input warrants
(``html.parser`` is linear; the input is capped first).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_INPUT_CHARS = 5_000_000

_SKIP = frozenset(
    {
        "script",
        "style",
        "head",
        "title",
        "template",
        "noscript",
        "svg",
        "math",
        "iframe",
        "object",
        "embed",
        "frameset",
        "select",
        "textarea",
        "button",
    }
)
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "aside",
        "nav",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "tr",
        "blockquote",
        "pre",
        "address",
        "figure",
        "figcaption",
        "dl",
        "dt",
        "dd",
        "form",
        "fieldset",
        "center",
        "hr",
    }
)
_HIDING_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(?:\.0+)?\s*(?:;|$|!)"
    r"|font-size\s*:\s*0(?:\.0+)?\s*(?:px|pt|em|rem|%)?\s*(?:;|$|!)"
    r"|(?:max-)?(?:height|width)\s*:\s*0(?:px)?\s*(?:;|$|!)|mso-hide\s*:\s*all"
    r"|text-indent\s*:\s*-\d{3,}|(?:left|top)\s*:\s*-\d{3,}px",
    re.IGNORECASE,
)
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_TABS = re.compile(r" *\t[\t ]*")
_SAFE_LINK = re.compile(r"(?:https?://|mailto:)[^\s<>\"']{1,500}$", re.IGNORECASE)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self._hidden_depth = 0
        self._links: list[tuple[str | None, int]] = []  # (safe href, len(out) at start)

    # -- tags ------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag in _VOID:
            self._void(tag, values)
            return
        hides = tag in _SKIP or _hides(values)
        self._stack.append((tag, hides))
        if hides:
            self._hidden_depth += 1
        if self._hidden_depth:
            return
        if tag in _BLOCK:
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append("\t")
        elif tag == "a":
            self._links.append((_safe_href(values.get("href", "")), len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            self._void(tag, {n.lower(): (v or "") for n, v in attrs})

    def handle_endtag(self, tag: str) -> None:
        if not any(open_tag == tag for open_tag, _ in self._stack):
            return  # a stray end tag: ignore
        while self._stack:
            open_tag, hides = self._stack.pop()
            if hides:
                self._hidden_depth -= 1
            elif not self._hidden_depth:
                self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag in _BLOCK or tag == "li":
            self.out.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            text = "".join(self.out[start:]).strip()
            if href and href.removeprefix("mailto:") not in text and href != text:
                self.out.append(f" ({href})")

    def _void(self, tag: str, values: dict[str, str]) -> None:
        if self._hidden_depth or _hides(values):
            return
        if tag in ("br", "hr"):
            self.out.append("\n")
        elif tag == "img":
            alt = " ".join(values.get("alt", "").split())
            if alt and len(alt) <= 100 and not _tiny(values):
                self.out.append(f"[image: {alt}]")

    # -- text ------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.out.append(data)


def _hides(values: dict[str, str]) -> bool:
    if "hidden" in values or values.get("aria-hidden", "").strip().lower() == "true":
        return True
    return bool(_HIDING_STYLE.search(values.get("style", "")))


def _tiny(values: dict[str, str]) -> bool:
    """A tracking pixel: 0-2 pixels in either direction."""
    for key in ("width", "height"):
        digits = re.match(r"\s*(\d+)", values.get(key, ""))
        if digits and int(digits.group(1)) <= 2:
            return True
    return False


def _safe_href(href: str) -> str | None:
    cleaned = _INVISIBLE.sub("", href).strip()
    return cleaned if _SAFE_LINK.match(cleaned) else None


def tidy(text: str, max_chars: int) -> str:
    """Invisible characters out, spaces collapsed per line, at most one blank line."""
    text = _CONTROL.sub("", _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n")))
    lines = [_TABS.sub("\t", _SPACES.sub(" ", line)).strip() for line in text.split("\n")]
    collapsed = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return collapsed.strip()[:max_chars]


def html_to_text(html: str, max_chars: int = 1_000_000) -> str:
    """The visible text of ``html`` (see the module docstring); never raises."""
    reader = _Reader()
    try:
        reader.feed(html[:MAX_INPUT_CHARS])
        reader.close()
    except Exception:  # html.parser has raised on odd markup in some versions: keep what we have
        pass
    return tidy("".join(reader.out), max_chars)
