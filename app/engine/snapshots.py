"""Content-addressed snapshots of a sequence's KV state on disk.

An agent's context (its token ids and the llama.cpp state of its sequence)
is written to one file so that it survives eviction, an engine restart and
an app restart, and can be restored into any free sequence of a context on
the same model. This module is plain file I/O and knows nothing of
llama.cpp; :mod:`app.engine.kvstate` moves the bytes in and out of a context.

Model identity
    A hex sha256 over the GGUF's size, three 1 MiB samples of it (first,
    middle, last), ``general.name``, ``general.architecture`` and a KV
    layout tag (llama.cpp version, K/V cache types, KV stream count: see
    :func:`app.engine.kvstate.kv_layout_tag`). It is fast on a
    4 GB file because it reads 3 MiB, not the whole file. Two files that
    agree on all of that but differ elsewhere would share an identity; the
    sampled header and tail make that unlikely in practice (fine-tunes
    change the last tensor, renames change ``general.name``).

Snapshot key
    sha256 of (model identity, token ids): the same context on the same
    model always has the same key, so saving it again costs nothing.

File ``<key>.solokv`` (little-endian)::

    offset  size  field
    0       8     magic b"SOLOKV1\\0"
    8       4     u32 format version (1)
    12      4     u32 header size (128)
    16      32    model identity (raw sha256)
    48      8     u64 n_tokens
    56      8     u64 state length in bytes
    64      32    sha256 of the payload (token ids, then state)
    96      32    sha256 of bytes 0..95 (the header itself)
    128     4n    token ids, int32
    128+4n  len   llama.cpp sequence state (llama_state_seq_get_data)

Files are written to a temporary name, fsynced and renamed, so a crash
never leaves a half file under a real key. Recency for the LRU cap is the
file's mtime (touched on save and load), so it survives restarts too.

Errors::

    EngineError
    └── SnapshotError                 a snapshot cannot be used
        ├── SnapshotNotFoundError     no snapshot under that key or path
        ├── SnapshotCorruptError      truncated, bad magic, checksum mismatch
        ├── SnapshotModelMismatchError saved from another model or KV layout
        └── SeqStateError             llama.cpp refused to save or restore it

One engine thread owns a store; it is not thread-safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from app.engine.errors import EngineError
from app.engine.gguf_file import GGUFInfo

log = logging.getLogger("soloist.engine.snapshots")

MAGIC = b"SOLOKV1\0"
FORMAT_VERSION = 1
SUFFIX = ".solokv"
_PREFIX = struct.Struct("<8sII32sQQ32s")  # everything the header checksum covers
HEADER_SIZE = _PREFIX.size + 32
_SAMPLE = 1 << 20
_HEX = frozenset("0123456789abcdef")


class SnapshotError(EngineError):
    """A snapshot cannot be saved, read or restored."""


class SnapshotNotFoundError(SnapshotError):
    """There is no snapshot under that key or path."""


class SnapshotCorruptError(SnapshotError):
    """The file is truncated or damaged (bad magic, checksum mismatch)."""


class SnapshotModelMismatchError(SnapshotError):
    """The snapshot was taken on another model or KV layout."""


class SeqStateError(SnapshotError):
    """llama.cpp refused to read or write a sequence's state."""


# -- identity ----------------------------------------------------------


def model_identity(path: str | Path, *, name: str, architecture: str, kv_layout: str) -> str:
    """The stable id of a GGUF file under a KV layout (see module docstring)."""
    file = Path(path)
    size = file.stat().st_size
    digest = hashlib.sha256(b"soloist-model-identity-v1\0")
    for text in (name, architecture, kv_layout):
        raw = text.encode("utf-8")
        digest.update(struct.pack("<Q", len(raw)) + raw)
    digest.update(struct.pack("<Q", size))
    with file.open("rb") as fh:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            fh.seek(offset)
            digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()


def model_identity_from_info(info: GGUFInfo, *, kv_layout: str) -> str:
    """:func:`model_identity` from the metadata :func:`check_gguf` read."""
    return model_identity(
        info.path, name=info.name, architecture=info.architecture, kv_layout=kv_layout
    )


