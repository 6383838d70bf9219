"""``taskloop evaluate`` as a function: score every task, compare versions, find errors,
write ``report.json`` + ``report.html`` (+ plots and hard examples).

items (A, optional B) ──score per task──► TaskEval ──paired bootstrap──► Comparison
                                             └──error analysis──► groups + hard_examples.jsonl
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from taskloop import __version__, progress
from taskloop.data.records import TASKS, TaskName
from taskloop.evaluate.errors import EvalInputError, EvaluateError
from taskloop.evaluate.items import Loaded
from taskloop.evaluate.records import EvalItem, EvalReport, TaskEval
from taskloop.evaluate.report import Plot
from taskloop.log import step

if TYPE_CHECKING:
    from taskloop.models.encoder import Encoder
    from taskloop.tasks.factcheck import NLIModel


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate (every field is also a ``taskloop evaluate`` option).

    Attributes:
        resamples: bootstrap resamples for intervals and paired comparisons.
        confidence: interval coverage (0.95 = 95%).
        alpha: significance level of the paired comparison.
        seed: bootstrap seed (same seed, same intervals).
        quality: compute the reference-free signals (coherence, relevance,
            factuality, diversity; loads the packaged MiniLM encoder).
        nli: an NLI model (folder or hub id in the cache) for entailment factuality.
        ks: pass@k values for code.
        low_score: primary score (0-100) below which an item is low-scoring, per task
            (tasks left out use the analysis defaults).
        worst: examples shown per error group.
        plots: draw the plots (report.html without them is much smaller).
    """

    resamples: int = 1000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0
    quality: bool = True
    nli: str | None = None
    ks: tuple[int, ...] = (1, 10)
    low_score: Mapping[str, float] = field(default_factory=dict)
    worst: int = 5
    plots: bool = True


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: the report, the plots, and the output folder."""

    report: EvalReport
    plots: dict[str, list[Plot]] = field(default_factory=dict)
    out_dir: Path | None = None


def _scoreable(loaded: Loaded) -> Loaded:
    """``loaded`` without the items the run skipped (no usable model): a skipped item says
    nothing about a model, so it is counted in a warning instead of scored as wrong.
    Failed items (the model or sandbox broke) stay and score 0, as SQuAD's script does."""
    kept = [it for it in loaded.items if it.status != "skipped"]
    if len(kept) == len(loaded.items):
        return loaded
    skipped: dict[str, int] = {}
    for it in loaded.items:
        if it.status == "skipped":
            skipped[it.task] = skipped.get(it.task, 0) + 1
    note = "not scored, skipped by the run (no usable model): " + ", ".join(
        f"{n} {task}" for task, n in skipped.items()
    )
    return replace(loaded, items=kept, warnings=[*loaded.warnings, note])


def by_task(items: Sequence[EvalItem]) -> dict[TaskName, list[EvalItem]]:
    """Items grouped by task, in the canonical task order."""
    groups: dict[TaskName, list[EvalItem]] = {}
    for it in items:
        groups.setdefault(it.task, []).append(it)
    return {t: groups[t] for t in TASKS if t in groups}


def _score_all(
    groups: Mapping[TaskName, list[EvalItem]],
    options: EvalOptions,
    encoder: Encoder | None,
    nli: NLIModel | None,
) -> list[TaskEval]:
    from taskloop.evaluate.scoring import score_task

    out = []
    for task, items in groups.items():
        with step("evaluate.score", task=task, items=len(items)):
            out.append(
                score_task(
                    items,
                    encoder=encoder,
                    nli=nli,
                    quality=options.quality,
                    resamples=options.resamples,
                    confidence=options.confidence,
                    seed=options.seed,
                    ks=options.ks,
                )
            )
        progress.advance(1)
    return out


