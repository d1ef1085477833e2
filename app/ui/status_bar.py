"""The status bar: the model in use, the last reply's speed, and one-line errors."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from app.engine.types import FinishReason
from app.ui.bridge import TurnStats

NO_MODEL = "No model: choose one with Model…"
INFO_TIMEOUT_MS = 5_000


def model_text(path: str) -> str:
    """The model's file name, or a hint when none is chosen."""
    return f"Model: {Path(path).name}" if path else NO_MODEL


def stats_text(stats: TurnStats) -> str:
    """Speed and latency of a finished reply, e.g. ``41.2 tokens/s · first token 0.18 s``."""
    timings = stats.timings
    if timings is None:
        return ""
    return (
        f"{timings.tokens_per_s:.1f} tokens/s · first token {timings.time_to_first_token_s:.2f} s"
        f" · {timings.completion_tokens} tokens"
    )


def ending_text(stats: TurnStats) -> str:
    """What to say when a reply ends."""
    if stats.finish_reason == FinishReason.CANCELLED:
        return "Stopped; the reply so far is kept."
    if stats.finish_reason == FinishReason.LENGTH:
        return "The reply reached its length limit."
    return "Done."


class StatusBar(QStatusBar):
    """Shows messages on the left, the model and the last speed on the right."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stats_label = QLabel(self)
        self.model_label = QLabel(NO_MODEL, self)
        self.addPermanentWidget(self.stats_label)
        self.addPermanentWidget(self.model_label)

    @Slot(str)
    def set_model(self, path: str) -> None:
        self.model_label.setText(model_text(path))
        self.model_label.setToolTip(path)

    @Slot(object)
    def show_stats(self, stats: TurnStats) -> None:
        self.stats_label.setText(stats_text(stats))
        self.showMessage(ending_text(stats), INFO_TIMEOUT_MS)

    @Slot(str)
    def show_error(self, text: str) -> None:
        """Errors stay until the next message."""
        self.showMessage(text)

    @Slot(str)
    def show_info(self, text: str) -> None:
        self.showMessage(text, INFO_TIMEOUT_MS)
