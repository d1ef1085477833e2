"""HTML mail reduced to plain text that is safe to show and to give a model.

Mail HTML is hostile by default: scripts, tracking pixels, and text hidden
from the reader that a language model would still read and might obey.
:func:`html_to_text` keeps what a person sees:

- no ``script``/``style``/``head``/``template``/``noscript`` content, no
  comments; no text hidden by ``hidden``, ``aria-hidden="true"`` or an
  inline style (:mod:`.html_style`: ``display:none``, ``opacity:0``,
  zero font size or box, off-screen, text coloured like its background);
- images only as sensible, visible alt text (tracking pixels dropped);
- link text, then ``[url]`` when the target differs from the text and is
  http(s) or mailto (never ``javascript:`` or ``data:``);
- blocks as line breaks, list items as ``- `` (``1. `` in ordered lists),
  table cells separated by tabs, one row per line;
- entities decoded, whitespace collapsed, zero-width, bidi-control and
  other invisible characters removed, the output capped at ``max_chars``.

Parsing is :class:`html.parser.HTMLParser` behind the linear tokenizer of
:mod:`.html_tokens` (alone, it is quadratic on malformed tags). It never
raises: on an unexpected error the text read so far is returned.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from app.integrations.email import html_style as css
from app.integrations.email.html_tokens import LT, canonical
from app.integrations.email.text_clean import clean_block, strip_invisible

MAX_INPUT_CHARS = 16_000_000  # scanned in C; inline data: images make mail HTML big
MAX_TAGS = 50_000  # tags handed to HTMLParser: ~1 s at worst (a newsletter has ~3,000)
MAX_DEPTH = 512
_SEARCH_DEPTH = 128  # open elements searched for the one an end tag closes (keeps tags O(1))
_FEED_CHARS = 64 * 1024

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
# Content never shown (raw-text elements never get here: see html_tokens.RAW_TEXT).
_SKIP = frozenset({"head", "template", "svg", "math", "object", "frameset", "datalist", "select"})
_HEAD_CONTENT = frozenset({"meta", "link", "base", "template", "style", "script", "title"})
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "dl", "figure", "hr"}
)
_LINE = frozenset(
    {"div", "li", "tr", "dt", "dd", "section", "article", "header", "footer", "main", "aside"}
    | {"nav", "address", "center", "form", "fieldset", "figcaption", "caption", "details"}
    | {"summary", "ul", "ol", "tbody", "thead", "tfoot", "body", "html", "legend", "option"}
)
# HTML's "special" elements (plus svg and math): an end tag for an inline or
# unknown element never closes one of these; implied ends stop at them.
_SPECIAL_NAMES = (
    "address applet area article aside base basefont bgsound blockquote body br button "
    "caption center col colgroup dd details dir div dl dt embed fieldset figcaption figure "
    "footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img input "
    "keygen li link listing main marquee menu meta nav noembed noframes noscript object ol p "
    "param plaintext pre script search section select source style summary table tbody td "
    "template textarea tfoot th thead title tr track ul wbr xmp svg math"
)
_SPECIAL = frozenset(_SPECIAL_NAMES.split())
_SCOPE = frozenset(
    {"applet", "caption", "html", "table", "td", "th", "marquee", "object", "template"}
    | {"svg", "math"}
)
_TABLE_SCOPE = frozenset({"html", "table", "template"})
_TABLE_PARTS = frozenset({"table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption"})
_FORMATTING = frozenset(
    {"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong"}
    | {"tt", "u"}
)
# Start tags that end an open element (HTML's implied end tags), and where the
# search for it stops. Popping more than a browser would could reveal hidden
# text (a <template>'s content, say), so each stop set is the HTML one or wider.
_CLOSES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), _SPECIAL - {"address", "div", "p", "li"}),
    "dt": (frozenset({"dt", "dd"}), _SPECIAL - {"address", "div", "p", "dt", "dd"}),
    "dd": (frozenset({"dt", "dd"}), _SPECIAL - {"address", "div", "p", "dt", "dd"}),
    "td": (frozenset({"td", "th"}), _TABLE_SCOPE),
    "th": (frozenset({"td", "th"}), _TABLE_SCOPE),
    "tr": (frozenset({"tr"}), _TABLE_SCOPE | {"tbody", "thead", "tfoot"}),
}
_IGNORED_END_TAGS = frozenset({"body", "html"})  # a browser keeps both open
_SPACE = re.compile(r"\s+")
_SAFE_SCHEME = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]+")
_FILE_NAME = re.compile(r"[\w.-]+\.(?:png|jpe?g|gif|bmp|webp|svg|ico|tiff?)", re.IGNORECASE)


class _Frame:
    """An open element: how it hides, colours and structures what is inside it."""

    __slots__ = ("bg", "cells", "color", "hidden", "items", "link_start", "ordered", "tag")

    def __init__(
        self, tag: str, hidden: bool, color: css.Color | None, bg: css.Color | None
    ) -> None:
        self.tag = tag
        self.hidden = hidden
        self.color = color
        self.bg = bg
        self.cells = 0  # cells seen in this row (tr)
        self.items = 0  # items seen in this list (ol/ul)
        self.ordered = tag == "ol"
        self.link_start = -1  # for <a>: index into the output where its text began


_ROOT = _Frame("#root", hidden=False, color=None, bg=css.WHITE)


class _Reader(HTMLParser):
    def __init__(self, max_chars: int) -> None:
        super().__init__(convert_charrefs=True)
        self.max_chars = max_chars
        self.out: list[str] = []
        self.length = 0
        self.full = False
        self._stack: list[_Frame] = []
        self._open: dict[str, int] = {}  # open elements by name
        self._hrefs: list[str | None] = []  # safe target of each open <a>
        self._breaks = 0  # newlines owed before the next text
        self._space = False  # a space owed before the next text
        self._tab = False  # a cell separator owed
        self._prefix = ""  # a list marker owed
        self._line_start = True
        self._drop_rest = False  # the stack overflowed under a hiding element

    # -- structure ---------------------------------------------------------
    @property
    def top(self) -> _Frame:
        return self._stack[-1] if self._stack else _ROOT

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self._implied_ends(tag)
        if tag in _VOID:
            self._void(tag, values)
            return
        frame = self._frame(tag, values)
        if len(self._stack) >= MAX_DEPTH:
            self._drop_rest = self._drop_rest or frame.hidden
            return
        self._stack.append(frame)
        self._open[tag] = self._open.get(tag, 0) + 1
        self._opened(frame, values)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)  # "<div/>" opens a div in HTML

    def handle_endtag(self, tag: str) -> None:
        if not self._open.get(tag) or tag in _IGNORED_END_TAGS:
            if tag in ("br", "p"):  # "</br>" is a line break, a stray "</p>" a paragraph
                self._break(1 if tag == "br" else 2, add=tag == "br")
            return
        if tag in _TABLE_PARTS:
            self._close_nearest(frozenset({tag}), stops=_TABLE_SCOPE)
        elif tag in _SPECIAL:
            self._close_nearest(frozenset({tag}), stops=_SCOPE)
        else:  # an inline or unknown element: never closed across a special one
            self._close_nearest(frozenset({tag}), stops=_SPECIAL)

    def _close_nearest(
        self,
        targets: frozenset[str],
        stops: frozenset[str] = frozenset(),
        through: frozenset[str] | None = None,
    ) -> None:
        """Pop up to the nearest open element in ``targets``, unless an element in
        ``stops`` (or, given ``through``, one not in it) is above it, or it is
        deeper than a bounded search: then nothing is closed."""
        for above, frame in enumerate(reversed(self._stack[-_SEARCH_DEPTH:])):
            if frame.tag in targets:
                for _ in range(above + 1):
                    popped = self._stack.pop()
                    self._open[popped.tag] -= 1
                    self._closed(popped)
                return
            if frame.tag in stops or (through is not None and frame.tag not in through):
                return

    def _implied_ends(self, tag: str) -> None:
        if self._open.get("head") and tag not in _HEAD_CONTENT:
            self.handle_endtag("head")  # body content closes an unclosed <head>
        top = self._stack[-1].tag if self._stack else ""
        if (tag in _PARAGRAPH or tag in _LINE) and top == "p":
            self.handle_endtag("p")
        elif tag == "option" and top == "option":
            self.handle_endtag("option")
        elif tag == "a" and self._open.get("a"):  # only through <b>, <font>...
            self._close_nearest(frozenset({"a"}), through=_FORMATTING)
        elif tag in _CLOSES:
            targets, stops = _CLOSES[tag]
            if any(self._open.get(target) for target in targets):
                self._close_nearest(targets, stops)

    def _frame(self, tag: str, values: dict[str, str]) -> _Frame:
        parent = self.top
        if not values or parent.hidden:  # most tags: nothing to read
            return _Frame(tag, parent.hidden or _hides(tag, {}, {}), parent.color, parent.bg)
        style = css.declarations(values.get("style", ""))
        color = css.parse_color(style.get("color") or values.get("color", "")) or parent.color
        bg_value = style.get("background-color") or style.get("background") or values.get("bgcolor")
        bg = css.background(bg_value) if bg_value else parent.bg
        hidden = parent.hidden or _hides(tag, values, style)
        return _Frame(tag, hidden, color, bg)

    def _opened(self, frame: _Frame, values: dict[str, str]) -> None:
        tag = frame.tag
        if frame.hidden:
            return
        if tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
        if tag == "li":
            self._list_item()
        elif tag in ("td", "th"):
            row = self._nearest(("tr",))
            if row is not None:
                self._tab = row.cells > 0
                row.cells += 1
        elif tag == "a":
            frame.link_start = len(self.out)
            self._hrefs.append(_safe_href(values.get("href", "")))

    def _closed(self, frame: _Frame) -> None:
        if frame.tag == "a" and self._hrefs:
            href = self._hrefs.pop()
            if href and not frame.hidden and frame.link_start >= 0:
                text = "".join(self.out[frame.link_start :]).strip()
                if text and _differs(text, href):
                    self._text(f" [{href}]", raw=True)
        if frame.hidden:
            return
        if frame.tag in _PARAGRAPH:
            self._break(2)
        elif frame.tag in _LINE:
            self._break(1)

    def _list_item(self) -> None:
        owner = self._nearest(("ul", "ol"))
        if owner is not None:
            owner.items += 1
        marker = f"{owner.items}. " if owner is not None and owner.ordered else "- "
        depth = self._open.get("ul", 0) + self._open.get("ol", 0)
        self._prefix = "  " * min(8, max(0, depth - 1)) + marker

    def _nearest(self, tags: tuple[str, ...]) -> _Frame | None:
        if not any(self._open.get(tag) for tag in tags):
            return None
        for frame in reversed(self._stack[-_SEARCH_DEPTH:]):
            if frame.tag in tags:
                return frame
            if frame.tag == "table":
                return None
        return None

    def _void(self, tag: str, values: dict[str, str]) -> None:
        if tag in ("br", "hr"):
            self._break(2 if tag == "hr" else 1, add=tag == "br")
            return
        if tag != "img" or self._hidden_here():
            return
        style = css.declarations(values.get("style", ""))
        if _hides(tag, values, style) or _tiny_image(values, style):
            return
        alt = _SPACE.sub(" ", strip_invisible(values.get("alt", ""))).strip()
        if 0 < len(alt) <= 200 and not _FILE_NAME.fullmatch(alt) and "://" not in alt:
            self._text(f"[image: {alt}]")

    # -- text ------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self._hidden_here():
            return
        data = data.replace(LT, "<")
        if self._open.get("pre"):
            self._text(strip_invisible(data.replace("\r\n", "\n")), raw=True)
            return
        data = strip_invisible(data)
        collapsed = _SPACE.sub(" ", data)
        if collapsed.startswith(" "):
            self._space = True
        core = collapsed.strip(" ")
        if core:
            self._text(core)
            self._space = collapsed.endswith(" ")

    def _hidden_here(self) -> bool:
        top = self.top
        return self._drop_rest or top.hidden or css.same_color(top.color, top.bg)

    def _break(self, lines: int, add: bool = False) -> None:
        self._breaks = min(2, self._breaks + lines) if add else max(self._breaks, lines)
        self._space = False
        self._tab = False

    def _text(self, text: str, raw: bool = False) -> None:
        if self.full or not text:
            return
        pieces: list[str] = []
        if self._breaks and self.length:
            pieces.append("\n" * self._breaks)
            self._line_start = True
        self._breaks = 0
        if self._tab and not self._line_start:
            pieces.append("\t")
        elif self._prefix:
            pieces.append(self._prefix)
        elif self._space and not self._line_start and not raw:
            pieces.append(" ")
        self._tab = self._space = False
        self._prefix = ""
        pieces.append(text)
        self._line_start = text.endswith("\n")
        for piece in pieces:
            self.out.append(piece)
            self.length += len(piece)
        self.full = self.length >= self.max_chars


def _hides(tag: str, values: dict[str, str], style: dict[str, str]) -> bool:
    if tag in _SKIP or "hidden" in values:
        return True
    if values.get("aria-hidden", "").strip().lower() == "true":
        return True
    if tag == "dialog" and "open" not in values:
        return True
    if tag == "input" and values.get("type", "").strip().lower() == "hidden":
        return True
    return css.style_hides(style)


def _tiny_image(values: dict[str, str], style: dict[str, str]) -> bool:
    """A tracking pixel: at most 2 pixels in either direction."""
    for key in ("width", "height"):
        size = css.pixels(style.get(key) or values.get(key, ""))
        if size is not None and size <= 2:
            return True
    return False


def _safe_href(href: str) -> str | None:
    """The target if it is http(s) or mailto, as a browser reads it (no spaces inside)."""
    cleaned = _URL_JUNK.sub("", strip_invisible(href))
    if len(cleaned) > 2048 or not _SAFE_SCHEME.match(cleaned):
        return None
    return cleaned


def _differs(text: str, href: str) -> bool:
    def plain(value: str) -> str:
        value = value.strip().lower().removeprefix("mailto:")
        value = re.sub(r"^https?://(?:www\.)?", "", value)
        return value.rstrip("/")

    return plain(text) != plain(href)


def html_to_text(html: str, max_chars: int = 1_000_000) -> str:
    """The visible text of ``html`` (see the module docstring); never raises."""
    if max_chars <= 0:
        return ""
    reader = _Reader(max_chars)
    try:
        if isinstance(html, bytes | bytearray):
            html = bytes(html).decode("utf-8", "replace")
        if not isinstance(html, str):
            return ""
        _feed(reader, html[:MAX_INPUT_CHARS])
    except Exception:  # a bug of ours or of html.parser: what was read so far is safe
        pass
    return clean_block("".join(reader.out))[:max_chars]


def _feed(reader: _Reader, html: str) -> None:
    batch: list[str] = []
    batched = tags = 0
    for piece in canonical(html):
        if piece[0] == "<":
            tags += 1
            if tags > MAX_TAGS:
                break
        batch.append(piece)
        batched += len(piece)
        if batched >= _FEED_CHARS:
            reader.feed("".join(batch))
            batch, batched = [], 0
            if reader.full:
                return
    reader.feed("".join(batch))
    reader.close()
