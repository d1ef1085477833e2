"""How every engine hands a request's chunks to its caller."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

from app.engine.types import Chunk


def drain(
    out: queue.Queue[Chunk | BaseException],
    *,
    abandon: Callable[[], object],
    finish: Callable[[], object],
) -> Iterator[Chunk]:
    """Yield chunks from ``out`` until the final one; raise an error put there.

    A caller that stops reading before the end (``close()`` on the iterator,
    or dropping it) calls ``abandon`` so the engine stops the work; ``finish``
    runs in every case, to forget the request.
    """
    done = False
    try:
        while True:
            item = out.get()
            if isinstance(item, BaseException):
                done = True
                raise item
            yield item
            if item.is_final:
                done = True
                return
    finally:
        if not done:
            abandon()
        finish()
