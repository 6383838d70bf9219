"""Question answering: extractive (offline heuristic or an HF QA head) or generative.

Which path runs is decided per file by ``FileOptions.model`` and ``mode``:

* no model (the offline default, ``mode`` unset or "extractive"): the packaged
  all-MiniLM-L6-v2 encoder ranks the context's sentences against the question (cosine,
  plus a little lexical overlap), and a span inside the best sentences is picked by an
  answer-type heuristic from the wh-word, nearness to the question's words in the
  sentence, a short-span prior and the span's own similarity to the question. No
  answer ("", SQuAD v2) when no sentence reaches a cosine of ``no_answer_threshold``
  (the file's option, else a ``qa.no_answer`` threshold tuned for the encoder with
  ``taskloop thresholds qa``, else :data:`NO_ANSWER_THRESHOLD`).
* a ``*ForQuestionAnswering`` model: start/end logits over (question, context) windows
  with a doc stride, the best valid span across windows, and SQuAD v2's null score
  (the CLS position) for no answer: "" when the null score beats the best span, or,
  with a ``qa.no_answer`` threshold tuned for the model, when null score minus best
  span score reaches it.
* a seq2seq or causal model (or ``mode`` "generative"; "abstractive" and "hybrid" are
  read as "generative" here): the prompt ``question: … context: …``; a context that does
  not fit the window is reduced to the retrieved sentences that fit, and that is
  reported in ``Prediction.truncation``.

Every prediction carries checks (the answer is a span of the context, non-empty unless
no-answer, supported by the context for generated answers, a sane length) and details:
``start``/``end`` character offsets (None when not a span), ``confidence``, ``evidence``
(the sentence the answer came from), ``no_answer``; the extractive paths add
``no_answer_score`` (higher = more likely no answer; what ``qa.no_answer`` thresholds),
``threshold`` and ``threshold_source`` ("option", "tuned: FILE" or "default"). See
docs/thresholds.md.

Measured on the 626-question SQuAD v2 sample: ``benchmarks/qa_quality.py``.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskloop.data.records import Check, Prediction, QAExample, Where, status_from_checks
from taskloop.errors import ExitStatus, TaskloopError
from taskloop.evaluate.metrics import exact_match, normalize_answer, token_f1
from taskloop.evaluate.thresholds import QA_NO_ANSWER, tuned_threshold
from taskloop.log import step
from taskloop.models.encoder import Encoder
from taskloop.models.generate import count_tokens, generate
from taskloop.models.loader import LoadedModel
from taskloop.tasks.context import TaskContext
from taskloop.tasks.text import STOPWORDS, Sentence, content_words, split_sentences

logger = logging.getLogger("taskloop.tasks.qa")

# --- settings of the offline extractive default (chosen on the SQuAD sample's "Normans"
# article, checked on the held-out "Computational_complexity_theory" article; see
# benchmarks/qa_quality.py) ---

# When no sentence reaches this cosine to the question, the default answers "" (SQuAD v2
# no answer). Rule: the highest threshold that abstains on at most 2% of the answerable
# questions, chosen per article of the SQuAD v2 sample (0.358 on Normans, 0.428 on
# Computational_complexity_theory), each checked on the other article, and their mean
# (0.393) rounded. Sentence similarity barely tells SQuAD v2's unanswerable questions
# apart (ROC AUC 0.59; they are written to look answerable), so the threshold is there
# for questions off the context's topic (it abstains on all 293 answerable questions
# asked of the other article's contexts). The F1-optimal threshold on that sample
# (~0.9) would answer 2% of questions; see benchmarks/qa_quality.py.
NO_ANSWER_THRESHOLD = 0.40
# What a tuned ``qa.no_answer`` threshold is on, per path (higher = more likely no answer).
EXTRACTIVE_NO_ANSWER_SCORE = "-best sentence cosine"
HEAD_NO_ANSWER_SCORE = "null score - best span score"
LEXICAL_WEIGHT = 0.3  # weight of the share of question content words a sentence holds
TOP_SENTENCES = 2  # spans are sought in this many best-ranked sentences
MAX_SPAN_WORDS = 8
SPAN_CANDIDATES = 10  # heuristic top-k per question whose embeddings are computed
TYPE_WEIGHT = 1.0  # the span has what the wh-word asks for (a year, a number, a name)
QUESTION_OVERLAP_WEIGHT = 1.0  # the span repeats the question's own words
DISTANCE_WEIGHT = 0.05  # per word between the span and the question's words in the sentence
DISTANCE_CAP = 10
LENGTH_WEIGHT = 0.1  # per word beyond the first: SQuAD answers are short
SENTENCE_WEIGHT = 1.0  # spans inherit their sentence's retrieval score
SPAN_EMBED_WEIGHT = 1.0  # cosine between the span and the question

# --- HF QA head ---
QA_MAX_ANSWER_TOKENS = 30
QA_DEFAULT_MAX_LENGTH = 384  # the usual SQuAD fine-tuning length
QA_DEFAULT_BATCH = 16

# --- generative ---
GEN_MAX_NEW_TOKENS = 32
MAX_ANSWER_WORDS = 40  # longer than this is not an answer but a paragraph
NO_ANSWER_TEXTS = frozenset({"", "unanswerable", "no answer", "noanswer", "cannot answer"})
YES_NO = frozenset({"yes", "no"})

_TOKEN = re.compile(r"\w+(?:[-'’.,]\w+)*")
_MONTHS = frozenset({
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
})  # fmt: skip
_NUMBER_WORDS = frozenset({
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "hundreds", "thousand",
    "thousands", "million", "millions", "billion", "dozen",
})  # fmt: skip


@dataclass
class Answer:
    """What one path produced for one example, before checks."""

    text: str
    start: int | None = None
    end: int | None = None
    no_answer: bool = False
    confidence: float | None = None
    evidence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    truncation: list[str] = field(default_factory=list)
    no_answer_score: float | None = None  # higher = more likely no answer (unrounded)


# --------------------------------------------------------------------------- run


def run(examples: Sequence[QAExample], ctx: TaskContext) -> list[Prediction]:
    """Answer every example; one prediction each, in order, never raising for an item."""
    opts = ctx.options
    preds: list[Prediction | None] = [None] * len(examples)
    valid: list[int] = []
    with step("qa.prepare", items=len(examples)) as info:
        for i, ex in enumerate(examples):
            problem = why_not_answerable(ex)
            if problem:
                preds[i] = _failed(ex, i, ctx, problem)
            else:
                valid.append(i)
        info["valid"] = len(valid)
    items = [examples[i] for i in valid]
    mode, model_name = "extractive", None
    answers: Sequence[Answer | str] = []
    if items:
        try:
            mode, model_name, answers = _answer(items, ctx)
        except TaskloopError as exc:  # no usable model: every item is skipped, with the fix
            reason = str(exc) + (f" — {exc.hint}" if exc.hint else "")
            for i in valid:
                preds[i] = _skipped(examples[i], opts.model, opts.mode or "", reason)
            return [p for p in preds if p is not None]
        except Exception as exc:  # a model crashed (out of memory, a bug): fail, never raise
            logger.warning("qa: %s failed", ctx.file, exc_info=True)
            reason = f"the QA model failed: {type(exc).__name__}: {exc} (see the debug log)"
            for i in valid:
                preds[i] = _failed(examples[i], i, ctx, reason, model=opts.model)
            return [p for p in preds if p is not None]
    with step("qa.verify", items=len(items)) as info:
        for i, ex, ans in zip(valid, items, answers, strict=True):
            if isinstance(ans, str):
                preds[i] = _failed(ex, i, ctx, ans, mode=mode, model=model_name)
            else:
                preds[i] = _prediction(ex, ans, mode, model_name)
        info["flagged"] = sum(1 for p in preds if p is not None and p.status == "flagged")
    return [p for p in preds if p is not None]


def _answer(
    items: list[QAExample], ctx: TaskContext
) -> tuple[str, str | None, Sequence[Answer | str]]:
    """Pick the path from the file's options and run it; model errors propagate."""
    opts = ctx.options
    wants_generative = opts.mode in ("generative", "abstractive", "hybrid")
    if opts.model is None:
        if wants_generative:
            raise _ConfigError(
                f"mode {opts.mode!r} needs a generative model",
                hint="set `model` to a seq2seq model (a T5 fine-tuned on SQuAD, say), "
                "or drop `mode` to use the offline extractive default",
            )
        encoder = ctx.resources.encoder()
        threshold, source = _extractive_threshold(opts.no_answer_threshold, encoder.name)
        with step("qa.generate", items=len(items), path="extractive-default"):
            found = answer_extractive(items, encoder, threshold=threshold)
        for ans in found:
            ans.extra["threshold_source"] = source
        return "extractive", encoder.name, found
    lm = ctx.resources.model(opts.model)
    if lm.kind == "qa":
        if wants_generative:
            raise _ConfigError(
                f"mode {opts.mode!r} asks for generated answers but {opts.model!r} is an "
                "extractive question-answering model",
                hint="drop `mode` (or set it to extractive), or pass a seq2seq model",
            )
        tuned = tuned_threshold(QA_NO_ANSWER, opts.model, score_name=HEAD_NO_ANSWER_SCORE)
        null_threshold = None if tuned is None else tuned.value
        with step("qa.generate", items=len(items), path="qa-head", model=lm.name):
            answers = answer_qa_model(items, lm, ctx, null_threshold=null_threshold)
        for got in answers:
            if isinstance(got, Answer):
                got.extra["threshold"] = 0.0 if tuned is None else tuned.value
                got.extra["threshold_source"] = "default" if tuned is None else tuned.source
        return "extractive", lm.describe(), answers
    if lm.kind in ("seq2seq", "causal"):
        if opts.mode == "extractive":
            raise _ConfigError(
                f"mode 'extractive' needs a question-answering model; {opts.model!r} is "
                f"a {lm.kind} model",
                hint="pass a *ForQuestionAnswering model, set mode to generative, "
                "or drop `model` to use the offline extractive default",
            )
        with step("qa.generate", items=len(items), path="generative", model=lm.name):
            return "generative", lm.describe(), answer_generative(items, lm, ctx)
    raise _ConfigError(
        f"model {opts.model!r} is a {lm.kind} model with no question-answering head",
        hint="pass a *ForQuestionAnswering or seq2seq model, or drop `model` to use the "
        "offline extractive default",
    )


