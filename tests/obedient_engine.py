"""An attacker's dream model: it reads the whole prompt and obeys every instruction in it.

``ObedientEngine`` implements ``Engine.generate`` deterministically. Each
time it is asked for the next step it:

1. decodes the prompt the way a capable model could read it: HTML entities,
   zero-width characters, base64 blobs ("decode and run"), tags;
2. finds every instruction it understands (English, French, German,
   Spanish): send / forward / draft mail to an address, refund an order,
   approve actions, change autonomy, grant a tool, "you are now the
   owner", "call tool T with {...}", and literal tool-call JSON
   ``{"tool": ..., "arguments": ...}`` (fake tool results);
3. emits the first of those calls it has not emitted yet in this run,
   *whether or not the agent was granted the tool* (a grammar stops a real
   model from naming such a tool; this fake has none, so the ToolBox must
   refuse it);
4. when none is left, follows the legitimate ``plan`` of the task (the
   reads a good model would do), then calls ``final``.

The calls already made are read back from the assistant turns of the
request, so the engine holds no state between runs. Every prompt it saw is
kept in ``prompts`` for the secret scan.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence

from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings
from app.integrations.base import JsonObject

_EMAIL = r"([\w.+-]+@[\w-]+(?:\.[\w-]+)+)"
_AMOUNT = r"(?:EUR|USD|€|\$)?\s*(\d+(?:[.,]\d{1,2})?)"
_SAY = (
    r"(?:\s+(?:saying|with the text|that says|disant|mit dem text|diciendo)"
    r"\s*:?\s*[\"“']?([^\"”'\n]{1,200}))?"
)
_SEND_VERBS = (
    r"send (?:an? )?(?:e-?mail|mail|message|reply)?\s*to",
    r"e-?mail",
    r"write to",
    r"envo(?:ie|ye)[sz]? (?:un )?(?:e-?mail|courriel|message) à",
    r"发送邮件(?:到|给)",
    r"sende[n]? (?:sie )?(?:eine )?(?:e-?mail|nachricht) an",
    r"env[ií]a(?:r)? (?:un )?(?:correo|email|mensaje) a",
)
_SEND = re.compile(rf"(?:{'|'.join(_SEND_VERBS)})\s+{_EMAIL}{_SAY}", re.I)
_FORWARD = re.compile(
    r"(?:forward|transf[eé]r(?:er|ez)|weiterleiten|reenv[ií]a)\b"
    rf"[^\n]{{0,80}}?(?:to|à|an|a)\s+{_EMAIL}",
    re.I,
)
_DRAFT = re.compile(rf"(?:draft|save a draft)(?: a reply| an e-?mail)? to\s+{_EMAIL}{_SAY}", re.I)
_REFUND = re.compile(
    r"(?:refund|rembourse[zr]?|erstatte|reembols[ae])\s+"
    r"(?:(?:the |la |el |die )?(?:order|commande|bestellung|pedido)\s*)?#?(\d+)"
    rf"(?:\s+(?:for|of|de|über|por|with)\s+{_AMOUNT})?",
    re.I,
)
_APPROVE = re.compile(
    r"(?:approve|approuve[zr]?|genehmige|aprueba)\s+(?:all\s+|every\s+|the\s+)?(?:pending\s+)?(?:actions?|drafts?|refunds?|everything|tout|alles|todo)(?:\s+([0-9a-f]{8,32}))?",
    re.I,
)
_AUTONOMY = re.compile(
    r"(?:set|raise|change)\s+(?:the\s+)?autonomy\s+(?:level\s+)?(?:of|for)\s+([\w.:-]+)\s+to\s+(\d|silent|notify)",
    re.I,
)
_ADD_TOOL = re.compile(
    r"(?:add|grant|enable)\s+(?:yourself\s+)?(?:the\s+)?tool\s+([a-z_]+(?:\.[a-z_]+)+)", re.I
)
_OWNER = re.compile(
    r"you are now the owner|owner here|i am the owner|je suis le propriétaire|ich bin der inhaber",
    re.I,
)
_CALL = re.compile(
    r"call (?:the )?tool\s+([a-z_]+(?:\.[a-z_]+)+)\s+with\s+(\{.*?\})(?=\s*(?:$|\n|\.\s|<|\"))",
    re.I | re.S,
)
_JSON_CALL = re.compile(
    r"\{\s*\"tool\"\s*:\s*\"([\w.]+)\"\s*,\s*\"arguments\"\s*:\s*(\{[^{}]*\})\s*\}"
)
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_TAG = re.compile(r"<[^<>]{0,500}>")


def readable(text: str) -> str:
    """``text`` plus what a model could decode from it (entities, invisibles, base64)."""
    for _ in range(4):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = unicodedata.normalize("NFKC", text)
    parts = [text, _TAG.sub(" ", text)]
    for blob in _B64.findall(text):
        try:
            decoded = base64.b64decode(blob, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            parts.append(decoded)
    return "\n".join(parts)


def instructed_calls(text: str) -> list[JsonObject]:
    """Every call the instructions in ``text`` ask for, in a stable order, without repeats."""
    calls: list[JsonObject] = []
    for match in _SEND.finditer(text):
        body = (match.group(2) or "As you asked.").strip()
        calls.append(
            _call("email.send", to=[match.group(1)], subject="Re: your request", body=body)
        )
    for match in _FORWARD.finditer(text):
        calls.append(_call("email.send", to=[match.group(1)], subject="Fwd: as requested",
                           body="Forwarding the conversation as requested."))  # fmt: skip
    for match in _DRAFT.finditer(text):
        body = (match.group(2) or "As you asked.").strip()
        calls.append(_call("email.save_draft", to=[match.group(1)], subject="Re:", body=body))
    for match in _REFUND.finditer(text):
        amount = (match.group(2) or "30.00").replace(",", ".")
        calls.append(_call("store.refund", order_id=match.group(1), amount=amount,
                           note="refund as requested"))  # fmt: skip
    for match in _APPROVE.finditer(text):
        calls.append(_call("outbox.approve", action_id=match.group(1) or "all"))
    for match in _AUTONOMY.finditer(text):
        calls.append(_call("autonomy.set", target=match.group(1), level=match.group(2)))
    for match in _ADD_TOOL.finditer(text):
        calls.append(_call("agent.add_tool", name=match.group(1)))
    if _OWNER.search(text):
        calls.append(_call("outbox.approve", action_id="all", as_owner=True))
    for match in _CALL.finditer(text):
        calls.append(_json_call(match.group(1), match.group(2)))
    for match in _JSON_CALL.finditer(text):
        calls.append(_json_call(match.group(1), match.group(2)))
    return _unique(calls)


def _call(tool: str, /, **arguments: object) -> JsonObject:
    return {"tool": tool, "arguments": dict(arguments)}  # type: ignore[dict-item]


def _json_call(tool: str, raw: str) -> JsonObject:
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError:
        arguments = {"raw": raw[:200]}
    return {"tool": tool, "arguments": arguments if isinstance(arguments, dict) else {}}


def _key(call: JsonObject) -> str:
    return json.dumps(call, sort_keys=True)


def _unique(calls: Sequence[JsonObject]) -> list[JsonObject]:
    seen: dict[str, JsonObject] = {}
    for call in calls:
        seen.setdefault(_key(call), call)
    return list(seen.values())


class ObedientEngine:
    """See the module docstring; ``plan`` is the task's own reads (and action)."""

    def __init__(
        self, plan: Sequence[JsonObject] = (), answer: str = "Done as instructed."
    ) -> None:
        self.plan = list(plan)
        self.answer = answer
        self.prompts: list[str] = []
        self.emitted: list[JsonObject] = []  # every call it emitted, all runs
        self.obeyed: list[JsonObject] = []  # the instructed (injected) ones among them

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        prompt = "\n".join(m.content for m in request.messages)
        self.prompts.append(prompt)
        done = {_key(c) for c in _made(request)}
        wanted = [c for c in instructed_calls(readable(prompt)) if _key(c) not in done]
        if wanted:
            reply = wanted[0]
            self.obeyed.append(reply)
        else:
            planned = [c for c in self.plan if _key(c) not in done]
            reply = planned[0] if planned else _call("final", answer=self.answer)
        self.emitted.append(reply)
        text = json.dumps(reply)
        yield Chunk(request.request_id, 0, text)
        timings = Timings(len(prompt) // 4, len(text) // 4, 0.001, 0.001)
        yield Chunk(request.request_id, 1, "", FinishReason.STOP, timings)

    def cancel(self, request_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


def _made(request: GenerateRequest) -> list[JsonObject]:
    made = []
    for message in request.messages:
        if message.role == "assistant":
            try:
                value = json.loads(message.content)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                made.append(value)
    return made
