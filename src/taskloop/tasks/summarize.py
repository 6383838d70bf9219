"""Summarization: extractive (offline), abstractive (seq2seq, map-reduce), hybrid (checked).

Modes (``FileOptions.mode``; extractive when no model is configured, hybrid when one is;
"generative" is taken as abstractive):

extractive
    The document's sentences (dialogue turns are lines; every extracted sentence keeps
    its speaker) are embedded with the packaged all-MiniLM-L6-v2 and ranked by TextRank:
    PageRank over the cosine-similarity graph, with a teleport vector that favours early
    sentences (personalised PageRank, weight 1/sqrt(position + 1)). Sentences are picked
    by maximal marginal relevance (rank minus similarity to what is already picked) up
    to ``max_sentences``, or else up to a word budget of a fifth of the document
    (15–60 words), and output in document order. Both choices were measured on the
    DialogSum dev set (docs/benchmarks.md).
abstractive
    A seq2seq model (``FileOptions.model``) summarises, batched and cached; T5-family
    models get the "summarize: " prefix. A document longer than the model's window is
    split at sentences (1 sentence of overlap), each chunk summarised, the chunk
    summaries joined, and the joined text summarised again while it is longer than one
    summary may be (map-reduce, at most :data:`MAX_ROUNDS` rounds). With
    ``FileOptions.long_model`` (LED, LongT5, BigBird-Pegasus) a document over the normal
    model's window goes to the long model instead. Every split or cut is reported in
    ``Prediction.truncation``.
hybrid
    Abstractive, then fact-checked (:mod:`taskloop.tasks.factcheck`): unsupported
    sentences are replaced by the source sentences closest in meaning (or, when nothing
    in the source is close, by the next extractive sentence); when no sentence is
    supported, the extractive summary is used. ``Prediction.mode`` says which happened.

Every summary, whatever its mode, is fact-checked and gets the checks
``numbers_supported``, ``names_supported``, ``content_supported``, ``entailment`` (with
``FileOptions.entailment_model``; its threshold is the ``summarize.factuality`` one tuned
for that NLI model when saved, see docs/thresholds.md) and ``length``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskloop import progress
from taskloop.data.records import (
    Check,
    Prediction,
    Status,
    SummarizeExample,
    status_from_checks,
)
from taskloop.errors import TaskloopError
from taskloop.evaluate.metrics import rouge
from taskloop.log import step
from taskloop.models.cache import LRUCache
from taskloop.models.encoder import Encoder
from taskloop.models.errors import ModelKindError
from taskloop.models.generate import GenerationSettings, count_tokens, generate
from taskloop.models.loader import LoadedModel
from taskloop.tasks import factcheck
from taskloop.tasks.chunking import split_to_fit
from taskloop.tasks.context import TaskContext
from taskloop.tasks.text import split_sentences, words

EXTRACTIVE = "extractive (TextRank over all-MiniLM-L6-v2 embeddings)"
DAMPING = 0.85
POSITION_BIAS = 0.5  # teleport weight 1/(position+1)**0.5; 0 is plain TextRank
MMR_LAMBDA = 0.7  # rank vs redundancy in the pick
BUDGET_SHARE = 0.2  # summary words per document word, when max_sentences is not set
BUDGET_WORDS = (15, 60)
MIN_CANDIDATE_WORDS = 4  # "Yes, sir." is never a summary sentence while longer ones exist
T5_FAMILY = frozenset({"t5", "mt5", "umt5"})  # trained with task prefixes
MAX_ROUNDS = 3
REDUNDANT = 0.8  # cosine at which a source sentence repeats a kept summary sentence
DEFAULT_MAX_NEW_TOKENS = 96
FACT_CHECKS = ("numbers_supported", "names_supported", "content_supported", "entailment")

_SPEAKER = re.compile(r"^\s*(#?[\w .'-]{1,40}?#?)\s*:\s+")


# --- sentences of a document -------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One extractable sentence.

    Attributes:
        text: as it goes into a summary (a dialogue sentence keeps its speaker).
        body: the sentence without its speaker: what is embedded.
        speaker: the dialogue speaker ("#Person1#"), None in prose.
    """

    text: str
    body: str
    speaker: str | None


