"""The ``soloist`` command line.

soloist                      start the desktop app
soloist --minimized          start in the tray (start at login uses it)
soloist desktop install|autostart on|off   menu entry, start at login
soloist --self-test          generate a tiny model and run the whole stack once, headless
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
--verbose                    tracebacks on stderr (otherwise they go to the log only)

Bad input at start ends in one line and an exit code (see app.startup_checks):
73 an unwritable data directory, 69 no display or Qt platform plugin, 70 a bug.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

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
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="generate a tiny model and run engine, agent grammar and memory once, headless",
    )
    parser.add_argument(
        "--minimized",
        action="store_true",
        help="start in the tray with the window hidden (what start at login runs)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print tracebacks (they always go to the log)"
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
        cli_desktop,
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
    cli_desktop.add_parser(sub)
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
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the user, the trace for the log
        return _internal_error(exc, args)


# Commands that work without the data directory (or, for doctor, report on it).
_NO_DATA_DIR = frozenset({"doctor", "chat", "bench", "desktop"})


def _dispatch(args: argparse.Namespace) -> int:
    from app import startup_checks

    if args.engine is not None:
        os.environ[ENGINE_MODE_ENV] = args.engine
    if args.self_test:
        return _self_test(args)
    if args.command is None:
        return _desktop(minimized=args.minimized)
    if args.command not in _NO_DATA_DIR:
        problem = startup_checks.check_data_dir()
        if problem is not None:
            return startup_checks.report(problem)
    logs.setup("cli")
    return _COMMANDS.get(args.command, _chat)(args)


def _desktop(minimized: bool = False) -> int:
    from app import startup_checks

    problem = startup_checks.check_data_dir() or startup_checks.check_display()
    if problem is not None:
        return startup_checks.report(problem)
    startup_checks.warn_if_no_keyring()
    from app.ui.app import run

    return run(sys.argv[:1], minimized=minimized)


def _self_test(args: argparse.Namespace) -> int:
    from app import selftest

    logs.setup("selftest")  # None (no log file) when the data directory is not writable
    return selftest.main(verbose=args.verbose)


def _internal_error(exc: Exception, args: argparse.Namespace) -> int:
    """``soloist: internal error: Type: message (details in LOG)``; the trace to the log."""
    log_file = _log_file(args)
    if log_file is None and not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())  # else logging prints the trace
    log.error("soloist %s failed", args.command or "(app)", exc_info=exc)
    if args.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    message = " ".join(str(exc).split())[:300]
    where = f"details in {log_file}" if log_file else "run with --verbose for details"
    print(f"soloist: internal error: {type(exc).__name__}: {message} ({where})", file=sys.stderr)
    return EXIT_BUG


def _log_file(args: argparse.Namespace) -> Path | None:
    """The log file in use, or a new one; None when none can be written."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    return logs.setup("soloist" if args.command is None else "cli")


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


def _desktop_cmd(args: argparse.Namespace) -> int:
    from app import cli_desktop

    return cli_desktop.run(args)


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
    "desktop": _desktop_cmd,
}
