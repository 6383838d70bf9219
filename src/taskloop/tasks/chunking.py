"""Long inputs: split at sentence boundaries into overlapping windows, never cut silently.

``split_to_fit`` packs whole sentences into chunks of at most ``budget`` tokens (as the
caller's ``count`` function measures them), repeating the last ``overlap`` sentences of a
chunk at the start of the next so that context carries across. A sentence longer than
the budget on its own is split at word boundaries, and that is reported. Each task
merges chunk outputs its own way (summaries are joined and re-checked, translations are
joined in order with no overlap, QA keeps the best-scoring answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from taskloop.tasks.text import Sentence, split_sentences

Count = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class Chunk:
    """A window of the input: its text and character span."""

    text: str
    start: int
    end: int


@dataclass
class Split:
    """The chunks of one input and notes on how it was cut (empty when it fit)."""

    chunks: list[Chunk]
    notes: list[str] = field(default_factory=list)

    @property
    def was_split(self) -> bool:
        return len(self.chunks) > 1


def _word_pieces(sent: Sentence, budget: int, count: Count) -> list[Sentence]:
    """Cut one over-long sentence at word boundaries into pieces that fit."""
    pieces: list[Sentence] = []
    words = sent.text.split(" ")
    offset = sent.start
    current: list[str] = []
    start = offset
    for word in words:
        trial = " ".join([*current, word])
        if current and count([trial])[0] > budget:
            text = " ".join(current)
            pieces.append(Sentence(text, start, start + len(text)))
            start = start + len(text) + 1
            current = [word]
        else:
            current.append(word)
    if current:
        text = " ".join(current)
        pieces.append(Sentence(text, start, start + len(text)))
    return pieces


def split_to_fit(text: str, budget: int, count: Count, *, overlap: int = 1) -> Split:
    """Chunks of whole sentences, each at most ``budget`` tokens by ``count``.

    Args:
        text: the input.
        budget: most tokens per chunk (the model window minus room for a prompt).
        count: tokens of each string (e.g. ``lambda xs: count_tokens(lm, xs)``).
        overlap: sentences repeated from the end of one chunk at the start of the next
            (0 for translation, where repeats would be translated twice).

    Returns:
        One chunk (the whole text) when it fits, else several, with notes.
    """
    if budget < 4:
        raise ValueError(f"budget must be at least 4 tokens, not {budget}")
    if count([text])[0] <= budget:
        return Split([Chunk(text, 0, len(text))])
    notes: list[str] = []
    sentences: list[Sentence] = []
    lengths = count([s.text for s in split_sentences(text)]) if text.strip() else []
    for sent, n in zip(split_sentences(text), lengths, strict=True):
        if n > budget:
            pieces = _word_pieces(sent, budget, count)
            notes.append(
                f"a sentence of {n} tokens at chars {sent.start}-{sent.end} was split at word "
                f"boundaries into {len(pieces)} pieces (budget {budget})"
            )
            sentences.extend(pieces)
        else:
            sentences.append(sent)
    sizes = count([s.text for s in sentences])
    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        j, used = i, 0
        while j < len(sentences) and used + sizes[j] <= budget:
            used += sizes[j]
            j += 1
        j = max(j, i + 1)
        chunks.append(
            Chunk(
                text[sentences[i].start : sentences[j - 1].end],
                sentences[i].start,
                sentences[j - 1].end,
            )
        )
        if j >= len(sentences):
            break
        nxt = max(j - overlap, i + 1)
        # Less overlap when it would leave no room for the next new sentence: else the
        # next chunk would repeat old sentences only.
        while nxt < j and sum(sizes[nxt : j + 1]) > budget:
            nxt += 1
        i = nxt
    notes.insert(
        0,
        f"input of {count([text])[0]} tokens exceeds the budget of {budget}: split into "
        f"{len(chunks)} sentence-aligned chunks with {overlap} sentence(s) of overlap",
    )
    return Split(chunks, notes)