def snapshot_key(identity: str, tokens: Sequence[int]) -> str:
    """The content address of ``tokens`` on the model ``identity``."""
    digest = hashlib.sha256(b"soloist-kv-key-v1\0")
    digest.update(_identity_raw(identity))
    digest.update(_token_bytes(tokens))
    return digest.hexdigest()


def _identity_raw(identity: str) -> bytes:
    if len(identity) != 64 or not set(identity) <= _HEX:
        raise ValueError("a model identity is 64 lowercase hex digits")
    return bytes.fromhex(identity)


def _token_bytes(tokens: Sequence[int]) -> bytes:
    arr = array("i", tokens)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def _common_tokens(a: bytes, b: bytes) -> int:
    """How many leading int32 tokens two token byte strings share (binary search)."""
    lo, hi = 0, min(len(a), len(b)) // 4
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[: mid * 4] == b[: mid * 4]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _tokens_from(raw: bytes) -> list[int]:
    arr = array("i")
    arr.frombytes(raw)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tolist()


# -- file format -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Header:
    identity: str
    n_tokens: int
    state_len: int
    payload_sha: bytes

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + 4 * self.n_tokens + self.state_len

    def pack(self) -> bytes:
        prefix = _PREFIX.pack(
            MAGIC,
            FORMAT_VERSION,
            HEADER_SIZE,
            bytes.fromhex(self.identity),
            self.n_tokens,
            self.state_len,
            self.payload_sha,
        )
        return prefix + hashlib.sha256(prefix).digest()

    @classmethod
    def unpack(cls, raw: bytes, name: str) -> _Header:
        if len(raw) < HEADER_SIZE:
            raise SnapshotCorruptError(f"Snapshot {name} is truncated (no complete header).")
        prefix, check = raw[: _PREFIX.size], raw[_PREFIX.size : HEADER_SIZE]
        magic, version, size, ident, n_tokens, state_len, sha = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise SnapshotCorruptError(f"Snapshot {name} is not a Soloist KV snapshot (bad magic).")
        if hashlib.sha256(prefix).digest() != check:
            raise SnapshotCorruptError(f"Snapshot {name} has a damaged header (checksum mismatch).")
        if version != FORMAT_VERSION or size != HEADER_SIZE:
            raise SnapshotCorruptError(f"Snapshot {name} has unknown format version {version}.")
        return cls(ident.hex(), n_tokens, state_len, sha)


class SnapshotRef(NamedTuple):
    """Where a snapshot lives and what it holds (never the tokens' text)."""

    key: str
    path: Path
    n_tokens: int
    size_bytes: int
    model_identity: str


class LoadedSnapshot(NamedTuple):
    """A verified snapshot: unpacks as ``tokens, state``."""

    tokens: list[int]
    state: bytes


@dataclass(slots=True)
class _Entry:
    ref: SnapshotRef
    token_bytes: bytes  # int32 LE: a token prefix is a byte prefix
    last_used_ns: int


# -- the store ---------------------------------------------------------


