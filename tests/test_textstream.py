"""TextAssembler: UTF-8 split across tokens, stop strings split across tokens."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.engine.textstream import TextAssembler


def _run(pieces: list[bytes], stop: tuple[str, ...] = ()) -> tuple[str, bool]:
    asm = TextAssembler(stop)
    out = "".join(asm.feed(p) for p in pieces)
    return out + asm.flush(), asm.stopped


def test_multibyte_character_split_over_tokens_is_held_until_complete() -> None:
    asm = TextAssembler()
    euro = "€".encode()
    assert asm.feed(euro[:1]) == ""
    assert asm.feed(euro[1:2]) == ""
    assert asm.feed(euro[2:]) == "€"


def test_invalid_bytes_become_replacement_characters() -> None:
    assert _run([b"a", b"\xff", b"b"]) == ("a\ufffdb", False)


def test_stop_string_split_across_tokens_is_cut_and_never_shown() -> None:
    asm = TextAssembler(("<|im_end|>",))
    shown = asm.feed(b"Hello <|im")
    assert shown == "Hello "
    assert asm.feed(b"_end|> tail") == ""
    assert asm.stopped
    assert asm.flush() == ""


def test_prefix_that_turns_out_not_to_be_a_stop_is_released() -> None:
    asm = TextAssembler(("STOP",))
    assert asm.feed(b"ab ST") == "ab "
    assert asm.feed(b"X") == "STX"


@given(st.text(max_size=60), st.integers(min_value=1, max_value=7))
def test_any_text_in_any_byte_split_round_trips(text: str, width: int) -> None:
    data = text.encode()
    pieces = [data[i : i + width] for i in range(0, len(data), width)]
    assert _run(pieces) == (text, False)


@given(st.text(alphabet="abc", max_size=40), st.integers(min_value=1, max_value=5))
def test_output_is_the_text_before_the_first_stop(text: str, width: int) -> None:
    stop = "cab"
    data = text.encode()
    pieces = [data[i : i + width] for i in range(0, len(data), width)]
    out, stopped = _run(pieces, (stop,))
    assert stopped == (stop in text)
    assert out == text.split(stop, maxsplit=1)[0]
