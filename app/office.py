"""The office: composition root and the facade the UI and CLI talk to.

It opens the database, creates the engine, and stops them in reverse order.
Nothing here imports Qt; the UI reaches the office through its bridges,
which call these methods off the main thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app import paths
from app.engine.interface import Engine
from app.engine.process import ENGINE_MODE_ENV
from app.engine.types import Chunk, GenerateRequest, Message, Priority, SamplingParams
from app.memory.conversations import Conversation, ConversationStore, StoredMessage
from app.memory.db import Database
from app.memory.settings import Settings

log = logging.getLogger("soloist.office")

MODEL_SETTING = "engine.model_path"
BROKEN_MODELS_FILE = "engine-broken.json"
SYSTEM_PROMPT = "You are Soloist, a concise assistant for a one-person business."

EngineFactory = Callable[[], Engine]


def _default_engine(home: Path) -> EngineFactory:
    def make() -> Engine:
        from app.engine.llamacpp import EngineConfig, LlamaCppEngine
        from app.engine.status import STATUS_FILE

        # Each conversation's context is kept on disk, so the next turn (even
        # after a restart of the engine or the app) resumes instead of
        # re-reading the whole chat.
        config = EngineConfig(
            snapshot_dir=home / "kv",
            swap_dir=home / "kv-swap",
            status_file=home / STATUS_FILE,
        )
        if os.environ.get(ENGINE_MODE_ENV, "process") == "inprocess":
            log.info("engine runs in this process")
            return LlamaCppEngine(config)
        # A crash inside llama.cpp ends the child, not the office.
        from app.engine.process.supervisor import ProcessConfig, ProcessEngine

        return ProcessEngine(
            ProcessConfig(engine=config, broken_models_file=home / BROKEN_MODELS_FILE)
        )

    return make


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A reply being generated: its request id (for cancel) and its chunks."""

    conversation_id: str
    request_id: str
    chunks: Iterator[Chunk]


class Office:
    """One office: a data directory, its database and its engine."""

    def __init__(self, home: Path | None = None, engine_factory: EngineFactory | None = None):
        self.home = paths.ensure_data_dir(home)
        self._engine_factory = engine_factory or _default_engine(self.home)
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        log.info("opening office at %s", self.home)
        self.db = Database.open(paths.db_path(self.home))
        self.settings = Settings(self.db)
        self.conversations = ConversationStore(self.db)

    # -- engine --------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The engine, created on first use so start-up stays fast."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._engine_factory()
            return self._engine

    def model_path(self) -> str | None:
        value = self.settings.get(MODEL_SETTING)
        return value if isinstance(value, str) and value else None

    def set_model_path(self, path: str) -> None:
        self.settings.set(MODEL_SETTING, path)

    # -- chat ----------------------------------------------------------
    def list_conversations(self) -> list[Conversation]:
        return self.conversations.list()

    def new_conversation(self, title: str = "New chat") -> Conversation:
        return self.conversations.create(title)

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        return self.conversations.messages(conversation_id)

    def send(self, conversation_id: str, text: str, max_tokens: int = 256) -> ChatTurn:
        """Save the owner's message and start the reply.

        Iterate ``chunks`` on a worker thread; when the stream ends the reply
        (even a partial one after a cancel) is saved to the conversation.
        """
        model = self.model_path()
        if model is None:
            raise NoModelError()
        history = self.conversations.messages(conversation_id)
        self.conversations.append(conversation_id, "user", text)
        messages = (
            Message("system", SYSTEM_PROMPT),
            *(Message(m.role, m.content) for m in history),
            Message("user", text),
        )
        request = GenerateRequest(
            model_path=model,
            messages=messages,
            sampling=SamplingParams(max_tokens=max_tokens),
            priority=Priority.INTERACTIVE,
            session_id=conversation_id,
        )
        return ChatTurn(conversation_id, request.request_id, self._stream(conversation_id, request))

    def _stream(self, conversation_id: str, request: GenerateRequest) -> Iterator[Chunk]:
        parts: list[str] = []
        try:
            for chunk in self.engine.generate(request):
                parts.append(chunk.text)
                yield chunk
        finally:
            if parts and "".join(parts):
                self.conversations.append(conversation_id, "assistant", "".join(parts))

    def cancel(self, request_id: str) -> bool:
        return self._engine.cancel(request_id) if self._engine is not None else False

    # -- life cycle ----------------------------------------------------
    def close(self) -> None:
        """Stop the engine, then close the database (reverse of opening)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.db.close()
        log.info("office closed")


class NoModelError(Exception):
    """No model has been chosen yet."""

    def __str__(self) -> str:
        return "No model is chosen yet: pick a GGUF file with Model… first."