def evaluate(
    a: Loaded,
    *,
    b: Loaded | None = None,
    options: EvalOptions | None = None,
    out_dir: str | Path | None = None,
) -> Evaluation:
    """Score ``a`` (and ``b``, compared with ``a``) and write the report to ``out_dir``.

    Raises:
        EvalInputError: nothing to score, or A and B share no task.
    """
    from taskloop.evaluate.analysis import (
        LOW_SCORE,
        analyse,
        hard_example_rows,
        write_hard_examples,
    )
    from taskloop.evaluate.scoring import compare

    opts = options or EvalOptions()
    started = time.perf_counter()
    if b is not None and opts.resamples < 1:
        raise EvaluateError(
            "comparing two versions needs bootstrap resamples (resamples is 0)",
            hint="use --resamples 1000",
        )
    a, b = _scoreable(a), _scoreable(b) if b is not None else None
    if not a.items:
        raise EvalInputError(
            f"{a.label}: nothing to score" + (f" ({a.warnings[-1]})" if a.warnings else ""),
            hint="give the run a model for the task (taskloop run --model TASK=MODEL)",
        )
    groups_a = by_task(a.items)
    groups_b = by_task(b.items) if b is not None else {}
    if b is not None and not set(groups_a) & set(groups_b):
        raise EvalInputError(
            f"{a.label} has tasks {sorted(groups_a)} and {b.label} has {sorted(groups_b)}: "
            "nothing to compare",
            hint="compare results of the same data",
        )
    encoder: Encoder | None = None
    nli: NLIModel | None = None
    if opts.quality:
        from taskloop.models.encoder import load_encoder

        encoder = load_encoder()
    if opts.nli:
        from taskloop.tasks.factcheck import load_nli

        nli = load_nli(opts.nli)
    progress.start("evaluate", len(groups_a) + len(groups_b), unit="items")
    tasks = _score_all(groups_a, opts, encoder, nli)
    tasks_b = _score_all(groups_b, opts, encoder, nli)
    comparisons = []
    by_b = {t.task: t for t in tasks_b}
    for t in tasks:
        if t.task in by_b:
            with step("evaluate.compare", task=t.task):
                comparisons.extend(
                    compare(
                        t,
                        by_b[t.task],
                        resamples=opts.resamples,
                        confidence=opts.confidence,
                        seed=opts.seed,
                        alpha=opts.alpha,
                    )
                )
    low: dict[str, float] = {**{str(k): v for k, v in LOW_SCORE.items()}, **opts.low_score}
    with step("evaluate.analyse", items=len(a.items)):
        analysis = analyse(tasks, low_score=low, worst=opts.worst)
    report = EvalReport(
        taskloop_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        label=a.label,
        inputs={**a.inputs, **({f"B.{k}": v for k, v in b.inputs.items()} if b else {})},
        config={
            "resamples": opts.resamples,
            "confidence": opts.confidence,
            "alpha": opts.alpha,
            "seed": opts.seed,
            "quality": opts.quality,
            "nli": opts.nli,
            "ks": list(opts.ks),
            "low_score": {t: low[t] for t in groups_a if t in low},
            "worst": opts.worst,
        },
        tasks=tasks,
        compare_label=b.label if b else None,
        compare_tasks=tasks_b,
        comparisons=comparisons,
        analysis=analysis,
        notes=[*a.warnings, *(f"B: {w}" for w in b.warnings)] if b else list(a.warnings),
    )
    result = Evaluation(report=report)
    if opts.plots:
        with step("evaluate.plots"):
            result.plots = draw_plots(report)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows, analysis.hard_skipped = hard_example_rows(tasks, low_score=low)
        if rows:
            path = out / "hard_examples.jsonl"
            analysis.hard_count = write_hard_examples(rows, path)
            analysis.hard_examples = str(path)
    # Scoring, analysis and plots: the same figure in the returned report and the files.
    report.duration_s = round(time.perf_counter() - started, 3)
    if out_dir is not None:
        write_report(result, Path(out_dir))
    return result


def draw_plots(report: EvalReport) -> dict[str, list[Plot]]:
    """Every figure of the report, keyed by task (and "_comparison", "_errors")."""
    from taskloop.evaluate import plots

    labels = ("A", "B")
    out: dict[str, list[Plot]] = {}
    by_b = {t.task: t for t in report.compare_tasks}
    for t in report.tasks:
        other = by_b.get(t.task)
        figs = [
            Plot(
                f"{t.task}-metrics.png",
                plots.metric_bars(t, other, labels),
                f"{t.task}: metric bars with bootstrap intervals",
            ),
            Plot(
                f"{t.task}-scores.png",
                plots.score_distribution(t, other, labels),
                f"{t.task}: per-example score distribution",
            ),
            Plot(
                f"{t.task}-length.png", plots.length_vs_score(t), f"{t.task}: input length vs score"
            ),
        ]
        if other is not None:
            figs.append(
                Plot(
                    f"{t.task}-a-vs-b.png",
                    plots.paired_scatter(t, other, labels),
                    f"{t.task}: A vs B per example",
                )
            )
        out[t.task] = figs
    if report.comparisons:
        out["_comparison"] = [
            Plot(
                "comparison.png",
                plots.comparison_deltas(report.comparisons),
                "B minus A with paired-bootstrap intervals",
            )
        ]
    if report.analysis and report.analysis.groups:
        out["_errors"] = [
            Plot(
                "errors.png",
                plots.error_counts(report.analysis, report.tasks),
                "error types per task",
            )
        ]
    return out


def write_report(result: Evaluation, out: Path) -> None:
    """report.json, report.html and plots/*.png under ``out``."""
    from taskloop.evaluate.report import render_evaluation

    report = result.report
    with step("evaluate.write", out=str(out)) as info:
        names = {"report.json": out / "report.json", "report.html": out / "report.html"}
        if result.plots:
            (out / "plots").mkdir(exist_ok=True)
            for figs in result.plots.values():
                for p in figs:
                    (out / "plots" / p.name).write_bytes(p.png)
            names["plots"] = out / "plots"
        if report.analysis and report.analysis.hard_examples:
            names["hard_examples"] = Path(report.analysis.hard_examples)
        report.outputs = {k: str(v) for k, v in names.items()}
        (out / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
        html = render_evaluation(report, result.plots)
        (out / "report.html").write_text(html, encoding="utf-8")
        info["html_bytes"] = len(html)
    result.out_dir = out
