"""Rule-based text helpers (sentences, words, numbers, names) and sentence-aware chunking."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from taskloop.models.tiny import build_tokenizer
from taskloop.tasks.chunking import Split, split_to_fit
from taskloop.tasks.text import content_words, names, numbers, split_sentences, words


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


# --- sentences -----------------------------------------------------------------------------


def test_plain_sentences() -> None:
    assert texts("It rained. We stayed in! Did you? Yes.") == [
        "It rained.",
        "We stayed in!",
        "Did you?",
        "Yes.",
    ]


def test_abbreviations_do_not_end_a_sentence() -> None:
    text = "Dr. Smith met Prof. Jones, e.g. at the U.S. embassy. They talked vs. argued. Fine."
    assert texts(text) == [
        "Dr. Smith met Prof. Jones, e.g. at the U.S. embassy.",
        "They talked vs. argued.",
        "Fine.",
    ]


def test_initials_do_not_end_a_sentence() -> None:
    assert texts("J. R. R. Tolkien wrote it. It sold well.") == [
        "J. R. R. Tolkien wrote it.",
        "It sold well.",
    ]


def test_dialogue_lines_are_sentences() -> None:
    """A line break ends a sentence even without punctuation (dialogue turns, lists)."""
    text = "#Person1#: Are you coming\n#Person2#: No. I'm busy.\n\n- item one\n- item two"
    assert texts(text) == [
        "#Person1#: Are you coming",
        "#Person2#: No.",
        "I'm busy.",
        "- item one",
        "- item two",
    ]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    text = 'He said: "Stop!" Then he left. (It rained.) Next one?'
    assert texts(text) == ['He said: "Stop!"', "Then he left.", "(It rained.)", "Next one?"]


def test_spans_index_back_into_the_text() -> None:
    text = "  Dr. Who arrived.   Then  he left!\n\nAnna: Bye?  "
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == ["Dr. Who arrived.", "Then  he left!", "Anna: Bye?"]
    assert [(s.start, s.end) for s in sentences] == [(2, 18), (21, 35), (37, 47)]
    for s in sentences:
        assert text[s.start : s.end] == s.text


def test_no_sentences_in_blank_text() -> None:
    assert split_sentences("") == [] and split_sentences(" \n\t ") == []


@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\"')DrJ")), max_size=80))
def test_sentence_spans_property(text: str) -> None:
    """Any text: spans are in order, do not overlap, index back, and together hold every
    non-space character."""
    sentences = split_sentences(text)
    last = 0
    for s in sentences:
        assert text[s.start : s.end] == s.text == s.text.strip() != ""
        assert s.start >= last
        last = s.end
    covered = "".join(s.text for s in sentences)
    assert sorted(covered.replace(" ", "")) == sorted("".join(text.split()))


# --- words, numbers, names -----------------------------------------------------------------


def test_words_and_content_words() -> None:
    assert words("state-of-the-art, don't; Müller’s 3.5") == [
        "state-of-the-art",
        "don't",
        "Müller’s",
        "3",
        "5",
    ]
    # stop words (the, and, i, on, a, in) and one-letter words go; the rest is lower-cased
    assert content_words("The cat and I sat on a mat in Vienna.") == ["cat", "sat", "mat", "vienna"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It cost 1,000 dollars.", ["1000"]),
        ("It cost 4.50 euros.", ["4.5"]),
        ("Seven people came.", ["7"]),
        ("seven to two", ["7", "2"]),
        ("It rose 50% or 5 %.", ["50", "5"]),
        ("From -3 to +7.", ["-3", "7"]),
        ("A price of 3,5 (decimal comma).", ["3.5"]),
        ("Total 12,345.67 and 1,000,000.", ["12345.67", "1000000"]),  # six digits kept
        ("In 2024, twelve of them.", ["2024", "12"]),
        ("Version 1.2.3 and v2 are not numbers.", []),
    ],
)
def test_numbers_in_canonical_form(text: str, expected: list[str]) -> None:
    assert numbers(text) == expected


def test_numbers_from_digits_and_words_agree() -> None:
    """A summary saying "seven" matches a source saying "7"."""
    assert set(numbers("The council voted 7 to 2.")) == set(numbers("It voted seven to two."))


def test_names() -> None:
    """Capitalised runs after the first word; a dialogue speaker tag is not a name."""
    assert names("Yesterday Angela Merkel met the President of France in Paris.") == [
        "Angela Merkel",
        "President",
        "France",
        "Paris",
    ]
    assert names("Anna: I met Bob Dylan in New York.") == ["Bob Dylan", "New York"]
    assert names("The EU and NATO met.") == ["EU", "NATO"]
    assert names("Tomorrow is fine.") == []


# --- split_to_fit --------------------------------------------------------------------------


def word_count(xs: Sequence[str]) -> list[int]:
    return [len(x.split()) for x in xs]


def test_text_that_fits_is_one_chunk() -> None:
    text = "A b. C d."
    split = split_to_fit(text, 4, word_count)
    assert [(c.text, c.start, c.end) for c in split.chunks] == [(text, 0, len(text))]
    assert split.notes == [] and not split.was_split


def test_overlap_repeats_the_last_sentence() -> None:
    """Four 2-word sentences, budget 4 words: two sentences per chunk. With overlap 1
    the next chunk starts with the previous chunk's last sentence:
    [A b. C d.] [C d. E f.] [E f. G h.]; with overlap 0: [A b. C d.] [E f. G h.]."""
    text = "A b. C d. E f. G h."
    one = split_to_fit(text, 4, word_count, overlap=1)
    assert [c.text for c in one.chunks] == ["A b. C d.", "C d. E f.", "E f. G h."]
    assert [(c.start, c.end) for c in one.chunks] == [(0, 9), (5, 14), (10, 19)]
    assert one.was_split
    assert one.notes == [
        "input of 8 tokens exceeds the budget of 4: split into 3 sentence-aligned chunks "
        "with 1 sentence(s) of overlap"
    ]
    zero = split_to_fit(text, 4, word_count, overlap=0)
    assert [c.text for c in zero.chunks] == ["A b. C d.", "E f. G h."]


def test_overlap_is_dropped_when_it_leaves_no_room() -> None:
    """Regression: budget 4, "One. Two." is chunk 1 (2 words, the 4-word sentence does
    not fit beside it); "Two." + "Three four five six." is 5 words, so a chunk starting
    with the overlap could hold only "Two." again. The next chunk starts at the new
    sentence instead of repeating old text on its own."""
    split = split_to_fit("One. Two. Three four five six.", 4, word_count, overlap=1)
    assert [c.text for c in split.chunks] == ["One. Two.", "Three four five six."]


def test_over_long_sentence_is_split_at_words_and_noted() -> None:
    """Budget 4: "One two three." (3) fits; the 9-word sentence is cut into 4 + 4 + 1
    words; "End." joins the last piece (1 + 1 = 2 ≤ 4)."""
    text = "One two three. a b c d e f g h i. End."
    split = split_to_fit(text, 4, word_count, overlap=0)
    assert [c.text for c in split.chunks] == ["One two three.", "a b c d", "e f g h", "i. End."]
    assert split.notes[1] == (
        "a sentence of 9 tokens at chars 15-33 was split at word boundaries into 3 pieces "
        "(budget 4)"
    )
    for chunk in split.chunks:
        assert text[chunk.start : chunk.end] == chunk.text


def test_budget_too_small() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        split_to_fit("a b c", 3, word_count)


def test_with_a_real_tokenizer_count() -> None:
    """The tiny word-level tokenizer counts words, punctuation and </s>: each sentence
    "w w w ." is 5 tokens; budget 11 holds two (10), and their joined text is 9 (one
    </s>), so every chunk fits by the same count."""
    tok = build_tokenizer(["w x y z ."])

    def count(xs: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tok(list(xs))["input_ids"]]

    text = " ".join(["w x y."] * 6)
    split = split_to_fit(text, 11, count, overlap=1)
    assert len(split.chunks) == 5
    assert all(n <= 11 for n in count([c.text for c in split.chunks]))


@st.composite
def sentence_lists(draw: st.DrawFn) -> list[str]:
    vocab = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    n = draw(st.integers(1, 12))
    out = []
    for _ in range(n):
        body = draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=9))
        out.append(" ".join(body).capitalize() + draw(st.sampled_from([".", "!", "?"])))
    return out


@given(sentence_lists(), st.integers(4, 12), st.integers(0, 2), st.sampled_from([" ", "\n"]))
def test_split_to_fit_properties(sentences: list[str], budget: int, overlap: int, sep: str) -> None:
    """For random sentence lists (each word one token):

    - every chunk is within the budget by the same count function;
    - chunk spans index back into the text, start in order and end in order;
    - every sentence lies inside some chunk (nothing dropped), the first chunk starts at
      the first sentence and the last chunk ends at the last;
    - every chunk reaches further than the one before (none only repeats old text);
    - with overlap 0 chunks never overlap; with overlap 1, when a chunk holds two or
      more sentences and its last one fits beside the next new sentence, the next chunk
      starts with that last sentence;
    - a note is written exactly when the text was split, and a word-split note exactly
      when some sentence alone is over the budget.
    """
    text = sep.join(sentences)
    split: Split = split_to_fit(text, budget, word_count, overlap=overlap)
    chunks = split.chunks
    assert all(n <= budget for n in word_count([c.text for c in chunks]))
    for c in chunks:
        assert text[c.start : c.end] == c.text
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert all(a.start < b.start and a.end < b.end for a, b in itertools.pairwise(chunks))
    spans = split_sentences(text)
    assert chunks[0].start == spans[0].start and chunks[-1].end == spans[-1].end
    for s in spans:
        pieces = [c for c in chunks if c.start < s.end and s.start < c.end]
        assert pieces, f"sentence {s.text!r} is in no chunk"
        # a sentence that fits is never cut: some chunk holds it whole
        if word_count([s.text])[0] <= budget:
            assert any(c.start <= s.start and s.end <= c.end for c in pieces)
    too_long = any(n > budget for n in word_count(sentences))
    for a, b in itertools.pairwise(chunks):
        if overlap == 0:
            assert b.start > a.end
        elif overlap == 1 and not too_long:
            inside = [s for s in spans if a.start <= s.start and s.end <= a.end]
            new = next(s for s in spans if s.start >= a.end)
            if len(inside) >= 2 and sum(word_count([inside[-1].text, new.text])) <= budget:
                assert b.start == inside[-1].start
    assert split.was_split == (word_count([text])[0] > budget)
    assert bool(split.notes) == split.was_split
    assert any("split at word boundaries" in n for n in split.notes) == too_long


@given(sentence_lists())
def test_text_that_fits_is_returned_whole(sentences: list[str]) -> None:
    text = " ".join(sentences)
    budget = max(4, len(text.split()))
    assume(budget == len(text.split()))
    split = split_to_fit(text, budget, word_count)
    assert [c.text for c in split.chunks] == [text] and split.notes == []
