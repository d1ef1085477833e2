"""``soloist connections``: add, test, sync and remove connector accounts.

soloist connections kinds
soloist connections list [--json]
soloist connections add KIND NAME [--id ID] [--set KEY=VALUE]... [--secret-stdin]
soloist connections secret ACCOUNT_ID [FIELD] [--secret-stdin]
soloist connections test ACCOUNT_ID
soloist connections sync ACCOUNT_ID
soloist connections remove ACCOUNT_ID

Secrets are never taken from the command line (argv is visible to every
process and lands in shell history): ``add`` and ``secret`` ask for each one
without echo, or read one line per secret from stdin with ``--secret-stdin``.
They go straight to the OS keyring.

These open the office database directly, so Soloist must not be running.
Exit status: 0 done, 1 failed or refused, 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING

from app import paths

if TYPE_CHECKING:
    from app.integrations.base import JsonValue
    from app.integrations.service import Connections

EXIT_FAILED = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``connections`` and its subcommands to the ``soloist`` parser."""
    parser = subparsers.add_parser(
        "connections",
        help="email, calendar, CRM and store accounts (with Soloist closed)",
        description="Connector accounts. Secrets go to the OS keyring, never to a file.",
    )
    sub = parser.add_subparsers(dest="connections_command", required=True)
    sub.add_parser("kinds", help="the kinds of account and their settings")
    listing = sub.add_parser("list", help="the accounts, and whether their secrets are stored")
    listing.add_argument("--json", action="store_true")
    add = sub.add_parser("add", help="add an account, then ask for its secrets")
    add.add_argument("kind")
    add.add_argument("name")
    add.add_argument("--id", default=None, help="an id of your own (a-z, 0-9, - and _)")
    add.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--secret-stdin", action="store_true", help="read secrets from stdin")
    secret = sub.add_parser("secret", help="store (replace) one secret of an account")
    secret.add_argument("account_id")
    secret.add_argument("field", nargs="?", default=None)
    secret.add_argument("--secret-stdin", action="store_true")
    for name, text in (
        ("test", "connect and log in, change nothing"),
        ("sync", "bring the local copy up to date now"),
        ("remove", "forget the account and delete its secrets"),
    ):
        sub.add_parser(name, help=text).add_argument("account_id")


EXIT_NO_KEYRING = 2


def run(args: argparse.Namespace) -> int:
    """Run one ``soloist connections`` subcommand; returns the exit status."""
    from app.integrations.errors import ConnectorError
    from app.integrations.service import Connections
    from app.memory.db import Database
    from app.memory.errors import StoreError
    from app.secrets import SecretsError, SecretStore, SecretsUnavailableError

    try:
        db = Database.open(paths.db_path())
    except StoreError as exc:
        return _fail(str(exc))
    connections = Connections(db, SecretStore())
    try:
        return _SUBCOMMANDS[args.connections_command](connections, args)
    except SecretsUnavailableError as exc:
        print(f"soloist: {exc}", file=sys.stderr)
        return EXIT_NO_KEYRING
    except (ConnectorError, SecretsError, StoreError) as exc:
        return _fail(str(exc))
    finally:
        connections.close()
        db.close()


def _kinds(connections: Connections, args: argparse.Namespace) -> int:
    from app.integrations.base import connector_classes

    for kind, cls in sorted(connector_classes().items()):
        secrets = ", ".join(cls.secret_fields) or "none"
        print(f"{kind}: {cls.display_name} (secrets: {secrets})")
        for key, text in cls.settings_schema.items():
            print(f"    {key}: {text}")
    return 0


def _list(connections: Connections, args: argparse.Namespace) -> int:
    from app.integrations.base import connector_class

    rows = []
    for account in connections.accounts.list():
        fields = connector_class(account.kind).secret_fields
        stored = {f: connections.accounts.has_secret(account.id, f) for f in fields}
        enabled = connections.accounts.is_enabled(account.id)
        rows.append(
            {
                "id": account.id,
                "kind": account.kind,
                "name": account.name,
                "enabled": enabled,
                "settings": account.config,
                "secrets_stored": stored,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no accounts yet: soloist connections add KIND NAME --set key=value ...")
    for row in rows:
        missing = [f for f, ok in row["secrets_stored"].items() if not ok]  # type: ignore[attr-defined]
        state = "enabled" if row["enabled"] else "disabled"
        note = f"; missing secret: {', '.join(missing)}" if missing else ""
        print(f"{row['id']}  {row['kind']}  {row['name']}  ({state}{note})")
    return 0


def _add(connections: Connections, args: argparse.Namespace) -> int:
    from app.integrations.base import connector_class

    config = dict(_setting(item) for item in args.set)
    cls = connector_class(args.kind)
    missing = [key for key in cls.settings_schema if key not in config and _required(cls, key)]
    if missing:
        return _fail(f"{args.kind} needs --set {' --set '.join(k + '=...' for k in missing)}")
    account = connections.accounts.add(args.kind, args.name, config, args.id)
    for field_name in cls.secret_fields:
        connections.accounts.set_secret(account.id, field_name, _read_secret(field_name, args))
    print(f"added {account.id}; try it with: soloist connections test {account.id}")
    return 0


def _secret(connections: Connections, args: argparse.Namespace) -> int:
    from app.integrations.base import connector_class

    account = connections.accounts.get(args.account_id)
    fields = connector_class(account.kind).secret_fields
    field_name = args.field or (fields[0] if fields else None)
    if field_name is None:
        return _fail(f"a {account.kind} account has no secrets")
    connections.accounts.set_secret(account.id, field_name, _read_secret(field_name, args))
    print(f"stored the {field_name} of {account.id} in the keyring")
    return 0


def _test(connections: Connections, args: argparse.Namespace) -> int:
    report = connections.test(args.account_id)
    print(("ok: " if report.ok else "failed: ") + report.summary)
    for line in report.details:
        print(f"    {line}")
    return 0 if report.ok else EXIT_FAILED


def _sync(connections: Connections, args: argparse.Namespace) -> int:
    status = connections.sync(args.account_id)
    head = f"synced in {status.elapsed_s:.1f} s: " if status.ok else "failed: "
    print(head + status.message)
    return 0 if status.ok else EXIT_FAILED


def _remove(connections: Connections, args: argparse.Namespace) -> int:
    connections.accounts.remove(args.account_id)
    print(f"removed {args.account_id} and its secrets")
    return 0


def _setting(item: str) -> tuple[str, JsonValue]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"soloist: --set wants KEY=VALUE, got {item!r}")
    return key.strip(), _typed(value)


def _typed(value: str) -> JsonValue:
    """Numbers and true/false as JSON values; everything else stays a string."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


def _required(cls: type, key: str) -> bool:
    text = str(getattr(cls, "settings_schema", {}).get(key, ""))
    return not text.lower().startswith("optional")


def _read_secret(field_name: str, args: argparse.Namespace) -> str:
    if args.secret_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = getpass.getpass(f"{field_name} (not shown, goes to the keyring): ")
    if not value:
        raise SystemExit(f"soloist: no {field_name} given; nothing was stored")
    return value


def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


_SUBCOMMANDS = {
    "kinds": _kinds,
    "list": _list,
    "add": _add,
    "secret": _secret,
    "test": _test,
    "sync": _sync,
    "remove": _remove,
}
