"""The office: composition root and the facade the UI and CLI talk to.

It opens the database, creates the engine, and stops them in reverse order.
Nothing here imports Qt; the UI reaches the office through its bridges,
which call these methods off the main thread.

Long-term memory (``memory``, a ``MemoryService``) starts on a thread of its
own once the office is open, and loads its index in the background. Its
embedder is the engine's (in the engine process when there is one), made
on the first embedding, so opening the office starts no engine and loads no
model.
"""

from __future__ import annotations

import logging
import os
import secrets as secrets_module
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app import paths
from app.engine.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder
from app.engine.interface import Engine
from app.engine.openai_api import OpenAIServer
from app.engine.process import BROKEN_MODELS_FILE, ENGINE_MODE_ENV
from app.engine.types import Chunk, GenerateRequest, Message, Priority, SamplingParams
from app.memory.backup import BackupPolicy, BackupResult, back_up, maybe_backup
from app.memory.conversations import Conversation, ConversationStore, StoredMessage
from app.memory.db import Database
from app.memory.errors import BackupError, DatabaseClosedError, StoreError
from app.memory.settings import JsonValue, Settings
from app.secrets import (
    API_TOKEN,
    SecretRef,
    SecretsError,
    SecretStore,
    SecretsUnavailableError,
    api_key_for,
)

if TYPE_CHECKING:  # numpy and the indexes load on the memory thread, not with this module
    from app.agents.chat_context import ChatSource, Citation
    from app.agents.definitions import DefinitionSet
    from app.agents.outbox import OutboxEvent
    from app.agents.runtime import AgentRuntime
    from app.integrations.service import Connections, SyncLoop
    from app.memory.search import SearchHit
    from app.memory.service import MemoryService

log = logging.getLogger("soloist.office")

MODEL_SETTING = "engine.model_path"
REMOTE_SETTING = "engine.remote"  # a RemoteEndpoint as JSON; its key is in the keyring
API_ENABLED_SETTING = "api.enabled"  # the local OpenAI-compatible API, off by default
API_PORT_SETTING = "api.port"
DEFAULT_API_PORT = 8765
SYSTEM_PROMPT = "You are Soloist, a concise assistant for a one-person business."

EngineFactory = Callable[[], Engine]


def _local_engine(home: Path) -> EngineFactory:
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
class RemoteEndpoint:
    """An OpenAI-compatible server the owner added; the API key stays in the keyring."""

    id: str
    base_url: str
    model: str | None = None
    priorities: tuple[str, ...] = ()  # priority classes sent there ("background", ...)
    agents: tuple[str, ...] = ()  # agents sent there
    fallback: bool = True  # used when the local model cannot load

    def __post_init__(self) -> None:
        if not self.id or not all(c.isalnum() or c in "-_." for c in self.id):
            raise ValueError("An endpoint id is letters, digits, '-', '_' or '.'.")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("The endpoint address must start with http:// or https://.")
        unknown = [p for p in self.priorities if p.upper() not in Priority.__members__]
        if unknown:
            raise ValueError(f"Unknown priority class: {', '.join(unknown)}.")

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "id": self.id,
            "base_url": self.base_url,
            "model": self.model,
            "priorities": list(self.priorities),
            "agents": list(self.agents),
            "fallback": self.fallback,
        }

    @classmethod
    def from_json(cls, data: object) -> RemoteEndpoint | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                id=str(data["id"]),
                base_url=str(data["base_url"]),
                model=None if data.get("model") is None else str(data["model"]),
                priorities=tuple(str(p) for p in data.get("priorities", [])),
                agents=tuple(str(a) for a in data.get("agents", [])),
                fallback=bool(data.get("fallback", True)),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed remote endpoint setting")
            return None


