"""Factual consistency of a summary with its source, per summary sentence and overall.

Each summary sentence is checked four ways, and every check says what it found:

- numbers: every number in the sentence must occur in the source, compared in canonical
  form ("4.50" = "4.5", "1,000" = "1000", "seven" = "7"; see :func:`text.numbers`);
- names: every capitalised run (:func:`text.names`) must occur in the source, case
  insensitive; a multi-word name passes when any of its parts does ("John Smith" against
  "Mr. Smith");
- content: the sentence's content words, Porter-stemmed, should occur in the source
  (``coverage``), and its meaning should be close to some passage of the source: the
  highest cosine (all-MiniLM-L6-v2, ``similarity``) between the sentence and a source
  sentence or, when no single sentence is close enough to count as a paraphrase, a
  window of 2-3 consecutive source sentences (summary sentences often merge turns). A
  sentence is content-supported when its similarity clears :data:`SIMILARITY_MIN` and
  either its coverage clears :data:`COVERAGE_MIN` or its similarity is high enough to
  count as a paraphrase (:data:`PARAPHRASE_SIMILARITY`).
- entailment (only with an NLI model): the probability that the source passages closest
  to the sentence entail it must reach :data:`ENTAILMENT_MIN`, or the
  ``summarize.factuality`` threshold tuned for that NLI model when one is saved (on the
  summary's lowest sentence entailment, :attr:`FactCheck.entailment_score`; see
  docs/thresholds.md).

The thresholds were set on 300 DialogSum *dev* dialogues: 93.6% of the sentences of
their human summaries are supported against their own dialogue and 0.8% of the
summaries of another dialogue (``benchmarks/summarization_quality.py`` prints the same
figures for the test split). Known blind spot without an NLI model: source words in a
new order ("the dog bit the man" for "the man bit the dog", or word salad made of source
words) pass, because MiniLM embeddings and word overlap hardly see word order.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from taskloop.data.records import Check
from taskloop.evaluate.thresholds import SUMMARIZE_FACTUALITY, tuned_threshold
from taskloop.models.encoder import Encoder
from taskloop.models.errors import ModelKindError
from taskloop.models.loader import ModelSpec, load_model
from taskloop.tasks.text import content_words, names, numbers, split_sentences

SIMILARITY_MIN = 0.3
PARAPHRASE_SIMILARITY = 0.55
COVERAGE_MIN = 0.4
ENTAILMENT_MIN = 0.5
WINDOW = 3  # consecutive source sentences compared as one passage (summaries merge turns)
PREMISE_SENTENCES = 3  # source sentences (closest first, put in document order) per NLI premise
# What a tuned ``summarize.factuality`` threshold is on (higher = more supported).
FACTUALITY_SCORE = "lowest sentence entailment probability"

# Words a summary uses to report a conversation or article, not facts taken from it:
# "#Person1# asks #Person2# ..." must not count "asks" as an invented fact.
REPORTING_WORDS = frozenset(
    """ask tell say talk discuss explain suggest agree disagree decide want think describe
    mention introduce invite complain plan offer remind advise persuade recommend
    conversation dialogue speaker person article report state claim according""".split()  # noqa: SIM905
)
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "madam", "st"})
_SPEAKER = re.compile(r"^\s*#?[\w .-]{1,40}#?\s*:\s+")
_DIGIT = re.compile(r"\d")
_ONE = re.compile(r"\bone\b", re.IGNORECASE)
_POSSESSIVE = re.compile(r"['’]s?$")


@dataclass(frozen=True)
class SentenceCheck:
    """How well one summary sentence is supported by the source.

    Attributes:
        coverage: share of its content words (stemmed) found in the source (1.0 if none).
        similarity: highest cosine with a source sentence or window of sentences.
        evidence: the source passage with that highest cosine.
        entailment: probability that the closest source passages entail the sentence
            (None without an NLI model).
        reasons: why it is unsupported (empty when supported).
    """

    text: str
    supported: bool
    unsupported_numbers: list[str]
    unsupported_names: list[str]
    unsupported_content_words: list[str]
    coverage: float
    similarity: float
    content_supported: bool
    evidence: str
    entailment: float | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FactCheck:
    """The verdict on one summary: supported when every sentence is.

    ``score`` is the share of supported sentences (0 for an empty summary);
    ``entailment_score`` is the lowest sentence entailment probability as the entailment
    check compares it (rounded to 4 places; None without an NLI model): the check passes
    when it reaches ``entailment_min``.
    """

    supported: bool
    score: float
    sentences: list[SentenceCheck]
    entailment_model: str | None = None
    notes: list[str] = field(default_factory=list)  # premises cut to the NLI window
    entailment_score: float | None = None
    entailment_min: float = ENTAILMENT_MIN

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if not s.supported]


# --- NLI model ----------------------------------------------------------------------------


@dataclass
class NLIModel:
    """A sequence-classification model with an "entailment" label."""

    name: str
    model: Any
    tokenizer: Any
    entailment_id: int
    window: int
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    entailment_min: float = ENTAILMENT_MIN  # a sentence is entailed at this probability
    threshold_source: str = "default"  # or "tuned: FILE"


def with_tuned_threshold(nli: NLIModel) -> NLIModel:
    """``nli`` with the ``summarize.factuality`` threshold saved for it, if there is one.

    Raises:
        ThresholdError: the saved thresholds file is corrupt or for another score.
    """
    tuned = tuned_threshold(SUMMARIZE_FACTUALITY, nli.name, score_name=FACTUALITY_SCORE)
    if tuned is None:
        return nli
    return dataclasses.replace(nli, entailment_min=tuned.value, threshold_source=tuned.source)


_nli: dict[tuple[str, str], NLIModel] = {}
_nli_lock = threading.Lock()


def load_nli(name: str, *, device: str = "auto") -> NLIModel:
    """Load an NLI model (local folder or cached hub id) once per process.

    Raises:
        ModelNotFoundError: not a folder and not in the Hugging Face cache.
        ModelKindError: not a sequence classifier, or no label named like "entailment".
    """
    key = (name, device)
    with _nli_lock:
        if key in _nli:
            return _nli[key]
    try:
        lm = load_model(ModelSpec(name, kind="classify", device=device))
    except ModelKindError as exc:
        raise ModelKindError(
            f"entailment model {name!r} is not a sequence classifier: {exc.message}",
            hint="pass an NLI model such as microsoft/deberta-large-mnli or "
            "cross-encoder/nli-deberta-v3-base",
        ) from None
    model, tokenizer, resolved_device = lm.model, lm.tokenizer, lm.device
    labels = {int(i): str(label).lower() for i, label in model.config.id2label.items()}
    found = [i for i, label in labels.items() if label.startswith("entail")]
    if not found:
        raise ModelKindError(
            f"entailment model {name!r} has no 'entailment' label (labels: {labels})",
            hint="pass an NLI model whose config.id2label names an entailment class",
        )
    limit = getattr(tokenizer, "model_max_length", None)
    positions = getattr(model.config, "max_position_embeddings", None)
    window = min(x for x in (limit, positions, 512) if isinstance(x, int) and 0 < x < 1_000_000)
    nli = NLIModel(name, model, tokenizer, found[0], window, resolved_device)
    with _nli_lock:
        _nli[key] = nli
    return nli


def entailment_probs(
    nli: NLIModel, premises: Sequence[str], hypotheses: Sequence[str], *, batch_size: int = 16
) -> tuple[list[float], int]:
    """P(entailment) for each (premise, hypothesis) pair.

    Returns:
        The probabilities, and how many premises were cut to fit the model's window.
    """
    import torch

    probs: list[float] = []
    cut = 0
    for start in range(0, len(premises), batch_size):
        prem = list(premises[start : start + batch_size])
        hyp = list(hypotheses[start : start + batch_size])
        full = nli.tokenizer(prem, hyp, truncation=False)["input_ids"]
        cut += sum(len(ids) > nli.window for ids in full)
        enc = nli.tokenizer(
            prem,
            hyp,
            truncation="only_first",
            max_length=nli.window,
            padding=True,
            return_tensors="pt",
        ).to(nli.device)
        with nli.lock, torch.inference_mode():
            logits = nli.model(**enc).logits
        probs.extend(torch.softmax(logits.float(), dim=-1)[:, nli.entailment_id].tolist())
    return probs, cut


# --- word-level evidence -----------------------------------------------------------------


@cache
def _stemmer() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def stem(word: str) -> str:
    """Porter stem of a lower-cased word ("invoices" and "invoiced" → "invoic")."""
    return str(_stemmer().stem(word.lower()))


@cache
def _reporting_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in REPORTING_WORDS)


def _content_stems(text: str) -> list[tuple[str, str]]:
    """(word, stem) for content words that are not numbers (numbers are checked apart)."""
    return [(w, stem(w)) for w in content_words(text) if not _DIGIT.search(w) and not numbers(w)]


def sentence_numbers(text: str) -> set[str]:
    """The numbers of a summary sentence; the word "one" is a pronoun too often to count."""
    return set(numbers(_ONE.sub(" ", text)))


def name_supported(name: str, source_words: set[str], source_lower: str) -> bool:
    """A name is in the source if it occurs whole, or any non-title part of it does."""
    name = _POSSESSIVE.sub("", name)  # "Adam's" is Adam
    if re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", source_lower):
        return True
    parts = [p.lower() for p in name.split() if len(p) > 1 and p.lower() not in _TITLES]
    return any(p in source_words for p in parts)


def strip_speaker(sentence: str) -> str:
    """A dialogue line without its ``Speaker:`` prefix (the text is what gets embedded)."""
    return _SPEAKER.sub("", sentence, count=1) or sentence


def source_windows(sentences: Sequence[str]) -> list[str]:
    """Windows of 2..WINDOW consecutive sentences (a summary sentence often merges turns)."""
    return [
        " ".join(sentences[i : i + size])
        for size in range(2, WINDOW + 1)
        for i in range(0, max(len(sentences) - size + 1, 0))
    ]


# --- the check --------------------------------------------------------------------------------


def check_summary(
    summary: str,
    source: str,
    encoder: Encoder,
    *,
    nli: NLIModel | None = None,
) -> FactCheck:
    """Check every sentence of ``summary`` against ``source``.

    Args:
        summary: the summary to check.
        source: the document it summarises.
        encoder: sentence encoder for the similarity evidence (cached per text).
        nli: optional entailment model; when given, a sentence must also be entailed.

    Returns:
        A :class:`FactCheck` with one :class:`SentenceCheck` per summary sentence.
    """
    sentences = [s.text for s in split_sentences(summary)]
    if not sentences:
        return FactCheck(False, 0.0, [], nli.name if nli else None)
    source_lower = source.lower()
    source_numbers = set(numbers(source))
    source_words = {w.lower() for w in re.findall(r"\w+", source)}
    source_stems = {s for _, s in _content_stems(source)} | {stem(w) for w in source_words}
    source_sents = [strip_speaker(s.text) for s in split_sentences(source)] or [source]
    bodies = [strip_speaker(s) for s in sentences]
    vectors = encoder.encode(source_sents + bodies)
    passages = source_sents
    sims = vectors[len(passages) :] @ vectors[: len(passages)].T  # (sentences, passages)
    if sims.size and sims.max(axis=1).min() < PARAPHRASE_SIMILARITY:
        # Only then can a window change a verdict; extractive summaries never need them.
        windows = source_windows(source_sents)
        if windows:
            passages = source_sents + windows
            sims = np.concatenate(
                [sims, vectors[len(source_sents) :] @ encoder.encode(windows).T], axis=1
            )
    best = sims.argmax(axis=1)

    ent: list[float | None] = [None] * len(sentences)
    notes: list[str] = []
    if nli is not None:
        n_sents = len(source_sents)
        premises = [_premise(source_sents, sims[i, :n_sents]) for i in range(len(bodies))]
        probs, cut = entailment_probs(nli, premises, bodies)
        ent = list(probs)
        if cut:
            notes.append(
                f"{cut} entailment premise(s) were cut to the window of {nli.name} "
                f"({nli.window} tokens)"
            )

    checks = []
    for i, (text, body) in enumerate(zip(sentences, bodies, strict=True)):
        bad_numbers = sorted(sentence_numbers(body) - source_numbers, key=_num_key)
        bad_names = [
            n
            for n in dict.fromkeys(names(text))
            if not name_supported(n, source_words, source_lower)
        ]
        stems = _content_stems(body)
        counted = [(w, s) for w, s in stems if s not in _reporting_stems()]
        new_words = [w for w, s in counted if s not in source_stems]
        coverage = 1.0 - len(new_words) / len(counted) if counted else 1.0
        similarity = float(sims[i, best[i]])
        content_ok = similarity >= SIMILARITY_MIN and (
            coverage >= COVERAGE_MIN or similarity >= PARAPHRASE_SIMILARITY
        )
        reasons = []
        if bad_numbers:
            reasons.append(f"numbers not in the source: {', '.join(bad_numbers)}")
        if bad_names:
            reasons.append(f"names not in the source: {', '.join(bad_names)}")
        if not content_ok:
            if similarity < SIMILARITY_MIN:
                reasons.append(
                    f"no source passage is close in meaning (best cosine {similarity:.2f} "
                    f"< {SIMILARITY_MIN})"
                )
            else:
                reasons.append(
                    f"only {coverage:.0%} of its content words are in the source "
                    f"(< {COVERAGE_MIN:.0%}) and best cosine {similarity:.2f} "
                    f"< {PARAPHRASE_SIMILARITY}"
                )
        e = ent[i]
        if e is not None and nli is not None and e < nli.entailment_min:
            reasons.append(f"entailment {e:.2f} < {nli.entailment_min:.4g}")
        checks.append(
            SentenceCheck(
                text=text,
                supported=not reasons,
                unsupported_numbers=bad_numbers,
                unsupported_names=bad_names,
                unsupported_content_words=list(dict.fromkeys(new_words)),
                coverage=round(coverage, 4),
                similarity=round(similarity, 4),
                content_supported=content_ok,
                evidence=passages[int(best[i])],
                entailment=None if e is None else round(e, 4),
                reasons=reasons,
            )
        )
    ok = sum(c.supported for c in checks)
    return FactCheck(
        supported=ok == len(checks),
        score=ok / len(checks),
        sentences=checks,
        entailment_model=nli.name if nli else None,
        notes=notes,
        entailment_score=min(
            (c.entailment for c in checks if c.entailment is not None), default=None
        ),
        entailment_min=nli.entailment_min if nli else ENTAILMENT_MIN,
    )


def _premise(sentences: list[str], sims: np.ndarray) -> str:
    """The source sentences closest to a hypothesis, in document order."""
    top = sorted(np.argsort(-sims)[:PREMISE_SENTENCES].tolist())
    return " ".join(sentences[i] for i in top)


def _num_key(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


# --- as prediction checks ---------------------------------------------------------------------


def _where(i: int, text: str) -> str:
    short = text if len(text) <= 60 else text[:57] + "..."
    return f"sentence {i + 1} ({short!r})"


def _check(name: str, fc: FactCheck, problems: list[str], ok: str, bad: str) -> Check:
    """A check that fails on an empty summary or when any sentence has a problem."""
    if not fc.sentences:
        return Check(name=name, passed=False, detail="the summary is empty")
    return Check(
        name=name, passed=not problems, detail=bad + "; ".join(problems) if problems else ok
    )


def to_checks(fc: FactCheck) -> list[Check]:
    """The prediction checks: numbers_supported, names_supported, content_supported and,
    with an NLI model, entailment."""
    sents = list(enumerate(fc.sentences))
    numbers_bad = [
        f"{_where(i, s.text)}: {', '.join(s.unsupported_numbers)}"
        for i, s in sents
        if s.unsupported_numbers
    ]
    names_bad = [
        f"{_where(i, s.text)}: {', '.join(s.unsupported_names)}"
        for i, s in sents
        if s.unsupported_names
    ]
    content_bad = []
    for i, s in sents:
        if not s.content_supported:
            new = s.unsupported_content_words[:8]
            content_bad.append(
                f"{_where(i, s.text)}: cosine {s.similarity:.2f}, coverage {s.coverage:.0%}"
                + (f", new words: {', '.join(new)}" if new else "")
            )
    lowest = min((s.similarity for _, s in sents), default=0.0)
    out = [
        _check(
            "numbers_supported", fc, numbers_bad, "every number is in the source",
            "not in the source: ",
        ),
        _check(
            "names_supported", fc, names_bad, "every name is in the source", "not in the source: "
        ),
        _check(
            "content_supported", fc, content_bad,
            f"every sentence is close to the source (lowest cosine {lowest:.2f})", "unsupported: ",
        ),
    ]  # fmt: skip
    if fc.entailment_model is not None:
        values = [s.entailment for _, s in sents if s.entailment is not None]
        low = [
            f"{_where(i, s.text)}: {s.entailment:.2f}"
            for i, s in sents
            if s.entailment is not None and s.entailment < fc.entailment_min
        ]
        out.append(
            _check(
                "entailment", fc, low,
                f"every sentence entailed by {fc.entailment_model} (lowest "
                f"{min(values, default=0.0):.2f})",
                f"not entailed (< {fc.entailment_min:.4g}) by {fc.entailment_model}: ",
            )
        )  # fmt: skip
    return out


def as_details(fc: FactCheck) -> list[dict[str, Any]]:
    """Per-sentence findings as plain data for ``Prediction.details``."""
    return [
        {
            "sentence": s.text,
            "supported": s.supported,
            "similarity": s.similarity,
            "coverage": s.coverage,
            "entailment": s.entailment,
            "evidence": s.evidence,
            "reasons": s.reasons,
        }
        for s in fc.sentences
    ]
