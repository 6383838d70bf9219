"""The HTML reports of a run and of an evaluation: self-contained pages (no scripts or
assets from outside; plots are embedded).

Rendered with Jinja2 (autoescaping on: every model output and user text is escaped).
Per task file: the model and mode, counts by status, metrics; then every bad input row
with its place; then every prediction with its checks, collapsible.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

from taskloop.data.records import Prediction
from taskloop.evaluate.records import Comparison, EvalReport

if TYPE_CHECKING:
    from taskloop.pipeline import RunReport

_env = Environment(
    loader=PackageLoader("taskloop.evaluate", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Plot:
    """One figure of a report: PNG bytes, a file name and the alt text."""

    name: str
    png: bytes
    alt: str


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


_env.filters["fmt"] = _fmt


def render_html(report: RunReport, predictions: Sequence[Prediction], max_items: int = 2000) -> str:
    """The report page; at most ``max_items`` predictions are listed (all are in JSONL)."""
    template = _env.get_template("report.html.j2")
    by_file: dict[tuple[str, str], list[Prediction]] = {}
    for p in predictions:
        by_file.setdefault((p.where.file, p.task), []).append(p)
    return template.render(
        report=report,
        by_file=by_file,
        max_items=max_items,
        total=len(predictions),
    )


# ----------------------------------------------------------------- evaluation report


def _interval(m: object) -> str:
    low, high = getattr(m, "low", None), getattr(m, "high", None)
    return _pair(low, high)


def _pair(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "–"
    return f"[{low:.4g}, {high:.4g}]"


def _signed(value: float) -> str:
    return f"{value:+.4g}"


def b_worse(c: Comparison) -> bool:
    """Whether B is clearly worse: the whole interval of B − A lies on the worse side.

    ``p_value`` is one-sided (B better), which is the question a promotion asks; a
    report also wants to show a clear regression, hence the interval test.
    """
    if c.low is None or c.high is None:
        return False
    return c.high < 0 if c.higher_is_better else c.low > 0


def verdict(c: Comparison) -> str:
    if c.significant:
        return "B better"
    return "B worse" if b_worse(c) else "no significant difference"


def tone(c: Comparison | None) -> str:
    """The CSS class of a comparison: good (B better), bad (B worse) or muted."""
    if c is None:
        return ""
    return "good" if c.significant else "bad" if b_worse(c) else "muted"


def render_evaluation(report: EvalReport, plots: Mapping[str, Sequence[Plot]]) -> str:
    """The self-contained evaluation page: tables per task, comparisons, error groups,
    and the plots embedded as base64 PNGs (``plots`` maps task, "_comparison" or
    "_errors" to its figures)."""
    template = _env.get_template("evaluation.html.j2")
    by_metric = {(c.task, c.metric): c for c in report.comparisons}
    return template.render(
        r=report,
        plots={
            k: [{"alt": p.alt, "data": base64.b64encode(p.png).decode()} for p in v]
            for k, v in plots.items()
        },
        conf=report.config.get("confidence", 0.95),
        interval=_interval,
        pair=_pair,
        signed=_signed,
        tone=tone,
        verdict=verdict,
        comparison=lambda task, metric: by_metric.get((task, metric)),
    )