def _extractive_threshold(option: float | None, encoder: str) -> tuple[float, str]:
    """The cosine under which the default abstains, and where it came from: the file's
    option, else a ``qa.no_answer`` threshold tuned for this encoder, else the default."""
    if option is not None:
        return option, "option"
    tuned = tuned_threshold(QA_NO_ANSWER, encoder, score_name=EXTRACTIVE_NO_ANSWER_SCORE)
    if tuned is None:
        return NO_ANSWER_THRESHOLD, "default"
    # Tuned on -cosine (abstain when -cosine >= t, as in tuning); this path abstains when
    # cosine < threshold, and the next float above -t makes the two agree exactly.
    return math.nextafter(-tuned.value, math.inf), tuned.source


class _ConfigError(TaskloopError):
    """The file's options ask for a path this model cannot take."""

    code = "task.qa.config"
    exit_status = ExitStatus.USAGE


def why_not_answerable(ex: object) -> str:
    """Why ``ex`` cannot be answered at all ("" when it can)."""
    if not isinstance(ex, QAExample):
        return f"not a QA example ({type(ex).__name__}): give `question` and `context`"
    if not ex.question.strip():
        return "the question is blank: give a question"
    if not ex.context.strip():
        return "the context is blank: give the passage the answer comes from"
    if not split_sentences(ex.context):
        return "the context has no text"
    return ""


