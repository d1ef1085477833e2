"""The child process of the real-mail fault tests, and the mail actions it and its parent use.

Run as a script (``python tests/outbox_mail_child.py CONFIG``), it reads a JSON
file (the database path, the servers, the sender's login, the recipient and
the plan), starts like the office (``recover()``), proposes the plan's mails
as ``email.send`` of a real :class:`MailActions` (autonomy SILENT, or ASK and
then approved by the owner), and executes them. It announces every outbox
checkpoint on stdout (``CHECKPOINT <point>``), and ``after_smtp`` inside the
send, then waits for a line on stdin: the parent SIGKILLs it at the point it
chose (see :func:`outbox_child.announce`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from app.integrations.base import Account, Action  # noqa: E402
from app.integrations.email.actions import MailActions  # noqa: E402
from app.integrations.email.imap import ImapClient, ImapLogin  # noqa: E402
from app.integrations.email.settings import EmailSettings  # noqa: E402

ACCOUNT_ID = "work"


def mail_settings(config: dict[str, Any]) -> tuple[EmailSettings, ImapLogin]:
    """The sender's account settings and login from the JSON config."""
    account = Account(ACCOUNT_ID, "email", "Work", {
        "imap_host": config["host"], "imap_port": config["imap_port"], "imap_security": "tls",
        "smtp_host": config["host"], "smtp_port": config["smtp_port"],
        "smtp_security": "starttls", "username": config["user"],
        "from_address": config["from"], "ca_file": config["ca_file"],
    })  # fmt: skip
    return EmailSettings.from_account(account), ImapLogin(config["user"], config["password"])


def send_action(config: dict[str, Any], after_smtp: Callable[[], None] = lambda: None) -> Action:
    """The real ``email.send`` of the sender's account."""
    settings, login = mail_settings(config)

    def connect() -> ImapClient:
        return ImapClient(settings.imap, login).connect()

    actions = MailActions(ACCOUNT_ID, settings, lambda: login, connect, after_smtp=after_smtp)
    return next(a for a in actions.actions() if a.name == "email.send")


def run_child(config_path: Path) -> None:
    """Start like the office: recover, then propose, approve and execute the plan."""
    from outbox_child import announce

    from app.agents.autonomy import Autonomy, AutonomyStore, Owner
    from app.agents.outbox import Outbox
    from app.memory.db import Database

    config = json.loads(config_path.read_text())
    send = send_action(config, after_smtp=lambda: announce("after_smtp"))

    def resolve(account_id: str, name: str) -> Action:
        if (account_id, name) != (ACCOUNT_ID, "email.send"):
            raise KeyError(f"{account_id}/{name}")
        return send

    with Database.open(Path(config["db"])) as db:
        outbox = Outbox(db, resolve, AutonomyStore(db), checkpoint=announce)
        outbox.recover()
        ids = []
        for item in config["plan"]:
            prepared = send.prepare({
                "to": [config["to"]], "subject": item["subject"], "body": "fault test",
                "message_id": item["message_id"],
            })  # fmt: skip
            level = Autonomy[item["level"]]
            ids.append(outbox.propose("agent-m", "run-m", prepared, (), (), level).id)
        for item, action_id in zip(config["plan"], ids, strict=True):
            if item["approve"]:
                outbox.approve(action_id, Owner.at_cli("fault-test"))
        outbox.execute_approved()
    print("FINISHED", flush=True)


if __name__ == "__main__":
    run_child(Path(sys.argv[1]))
