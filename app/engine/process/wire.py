"""The messages between the office and the engine child, and their encoding.

The channel is :mod:`multiprocessing.connection` over a Unix domain socket
(a named pipe on Windows): every message is length-prefixed by it, and the
connection is authenticated with an HMAC challenge on a random key the
child reads from its stdin (never from argv or the environment, which other
local users may read). Payloads are JSON objects with a ``t`` (type) field:

office -> child: ``generate`` ``cancel`` ``preload`` ``embed`` ``ping`` ``shutdown``,
and the owner's residency actions ``unload`` ``pin`` ``unpin`` (``id``, ``path``)
child -> office: ``ready`` ``chunk`` ``error`` ``embedded`` ``pong`` ``model`` (events),
and ``done`` (``id``, ``models``: the residency after the action; a refused
action gets an ``error`` with its ``id`` and ``models`` instead)

Per-request metrics cross no message of their own: the office builds them
from the chunks it delivers (the final one carries the request's timings).

JSON rather than pickle: the office never unpickles what another process
wrote.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.engine import errors
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
    Timings,
)

WINDOWS = sys.platform == "win32"
FAMILY = "AF_PIPE" if WINDOWS else "AF_UNIX"


def new_address() -> tuple[str, Path | None]:
    """A fresh, private address for one child, and the folder to remove afterwards."""
    if WINDOWS:
        return rf"\\.\pipe\soloist-engine-{os.getpid()}-{os.urandom(8).hex()}", None
    # mkdtemp makes the folder 0700: only this user can reach the socket. It
    # lives under the system temp folder because socket paths are short (104).
    folder = Path(tempfile.mkdtemp(prefix="soloist-engine-"))
    return str(folder / "engine.sock"), folder


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def loads(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ValueError("not an engine message")
    return message


# -- engine configuration ------------------------------------------------
_PATH_FIELDS = ("snapshot_dir", "status_file", "swap_dir")


def config_to_dict(config: EngineConfig) -> dict[str, Any]:
    """The child's configuration as JSON data (callables stay behind)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("device_probe", "on_model_event"):
            continue
        if f.name == "context":
            value = dataclasses.asdict(value)
        elif f.name in _PATH_FIELDS:
            value = None if value is None else str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_dict(data: dict[str, Any]) -> EngineConfig:
    kwargs = dict(data)
    kwargs["context"] = ContextConfig(**kwargs.get("context", {}))
    for name in _PATH_FIELDS:
        if kwargs.get(name) is not None:
            kwargs[name] = Path(kwargs[name])
    if "pinned" in kwargs:
        kwargs["pinned"] = tuple(kwargs["pinned"])
    return EngineConfig(**kwargs)


# -- requests and chunks -------------------------------------------------
def request_to_dict(request: GenerateRequest) -> dict[str, Any]:
    return request.to_dict()


def request_from_dict(data: dict[str, Any]) -> GenerateRequest:
    sampling = dict(data["sampling"])
    sampling["stop"] = tuple(sampling.get("stop", ()))
    return GenerateRequest(
        model_path=data["model_path"],
        messages=tuple(Message(m["role"], m["content"]) for m in data["messages"]),
        sampling=SamplingParams(**sampling),
        priority=Priority(data["priority"]),
        agent_id=data["agent_id"],
        session_id=data["session_id"],
        deadline_s=data["deadline_s"],
        fallback_models=tuple(data["fallback_models"]),
        request_id=data["request_id"],
    )


def chunk_to_dict(chunk: Chunk) -> dict[str, Any]:
    out: dict[str, Any] = {"t": "chunk", "id": chunk.request_id, "i": chunk.index}
    if chunk.text:
        out["x"] = chunk.text
    if chunk.finish_reason is not None:
        out["f"] = chunk.finish_reason.value
    if chunk.timings is not None:
        out["tm"] = dataclasses.asdict(chunk.timings)
    if chunk.error is not None:
        out["e"] = chunk.error
    return out


def chunk_from_dict(data: dict[str, Any]) -> Chunk:
    timings = data.get("tm")
    finish = data.get("f")
    return Chunk(
        request_id=data["id"],
        index=data["i"],
        text=data.get("x", ""),
        finish_reason=None if finish is None else FinishReason(finish),
        timings=None if timings is None else Timings(**timings),
        error=data.get("e"),
    )


# -- errors --------------------------------------------------------------
def _error_classes() -> dict[str, type[errors.EngineError]]:
    found: dict[str, type[errors.EngineError]] = {}
    pending: list[type[errors.EngineError]] = [errors.EngineError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_to_dict(request_id: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, errors.EngineError):
        names = [c.__name__ for c in type(exc).__mro__ if issubclass(c, errors.EngineError)]
        text = str(exc)
    else:  # a bug in the child: no details cross (they may quote a prompt)
        names, text = ["GenerationError"], "Internal engine error."
    return {"t": "error", "id": request_id, "type": names[0], "bases": names, "message": text}


def error_from_dict(data: dict[str, Any]) -> errors.EngineError:
    """The same error class on this side, or its nearest base class loaded here."""
    known = _error_classes()
    names = data.get("bases") or [data.get("type")]
    cls = next((known[str(n)] for n in names if str(n) in known), errors.EngineError)
    return cls(str(data.get("message", "")))


# -- embeddings ----------------------------------------------------------
def vectors_to_text(vectors: list[list[float]]) -> tuple[str, int]:
    """Vectors as base64 float32 (a tenth of the JSON size) and their dimension."""
    import numpy as np

    array = np.asarray(vectors, dtype="<f4")
    dim = int(array.shape[1]) if array.ndim == 2 else 0
    return base64.b64encode(array.tobytes()).decode("ascii"), dim


def vectors_from_text(text: str, dim: int) -> list[list[float]]:
    import numpy as np

    array = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if dim <= 0:
        return []
    return [row.tolist() for row in array.reshape(-1, dim)]
