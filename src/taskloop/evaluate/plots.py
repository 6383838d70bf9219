"""The evaluation report's plots, drawn with matplotlib (Agg) and returned as PNG bytes.

Each function takes the typed records and returns one figure as PNG bytes, so the report
can embed it (base64) and also write it next to report.html. Every figure says what it
shows in its title and axes: people look at these instead of reading tables.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from taskloop.evaluate.records import Comparison, ErrorAnalysis, TaskEval

_A, _B = "#3b6ea8", "#d9822b"


def _figure(width: float = 7.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bar_values(task: TaskEval, names: Sequence[str]) -> tuple[list[float], list[list[float]]]:
    values: list[float] = []
    err: list[list[float]] = [[], []]
    for name in names:
        m = task.metrics[name]
        values.append(m.value)
        err[0].append(m.value - m.low if m.low is not None else 0.0)
        err[1].append(m.high - m.value if m.high is not None else 0.0)
    return values, err


def metric_bars(
    task: TaskEval, other: TaskEval | None = None, labels: tuple[str, str] = ("A", "B")
) -> bytes:
    """Bars of the task's metrics with their bootstrap intervals (B beside A when given)."""
    import numpy as np

    names = [n for n, m in task.metrics.items() if m.group != "classification"]
    if other is not None:
        names = [n for n in names if n in other.metrics]
    fig, ax = _figure(max(5.0, 0.7 * len(names) + 2))
    x = np.arange(len(names))
    width = 0.38 if other is not None else 0.6
    values, err = _bar_values(task, names)
    ax.bar(
        x - (width / 2 if other else 0),
        values,
        width,
        yerr=err,
        capsize=3,
        color=_A,
        label=labels[0],
    )
    if other is not None:
        values_b, err_b = _bar_values(other, names)
        ax.bar(x + width / 2, values_b, width, yerr=err_b, capsize=3, color=_B, label=labels[1])
        ax.legend(fontsize=8)
    ax.set_xticks(
        x,
        [n + (" ↓" if not task.metrics[n].higher_is_better else "") for n in names],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("points (0-100)")
    conf = next(iter(task.metrics.values())).confidence if task.metrics else 0.95
    ax.set_title(
        f"{task.task}: metrics with {conf:.0%} bootstrap intervals (↓ lower is better)", fontsize=9
    )
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def score_distribution(
    task: TaskEval, other: TaskEval | None = None, labels: tuple[str, str] = ("A", "B")
) -> bytes:
    """Histogram of the per-example primary score."""
    fig, ax = _figure(6.0, 3.2)
    bins = [i * 5 for i in range(21)]
    a = [s.primary for s in task.items if s.primary is not None]
    ax.hist(a, bins=bins, color=_A, alpha=0.75, label=labels[0])
    if other is not None:
        b = [s.primary for s in other.items if s.primary is not None]
        ax.hist(b, bins=bins, color=_B, alpha=0.55, label=labels[1])
        ax.legend(fontsize=8)
    ax.set_xlabel(f"per-example {task_item_metric(task)} (0-100)")
    ax.set_ylabel("examples")
    ax.set_title(f"{task.task}: distribution of per-example scores (n={len(a)})", fontsize=9)
    return _png(fig)


def task_item_metric(task: TaskEval) -> str:
    from taskloop.evaluate.scoring import PRIMARY

    return PRIMARY[task.task][1]


def length_vs_score(task: TaskEval) -> bytes:
    """Input length (words) against the per-example primary score, with a binned mean."""
    import numpy as np

    pts = [(len(s.item.source.split()), s.primary) for s in task.items if s.primary is not None]
    fig, ax = _figure(6.0, 3.2)
    if pts:
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        ax.scatter(x, y, s=6, alpha=0.35, color=_A)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, 9)))
        if len(edges) > 2:
            which = np.clip(np.digitize(x, edges[1:-1]), 0, len(edges) - 2)
            centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
            means = [
                y[which == i].mean() if (which == i).any() else np.nan for i in range(len(centres))
            ]
            ax.plot(centres, means, color="black", marker="o", ms=3, lw=1.2, label="binned mean")
            ax.legend(fontsize=8)
    ax.set_xlabel("input length (words)")
    ax.set_ylabel(f"{task_item_metric(task)} (0-100)")
    ax.set_title(f"{task.task}: input length vs score", fontsize=9)
    return _png(fig)


def paired_scatter(a: TaskEval, b: TaskEval, labels: tuple[str, str] = ("A", "B")) -> bytes:
    """Per-example primary score of A (x) against B (y) on the shared examples."""
    by_key = {s.item.key: s.primary for s in b.items if s.primary is not None}
    pts: list[tuple[float, float]] = [
        (s.primary, by_key[s.item.key])
        for s in a.items
        if s.primary is not None and s.item.key in by_key
    ]
    fig, ax = _figure(4.2, 4.0)
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, alpha=0.35, color=_B)
    ax.plot([0, 100], [0, 100], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"{labels[0]}: {task_item_metric(a)}")
    ax.set_ylabel(f"{labels[1]}: {task_item_metric(a)}")
    above = sum(1 for x, y in pts if y > x)
    below = sum(1 for x, y in pts if y < x)
    ax.set_title(f"{a.task}: per example, B better {above} / A better {below}", fontsize=9)
    return _png(fig)


def comparison_deltas(comparisons: Sequence[Comparison]) -> bytes:
    """B − A per task and metric with the paired-bootstrap interval; filled = significant."""
    fig, ax = _figure(6.5, max(2.4, 0.32 * len(comparisons) + 1.2))
    for i, c in enumerate(comparisons):
        sign = 1 if c.higher_is_better else -1  # plotted so right = B better
        lo = c.low if c.low is not None else c.delta
        hi = c.high if c.high is not None else c.delta
        ax.plot([sign * lo, sign * hi], [i, i], color="grey", lw=1.5)
        ax.plot(sign * c.delta, i, "o", color=_B if c.significant else "white", markeredgecolor=_B)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(
        range(len(comparisons)), [f"{c.task} {c.metric}" for c in comparisons], fontsize=8
    )
    ax.set_xlabel("B − A in points (right = B better; TER flipped)")
    ax.set_title("paired bootstrap: filled = significant", fontsize=9)
    return _png(fig)


def error_counts(analysis: ErrorAnalysis, tasks: Sequence[TaskEval]) -> bytes:
    """Items per error type and task (stacked bars)."""
    import numpy as np

    groups = [g for g in analysis.groups if g.by == "error"]
    types = sorted({g.value for g in groups})
    task_names = sorted({g.task for g in groups})
    fig, ax = _figure(max(5.0, 0.8 * len(types) + 2), 3.4)
    bottom = np.zeros(len(types))
    for t in task_names:
        counts = np.array(
            [sum(g.count for g in groups if g.task == t and g.value == e) for e in types]
        )
        ax.bar(types, counts, bottom=bottom, label=t)
        bottom += counts
    ax.set_ylabel("items")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_title(f"error types across {sum(t.n for t in tasks)} items", fontsize=9)
    if task_names:
        ax.legend(fontsize=8)
    return _png(fig)
