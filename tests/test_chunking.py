"""Chunking: sizes, boundaries, overlap, offsets and determinism."""

from __future__ import annotations

import itertools
import random
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.memory.chunking import (
    DEFAULT_MAX_CHARS,
    DEFAULT_OVERLAP_CHARS,
    Chunk,
    chunk_text,
)
from app.memory.documents import content_sha256

WORDS = ("invoice", "client", "payment", "project", "design", "budget", "review", "draft")


def prose(seed: int, paragraphs: int = 12) -> str:
    """Deterministic paragraphs of sentences of ordinary words."""
    rng = random.Random(seed)
    result = []
    for _ in range(paragraphs):
        sentences = [
            " ".join(rng.choices(WORDS, k=rng.randint(5, 25))).capitalize() + "."
            for _ in range(rng.randint(1, 9))
        ]
        result.append(" ".join(sentences))
    return "\n\n".join(result)


def assert_well_formed(text: str, chunks: list[Chunk], max_chars: int) -> None:
    """The invariants every chunking must keep."""
    covered = [False] * len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip() == chunk.text != ""
        assert len(chunk.text) <= max_chars
        assert chunk.sha256 == content_sha256(chunk.text)
        for position in range(chunk.start, chunk.end):
            covered[position] = True
    for first, second in itertools.pairwise(chunks):
        assert first.start < second.start
        assert first.end < second.end  # every chunk brings new text
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


def test_empty_and_blank_text_give_no_chunks() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\n\t ") == []


def test_short_text_is_one_chunk_without_surrounding_space() -> None:
    [chunk] = chunk_text("\n  Pay the invoice by Friday.  \n")
    assert (chunk.index, chunk.text, chunk.start, chunk.end) == (
        0,
        "Pay the invoice by Friday.",
        3,
        29,
    )


def test_defaults_fit_the_embedding_model() -> None:
    # all-MiniLM-L6-v2 reads 256 word pieces; 1,000 characters of prose stay under.
    assert 800 <= DEFAULT_MAX_CHARS <= 1200
    assert 0.10 <= DEFAULT_OVERLAP_CHARS / DEFAULT_MAX_CHARS <= 0.15


def test_prose_chunks_are_sized_overlapping_and_end_at_sentences() -> None:
    text = prose(1)
    chunks = chunk_text(text)
    assert len(chunks) >= 4
    assert_well_formed(text, chunks, DEFAULT_MAX_CHARS)
    for chunk in chunks[:-1]:
        assert len(chunk.text) >= DEFAULT_MAX_CHARS // 2
        assert chunk.text.endswith(".")  # a paragraph or sentence boundary
    for first, second in itertools.pairwise(chunks):
        overlap = first.end - second.start
        assert 0 < overlap <= DEFAULT_OVERLAP_CHARS
        assert text[second.start - 1].isspace()  # a whole word


def test_overlap_starts_at_a_sentence_when_one_fits() -> None:
    text = " ".join(f"Item {i} is due." for i in range(200))  # 15-17 character sentences
    chunks = chunk_text(text)
    assert_well_formed(text, chunks, DEFAULT_MAX_CHARS)
    for first, second in itertools.pairwise(chunks):
        assert second.text.startswith("Item")
        assert DEFAULT_OVERLAP_CHARS - 20 < first.end - second.start <= DEFAULT_OVERLAP_CHARS


def test_paragraph_breaks_are_preferred() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 60 + "end." for i in range(6)]
    text = "\n\n".join(paragraphs)  # each paragraph ~320 characters
    for chunk in chunk_text(text, max_chars=700, overlap_chars=0):
        assert chunk.text.startswith("Paragraph")
        assert chunk.text.endswith("end.")


def test_chunking_is_deterministic() -> None:
    text = prose(2)
    assert chunk_text(text) == chunk_text(text)
    assert [c.sha256 for c in chunk_text(text)] == [c.sha256 for c in chunk_text(str(text))]


def test_a_word_longer_than_a_chunk_is_cut_and_only_it() -> None:
    long_word = "x" * 2500
    text = f"See {long_word} here."
    chunks = chunk_text(text, max_chars=1000, overlap_chars=100)
    assert_well_formed(text, chunks, 1000)
    assert [c.text for c in chunks][:2] == ["See", "x" * 1000]
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    # No overlap inside the word: it would repeat a piece of it for nothing.
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))


def test_long_runs_of_spaces_neither_repeat_nor_stall() -> None:
    text = "a " * 300 + " " * 1500 + "b " * 300 + "\t" * 2000 + "c"
    chunks = chunk_text(text)
    assert_well_formed(text, chunks, DEFAULT_MAX_CHARS)
    assert chunks[-1].text == "c"


def test_hard_cuts_keep_combining_marks_and_joined_emoji() -> None:
    accented = "e\u0301" * 300  # é as e + combining acute, no spaces
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467" * 100  # ZWJ sequences
    for text in (accented, family):
        chunks = chunk_text(text, max_chars=101, overlap_chars=10)
        assert_well_formed(text, chunks, 101)
        for chunk in chunks:
            assert unicodedata.category(chunk.text[0]) != "Mn"
            assert chunk.text[0] != "\u200d"
            assert chunk.text[-1] != "\u200d"


def test_cjk_text_splits_at_sentence_ends() -> None:
    text = "今日は請求書を送りました。" * 40
    chunks = chunk_text(text, max_chars=100, overlap_chars=13)
    assert_well_formed(text, chunks, 100)
    assert all(chunk.text.endswith("。") for chunk in chunks)


def test_repr_hides_the_text() -> None:
    [chunk] = chunk_text("Confidential figures")
    assert "Confidential" not in repr(chunk)
    assert "start=0" in repr(chunk)


@pytest.mark.parametrize(("max_chars", "overlap"), [(10, 0), (100, 50), (100, -1)])
def test_bad_parameters_are_refused(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("text", max_chars=max_chars, overlap_chars=overlap)


_TOKENS = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from([" ", "  ", "\n", "\n\n", ". ", ", ", "! ", "\t", "\u00a0", " " * 90]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_TOKENS, max_size=400).map("".join),
    st.integers(min_value=20, max_value=400),
    st.integers(min_value=0, max_value=199),
)
@example(". draft  invoiceinvoice", 20, 5)  # a space run once ended a chunk where the last did
def test_any_text_chunks_well(text: str, max_chars: int, overlap: int) -> None:
    overlap = min(overlap, max_chars // 2 - 1)
    chunks = chunk_text(text, max_chars=max_chars, overlap_chars=overlap)
    assert_well_formed(text, chunks, max_chars)
    assert chunks == chunk_text(text, max_chars=max_chars, overlap_chars=overlap)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([*WORDS, "a", "xyzzy" * 5]), min_size=1, max_size=300))
def test_words_are_never_cut_when_they_fit(words: list[str]) -> None:
    text = " ".join(words)
    for chunk in chunk_text(text, max_chars=60, overlap_chars=10):
        assert chunk.start == 0 or text[chunk.start - 1] == " "
        assert chunk.end == len(text) or text[chunk.end] == " "