# ------------------------------------------------------- the offline extractive default


def answer_type(question: str) -> str:
    """What the wh-word asks for: "when", "number", "who", "where" or "what"."""
    q = question.lower()
    if re.search(r"\bwhen\b|\b(what|which) (year|date|time|century|decade|day|month|period)\b", q):
        return "when"
    if re.search(
        r"\bhow (many|much|long|old|far|large|big|high|often|fast)\b"
        r"|\bwhat (percentage|percent|number|amount|proportion)\b",
        q,
    ):
        return "number"
    if re.search(r"\bwho(m|se)?\b", q):
        return "who"
    if re.search(
        r"\bwhere\b|\b(what|which) (country|city|place|region|town|state|continent|river"
        r"|area|location)\b",
        q,
    ):
        return "where"
    return "what"


def type_score(kind: str, tokens: Sequence[str]) -> float:
    """How well a span's words fit the answer type, in [0, 1]."""
    low = [w.lower() for w in tokens]
    if kind == "when":
        return float(
            any(
                re.fullmatch(r"1\d{3}|20\d{2}|\d+0s|\d+(st|nd|rd|th)", w)
                or w in _MONTHS
                or w.startswith("centur")
                for w in low
            )
        )
    if kind == "number":
        return float(any(re.search(r"\d", w) or w in _NUMBER_WORDS for w in low))
    if kind in ("who", "where"):
        return sum(w[:1].isupper() for w in tokens) / len(tokens)
    return 0.0


def _stem(word: str) -> str:
    # A five-letter prefix matches "Norman"/"Normandy", "govern"/"governed" cheaply.
    return re.sub(r"['’]s$", "", word.lower())[:5]


def _question_stems(question: str) -> set[str]:
    return {_stem(w) for w in content_words(question)}


