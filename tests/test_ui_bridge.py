"""The UI's plumbing: background jobs, error lines, titles and status texts."""

from __future__ import annotations

import logging
import threading

import pytest
from pytestqt.qtbot import QtBot

from app.engine.errors import PromptTooLongError
from app.engine.types import Timings
from app.memory.errors import ConversationNotFoundError
from app.office import NoModelError
from app.ui.bridge import TITLE_CHARS, TurnStats, describe_error, title_for
from app.ui.jobs import Jobs
from app.ui.status_bar import ending_text, model_text, stats_text


def test_a_job_runs_off_the_main_thread_and_reports_on_it(qtbot: QtBot) -> None:
    jobs = Jobs()
    results: list[tuple[str, str]] = []
    main = threading.current_thread().name

    def report(worker: str) -> None:
        results.append((worker, threading.current_thread().name))

    jobs.run(lambda: threading.current_thread().name, report)
    qtbot.waitUntil(lambda: bool(results))
    worker, callback = results[0]
    assert worker != main
    assert callback == main
    assert jobs.wait(1000)


def test_a_failing_job_hands_its_exception_to_the_failure_callback(qtbot: QtBot) -> None:
    jobs = Jobs()
    failures: list[BaseException] = []

    def boom() -> None:
        raise NoModelError()

    jobs.run(boom, lambda _: pytest.fail("no success expected"), failures.append)
    qtbot.waitUntil(lambda: bool(failures))
    assert isinstance(failures[0], NoModelError)


@pytest.mark.parametrize(
    "error",
    [
        NoModelError(),
        PromptTooLongError("The conversation needs 9,000 tokens."),
        ConversationNotFoundError("abc"),
    ],
)
def test_known_errors_are_shown_as_their_own_line(error: Exception) -> None:
    assert describe_error(error) == str(error)


def test_a_bug_is_shown_generically_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="soloist.ui"):
        text = describe_error(KeyError("secret prompt text"))
    assert text == "Something went wrong (KeyError); the details are in the log."
    assert caplog.records[0].exc_info is not None


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Hello", "Hello"),
        ("  \n  ", "New chat"),
        ("First line\nsecond line", "First line"),
        ("x" * 100, "x" * (TITLE_CHARS - 1) + "…"),
    ],
)
def test_titles_come_from_the_first_line(text: str, title: str) -> None:
    assert title_for(text) == title
    assert len(title_for(text)) <= TITLE_CHARS


def test_status_texts() -> None:
    timings = Timings(
        prompt_tokens=10, completion_tokens=41, time_to_first_token_s=0.25, total_s=1.25
    )
    assert stats_text(TurnStats("stop", timings)) == (
        "40.0 tokens/s · first token 0.25 s · 41 tokens"
    )
    assert stats_text(TurnStats("cancelled")) == ""
    assert ending_text(TurnStats("cancelled")).startswith("Stopped")
    assert ending_text(TurnStats("length")) == "The reply reached its length limit."
    assert ending_text(TurnStats("stop")) == "Done."
    assert model_text("/models/tiny.gguf") == "Model: tiny.gguf"