def is_dialogue(document: str) -> bool:
    """True when most lines start with ``Speaker:`` (DialogSum's ``#Person1#: ...``)."""
    lines = [line for line in document.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    return sum(bool(_SPEAKER.match(line)) for line in lines) >= 0.6 * len(lines)


def document_units(document: str) -> list[Unit]:
    """The document's sentences; in a dialogue each turn's sentences carry its speaker."""
    if not is_dialogue(document):
        return [Unit(s.text, s.text, None) for s in split_sentences(document)]
    units = []
    for line in document.splitlines():
        match = _SPEAKER.match(line)
        speaker = match.group(1).strip() if match else None
        body = line[match.end() :] if match else line
        for sent in split_sentences(body):
            text = f"{speaker}: {sent.text}" if speaker else sent.text
            units.append(Unit(text, sent.text, speaker))
    return units


# --- TextRank -----------------------------------------------------------------------------


def pagerank(
    weights: np.ndarray,
    *,
    damping: float = DAMPING,
    teleport: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> np.ndarray:
    """PageRank of a weighted graph by power iteration.

    ``r = (1 - d) * t + d * P^T r`` where ``P`` is ``weights`` (negatives clipped to 0,
    self-loops dropped) normalised by row, a node with no edges jumps uniformly, and
    ``t`` is the teleport distribution (uniform by default).

    Returns:
        The stationary scores, summing to 1.
    """
    n = weights.shape[0]
    if n == 0:
        return np.zeros(0)
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    np.fill_diagonal(w, 0.0)
    rows = w.sum(axis=1, keepdims=True)
    p = np.where(rows > 0, w / np.where(rows > 0, rows, 1.0), 1.0 / n)
    t = np.full(n, 1.0 / n) if teleport is None else np.asarray(teleport, dtype=np.float64)
    t = t / t.sum()
    r = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        nxt = (1.0 - damping) * t + damping * (p.T @ r)
        if np.abs(nxt - r).sum() < tol:
            return np.asarray(nxt)
        r = nxt
    return np.asarray(r)


def position_teleport(n: int, bias: float = POSITION_BIAS) -> np.ndarray:
    """Teleport weights ``1/(i+1)**bias``: documents and dialogues put the gist early."""
    return 1.0 / (np.arange(n, dtype=np.float64) + 1.0) ** bias


def mmr_pick(
    scores: np.ndarray,
    vectors: np.ndarray,
    *,
    lengths: Sequence[int],
    max_sentences: int | None = None,
    budget_words: int | None = None,
    eligible: Sequence[bool] | None = None,
    lam: float = MMR_LAMBDA,
) -> list[int]:
    """Indices picked by maximal marginal relevance, in pick order.

    Each step takes ``argmax lam * score/max(score) - (1 - lam) * max cos(picked)`` among
    eligible sentences, until ``max_sentences`` are picked or ``budget_words`` reached.
    """
    n = len(scores)
    if n == 0:
        return []
    rel = scores / scores.max() if scores.max() > 0 else np.ones(n)
    pool = [i for i in range(n) if eligible is None or eligible[i]] or list(range(n))
    picked: list[int] = []
    used = 0
    redundancy = np.zeros(n)
    while pool:
        if max_sentences is not None and len(picked) >= max_sentences:
            break
        if max_sentences is None and budget_words is not None and used >= budget_words:
            break
        best = max(pool, key=lambda i: lam * rel[i] - (1 - lam) * redundancy[i])
        picked.append(best)
        pool.remove(best)
        used += lengths[best]
        redundancy = np.maximum(redundancy, vectors @ vectors[best])
    return picked


@dataclass
class Extract:
    """An extractive summary and how it was made."""

    text: str
    units: list[Unit]
    vectors: np.ndarray  # (units, dim), unit length
    scores: np.ndarray  # TextRank score per unit
    picked: list[int]  # in document order
    budget: str  # "3 sentences" or "40 words"
    notes: list[str] = field(default_factory=list)

    def ranked(self) -> list[int]:
        return [int(i) for i in np.argsort(-self.scores, kind="stable")]


def extract(document: str, encoder: Encoder, *, max_sentences: int | None = None) -> Extract:
    """The extractive summary of ``document`` (see the module docstring)."""
    units = document_units(document)
    if not units:
        return Extract("", [], np.zeros((0, encoder.dim)), np.zeros(0), [], "empty")
    notes = encoder.embedding_cuts([u.body for u in units])
    vectors = encoder.encode([u.body for u in units])
    scores = pagerank(vectors @ vectors.T, teleport=position_teleport(len(units)))
    lengths = [len(words(u.body)) for u in units]
    if max_sentences is not None:
        budget, budget_text = None, f"{max_sentences} sentences"
    else:
        low, high = BUDGET_WORDS
        budget = int(min(high, max(low, round(BUDGET_SHARE * sum(lengths)))))
        budget_text = f"{budget} words"
    picked = sorted(
        mmr_pick(
            scores,
            vectors,
            lengths=lengths,
            max_sentences=max_sentences,
            budget_words=budget,
            eligible=[n >= MIN_CANDIDATE_WORDS for n in lengths],
        )
    )
    sep = "\n" if any(u.speaker for u in units) else " "
    text = sep.join(units[i].text for i in picked)
    return Extract(text, units, vectors, scores, picked, budget_text, notes)


# --- abstractive: map-reduce over chunks --------------------------------------------------------


@dataclass
class Abstract:
    """An abstractive summary, the model that wrote it, and every split on the way."""

    text: str
    model: str
    notes: list[str]
    chunks: int  # chunks of the document in the first round
    rounds: int


def summary_prefix(lm: LoadedModel) -> str:
    """ "summarize: " for T5-family models (trained with task prefixes), else nothing."""
    model_type = getattr(getattr(lm.model, "config", None), "model_type", "")
    return "summarize: " if model_type in T5_FAMILY else ""


def input_budget(lm: LoadedModel, prefix: str, max_input_tokens: int | None = None) -> int:
    """Tokens of document a prompt may hold: the window minus the prefix's tokens.

    Raises:
        ModelKindError: the window leaves fewer than 4 tokens.
    """
    window = min(lm.window, max_input_tokens) if max_input_tokens else lm.window
    base, with_prefix = count_tokens(lm, ["", prefix])
    budget = window - (with_prefix - base)
    if budget < 4:
        raise ModelKindError(
            f"model {lm.name!r} reads {window} tokens, too few for a prefix of "
            f"{with_prefix - base} tokens and a document",
            hint="pick a model with a larger window, or raise max_input_tokens",
        )
    return budget


@dataclass
class _Job:
    text: str
    notes: list[str] = field(default_factory=list)
    rounds: int = 0
    chunks: int = 0
    model: str = ""
    output: str = ""


@dataclass(frozen=True)
class Summariser:
    """A model with its settings and input budget."""

    lm: LoadedModel
    settings: GenerationSettings
    budget: int

    def count(self, texts: Sequence[str]) -> list[int]:
        return count_tokens(self.lm, texts)


def summarise_abstractive(
    documents: Sequence[str],
    main: Summariser,
    *,
    long: Summariser | None = None,
    long_input: str = "split",
    cache: LRUCache | None = None,
) -> list[Abstract]:
    """Summarise every document; long ones by map-reduce or with the long model.

    Args:
        documents: the texts.
        main: the task model.
        long: a long-context model for documents over ``main``'s budget.
        long_input: "split" (map-reduce) or "truncate" (cut to the window, reported).
        cache: the run's generation cache.

    Returns:
        One :class:`Abstract` per document, in order.
    """
    jobs = [_Job(doc) for doc in documents]
    active = list(range(len(jobs)))
    while active:
        plans: dict[str, list[tuple[int, list[str]]]] = {"main": [], "long": []}
        for i in active:
            job = jobs[i]
            job.rounds += 1
            tokens = main.count([job.text])[0]
            use = main
            if tokens > main.budget and long is not None:
                use = long
                if job.rounds == 1:
                    job.notes.append(
                        f"document of {tokens} tokens exceeds the window of {main.lm.name} "
                        f"({main.budget} tokens for text): summarised with the long model "
                        f"{long.lm.name} ({long.budget} tokens)"
                    )
            where = "" if job.rounds == 1 else f"round {job.rounds} (joined chunk summaries): "
            if long_input == "truncate":
                chunks = [job.text]
                n = use.count([job.text])[0]
                if n > use.budget:
                    job.notes.append(
                        f"{where}input of {n} tokens cut to the first {use.budget} tokens "
                        f"(long_input=truncate)"
                    )
            else:
                split = split_to_fit(job.text, use.budget, use.count, overlap=1)
                chunks = [c.text for c in split.chunks]
                job.notes.extend(where + note for note in split.notes)
            if job.rounds == 1:
                job.chunks = len(chunks)
            job.model = use.lm.describe()
            plans["long" if use is long else "main"].append((i, chunks))
        outputs: dict[int, list[str]] = {}
        for key, planned in plans.items():
            use = long if key == "long" and long is not None else main
            if not planned:
                continue
            flat = [c for _, chunks in planned for c in chunks]
            with step("summarize.generate", model=use.lm.name, chunks=len(flat)):
                gens = generate(use.lm, flat, use.settings, cache=cache)
            pos = 0
            for i, chunks in planned:
                outputs[i] = [g.text for g in gens[pos : pos + len(chunks)]]
                pos += len(chunks)
        still: list[int] = []
        for i in active:
            job = jobs[i]
            parts = outputs[i]
            joined = " ".join(p for p in parts if p.strip()).strip()
            job.output = joined
            if len(parts) == 1:
                continue
            n_joined = main.count([joined])[0] if joined else 0
            limit = main.settings.max_new_tokens
            head = f"round {job.rounds}: {len(parts)} chunk summaries joined ({n_joined} tokens)"
            if n_joined <= limit:
                job.notes.append(head)
            elif job.rounds >= MAX_ROUNDS:
                job.notes.append(f"{head}, still longer than one summary ({limit}): kept")
            elif n_joined >= main.count([job.text])[0]:
                job.notes.append(f"{head}, no shorter than their input: kept")
            else:
                job.notes.append(f"{head}, longer than one summary ({limit}): summarised again")
                job.text = joined
                still.append(i)
        active = still
    return [Abstract(j.output, j.model, j.notes, j.chunks, j.rounds) for j in jobs]


# --- hybrid: repair unsupported sentences --------------------------------------------------------


@dataclass
class Repair:
    """The summary after repair, the mode line, and what was replaced and why."""

    text: str
    mode: str
    replaced: list[dict[str, Any]]


def repair(fc: factcheck.FactCheck, ext: Extract, encoder: Encoder) -> Repair:
    """Keep supported sentences; replace each unsupported one by the source sentence
    closest in meaning (when its cosine reaches ``factcheck.SIMILARITY_MIN``), else by
    the best-ranked extractive sentence not yet used; nothing supported: extractive.

    A source sentence that repeats a kept sentence (cosine >= :data:`REDUNDANT`) is
    never a replacement.
    """
    sents = fc.sentences
    fallback = "hybrid: fell back to extractive"
    if not sents:
        why = ["the abstractive summary is empty"]
        return Repair(ext.text, fallback, [{"sentence": "", "why": why, "replacement": None}])
    bad = [s for s in sents if not s.supported]
    if not bad:
        return Repair(" ".join(s.text for s in sents), "hybrid: abstractive kept", [])
    if len(bad) == len(sents) or not ext.units:
        rows = [{"sentence": s.text, "why": s.reasons, "replacement": None} for s in bad]
        return Repair(ext.text, fallback, rows)
    kept = [factcheck.strip_speaker(s.text) for s in sents if s.supported]
    repeats = (encoder.encode(kept) @ ext.vectors.T).max(axis=0) >= REDUNDANT
    used = {i for i in range(len(ext.units)) if repeats[i]}
    sims = encoder.encode([factcheck.strip_speaker(s.text) for s in bad]) @ ext.vectors.T
    ranked = ext.ranked()
    out: list[str] = []
    replaced: list[dict[str, Any]] = []
    k = 0
    for s in sents:
        if s.supported:
            out.append(s.text)
            continue
        row = sims[k]
        k += 1
        order = [int(i) for i in np.argsort(-row) if int(i) not in used]
        if order and row[order[0]] >= factcheck.SIMILARITY_MIN:
            choice, how = order[0], f"closest source sentence (cosine {row[order[0]]:.2f})"
        else:
            rest = [i for i in ranked if i not in used]
            if not rest:
                replaced.append({"sentence": s.text, "why": s.reasons, "replacement": None})
                continue
            choice = rest[0]
            how = (
                f"nothing in the source is close (best cosine {float(row.max()):.2f}): "
                "the best-ranked extractive sentence"
            )
        used.add(choice)
        replacement = ext.units[choice].text
        out.append(replacement)
        replaced.append(
            {"sentence": s.text, "why": s.reasons, "replacement": replacement, "how": how}
        )
    n_new = sum(r["replacement"] is not None for r in replaced)
    dropped = len(replaced) - n_new
    mode = f"hybrid: repaired ({n_new} of {len(sents)} sentences replaced"
    mode += f", {dropped} dropped)" if dropped else ")"
    return Repair(" ".join(out), mode, replaced)


# --- checks ----------------------------------------------------------------------------------


def length_check(summary: str, document: str) -> Check:
    """A summary must be non-empty and have fewer words than its source (or as few, when
    the source is a single sentence that is its own summary)."""
    n_sum, n_doc = len(words(summary)), len(words(document))
    if n_sum == 0:
        return Check(name="length", passed=False, detail="the summary is empty")
    ratio = n_sum / max(n_doc, 1)
    passed = n_sum < n_doc or (n_sum == n_doc and summary.strip() == document.strip())
    return Check(
        name="length",
        passed=passed,
        detail=f"{n_sum} words for a source of {n_doc} ({ratio:.0%})",
    )


def _verify(
    summary: str,
    document: str,
    encoder: Encoder,
    nli: factcheck.NLIModel | None,
    done: factcheck.FactCheck | None = None,
) -> tuple[factcheck.FactCheck, list[Check]]:
    """Fact checks (``done`` when this summary was checked already) plus the length check."""
    fc = done or factcheck.check_summary(summary, document, encoder, nli=nli)
    return fc, [*factcheck.to_checks(fc), length_check(summary, document)]


# --- the task -----------------------------------------------------------------------------------


def _resolve_mode(ctx: TaskContext) -> str:
    mode = ctx.options.mode
    if mode is None:
        return "hybrid" if ctx.options.model else "extractive"
    return "abstractive" if mode == "generative" else mode


def _skipped(examples: Sequence[SummarizeExample], reason: str, mode: str) -> list[Prediction]:
    return [_empty(ex, "skipped", mode, reason) for ex in examples]


def _empty(ex: SummarizeExample, status: Status, mode: str, reason: str) -> Prediction:
    return Prediction(
        id=ex.id, task="summarize", where=ex.where, output=None, status=status, mode=mode,
        reason=reason,
    )  # fmt: skip


def _reason(exc: TaskloopError) -> str:
    return f"{exc}" + (f" — {exc.hint}" if exc.hint else "")


def run(examples: Sequence[SummarizeExample], ctx: TaskContext) -> list[Prediction]:
    """Summarise every example (see the module docstring); one prediction each, in order."""
    opts = ctx.options
    mode = _resolve_mode(ctx)
    if not examples:
        return []
    if mode != "extractive" and not opts.model:
        return _skipped(
            examples,
            f"mode {mode!r} needs a summarisation model: set `model` for {ctx.file} in "
            "manifest.json (a seq2seq model such as google/flan-t5-base or "
            "philschmid/bart-large-cnn-samsum), or use mode 'extractive'",
            mode,
        )
    with step("summarize.prepare", file=ctx.file, items=len(examples), mode=mode) as info:
        try:
            encoder = ctx.resources.encoder()
            nli = (
                factcheck.with_tuned_threshold(
                    factcheck.load_nli(opts.entailment_model, device=ctx.resources.device)
                )
                if opts.entailment_model
                else None
            )
            main = long = None
            if mode != "extractive":
                assert opts.model is not None
                main = _summariser(ctx, ctx.resources.model(opts.model, "seq2seq"))
                if opts.long_model:
                    long = _summariser(ctx, ctx.resources.model(opts.long_model, "seq2seq"))
        except TaskloopError as exc:
            info.update(skipped=len(examples))
            return _skipped(examples, _reason(exc), mode)
    docs = [ex.document for ex in examples]

    extracts: list[Extract | None] = [None] * len(examples)
    errors: dict[int, str] = {}
    if mode in ("extractive", "hybrid"):
        with step("summarize.extract", items=len(docs)):
            for i, doc in enumerate(docs):
                try:
                    extracts[i] = extract(doc, encoder, max_sentences=opts.max_sentences)
                except Exception as exc:  # one bad item never stops the file
                    errors[i] = f"extractive summary failed: {type(exc).__name__}: {exc}"

    abstracts: list[Abstract | None] = [None] * len(examples)
    if main is not None:
        try:
            abstracts = list(
                summarise_abstractive(
                    docs, main, long=long, long_input=opts.long_input, cache=ctx.resources.cache
                )
            )
        except Exception as exc:
            reason = f"generation failed: {type(exc).__name__}: {exc}"
            if isinstance(exc, TaskloopError):
                reason = _reason(exc)
            for i in range(len(examples)):
                errors.setdefault(i, reason)

    preds = []
    progress.start("summarize: check", len(examples), "items")
    with step("summarize.verify", items=len(examples)) as info:
        for i, ex in enumerate(examples):
            progress.advance(1)
            if i in errors and not (mode == "hybrid" and extracts[i] is not None):
                preds.append(_empty(ex, "failed", mode, errors[i]))
                continue
            try:
                preds.append(
                    _predict(ex, mode, extracts[i], abstracts[i], encoder, nli, errors.get(i))
                )
            except Exception as exc:
                preds.append(
                    _empty(ex, "failed", mode, f"verification failed: {type(exc).__name__}: {exc}")
                )
        info.update(flagged=sum(p.status == "flagged" for p in preds))
    return preds


def _summariser(ctx: TaskContext, lm: LoadedModel) -> Summariser:
    settings = ctx.generation(
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS, no_repeat_ngram_size=3, prefix=summary_prefix(lm)
    )
    return Summariser(lm, settings, input_budget(lm, settings.prefix, ctx.options.max_input_tokens))


def _predict(
    ex: SummarizeExample,
    mode: str,
    ext: Extract | None,
    abstract: Abstract | None,
    encoder: Encoder,
    nli: factcheck.NLIModel | None,
    error: str | None,
) -> Prediction:
    doc = ex.document
    details: dict[str, Any] = {}
    truncation: list[str] = []
    checked: factcheck.FactCheck | None = None
    if ext is not None:
        truncation.extend(ext.notes)
        details["extractive"] = {
            "budget": ext.budget,
            "picked": [
                {"index": i, "score": round(float(ext.scores[i]), 5), "sentence": ext.units[i].text}
                for i in ext.picked
            ],
        }
    if mode == "extractive":
        assert ext is not None
        output, shown_mode, model = ext.text, EXTRACTIVE, encoder.name
    else:
        if abstract is None:  # generation failed; hybrid still has the extractive summary
            assert ext is not None
            output, shown_mode, model = ext.text, "hybrid: fell back to extractive", encoder.name
            details["abstractive_error"] = error
        else:
            truncation.extend(abstract.notes)
            model = abstract.model
            details["chunks"] = abstract.chunks
            details["rounds"] = abstract.rounds
            output, shown_mode = abstract.text, "abstractive"
            if mode == "hybrid":
                assert ext is not None
                first = factcheck.check_summary(abstract.text, doc, encoder, nli=nli)
                fixed = repair(first, ext, encoder)
                details["abstractive"] = abstract.text
                details["abstractive_factcheck"] = factcheck.as_details(first)
                details["replaced"] = fixed.replaced
                output, shown_mode = fixed.text, fixed.mode
                checked = first if not fixed.replaced else None
    fc, checks = _verify(output, doc, encoder, nli, checked)
    truncation.extend(fc.notes)
    details["factcheck"] = factcheck.as_details(fc)
    if nli is not None:  # what summarize.factuality thresholds, and with what
        details["factuality"] = {
            "score": fc.entailment_score,
            "threshold": nli.entailment_min,
            "threshold_source": nli.threshold_source,
        }
    scores = {
        "factcheck": round(fc.score, 4),
        "length_ratio": round(len(words(output)) / max(len(words(doc)), 1), 4),
    }
    if ex.summaries and output.strip():
        scores.update({k: round(v, 4) for k, v in rouge([output], [ex.summaries]).items()})
    return Prediction(
        id=ex.id,
        task="summarize",
        where=ex.where,
        output=output,
        status=status_from_checks(checks),
        mode=shown_mode,
        model=model,
        checks=checks,
        scores=scores,
        truncation=truncation,
        details=details,
    )


def score(
    examples: Sequence[SummarizeExample], predictions: Sequence[Prediction]
) -> dict[str, float]:
    """ROUGE-1/2/L F (best reference per summary), mean length ratio (summary words over
    document words) and the share of summaries whose fact checks all passed, over the
    predictions that have an output; ``summarised`` counts them."""
    pairs = [(ex, p) for ex, p in zip(examples, predictions, strict=True) if p.output is not None]
    if not pairs:
        return {"summarised": 0.0}
    with step("summarize.score", items=len(pairs)) as info:
        out: dict[str, float] = {"summarised": float(len(pairs))}
        with_refs = [(ex, p) for ex, p in pairs if any(r.strip() for r in ex.summaries)]
        if with_refs:
            outputs = [p.output or "" for _, p in with_refs]
            out.update(rouge(outputs, [ex.summaries for ex, _ in with_refs]))
        ratios = [len(words(p.output or "")) / max(len(words(ex.document)), 1) for ex, p in pairs]
        out["length_ratio"] = float(np.mean(ratios))
        out["factcheck_pass"] = float(np.mean([_facts_pass(p) for _, p in pairs]))
        info.update(with_references=len(with_refs))
    return out


def _facts_pass(p: Prediction) -> bool:
    facts = [c for c in p.checks if c.name in FACT_CHECKS]
    return bool(facts) and all(c.passed for c in facts)
