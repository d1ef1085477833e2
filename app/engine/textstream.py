"""Turn token bytes into text safely while it streams.

A token may end in the middle of a UTF-8 character, and a stop string may
arrive split across tokens; this holds back exactly as much as it must and
releases the rest at once.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextAssembler:
    """Feed token bytes, get printable text, stop at the first stop string."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._pending = ""
        self.stopped = False

    def feed(self, data: bytes) -> str:
        """Add the bytes of one token; return the text now safe to show."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        return self._release()

    def flush(self) -> str:
        """The end of the stream: return whatever is still held back."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        text, self._pending = self._pending, ""
        return text

    def _release(self) -> str:
        hit = self._first_stop()
        if hit is not None:
            text = self._pending[:hit]
            self._pending = ""
            self.stopped = True
            return text
        keep = self._held_suffix()
        cut = len(self._pending) - keep
        text, self._pending = self._pending[:cut], self._pending[cut:]
        return text

    def _first_stop(self) -> int | None:
        hits = [i for i in (self._pending.find(s) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _held_suffix(self) -> int:
        """Length of the longest tail of pending text that could start a stop string."""
        best = 0
        for stop in self._stop:
            for n in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:n]):
                    best = n
                    break
        return best
