"""Turn a list of messages into the prompt text a model expects.

Models carry a Jinja chat template in their GGUF metadata
(``tokenizer.chat_template``). It runs in Jinja's sandbox: a template is
data from a downloaded file, not code we trust. A model without one (or
with one that fails to render) gets a plain, readable fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engine.types import Message

log = logging.getLogger("soloist.engine")

_ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def plain_prompt(messages: Sequence[Message]) -> str:
    """The fallback format: one labelled paragraph per message."""
    parts = [f"{_ROLE_LABELS.get(m.role, m.role.title())}: {m.content}" for m in messages]
    return "\n\n".join([*parts, "Assistant:"])


def _raise(message: str) -> None:
    raise TemplateError(message)


@lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


def render_prompt(
    template: str | None,
    messages: Sequence[Message],
    *,
    bos_token: str = "<s>",
    eos_token: str = "</s>",
) -> str:
    """Render ``messages`` with the model's template, ending ready for the reply."""
    if not template:
        return plain_prompt(messages)
    try:
        return str(
            _compile(template).render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token=bos_token,
                eos_token=eos_token,
            )
        )
    except TemplateError as exc:
        log.warning("chat template failed (%s); using the plain format", type(exc).__name__)
        return plain_prompt(messages)
