"""The ``soloist`` command line.

soloist                      start the desktop app
soloist doctor [--json]      check this machine and the installation
soloist chat --model PATH    one chat turn, streamed to stdout
soloist bench [--quick]      the engine against raw llama.cpp, targets and JSON
soloist models list|recommended|download   local models, the curated list, downloads
soloist serve --model PATH   the local OpenAI-compatible API (loopback, bearer token)
soloist backup [--json]      back up the office database now (with Soloist closed)
soloist restore --list|--latest|PATH [--yes]   put a backup back, keeping the old file aside
soloist memory search|add|ingest|history|rollback   long-term memory (with Soloist closed)
soloist connections kinds|list|add|secret|test|sync|remove   connector accounts (Soloist closed)
soloist crm import|duplicates       contacts from CSV/vCard, possible duplicates (Soloist closed)
soloist orders import FILE --source S   a shop's order export (with Soloist closed)
soloist automations list|history|run   scheduled automations, next and last runs
soloist agents list|metrics|run|pause|resume   the agents (with Soloist closed)
soloist approvals list|show|approve|reject|settle   actions waiting for the owner
soloist autonomy list|set AGENT TOOL LEVEL   what each agent may do without asking

--engine process|inprocess   where the app runs llama.cpp (default: a supervised
                             child process; inprocess is for debugging)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from app import __version__, logs
from app.engine.process import ENGINE_CHILD, ENGINE_MODE_ENV

log = logging.getLogger("soloist.cli")

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_BUG = 70


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soloist", description="Soloist, your AI office.")
    parser.add_argument("--version", action="version", version=f"soloist {__version__}")
    parser.add_argument(
        "--engine",
        choices=("process", "inprocess"),
        default=None,
        help="run llama.cpp in a supervised child process (default) or in the app's process",
    )
    sub = parser.add_subparsers(dest="command")
    doctor = sub.add_parser("doctor", help="check this machine and the installation")
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    chat = sub.add_parser("chat", help="one chat turn with a model, streamed to stdout")
    chat.add_argument("--model", required=True, help="path to a GGUF model file")
    chat.add_argument("--system", default=None, help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=128)
    chat.add_argument("--temperature", type=float, default=0.7)
    chat.add_argument("--seed", type=int, default=0xC0FFEE)
    chat.add_argument("--ctx", type=int, default=4096, help="context size in tokens")
    chat.add_argument("prompt", help="what to say")
    _add_bench_parser(sub)
    from app import (
        cli_agents,
        cli_automations,
        cli_backup,
        cli_connections,
        cli_crm,
        cli_memory,
        cli_models,
        cli_serve,
    )

    cli_models.add_parser(sub)
    cli_serve.add_parser(sub)
    cli_backup.add_parser(sub)
    cli_memory.add_parser(sub)
    cli_connections.add_parser(sub)
    cli_crm.add_parser(sub)
    cli_automations.add_parser(sub)
    cli_agents.add_parser(sub)
    return parser


def _add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from app.bench import SCENARIOS, parse_scenarios

    bench = sub.add_parser(
        "bench",
        help="benchmark the engine against raw llama.cpp in one process",
        description="Run each scenario on raw llama.cpp (the same C calls, no scheduler) and "
        "on the engine; print ratios beside their targets and write bench/results/<time>.json.",
    )
    bench.add_argument(
        "--model", default=None, help="GGUF to use (default: generate the ~114 MB bench model)"
    )
    bench.add_argument("--quick", action="store_true", help="small token counts (smoke test)")
    bench.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=SCENARIOS,
        help="comma-separated scenario numbers, 1-8 (default: all)",
    )
    bench.add_argument("--out", default="bench/results", help="folder for the JSON results")
    bench.add_argument(
        "--threads", type=int, default=0, help="llama.cpp threads, both sides (default: all cores)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == [ENGINE_CHILD]:  # how a frozen bundle starts its engine process
        from app.engine.process.child import main as child_main

        return child_main(raw[1:])
    args = _parser().parse_args(raw)
    if args.engine is not None:
        os.environ[ENGINE_MODE_ENV] = args.engine
    if args.command is None:
        from app.ui.app import run

        return run(sys.argv[:1])
    logs.setup("cli")
    try:
        return _COMMANDS.get(args.command, _chat)(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the user, the trace for the log
        log.exception("soloist %s failed", args.command)
        print(f"soloist: internal error ({type(exc).__name__}); see the log.", file=sys.stderr)
        return EXIT_BUG


def _doctor(args: argparse.Namespace) -> int:
    from app import doctor

    return doctor.main(as_json=args.json)


def _bench(args: argparse.Namespace) -> int:
    from app import bench

    return bench.main(args)


def _models(args: argparse.Namespace) -> int:
    from app import cli_models

    return cli_models.run(args)


def _memory(args: argparse.Namespace) -> int:
    from app import cli_memory

    return cli_memory.run(args)


def _backups(args: argparse.Namespace) -> int:
    from app import cli_backup

    return cli_backup.run(args)


def _serve(args: argparse.Namespace) -> int:
    from app import cli_serve

    return cli_serve.run(args)


def _chat(args: argparse.Namespace) -> int:
    from app.engine.errors import EngineError
    from app.engine.llama_adapter import ContextConfig
    from app.engine.llamacpp import LlamaCppEngine
    from app.engine.types import GenerateRequest, Message, SamplingParams

    messages = [Message("user", args.prompt)]
    if args.system:
        messages.insert(0, Message("system", args.system))
    request = GenerateRequest(
        model_path=args.model,
        messages=tuple(messages),
        sampling=SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
        ),
    )
    engine = LlamaCppEngine(ContextConfig(n_ctx=args.ctx))
    try:
        for chunk in engine.generate(request):
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            if chunk.timings is not None:
                t = chunk.timings
                sys.stdout.write("\n")
                sys.stdout.flush()
                print(
                    f"load {t.queue_s:.2f} s · time to first token {t.time_to_first_token_s:.3f} s"
                    f" · {t.tokens_per_s:.1f} tokens/s · {t.prompt_tokens} prompt tokens"
                    f" · {t.completion_tokens} generated ({chunk.finish_reason})",
                    file=sys.stderr,
                )
    except EngineError as exc:
        print(f"soloist: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        engine.close()
    return 0


def _connections(args: argparse.Namespace) -> int:
    from app import cli_connections

    return cli_connections.run(args)


def _agents(args: argparse.Namespace) -> int:
    from app import cli_agents

    return cli_agents.run(args)


def _automations(args: argparse.Namespace) -> int:
    from app import cli_automations

    return cli_automations.run(args)


def _crm(args: argparse.Namespace) -> int:
    from app import cli_crm

    return cli_crm.run(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "doctor": _doctor,
    "bench": _bench,
    "models": _models,
    "serve": _serve,
    "backup": _backups,
    "memory": _memory,
    "connections": _connections,
    "crm": _crm,
    "automations": _automations,
    "agents": _agents,
    "approvals": _agents,
    "autonomy": _agents,
    "orders": _crm,
    "restore": _backups,
    "chat": _chat,
}
