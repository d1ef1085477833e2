"""``soloist serve``: the local OpenAI-compatible API on an in-process engine.

    soloist serve --model PATH [--model PATH ...] [--port 8765] [--host 127.0.0.1]
                  [--token-file FILE] [--ctx 4096]

Each model is served under its file stem (``qwen.gguf`` is ``qwen``). The
token comes from ``--token-file``, else ``SOLOIST_API_TOKEN``, else a new
random one printed once to stderr. It runs until SIGINT or SIGTERM, then
closes the server and the engine and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

log = logging.getLogger("soloist.cli.serve")

TOKEN_ENV = "SOLOIST_API_TOKEN"
DEFAULT_PORT = 8765
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to the ``soloist`` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="serve the local OpenAI-compatible API",
        description="Serve /v1/chat/completions, /v1/embeddings and /v1/models on this "
        "computer only, with a bearer token, until Ctrl+C.",
    )
    serve.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="PATH",
        help="a GGUF model to serve, under its file name without .gguf (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (0: any free one; default 8765)"
    )
    serve.add_argument(
        "--token-file",
        default=None,
        help=f"file holding the API token (default: ${TOKEN_ENV}, else a new random token)",
    )
    serve.add_argument("--ctx", type=int, default=4096, help="context size in tokens")


def model_ids(paths: Sequence[str]) -> dict[str, str]:
    """Public model id (the file stem) -> path; ValueError on a missing file or a clash."""
    models: dict[str, str] = {}
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ValueError(f"There is no model file at {given}.")
        if path.stem in models:
            raise ValueError(f"Two models are named {path.stem!r}; rename one of the files.")
        models[path.stem] = str(path.resolve())
    return models


def read_token(token_file: str | None, environ: Mapping[str, str]) -> tuple[str, bool]:
    """(token, whether it was generated here); ValueError on an unusable token file."""
    if token_file is not None:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"The token file {token_file} cannot be read.") from exc
        if not token:
            raise ValueError(f"The token file {token_file} is empty.")
        return token, False
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a clean stop."""
    from app.engine.llama_adapter import ContextConfig
    from app.engine.llamacpp import EngineConfig, LlamaCppEngine
    from app.engine.openai_api import OpenAIServer

    try:
        models = model_ids(args.model)
        token, generated = read_token(args.token_file, os.environ)
    except ValueError as exc:
        print(f"soloist: {exc}", file=sys.stderr)
        return EXIT_USAGE
    engine = LlamaCppEngine(EngineConfig(context=ContextConfig(n_ctx=args.ctx)))
    try:
        server = OpenAIServer(engine, lambda: models, token=token, host=args.host, port=args.port)
    except (ValueError, OSError, OverflowError) as exc:
        engine.close()
        print(f"soloist: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    stop = threading.Event()
    try:
        with _stop_on_signals(stop), server:
            _announce(server.url, models, token if generated else None)
            while not stop.wait(0.5):  # a timed wait lets Ctrl+C through on Windows too
                pass
            log.info("stopping the API server")
    finally:
        engine.close()  # after the server: its last replies are cancelled first
    print("soloist: stopped.", file=sys.stderr)
    return 0


def _announce(url: str, models: Mapping[str, str], new_token: str | None) -> None:
    print(f"soloist: serving {', '.join(models)} at {url}/v1 (Ctrl+C stops)", file=sys.stderr)
    if new_token is not None:
        print(f"soloist: API token (shown once): {new_token}", file=sys.stderr)
    sys.stderr.flush()


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT and SIGTERM while inside; the old handlers come back after."""

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d received", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.cli_serve serve ...``, until ``soloist serve`` is wired into app.cli."""
    from app import logs

    parser = argparse.ArgumentParser(prog="soloist")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logs.setup("cli")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