def rank_sentences(
    encoder: Encoder,
    question: str,
    sentences: Sequence[Sentence],
    *,
    lexical_weight: float = LEXICAL_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine to the question per sentence, and the retrieval score (cosine plus
    ``lexical_weight`` times the share of the question's content words it holds).

    The encoder caches per text, so a context's sentences are embedded once however
    many questions are asked about it.
    """
    vectors = encoder.encode([s.text for s in sentences])
    q = encoder.encode([question])[0]
    stems = _question_stems(question)
    overlap = np.array(
        [
            len(stems & {_stem(w) for w in content_words(s.text)}) / max(1, len(stems))
            for s in sentences
        ],
        dtype=np.float32,
    )
    cosine = np.asarray(vectors @ q, dtype=np.float32)
    return cosine, cosine + lexical_weight * overlap


@dataclass(frozen=True)
class _Candidate:
    score: float
    start: int  # characters in the context
    end: int
    sentence: int


def span_candidates(
    question: str,
    context: str,
    sentences: Sequence[Sentence],
    scores: np.ndarray,
    *,
    top: int = TOP_SENTENCES,
) -> list[_Candidate]:
    """Word n-gram spans inside the best sentences, scored by the heuristic, best first.

    A span must not start or end with a stop word and must not mostly repeat the
    question (more than half of its content words are question words).
    """
    kind = answer_type(question)
    stems = _question_stems(question)
    out: list[_Candidate] = []
    for b in np.argsort(-scores)[:top]:
        sent = sentences[int(b)]
        toks = list(_TOKEN.finditer(context, sent.start, sent.end))
        words = [m.group() for m in toks]
        is_stop = [w.lower() in STOPWORDS for w in words]
        in_q = [not s and _stem(w) in stems for w, s in zip(words, is_stop, strict=True)]
        q_pos = [i for i, x in enumerate(in_q) if x]
        for i in range(len(toks)):
            if is_stop[i]:
                continue
            for j in range(i, min(len(toks), i + MAX_SPAN_WORDS)):
                if is_stop[j]:
                    continue
                content = j - i + 1 - sum(is_stop[i : j + 1])
                repeated = sum(in_q[i : j + 1]) / max(1, content)
                if repeated > 0.5:
                    continue
                dist = min((max(0, i - p, p - j) for p in q_pos), default=DISTANCE_CAP // 2)
                value = (
                    TYPE_WEIGHT * type_score(kind, words[i : j + 1])
                    - QUESTION_OVERLAP_WEIGHT * repeated
                    - DISTANCE_WEIGHT * min(dist, DISTANCE_CAP)
                    - LENGTH_WEIGHT * (j - i)
                    + SENTENCE_WEIGHT * float(scores[b])
                )
                out.append(_Candidate(value, toks[i].start(), toks[j].end(), int(b)))
    out.sort(key=lambda c: -c.score)
    return out


def answer_extractive(
    examples: Sequence[QAExample], encoder: Encoder, *, threshold: float = NO_ANSWER_THRESHOLD
) -> list[Answer]:
    """The offline default: sentence retrieval, then span selection (see module doc).

    Args:
        threshold: when no sentence reaches this cosine to the question the answer is ""
            (no answer); -1 always answers.

    Returns:
        One :class:`Answer` per example.
    """
    # One batched encode of every distinct question and sentence up front; the per-item
    # calls below then hit the encoder's cache.
    splits = [split_sentences(ex.context) for ex in examples]
    encoder.encode(
        list(
            dict.fromkeys([ex.question for ex in examples] + [s.text for ss in splits for s in ss])
        )
    )
    found: list[tuple[np.ndarray, np.ndarray, list[_Candidate]]] = []
    for ex, sents in zip(examples, splits, strict=True):
        cosine, scores = rank_sentences(encoder, ex.question, sents)
        cands = span_candidates(ex.question, ex.context, sents, scores)[:SPAN_CANDIDATES]
        found.append((cosine, scores, cands))
    spans = [
        ex.context[c.start : c.end]
        for ex, (_, _, cands) in zip(examples, found, strict=True)
        for c in cands
    ]
    span_vecs = encoder.encode(list(dict.fromkeys(spans)))
    vec_of = dict(zip(dict.fromkeys(spans), span_vecs, strict=True))
    out: list[Answer] = []
    for ex, sents, (cosine, scores, cands) in zip(examples, splits, found, strict=True):
        best_sent = int(np.argmax(scores))
        similarity = float(cosine.max())
        q = encoder.encode([ex.question])[0]
        extra: dict[str, Any] = {
            "similarity": round(similarity, 4),
            "sentence_score": round(float(scores[best_sent]), 4),
            "threshold": threshold,
            "answer_type": answer_type(ex.question),
        }
        # Confidence in the answer/no-answer decision: a logistic of the margin to the
        # threshold (0.05 of cosine ~ one step); uncalibrated, monotone in the margin.
        margin = _sigmoid((similarity - threshold) / 0.05)
        cuts = encoder.embedding_cuts([ex.question], "question") + encoder.embedding_cuts(
            [sent.text for sent in sents], "context sentence"
        )
        if not cands or similarity < threshold:
            why = (
                "no candidate span"
                if not cands
                else f"best sentence similarity {similarity:.3f} < threshold {threshold:.3f}"
            )
            out.append(
                Answer(
                    "",
                    no_answer=True,
                    confidence=round(1 - margin, 4),
                    evidence=sents[best_sent].text,
                    extra={**extra, "why": why},
                    truncation=cuts,
                    no_answer_score=-similarity,
                )
            )
            continue
        final = [
            c.score + SPAN_EMBED_WEIGHT * float(vec_of[ex.context[c.start : c.end]] @ q)
            for c in cands
        ]
        best = cands[int(np.argmax(final))]
        extra["span_score"] = round(max(final), 4)
        out.append(
            Answer(
                ex.context[best.start : best.end],
                start=best.start,
                end=best.end,
                confidence=round(margin, 4),
                evidence=sents[best.sentence].text,
                extra=extra,
                truncation=cuts,
                no_answer_score=-similarity,
            )
        )
    return out


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-max(-60.0, min(60.0, x))))


# ------------------------------------------------------------------------ HF QA head


@dataclass
class _Window:
    item: int
    ids: dict[str, list[int]]
    offsets: list[tuple[int, int] | None]  # None outside the context
    cls: int


def answer_qa_model(
    examples: Sequence[QAExample],
    lm: LoadedModel,
    ctx: TaskContext,
    *,
    null_threshold: float | None = None,
) -> list[Answer | str]:
    """Start/end logits over doc-stride windows; the best span, or "" by the null score.

    A span is valid when it lies in the context, ends at or after its start and spans at
    most ``QA_MAX_ANSWER_TOKENS`` tokens. The best span across an example's windows is
    compared with the smallest null score (start and end at the CLS position) across
    them, as the SQuAD v2 reference does with a null threshold of 0.

    Args:
        null_threshold: a tuned threshold: "" when null score minus best span score
            reaches it (``math.inf`` never abstains); None: "" when the null score wins.
    """
    import torch

    tok = lm.tokenizer
    if not getattr(tok, "is_fast", False):
        raise _ConfigError(
            f"model {lm.name!r} has a slow tokenizer: extractive QA needs character offsets",
            hint="save a fast tokenizer (tokenizer.json) with the model",
        )
    max_len = min(lm.window, ctx.options.max_input_tokens or QA_DEFAULT_MAX_LENGTH)
    stride = max(1, min(128, max_len // 4))
    question_first = tok.padding_side == "right"
    # What the tokenizer returns and the model's forward takes (DistilBERT: no token types).
    accepted = inspect.signature(lm.model.forward).parameters
    inputs = [
        n
        for n in getattr(tok, "model_input_names", ["input_ids", "attention_mask"])
        if n in accepted
    ]
    windows: list[_Window] = []
    per_item: list[int] = []
    problems: dict[int, str] = {}
    for n, ex in enumerate(examples):
        try:
            made = _qa_windows(n, ex, tok, max_len, stride, question_first, inputs)
        except Exception as exc:  # a tokenizer refuses (question longer than the window ...)
            problems[n] = f"could not fit the question into the {max_len}-token window: {exc}"
            made = []
        windows.extend(made)
        per_item.append(len(made))
    batch = ctx.options.batch_size or QA_DEFAULT_BATCH
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    for b in range(0, len(windows), batch):
        chunk = windows[b : b + batch]
        padded = tok.pad([w.ids for w in chunk], return_tensors="pt").to(lm.device)
        with lm.lock, torch.inference_mode():
            out = lm.model(**{k: v for k, v in padded.items() if k in inputs})
        for k in range(len(chunk)):
            starts.append(out.start_logits[k].float().cpu().numpy())
            ends.append(out.end_logits[k].float().cpu().numpy())
    results: list[Answer | str] = []
    w = 0
    for n, ex in enumerate(examples):
        count = per_item[n]
        if n in problems or count == 0:
            results.append(problems.get(n, "the tokenizer produced no window for this item"))
            continue
        item_windows = list(
            zip(windows[w : w + count], starts[w : w + count], ends[w : w + count], strict=True)
        )
        w += count
        results.append(_best_qa_span(ex, item_windows, max_len, stride, null_threshold))
    return results


def _qa_windows(
    n: int,
    ex: QAExample,
    tok: Any,
    max_len: int,
    stride: int,
    question_first: bool,
    inputs: list[str],
) -> list[_Window]:
    first, second = (ex.question, ex.context) if question_first else (ex.context, ex.question)
    enc = tok(
        first,
        second,
        truncation="only_second" if question_first else "only_first",
        max_length=max_len,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    context_seq = 1 if question_first else 0
    out = []
    for k in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(k)
        offsets = [
            (int(a), int(b)) if s == context_seq else None
            for (a, b), s in zip(enc["offset_mapping"][k], seq, strict=True)
        ]
        ids = enc["input_ids"][k]
        cls = ids.index(tok.cls_token_id) if tok.cls_token_id in ids else 0
        out.append(_Window(n, {name: enc[name][k] for name in inputs if name in enc}, offsets, cls))
    return out


def _best_qa_span(
    ex: QAExample,
    windows: list[tuple[_Window, np.ndarray, np.ndarray]],
    max_len: int,
    stride: int,
    null_threshold: float | None = None,
) -> Answer:
    best: tuple[float, int, int, float] | None = None  # score, start char, end char, prob
    null_score, null_prob = math.inf, 0.0
    for win, start_logits, end_logits in windows:
        n = len(win.offsets)
        s, e = start_logits[:n], end_logits[:n]
        ctx_idx = np.array([i for i, o in enumerate(win.offsets) if o is not None and o[1] > o[0]])
        allowed = (
            np.concatenate([[win.cls], ctx_idx]).astype(int)
            if len(ctx_idx)
            else np.array([win.cls])
        )
        ps, pe = _softmax(s[allowed]), _softmax(e[allowed])
        this_null = float(s[win.cls] + e[win.cls])
        if this_null < null_score:
            null_score, null_prob = this_null, float(ps[0] * pe[0])
        if not len(ctx_idx):
            continue
        # pair[i, j] = s[i] + e[j] over context tokens, valid when 0 <= j - i < max answer.
        pair = s[ctx_idx][:, None] + e[ctx_idx][None, :]
        gap = ctx_idx[None, :] - ctx_idx[:, None]
        pair = np.where((gap >= 0) & (gap < QA_MAX_ANSWER_TOKENS), pair, -np.inf)
        i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
        score = float(pair[i, j])
        if best is None or score > best[0]:
            first, last = win.offsets[int(ctx_idx[i])], win.offsets[int(ctx_idx[j])]
            assert first is not None and last is not None
            best = (score, first[0], last[1], float(ps[1 + i] * pe[1 + j]))
    notes = []
    if len(windows) > 1:
        notes.append(
            f"question and context exceed the {max_len}-token window: read in {len(windows)} "
            f"overlapping windows ({stride} tokens of overlap); the best span across them is kept"
        )
    extra: dict[str, Any] = {"windows": len(windows), "null_score": round(null_score, 4)}
    diff = None if best is None else null_score - best[0]
    if best is None or (
        null_score > best[0] if null_threshold is None else null_score - best[0] >= null_threshold
    ):
        if best is not None:
            extra["best_span_score"] = round(best[0], 4)
        if diff is not None and null_threshold is not None:
            extra["why"] = (
                f"null score - best span score {diff:.4f} >= tuned threshold {null_threshold:.4f}"
            )
        return Answer(
            "",
            no_answer=True,
            confidence=round(null_prob, 4),
            extra=extra,
            truncation=notes,
            no_answer_score=diff,
        )
    span_score, start, end, prob = best
    extra["span_score"] = round(span_score, 4)
    return Answer(
        ex.context[start:end],
        start=start,
        end=end,
        confidence=round(prob, 4),
        evidence=_sentence_at(ex.context, start),
        extra=extra,
        truncation=notes,
        no_answer_score=diff,
    )


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - np.max(x))
    return np.asarray(z / z.sum())


def _sentence_at(context: str, char: int) -> str:
    for sent in split_sentences(context):
        if sent.start <= char < sent.end:
            return sent.text
    return ""


# ------------------------------------------------------------------------ generative


def prompt_for(question: str, context: str, kind: str) -> str:
    """T5's SQuAD prompt; a causal LM gets an "answer:" cue to continue from."""
    text = f"question: {question} context: {context}"
    return text + " answer:" if kind == "causal" else text


def answer_generative(
    examples: Sequence[QAExample], lm: LoadedModel, ctx: TaskContext
) -> list[Answer | str]:
    """Generate answers; contexts too long for the window keep the retrieved sentences that fit."""
    settings = ctx.generation(max_new_tokens=GEN_MAX_NEW_TOKENS)
    # A causal LM's window also holds the tokens it generates.
    room = lm.window - settings.max_new_tokens if lm.kind == "causal" else lm.window
    window = max(8, min(room, ctx.options.max_input_tokens or room))
    prompts: list[str] = []
    notes: list[list[str]] = []
    for ex in examples:
        prompt, note = _fit_context(ex, lm, ctx, window)
        prompts.append(prompt)
        notes.append(note)
    outs = generate(lm, prompts, settings, cache=ctx.resources.cache)
    answers: list[Answer | str] = []
    for ex, out, note in zip(examples, outs, notes, strict=True):
        text = out.text.strip()
        if out.truncated:
            note = [
                *note,
                f"the prompt of {out.input_tokens} tokens was cut to the model's "
                f"{window}-token input window",
            ]
        if normalize_answer(text) in NO_ANSWER_TEXTS:
            answers.append(Answer("", no_answer=True, extra={"generated": text}, truncation=note))
            continue
        at = ex.context.lower().find(text.lower()) if text else -1
        start, end = (at, at + len(text)) if at >= 0 else (None, None)
        answers.append(
            Answer(
                text,
                start=start,
                end=end,
                evidence=_sentence_at(ex.context, at) if at >= 0 else "",
                extra={"input_tokens": out.input_tokens, "cached": out.cached},
                truncation=note,
            )
        )
    return answers


def _fit_context(
    ex: QAExample, lm: LoadedModel, ctx: TaskContext, window: int
) -> tuple[str, list[str]]:
    """The prompt, with the context reduced to retrieved sentences when it does not fit."""
    full = prompt_for(ex.question, ex.context, lm.kind)
    total = count_tokens(lm, [full])[0]
    if total <= window:
        return full, []
    sents = split_sentences(ex.context)
    budget = window - count_tokens(lm, [prompt_for(ex.question, "", lm.kind)])[0]
    sizes = count_tokens(lm, [s.text for s in sents])
    try:
        _, scores = rank_sentences(ctx.resources.encoder(), ex.question, sents)
        order = [int(i) for i in np.argsort(-scores)]
        how = "the most similar to the question"
    except TaskloopError:  # no encoder here: keep the leading sentences
        order = list(range(len(sents)))
        how = "the first ones (no sentence encoder to rank them)"
    keep: list[int] = []
    used = 0
    for i in order:
        if used + sizes[i] <= budget:
            keep.append(i)
            used += sizes[i]
    keep.sort()
    reduced = " ".join(sents[i].text for i in keep)
    return prompt_for(ex.question, reduced, lm.kind), [
        f"context of {total} tokens (with the question) exceeds the {window}-token window: "
        f"kept {len(keep)} of {len(sents)} sentences, {how}, {used} tokens"
    ]


# ---------------------------------------------------------------- checks, predictions


def supported_by_context(answer: str, context: str) -> Check:
    """The answer's content words all appear in the context ("yes"/"no" always pass)."""
    if normalize_answer(answer) in YES_NO:
        return Check(name="supported_by_context", passed=True, detail="a yes/no answer")
    seen = set(content_words(context))
    wanted = list(dict.fromkeys(content_words(answer)))
    if not wanted:
        return Check(name="supported_by_context", passed=True, detail="no content words")
    missing = [w for w in wanted if w not in seen]
    words = len(wanted)
    return Check(
        name="supported_by_context",
        passed=not missing,
        detail=f"{words - len(missing)}/{words} content words in the context"
        + (f"; missing: {', '.join(missing[:8])}" if missing else ""),
    )


def checks_for(ex: QAExample, ans: Answer, mode: str) -> list[Check]:
    """Checks on one answer (see the module doc)."""
    checks: list[Check] = []
    if ans.no_answer:
        checks.append(
            Check(
                name="non_empty",
                passed=True,
                detail="no answer: " + str(ans.extra.get("why", "the model's null score won")),
            )
        )
        return checks
    checks.append(
        Check(name="non_empty", passed=bool(ans.text.strip()), detail=f"{len(ans.text)} chars")
    )
    if mode == "extractive":
        ok = (
            ans.start is not None
            and ans.end is not None
            and ex.context[ans.start : ans.end] == ans.text
        )
        checks.append(
            Check(
                name="span_of_context",
                passed=ok,
                detail=f"chars {ans.start}-{ans.end}"
                if ok
                else "the answer is not the context at its offsets",
            )
        )
    else:
        checks.append(supported_by_context(ans.text, ex.context))
    n_words = len(ans.text.split())
    checks.append(
        Check(
            name="answer_length",
            passed=n_words <= MAX_ANSWER_WORDS and len(ans.text) <= len(ex.context),
            detail=f"{n_words} words",
            severity="warning",
        )
    )
    return checks


def _prediction(ex: QAExample, ans: Answer, mode: str, model: str | None) -> Prediction:
    checks = checks_for(ex, ans, mode)
    details: dict[str, Any] = {
        "start": ans.start,
        "end": ans.end,
        "confidence": ans.confidence,
        "evidence": ans.evidence,
        "no_answer": ans.no_answer,
        **ans.extra,
    }
    if ans.no_answer_score is not None:
        details["no_answer_score"] = ans.no_answer_score
    return Prediction(
        id=ex.id,
        task="qa",
        where=ex.where,
        output=ans.text,
        status=status_from_checks(checks),
        mode=mode,
        model=model,
        checks=checks,
        scores=_item_scores(ex, ans.text),
        truncation=ans.truncation,
        details=details,
    )


def _item_scores(ex: QAExample, text: str) -> dict[str, float]:
    golds = gold_answers(ex)
    if golds is None:
        return {}
    return {"exact": exact_match(text, golds), "f1": token_f1(text, golds)}


def _where(ex: object, i: int, ctx: TaskContext) -> Where:
    where = getattr(ex, "where", None)
    return where if isinstance(where, Where) else Where(file=ctx.file, row=i + 1)


def _failed(
    ex: object, i: int, ctx: TaskContext, reason: str, *, mode: str = "", model: str | None = None
) -> Prediction:
    return Prediction(
        id=str(getattr(ex, "id", None) or f"item-{i + 1}"),
        task="qa",
        where=_where(ex, i, ctx),
        output=None,
        status="failed",
        mode=mode,
        model=model,
        reason=reason,
    )


def _skipped(ex: QAExample, model: str | None, mode: str, reason: str) -> Prediction:
    return Prediction(
        id=ex.id,
        task="qa",
        where=ex.where,
        output=None,
        status="skipped",
        mode=mode,
        model=model,
        reason=reason,
    )


# ------------------------------------------------------------------------ scoring


def gold_answers(ex: QAExample) -> list[str] | None:
    """The references: [] for an unanswerable question, None when there is nothing to score."""
    if ex.is_impossible:
        return []
    golds = [a for a in ex.answers if normalize_answer(a)]
    return golds or None


def score(examples: Sequence[QAExample], predictions: Sequence[Prediction]) -> dict[str, float]:
    """SQuAD v2 exact match and F1 (fractions in [0, 1]), overall and split by HasAns/NoAns.

    Scored are the examples with answers or ``is_impossible`` true. A prediction with no
    output (failed or skipped) scores 0, as a missing prediction does in the official
    script; "" is the no-answer prediction. On unanswerable questions EM and F1 are
    both the no-answer accuracy.

    Returns:
        exact, f1, total, HasAns_exact, HasAns_f1, HasAns_total, NoAns_exact, NoAns_f1,
        NoAns_total, missing (counts are floats); empty when nothing is scoreable.
    """
    with step("qa.score", items=len(examples)) as info:
        by_id = {p.id: p for p in predictions}
        aligned = len(predictions) == len(examples) and all(
            p.id == getattr(e, "id", None) for p, e in zip(predictions, examples, strict=True)
        )
        sums: dict[str, list[float]] = {
            "HasAns_exact": [],
            "HasAns_f1": [],
            "NoAns_exact": [],
            "NoAns_f1": [],
        }
        missing = 0
        for k, ex in enumerate(examples):
            if not isinstance(ex, QAExample):
                continue
            golds = gold_answers(ex)
            if golds is None:
                continue
            pred = predictions[k] if aligned else by_id.get(ex.id)
            group = "HasAns" if golds else "NoAns"
            if pred is None or pred.output is None:
                missing += 1
                em = f1 = 0.0
            else:
                em, f1 = exact_match(pred.output, golds), token_f1(pred.output, golds)
            sums[f"{group}_exact"].append(em)
            sums[f"{group}_f1"].append(f1)
        total = len(sums["HasAns_exact"]) + len(sums["NoAns_exact"])
        info["scored"] = total
        if not total:
            return {}
        out: dict[str, float] = {
            "exact": (sum(sums["HasAns_exact"]) + sum(sums["NoAns_exact"])) / total,
            "f1": (sum(sums["HasAns_f1"]) + sum(sums["NoAns_f1"])) / total,
            "total": float(total),
        }
        for group in ("HasAns", "NoAns"):
            n = len(sums[f"{group}_exact"])
            if n:
                out[f"{group}_exact"] = sum(sums[f"{group}_exact"]) / n
                out[f"{group}_f1"] = sum(sums[f"{group}_f1"]) / n
            out[f"{group}_total"] = float(n)
        out["missing"] = float(missing)
        return out


# ------------------------------------------------------------------ SQuAD files


def squad_examples(path: str | Path) -> list[QAExample]:
    """The questions of a SQuAD (v1 or v2) JSON file as examples (row = question number)."""
    from taskloop.data.loader import load_file

    loaded = load_file(path, task="qa")
    return [ex for group in loaded.groups for ex in group.examples if isinstance(ex, QAExample)]
