"""The HTML report of a run: one self-contained page (no scripts or assets from outside).

Rendered with Jinja2 (autoescaping on: every model output and user text is escaped).
Per task file: the model and mode, counts by status, metrics; then every bad input row
with its place; then every prediction with its checks, collapsible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape

from taskloop.data.records import Prediction

if TYPE_CHECKING:
    from taskloop.pipeline import RunReport

_env = Environment(
    loader=PackageLoader("taskloop.evaluate", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


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