class _EngineEmbedder:
    """The engine's embedder, made on the first embedding: until then nothing starts.

    ``model_name`` is the default model's until then, which is what the
    engine's embedder reports too.
    """

    def __init__(self, make: Callable[[], Embedder]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None

    @property
    def model_name(self) -> str:
        embedder = self._embedder
        return DEFAULT_EMBEDDING_MODEL if embedder is None else embedder.model_name

    @property
    def dimension(self) -> int:
        return self._made().dimension

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._made().embed(texts)

    def _made(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._make()
            return self._embedder


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A reply being generated: its request id (for cancel), its chunks, the memories it cites."""

    conversation_id: str
    request_id: str
    chunks: Iterator[Chunk]
    citations: tuple[Citation, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatAgent:
    """An agent the owner can talk to in the chat (plain chat: no tools)."""

    id: str
    name: str


class Office:
    """One office: a data directory, its database and its engine."""

    def __init__(
        self,
        home: Path | None = None,
        engine_factory: EngineFactory | None = None,
        secrets: SecretStore | None = None,
    ):
        self.home = paths.ensure_data_dir(home)
        self._engine_factory = engine_factory or self._default_engine
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self.secrets = secrets or SecretStore()
        self.api: OpenAIServer | None = None
        self.api_error: str | None = None  # why the enabled API is not running
        log.info("opening office at %s", self.home)
        self.db = Database.open(paths.db_path(self.home))
        self.settings = Settings(self.db)
        self.conversations = ConversationStore(self.db)
        if self.settings.get(API_ENABLED_SETTING) is True:
            self.start_api()
        self._maintenance_stop = threading.Event()
        self._maintenance = threading.Thread(
            target=self._maintain, name="soloist-maintenance", daemon=True
        )
        self._maintenance.start()
        self._memory: MemoryService | None = None
        self._memory_lock = threading.Lock()
        self._memory_closed = False
        self._memory_starter = threading.Thread(
            target=self._start_memory, name="soloist-memory-start", daemon=True
        )
        self._memory_starter.start()
        self._connections: Connections | None = None
        self._sync_loop: SyncLoop | None = None
        self._connections_lock = threading.Lock()
        self._agents: AgentRuntime | None = None
        self._agents_lock = threading.Lock()
        self._outbox_listeners: list[Callable[[OutboxEvent], None]] = []

    # -- maintenance ---------------------------------------------------
    def _maintain(self, first_after_s: float = 60.0, every_s: float = 3600.0) -> None:
        """Back up the database when due (a minute after opening, then hourly checks)."""
        wait = first_after_s
        while not self._maintenance_stop.wait(wait):
            wait = every_s
            self.backup_if_due()

    def backup_if_due(self) -> BackupResult | None:
        """A consistent backup when the policy says one is due; never raises."""
        try:
            result = maybe_backup(self.db, BackupPolicy())
        except (BackupError, StoreError) as exc:
            log.error("scheduled backup failed: %s", exc)
            return None
        if result is not None:
            log.info("backup %s (%d bytes)", result.backup.path.name, result.size_bytes)
        return result

    def back_up_now(self) -> BackupResult:
        """A backup on demand (the UI's or a running office's ``soloist backup``)."""
        return back_up(self.db, BackupPolicy())

    # -- long-term memory ----------------------------------------------
    @property
    def memory(self) -> MemoryService:
        """The memory service, made and started (in the background) on first use."""
        with self._memory_lock:
            if self._memory_closed:
                raise DatabaseClosedError()
            if self._memory is None:
                from app.memory.service import MemoryService

                self._memory = MemoryService(self.db, self._memory_embedder)
                self._memory.start()
            return self._memory

    def _start_memory(self) -> None:
        try:
            self.memory  # noqa: B018  (made and started as a side effect)
        except StoreError as exc:
            log.error("memory search could not start: %s", exc)

    def _memory_embedder(self) -> Embedder:
        return _EngineEmbedder(self._engine_embedder)

    def _engine_embedder(self) -> Embedder:
        embedder = self._embedder()
        if embedder is None:  # _embedder always finds one; its signature allows None
            from app.engine.embeddings import SentenceTransformerEmbedder

            return SentenceTransformerEmbedder()
        return embedder

    # -- connectors ----------------------------------------------------
    @property
    def connections(self) -> Connections:
        """Accounts and connectors, made on first use (importing them takes a moment)."""
        with self._connections_lock:
            if self._connections is None:
                from app.integrations.service import Connections

                self._connections = Connections(self.db, self.secrets, self._memory_sink)
            return self._connections

    def _memory_sink(self) -> MemoryService | None:
        try:
            return self.memory
        except StoreError:
            return None

    def start_sync(self, interval_s: float = 300.0, first_after_s: float = 30.0) -> SyncLoop:
        """Sync every enabled account in the background (the app calls this after start-up)."""
        connections = self.connections
        with self._connections_lock:
            if self._sync_loop is None:
                from app.integrations.service import SyncLoop

                self._sync_loop = SyncLoop(connections, interval_s, first_after_s)
                self._sync_loop.start()
            return self._sync_loop

    # -- agents --------------------------------------------------------
    def start_agents(self) -> AgentRuntime:
        """Wire and start every agent (the app calls this after start-up); once."""
        connections = self.connections
        with self._agents_lock:
            if self._agents is None:
                from app.agents.runtime import AgentRuntime, resolve_model

                def resolver(model_class: str) -> str:
                    return resolve_model(model_class, self.settings.get, self.model_path())

                self._agents = AgentRuntime(
                    self.db,
                    lambda: self.engine,
                    self._memory_sink,
                    connections,
                    self.secrets,
                    self.home,
                    resolver,
                    on_outbox_event=self._outbox_event,
                )
                self._agents.start()
            return self._agents

    def on_outbox_event(self, listener: Callable[[OutboxEvent], None]) -> None:
        """Call ``listener`` (on the outbox's thread) after each outbox change."""
        self._outbox_listeners.append(listener)

    def _outbox_event(self, event: OutboxEvent) -> None:
        for listener in list(self._outbox_listeners):
            listener(event)

    @property
    def agents(self) -> AgentRuntime | None:
        """The running agents, or None before ``start_agents``."""
        return self._agents

    # -- engine --------------------------------------------------------
    def started_engine(self) -> Engine | None:
        """The engine if it is running; never starts one (the Models page asks)."""
        return self._engine

    @property
    def engine(self) -> Engine:
        """The engine, created on first use so start-up stays fast."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = self._engine_factory()
            return self._engine

    def _default_engine(self) -> Engine:
        """The local engine, behind a router when the owner added a remote endpoint."""
        local = _local_engine(self.home)()
        endpoint = self.remote_endpoint()
        if endpoint is None:
            return local
        from app.engine.remote import RemoteEngine
        from app.engine.routing import RoutePolicy, RoutingEngine

        try:
            key = api_key_for(endpoint.id, self.secrets)
        except SecretsUnavailableError as exc:  # fail closed: no key from anywhere else
            log.warning("remote endpoint %s used without its key: %s", endpoint.id, exc)
            key = None
        remote = RemoteEngine(endpoint.base_url, api_key=key, model=endpoint.model)
        policy = RoutePolicy(
            remote_priorities=frozenset(Priority[p.upper()] for p in endpoint.priorities),
            remote_agents=frozenset(endpoint.agents),
            fallback_to_remote=endpoint.fallback,
        )
        log.info("remote endpoint %s at %s in use", endpoint.id, endpoint.base_url)
        return RoutingEngine(local, remote, policy)

    # -- remote endpoint -----------------------------------------------
    def remote_endpoint(self) -> RemoteEndpoint | None:
        return RemoteEndpoint.from_json(self.settings.get(REMOTE_SETTING))

    def set_remote_endpoint(self, endpoint: RemoteEndpoint, api_key: str | None = None) -> None:
        """Save the endpoint (the key into the keyring); used when the engine next starts.

        Raises :class:`SecretsUnavailableError` when a key is given and no
        keyring can hold it: the key is never written anywhere else.
        """
        if api_key:
            self.secrets.set(SecretRef.remote(endpoint.id), api_key)
        self.settings.set(REMOTE_SETTING, endpoint.to_json())

    def clear_remote_endpoint(self) -> None:
        endpoint = self.remote_endpoint()
        self.settings.delete(REMOTE_SETTING)
        if endpoint is not None:
            try:
                self.secrets.delete(SecretRef.remote(endpoint.id))
            except SecretsError:
                log.info("no key to remove for endpoint %s", endpoint.id)

    # -- local OpenAI-compatible API -----------------------------------
    def enable_api(self, enabled: bool, port: int | None = None) -> None:
        """Turn the local API on or off (remembered); starts or stops it now."""
        self.settings.set(API_ENABLED_SETTING, enabled)
        if port is not None:
            self.settings.set(API_PORT_SETTING, port)
        self.stop_api()
        if enabled:
            self.start_api()

    def api_token(self) -> str:
        """The API's bearer token, made on first use and kept in the keyring."""
        token = self.secrets.find(API_TOKEN)
        if token is None:
            token = secrets_module.token_urlsafe(32)
            self.secrets.set(API_TOKEN, token)
        return token

    def start_api(self) -> OpenAIServer | None:
        """Serve the engine on loopback; None (and ``api_error`` says why) if it cannot."""
        if self.api is not None:
            return self.api
        port = self.settings.get(API_PORT_SETTING, DEFAULT_API_PORT)
        try:
            server = OpenAIServer(
                self.engine,
                self.api_models,
                token=self.api_token(),
                embedder=self._embedder(),
                port=port if isinstance(port, int) else DEFAULT_API_PORT,
            )
        except (OSError, SecretsError) as exc:
            self.api_error = f"The local API could not start: {exc}"
            log.error("%s", self.api_error)
            return None
        server.start()
        self.api, self.api_error = server, None
        log.info("local API at %s", server.url)
        return server

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None

    def api_models(self) -> dict[str, str]:
        """Model ids the API offers: the chosen model and the models folder."""
        found = {p.stem: str(p) for p in sorted(paths.models_dir(self.home).glob("*.gguf"))}
        chosen = self.model_path()
        if chosen:
            found[Path(chosen).stem] = chosen
        return found

    def _embedder(self) -> Embedder | None:
        engine = self.engine
        make = getattr(engine, "embedder", None) or getattr(
            getattr(engine, "local", None), "embedder", None
        )
        if callable(make):
            embedder: Embedder = make()
            return embedder
        from app.engine.embeddings import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder()  # in-process engine: loads on first use

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
        (even a partial one after a cancel) is saved to the conversation,
        with the memories it may cite (``citations``).
        """
        model = self.model_path()
        if model is None:
            raise NoModelError()
        history = self.conversations.messages(conversation_id)
        self.conversations.append(conversation_id, "user", text)
        return self._reply(model, conversation_id, history, text, max_tokens)

    def regenerate(self, conversation_id: str, max_tokens: int = 256) -> ChatTurn:
        """Write the last reply again: drop what follows the owner's last message, resend it."""
        model = self.model_path()
        if model is None:
            raise NoModelError()
        messages = self.conversations.messages(conversation_id)
        last_user = next((m for m in reversed(messages) if m.role == "user"), None)
        if last_user is None:
            raise ValueError("There is no message of yours to answer again in this chat.")
        self.conversations.delete_after(conversation_id, last_user.seq)
        history = [m for m in messages if m.seq < last_user.seq]
        return self._reply(model, conversation_id, history, last_user.content, max_tokens)

    def _reply(
        self,
        model: str,
        conversation_id: str,
        history: list[StoredMessage],
        text: str,
        max_tokens: int,
    ) -> ChatTurn:
        from app.agents.chat_context import build_messages, citations_of

        sources = self._chat_sources(text)
        messages = build_messages(
            self._chat_system_prompt(conversation_id),
            [Message(m.role, m.content) for m in history],
            text,
            sources,
        )
        request = GenerateRequest(
            model_path=model,
            messages=messages,
            sampling=SamplingParams(max_tokens=max_tokens),
            priority=Priority.INTERACTIVE,
            session_id=conversation_id,
        )
        citations = citations_of(sources)
        chunks = self._stream(conversation_id, request, citations)
        return ChatTurn(conversation_id, request.request_id, chunks, citations)

    def _chat_sources(self, text: str) -> tuple[ChatSource, ...]:
        """Memories worth citing for ``text``; none when memory is slow, not ready or fails."""
        from app.agents.chat_context import RECALL_K, recall, select_sources

        def search() -> list[SearchHit]:
            return list(self.memory.search(text, k=2 * RECALL_K, timeout_s=1.0))

        sources = select_sources(recall(search)) if text.strip() else ()
        log.info("chat recall: %d memories cited", len(sources))
        return sources

    # -- the agent a conversation talks to -----------------------------
    def chat_agents(self) -> list[ChatAgent]:
        """The agents the owner can talk to, by name."""
        found = sorted(self._agent_definitions(), key=lambda d: d.name.casefold())
        return [ChatAgent(d.id, d.name) for d in found]

    def chat_agent(self, conversation_id: str) -> str | None:
        return self.conversations.agent_of(conversation_id)

    def set_chat_agent(self, conversation_id: str, agent_id: str | None) -> None:
        if agent_id != self.conversations.agent_of(conversation_id):
            self.conversations.set_agent(conversation_id, agent_id)

    def _chat_system_prompt(self, conversation_id: str) -> str:
        agent_id = self.conversations.agent_of(conversation_id)
        if agent_id is None:
            return SYSTEM_PROMPT
        definition = self._agent_definitions().get(agent_id)
        if definition is None:
            log.warning(
                "conversation %s: agent %s is gone; the assistant answers",
                conversation_id,
                agent_id,
            )
            return SYSTEM_PROMPT
        from app.agents.chat_context import agent_system_prompt

        return agent_system_prompt(definition.name, definition.instructions)

    def _agent_definitions(self) -> DefinitionSet:
        runtime = self._agents
        if runtime is not None:
            return runtime.definitions
        from app.agents.definitions import load_definitions
        from app.agents.runtime import load_builtins

        return load_definitions(self.home / "agents", load_builtins())

    def _stream(
        self, conversation_id: str, request: GenerateRequest, citations: tuple[Citation, ...] = ()
    ) -> Iterator[Chunk]:
        parts: list[str] = []
        try:
            for chunk in self.engine.generate(request):
                parts.append(chunk.text)
                yield chunk
        finally:
            if parts and "".join(parts):
                meta: dict[str, JsonValue] = {}
                if citations:
                    meta["citations"] = [c.to_json() for c in citations]
                self.conversations.append(conversation_id, "assistant", "".join(parts), meta)

    def cancel(self, request_id: str) -> bool:
        return self._engine.cancel(request_id) if self._engine is not None else False

    # -- life cycle ----------------------------------------------------
    def close(self) -> None:
        """Stop memory, the API and the engine, then close the database (reverse of opening)."""
        self._maintenance_stop.set()
        self._maintenance.join(timeout=30)
        with self._agents_lock:
            agents, self._agents = self._agents, None
        if agents is not None:
            agents.close()
        with self._connections_lock:
            sync_loop, connections = self._sync_loop, self._connections
            self._sync_loop = self._connections = None
        if sync_loop is not None:
            sync_loop.stop()
        if connections is not None:
            connections.close()
        self._memory_starter.join(timeout=30)
        with self._memory_lock:
            memory, self._memory, self._memory_closed = self._memory, None, True
        if memory is not None:
            memory.close()
        self.stop_api()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.db.close()
        log.info("office closed")


class NoModelError(Exception):
    """No model has been chosen yet."""

    def __str__(self) -> str:
        return "No model is chosen yet: pick a GGUF file with Model… first."
