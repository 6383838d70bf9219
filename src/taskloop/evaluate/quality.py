"""Quality signals that need no reference, each on 0-100.

- coherence: mean cosine (all-MiniLM-L6-v2) of adjacent sentences of one output; a
  one-sentence output has no adjacent pair and is not scored (None), not 100.
- relevance: cosine between an output and its source (or the question, for QA).
- factuality: share of the output's numbers and names found in its source (the same
  canonical numbers and case-insensitive name rule as :mod:`taskloop.tasks.factcheck`);
  with an NLI model, the mean probability that the source entails each output sentence.
- diversity: distinct-1/distinct-2 over all outputs and self-BLEU (each output's sentence
  BLEU against all the others; high self-BLEU = outputs repeat each other).

Cosines are multiplied by 100 and negative cosines (rare with MiniLM) count as 0, so every
signal stays on 0-100. Encoder calls are batched: one ``encode`` per list of texts (the
encoder caches per text), never one per item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from taskloop.tasks.text import names, numbers, split_sentences

if TYPE_CHECKING:
    from taskloop.models.encoder import Encoder
    from taskloop.tasks.factcheck import NLIModel

SELF_BLEU_HYPOTHESES = 200  # outputs scored as hypotheses for self-BLEU (a fixed-seed sample)
_ONE = re.compile(r"\bone\b", re.IGNORECASE)


def _points(cosines: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(cosines, 0.0, 1.0) * 100.0, dtype=np.float64)


# --- coherence -------------------------------------------------------------------------------


def coherence(text: str, encoder: Encoder) -> float | None:
    """Mean cosine of adjacent sentences (0-100); None for fewer than two sentences."""
    return coherence_batch([text], encoder)[0]


def coherence_batch(texts: Sequence[str], encoder: Encoder) -> list[float | None]:
    """:func:`coherence` of many texts with one encoder call for all their sentences."""
    sentences = [[s.text for s in split_sentences(t)] for t in texts]
    flat = [s for sents in sentences for s in sents if len(sents) > 1]
    vectors = encoder.encode(flat) if flat else np.zeros((0, 1), dtype=np.float32)
    out: list[float | None] = []
    pos = 0
    for sents in sentences:
        if len(sents) < 2:
            out.append(None)
            continue
        v = vectors[pos : pos + len(sents)]
        pos += len(sents)
        adjacent = np.sum(v[:-1] * v[1:], axis=1)  # unit vectors: dot = cosine
        out.append(float(np.mean(_points(adjacent))))
    return out


# --- relevance --------------------------------------------------------------------------------


def relevance(
    outputs: Sequence[str], sources: Sequence[str], encoder: Encoder
) -> list[float | None]:
    """Cosine (0-100) between each output and its source or question, one encoder call.

    An empty output or source is not scored (None). The encoder reads the first
    ``encoder.max_tokens`` tokens of a long source (see ``Encoder.embedding_cuts``).
    """
    if len(outputs) != len(sources):
        from taskloop.evaluate.errors import MetricError

        raise MetricError(
            f"{len(outputs)} outputs but {len(sources)} sources",
            hint="pass one source (or question) per output",
        )
    keep = [
        i for i, (o, s) in enumerate(zip(outputs, sources, strict=True)) if o.strip() and s.strip()
    ]
    out: list[float | None] = [None] * len(outputs)
    if not keep:
        return out
    vectors = encoder.encode([outputs[i] for i in keep] + [sources[i] for i in keep])
    cos = np.sum(vectors[: len(keep)] * vectors[len(keep) :], axis=1)
    for i, value in zip(keep, _points(cos), strict=True):
        out[i] = float(value)
    return out


# --- factuality -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Factuality:
    """How much of one output its source supports.

    Attributes:
        score: 0-100: share of supported facts, or mean entailment probability × 100.
        method: "numbers+names", "numbers" or "nli:<model name>".
        checked: facts (numbers, names) or sentences (NLI) checked.
        supported: how many of them the source supports (NLI: entailment >= 0.5).
        unsupported: the facts (or sentences) not supported.
        cut: NLI only: whether the source was cut to the model's window.
    """

    score: float
    method: str
    checked: int
    supported: int
    unsupported: tuple[str, ...] = ()
    cut: bool = False


def _facts(text: str, with_names: bool) -> list[tuple[str, str]]:
    """(kind, fact) of a text: canonical numbers (the word "one" is a pronoun too often
    to count, as in factcheck) and, if asked, capitalised names."""
    found = [("number", n) for n in dict.fromkeys(numbers(_ONE.sub(" ", text)))]
    if with_names:
        found += [("name", n) for n in dict.fromkeys(names(text))]
    return found


def _supported_by_rules(output: str, source: str, with_names: bool) -> Factuality | None:
    from taskloop.tasks.factcheck import name_supported

    facts = _facts(output, with_names)
    if not facts:
        return None
    source_numbers = set(numbers(source))
    source_lower = source.lower()
    source_words = {w.lower() for w in re.findall(r"\w+", source)}
    bad = [
        fact
        for kind, fact in facts
        if (
            fact not in source_numbers
            if kind == "number"
            else not name_supported(fact, source_words, source_lower)
        )
    ]
    return Factuality(
        score=100.0 * (len(facts) - len(bad)) / len(facts),
        method="numbers+names" if with_names else "numbers",
        checked=len(facts),
        supported=len(facts) - len(bad),
        unsupported=tuple(bad),
    )


def factuality(
    output: str, source: str, nli: NLIModel | None = None, *, with_names: bool = True
) -> Factuality | None:
    """How much of ``output`` ``source`` supports (see :func:`factuality_batch`)."""
    return factuality_batch([output], [source], nli, with_names=with_names)[0]


def factuality_batch(
    outputs: Sequence[str],
    sources: Sequence[str],
    nli: NLIModel | None = None,
    *,
    with_names: bool = True,
) -> list[Factuality | None]:
    """Factuality of many outputs; the NLI model, when given, runs as one batch.

    Without NLI: the share of the output's numbers (and names, unless ``with_names`` is
    False) found in its source; None when the output has none. With NLI: the mean
    probability that the source (cut to the model's window) entails each output
    sentence; None for an empty output.
    """
    if nli is None:
        return [
            _supported_by_rules(o, s, with_names) for o, s in zip(outputs, sources, strict=True)
        ]
    from taskloop.tasks.factcheck import ENTAILMENT_MIN, entailment_probs

    sentences = [[x.text for x in split_sentences(o)] for o in outputs]
    premises = [s for s, sents in zip(sources, sentences, strict=True) for _ in sents]
    hypotheses = [x for sents in sentences for x in sents]
    probs: list[float] = []
    if hypotheses:
        probs, _ = entailment_probs(nli, premises, hypotheses)
    window_cut = _cut_sources(nli, sources)
    out: list[Factuality | None] = []
    pos = 0
    for i, sents in enumerate(sentences):
        if not sents:
            out.append(None)
            continue
        p = probs[pos : pos + len(sents)]
        pos += len(sents)
        bad = tuple(s for s, q in zip(sents, p, strict=True) if q < ENTAILMENT_MIN)
        out.append(
            Factuality(
                score=100.0 * float(np.mean(p)),
                method=f"nli:{nli.name}",
                checked=len(sents),
                supported=len(sents) - len(bad),
                unsupported=bad,
                cut=window_cut[i],
            )
        )
    return out


def _cut_sources(nli: NLIModel, sources: Sequence[str]) -> list[bool]:
    if not sources:
        return []
    ids = nli.tokenizer(list(sources), truncation=False)["input_ids"]
    return [len(x) > nli.window for x in ids]


# --- diversity --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diversity:
    """Diversity of a set of outputs.

    Attributes:
        distinct_1 / distinct_2: unique n-grams / all n-grams over the set, 0-100
            (tokens: whitespace-split, lower-cased); None when there are none.
        self_bleu: mean sentence BLEU (0-100) of the hypotheses against all other outputs;
            None with fewer than two outputs. Lower = more diverse.
        self_bleu_items: each hypothesis's self-BLEU (for a bootstrap interval).
        n: non-empty outputs considered (empty ones are left out).
        hypotheses: outputs scored as self-BLEU hypotheses.
        note: how self-BLEU was sampled, when it was.
    """

    distinct_1: float | None
    distinct_2: float | None
    self_bleu: float | None
    self_bleu_items: tuple[float, ...]
    n: int
    hypotheses: int
    note: str = ""


def distinct_n(outputs: Sequence[str], n: int) -> float | None:
    """Unique n-grams / total n-grams over all outputs (0-100); None when there are none."""
    total = 0
    unique: set[tuple[str, ...]] = set()
    for text in outputs:
        toks = text.lower().split()
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return 100.0 * len(unique) / total if total else None


def self_bleu_items(
    outputs: Sequence[str], *, max_hypotheses: int = SELF_BLEU_HYPOTHESES, seed: int = 0
) -> tuple[list[float], int]:
    """Sentence BLEU (sacrebleu, effective order) of each hypothesis against all other
    outputs as references; above ``max_hypotheses`` outputs, a fixed-seed sample of them
    are the hypotheses.

    Equal to ``BLEU(effective_order=True).sentence_score(out[i], out[:i] + out[i+1:])``,
    but the references' n-grams are counted once, not once per hypothesis: sacrebleu
    merges several references by taking each n-gram's highest count, so with the two
    highest counts of every n-gram over all outputs, the highest count among "all but
    output i" is known without recounting. sacrebleu's own segment statistics and scoring
    then run on that merged reference.

    Returns:
        The per-hypothesis scores (0-100) and how many (non-empty) outputs there were.
    """
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    from taskloop.evaluate.metrics import sacrebleu_metric

    texts = [o for o in outputs if o.strip()]
    if len(texts) < 2:
        return [], len(texts)
    chosen = list(range(len(texts)))
    if len(texts) > max_hypotheses:
        rng = np.random.default_rng(seed)
        chosen = sorted(rng.choice(len(texts), size=max_hypotheses, replace=False).tolist())
    bleu = sacrebleu_metric("bleu", sentence=True)
    prepared = [bleu._preprocess_segment(t) for t in texts]
    counts, lens = [], []
    top: dict[tuple[str, ...], list[int]] = {}  # n-gram -> [highest, second highest] count
    for text in prepared:
        grams, length = extract_all_word_ngrams(text, 1, bleu.max_ngram_order)
        counts.append(grams)
        lens.append(length)
        for gram, c in grams.items():
            best = top.setdefault(gram, [0, 0])
            if c > best[0]:
                best[0], best[1] = c, best[0]
            elif c > best[1]:
                best[1] = c
    scores = []
    for i in chosen:
        own = counts[i]
        # The others' highest count: the overall highest unless output i holds it alone.
        others = {g: top[g][1] if c == top[g][0] else top[g][0] for g, c in own.items()}
        refs = {
            "ref_ngrams": {g: c for g, c in others.items() if c},
            "ref_lens": lens[:i] + lens[i + 1 :],
        }
        stats = bleu._compute_segment_statistics(prepared[i], refs)
        scores.append(float(bleu._compute_score_from_stats(stats).score))
    return scores, len(texts)


def diversity(
    outputs: Sequence[str], *, max_hypotheses: int = SELF_BLEU_HYPOTHESES, seed: int = 0
) -> Diversity:
    """distinct-1, distinct-2 and self-BLEU of a set of outputs (empty outputs left out)."""
    texts = [o for o in outputs if o.strip()]
    scores, n = self_bleu_items(texts, max_hypotheses=max_hypotheses, seed=seed)
    note = ""
    if n > max_hypotheses:
        note = (
            f"self-BLEU of a fixed-seed sample of {max_hypotheses} of {n} outputs "
            "(each against all other outputs)"
        )
    return Diversity(
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        self_bleu=float(np.mean(scores)) if scores else None,
        self_bleu_items=tuple(scores),
        n=n,
        hypotheses=len(scores),
        note=note,
    )
