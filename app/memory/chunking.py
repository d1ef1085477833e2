"""A document's text cut into overlapping chunks for search and embedding.

Each chunk holds at most ``max_chars`` characters (1,000 by default) and ends
at the best boundary in the second half of its window: a paragraph break,
else a line break, a sentence end, a clause (``;``, ``:``, ``,``), a space.
Only a run with no space longer than half a chunk (a URL, a hash, text in a
script without spaces) is cut mid-word, and never between a character and
the marks that combine with it. The next chunk starts up to
``overlap_chars`` (120, 12%) before the end of the last, at the earliest
sentence start in that span, else at a word start, so a fact split by a
boundary is whole in one of the two.

Why 1,000 and 120: the default embedding model, all-MiniLM-L6-v2, reads at
most 256 word pieces and drops the rest; English prose runs 4-5 characters a
piece, so 1,000 characters (about 150-200 words) fit with room for names and
numbers, which split finer. Much smaller chunks lose context around a fact;
larger ones would be truncated by the model. 12% overlap is one or two
sentences: enough to keep a sentence cut at a boundary whole somewhere,
little enough to add only an eighth to storage and embedding time.

Chunking is a pure function of its arguments: the same text gives the same
chunks, so chunk hashes are stable across re-indexing. ``text[c.start:c.end]
== c.text`` for every chunk, and every non-space character of the text lies in
at least one chunk.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from app.memory.documents import content_sha256

DEFAULT_MAX_CHARS = 1000
DEFAULT_OVERLAP_CHARS = 120
_MIN_MAX_CHARS = 20

# Where a chunk may end, best first; each gives the end offset of the chunk.
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？]+[」』”）]*")
_CLAUSE = re.compile(r"[;:,]+(?=\s)|[、，；：]")
_SPACE = re.compile(r"\s")
_BREAKS = (
    (_PARAGRAPH, False),  # False: the chunk ends where the match starts
    (_LINE, False),
    (_SENTENCE, True),  # True: the chunk ends where the match ends
    (_CLAUSE, True),
    (_SPACE, False),
)
# Where the overlap may begin, best first: a sentence start, a word start.
_SENTENCE_START = re.compile(r"(?:[.!?…]+[\"'”’»)\]]*\s+|\n\s*|[。！？]+\s*)(?=\S)")
_WORD_START = re.compile(r"(?<=\s)\S")


@dataclass(frozen=True, slots=True, repr=False)
class Chunk:
    """``text`` is ``source[start:end]``; ``sha256`` is its content hash
    (see ``content_sha256``). The repr shows offsets, never text."""

    index: int
    text: str
    start: int
    end: int
    sha256: str

    def __repr__(self) -> str:
        return (
            f"Chunk(index={self.index}, start={self.start}, end={self.end}, "
            f"sha256={self.sha256[:12]})"
        )


def chunk_text(
    text: str,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_chars`` that overlap by up
    to ``overlap_chars``; an empty or all-space text gives no chunks."""
    if max_chars < _MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {_MIN_MAX_CHARS}, not {max_chars}")
    if not 0 <= overlap_chars < max_chars // 2:
        raise ValueError(f"overlap_chars must be in [0, {max_chars // 2}), not {overlap_chars}")
    chunks: list[Chunk] = []
    start = fresh = _skip_space(text, 0)
    while fresh < len(text):
        if fresh >= start + max_chars:  # only space after the overlap: drop it
            start = fresh
        end = _trim_end(text, start, _chunk_end(text, start, fresh, max_chars))
        piece = text[start:end]
        chunks.append(Chunk(len(chunks), piece, start, end, content_sha256(piece)))
        start, fresh = _next_start(text, start, end, overlap_chars), _skip_space(text, end)
    return chunks


def _chunk_end(text: str, start: int, fresh: int, max_chars: int) -> int:
    """The end of the chunk that starts at ``start`` and must hold ``fresh``,
    the first character no earlier chunk holds: the best boundary in the
    second half of the window; else the last space; else a cut at the limit."""
    limit = start + max_chars
    if limit >= len(text):
        return len(text)
    low = max(start + max_chars // 2, fresh + 1)
    for pattern, after in _BREAKS:
        end = _last_break(text, pattern, after, low, limit)
        if end is not None:
            return end
    end = _last_break(text, _SPACE, False, fresh + 1, limit)
    return end if end is not None else _cut(text, fresh, limit)


def _last_break(
    text: str, pattern: re.Pattern[str], after: bool, low: int, high: int
) -> int | None:
    """The last boundary of ``pattern`` with its end offset in [low, high]."""
    found = None
    for match in pattern.finditer(text, low, high + 1):
        end = match.end() if after else match.start()
        if low <= end <= high:
            found = end
    return found


def _cut(text: str, fresh: int, limit: int) -> int:
    """A cut inside a word, moved back so it keeps combining marks, zero-width
    joiners and variation selectors with the character they belong to."""
    end = limit
    while end > fresh + 1 and _joined(text, end):
        end -= 1
    return limit if _joined(text, end) else end


def _joined(text: str, position: int) -> bool:
    """Whether a cut before ``position`` would split a character from its marks."""
    return _attaches(text[position]) or text[position - 1] == "\u200d"


def _attaches(char: str) -> bool:
    return (
        unicodedata.category(char) in {"Mn", "Mc", "Me"}
        or char == "\u200d"
        or "\ufe00" <= char <= "\ufe0f"
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin-tone modifiers
    )


def _next_start(text: str, start: int, end: int, overlap_chars: int) -> int:
    """The earliest sentence start, else word start, in the last
    ``overlap_chars`` of the chunk; with neither, the chunk's end."""
    low = max(end - overlap_chars, start + 1)
    if overlap_chars:
        sentence = _SENTENCE_START.search(text, low, end)
        if sentence is not None and sentence.end() < end:
            return sentence.end()
        word = _WORD_START.search(text, low, end)
        if word is not None:
            return word.start()
    return _skip_space(text, end)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _trim_end(text: str, start: int, end: int) -> int:
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end