class SnapshotStore:
    """Snapshots under one folder, indexed in memory by model and recency."""

    def __init__(self, root: Path, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock_ns = clock_ns
        self._index: dict[str, _Entry] = {}
        self._newest_ns = 0
        self._rescan()

    def __repr__(self) -> str:
        return f"SnapshotStore({str(self.root)!r}, {len(self._index)} snapshots)"

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    # -- writing -------------------------------------------------------
    def save(self, identity: str, tokens: Sequence[int], state: bytes | bytearray) -> SnapshotRef:
        """Write a snapshot (or reuse the identical one) and return its ref."""
        if not tokens:
            raise ValueError("a snapshot holds at least one token")
        started = time.perf_counter()
        key = snapshot_key(identity, tokens)
        known = self._index.get(key)
        if known is not None and known.ref.path.is_file():
            self._touch(known)
            return known.ref
        token_bytes = _token_bytes(tokens)
        sha = hashlib.sha256(token_bytes)
        sha.update(state)
        header = _Header(identity, len(tokens), len(state), sha.digest())
        path = self._path(key)
        _write_atomically(path, (header.pack(), token_bytes, state))
        ref = SnapshotRef(key, path, len(tokens), header.file_size, identity)
        self._index[key] = _Entry(ref, token_bytes, 0)
        self._touch(self._index[key])
        log.info(
            "saved snapshot %s: %d tokens, %d bytes in %.1f ms",
            key[:12],
            len(tokens),
            header.file_size,
            (time.perf_counter() - started) * 1e3,
        )
        return ref

    def delete(self, key: str) -> bool:
        """Remove a snapshot; False when there was none."""
        entry = self._index.pop(key, None)
        path = entry.ref.path if entry else self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return entry is not None
        return True

    def prune(self, max_bytes: int) -> list[str]:
        """Delete least recently used snapshots until the total fits ``max_bytes``."""
        removed: list[str] = []
        total = self.total_bytes()
        for entry in sorted(self._index.values(), key=lambda e: e.last_used_ns):
            if total <= max_bytes:
                break
            self.delete(entry.ref.key)
            total -= entry.ref.size_bytes
            removed.append(entry.ref.key)
        if removed:
            log.info("pruned %d snapshots; %d bytes left", len(removed), total)
        return removed

    # -- reading -------------------------------------------------------
    def load(self, key_or_path: str | Path, expected_identity: str) -> LoadedSnapshot:
        """Read and verify a snapshot, or raise a :class:`SnapshotError`."""
        started = time.perf_counter()
        path = key_or_path if isinstance(key_or_path, Path) else self._path(key_or_path)
        try:
            with path.open("rb") as fh:
                header, tokens, state = _read_verified(fh, _label(path), expected_identity)
        except FileNotFoundError as exc:
            raise SnapshotNotFoundError(f"No snapshot {_label(path)} in the store.") from exc
        except SnapshotCorruptError:
            self._discard(path)
            raise
        key = path.name.removesuffix(SUFFIX)
        entry = self._index.get(key)
        if entry is not None:
            self._touch(entry)
        log.info(
            "loaded snapshot %s: %d tokens, %d bytes in %.1f ms",
            key[:12],
            header.n_tokens,
            header.file_size,
            (time.perf_counter() - started) * 1e3,
        )
        return LoadedSnapshot(tokens, state)

    def find_longest_prefix(self, identity: str, tokens: Sequence[int]) -> SnapshotRef | None:
        """The snapshot of ``identity`` whose tokens are the longest prefix of ``tokens``."""
        wanted = _token_bytes(tokens)
        best: _Entry | None = None
        for entry in self._index.values():
            if entry.ref.model_identity != identity or not wanted.startswith(entry.token_bytes):
                continue
            if best is None or entry.ref.n_tokens > best.ref.n_tokens:
                best = entry
        return best.ref if best else None

    def find_best_match(
        self, identity: str, tokens: Sequence[int]
    ) -> tuple[SnapshotRef, int] | None:
        """The snapshot sharing the longest common prefix with ``tokens``, and its length.

        Unlike :meth:`find_longest_prefix` the snapshot may go on past
        ``tokens`` (a reply that is being regenerated): the caller restores
        it and trims the sequence to the common part.
        """
        wanted = _token_bytes(tokens)
        best: tuple[_Entry, int] | None = None
        for entry in self._index.values():
            if entry.ref.model_identity != identity:
                continue
            common = _common_tokens(wanted, entry.token_bytes)
            if common and (best is None or common > best[1]):
                best = (entry, common)
        return (best[0].ref, best[1]) if best else None

    def refs(self, identity: str | None = None) -> list[SnapshotRef]:
        """Every snapshot (of one model when ``identity`` is given), newest use first."""
        entries = sorted(self._index.values(), key=lambda e: e.last_used_ns, reverse=True)
        return [e.ref for e in entries if identity is None or e.ref.model_identity == identity]

    def total_bytes(self) -> int:
        return sum(e.ref.size_bytes for e in self._index.values())

    # -- internals -----------------------------------------------------
    def _path(self, key: str) -> Path:
        if len(key) != 64 or not set(key) <= _HEX:
            raise SnapshotNotFoundError("A snapshot key is 64 lowercase hex digits.")
        return self.root / (key + SUFFIX)

    def _touch(self, entry: _Entry) -> None:
        # Strictly increasing, so two uses within one clock tick keep their order.
        self._newest_ns = max(self._clock_ns(), self._newest_ns + 1)
        entry.last_used_ns = self._newest_ns
        with contextlib.suppress(OSError):
            os.utime(entry.ref.path, ns=(entry.last_used_ns, entry.last_used_ns))

    def _discard(self, path: Path) -> None:
        """Drop a damaged file so that the next save of its key writes it afresh."""
        key = path.name.removesuffix(SUFFIX)
        if path.parent == self.root and path.suffix == SUFFIX:
            self._index.pop(key, None)
            with contextlib.suppress(OSError):
                path.unlink()
            log.warning("discarded damaged snapshot %s", key[:12])

    def _rescan(self) -> None:
        for tmp in self.root.glob(f"*{SUFFIX}.tmp*"):
            with contextlib.suppress(OSError):
                tmp.unlink()  # left by a crash during a write
        for path in self.root.glob(f"*{SUFFIX}"):
            try:
                entry = _scan_entry(path)
            except SnapshotError:
                self._discard(path)
                continue
            except OSError:
                continue
            self._index[entry.ref.key] = entry
            self._newest_ns = max(self._newest_ns, entry.last_used_ns)
        log.info("snapshot store: %d snapshots, %d bytes", len(self._index), self.total_bytes())


def _label(path: Path) -> str:
    """A snapshot's name in messages and logs: the start of its key."""
    return path.name.removesuffix(SUFFIX)[:12]


def _scan_entry(path: Path) -> _Entry:
    """Header and token ids of a file (the state is checked only on load)."""
    stat = path.stat()
    with path.open("rb") as fh:
        header = _Header.unpack(fh.read(HEADER_SIZE), _label(path))
        token_bytes = fh.read(4 * header.n_tokens)
    if stat.st_size != header.file_size or len(token_bytes) != 4 * header.n_tokens:
        raise SnapshotCorruptError(f"Snapshot {_label(path)} is truncated.")
    key = snapshot_key(header.identity, _tokens_from(token_bytes))
    if path.name != key + SUFFIX:
        raise SnapshotCorruptError(f"Snapshot {_label(path)} does not hold what its name says.")
    ref = SnapshotRef(key, path, header.n_tokens, header.file_size, header.identity)
    return _Entry(ref, token_bytes, stat.st_mtime_ns)


def _read_verified(
    fh: BinaryIO, name: str, expected_identity: str
) -> tuple[_Header, list[int], bytes]:
    header = _Header.unpack(fh.read(HEADER_SIZE), name)
    if header.identity != expected_identity:
        raise SnapshotModelMismatchError(
            f"Snapshot {name} was taken on another model or KV layout; "
            "the context will be rebuilt from its text instead."
        )
    token_bytes = fh.read(4 * header.n_tokens)
    state = fh.read(header.state_len)
    if len(token_bytes) != 4 * header.n_tokens or len(state) != header.state_len:
        raise SnapshotCorruptError(f"Snapshot {name} is truncated.")
    if fh.read(1):
        raise SnapshotCorruptError(f"Snapshot {name} has trailing bytes.")
    sha = hashlib.sha256(token_bytes)
    sha.update(state)
    if sha.digest() != header.payload_sha:
        raise SnapshotCorruptError(f"Snapshot {name} is damaged (checksum mismatch).")
    return header, _tokens_from(token_bytes), state


def _write_atomically(path: Path, parts: Sequence[bytes | bytearray]) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            for part in parts:
                fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory; its rename is durable enough
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
