"""``taskloop evaluate``: the CLI face of :func:`taskloop.evaluate.runner.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.evaluate.errors import EvaluateError

_MODEL_HELP = (
    "Make the predictions now with this model for a task (TASK=MODEL: a folder, a hub id "
    "in the cache, or models:/NAME@ALIAS); repeatable. Needs --data."
)


def _low_scores(values: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values:
        task, sep, num = v.partition("=")
        try:
            if not sep:
                raise ValueError
            out[task.strip()] = float(num)
        except ValueError:
            raise EvaluateError(
                f"--low-score {v!r}: expected TASK=POINTS, e.g. translate=40"
            ) from None
    return out


def evaluate_command(
    results: Annotated[
        Path | None,
        typer.Argument(
            metavar="[RESULTS]",
            help="A `taskloop run` output (folder, results.jsonl or result.blob), or a plain "
            "JSONL of task/prediction/references rows. Leave out to predict now with --model.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            metavar="DATA",
            help="Task data with the references (archive, blob, folder or task file). "
            "Default for run outputs: the input recorded in report.json.",
        ),
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", metavar="TASK=MODEL", help=_MODEL_HELP)
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            "--compare",
            metavar="RESULTS_B",
            help="Version B's results on the same data: adds paired-bootstrap comparisons.",
        ),
    ] = None,
    compare_model: Annotated[
        list[str] | None,
        typer.Option(
            "--compare-model",
            metavar="TASK=MODEL",
            help="Version B made now with this model on --data (repeatable).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", metavar="YAML", help="Run config for predictions made now."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the report.")
    ] = Path("taskloop-eval"),
    resamples: Annotated[
        int, typer.Option(min=0, metavar="N", help="Bootstrap resamples (0: no intervals).")
    ] = 1000,
    confidence: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Interval coverage.")
    ] = 0.95,
    alpha: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="Significance level for A vs B.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    quality: Annotated[
        bool,
        typer.Option(
            help="Reference-free signals: coherence, relevance, factuality, diversity "
            "(loads the packaged MiniLM encoder)."
        ),
    ] = True,
    nli: Annotated[
        str | None,
        typer.Option(metavar="MODEL", help="NLI model for entailment-based factuality."),
    ] = None,
    low_score: Annotated[
        list[str] | None,
        typer.Option(
            "--low-score",
            metavar="TASK=POINTS",
            help="Primary score below which an item counts as low-scoring (repeatable).",
        ),
    ] = None,
    worst: Annotated[int, typer.Option(min=1, help="Examples shown per error group.")] = 5,
    plots: Annotated[bool, typer.Option(help="Draw the report's plots.")] = True,
    max_items: Annotated[
        int | None,
        typer.Option(metavar="N", help="Predictions made now: at most N rows per task file."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Key for an encrypted data blob.")
    ] = None,
) -> None:
    """Score predictions with the standard metrics, compare two versions, find the errors.

    Metrics per task: translation and summaries get BLEU, chrF++ and TER (sacrebleu, with
    signatures), ROUGE-1/2/L and METEOR; QA gets SQuAD exact match and F1 and the
    answer/no-answer decision's precision, recall and confusion matrix; code gets pass@k.
    Reference-free signals: coherence, relevance, factuality, diversity. Every metric has
    a bootstrap interval; with --compare (or --compare-model) version B is tested against
    A with a paired bootstrap.

    Writes report.json, report.html (tables and plots, one self-contained file),
    plots/*.png and hard_examples.jsonl (wrong or low-scoring items as task rows that
    `taskloop train` reads) into --out.

    \b
    Examples:
      taskloop evaluate run-out/                       # the run's input holds references
      taskloop evaluate run-out/ --compare run-new/    # A vs B
      taskloop evaluate --data tasks.zip -m translate=./my-model
      taskloop evaluate outputs.jsonl                  # rows: task, prediction, references
    """
    from taskloop.evaluate.items import load_results, run_model
    from taskloop.evaluate.runner import EvalOptions, evaluate
    from taskloop.runconfig import parse_model_overrides

    key = str(key_file) if key_file else None
    if results is None:
        if data is None:
            raise EvaluateError(
                "nothing to evaluate: pass RESULTS, or --data with the model(s) to run",
                hint="taskloop evaluate run-out/  or  "
                "taskloop evaluate --data tasks.zip -m translate=MODEL",
            )
        a = run_model(
            data,
            parse_model_overrides(model or []),
            config_path=config,
            out_dir=out / "run-a",
            max_items=max_items,
        )
    else:
        if model:
            raise EvaluateError(
                "--model makes predictions now; RESULTS already holds them",
                hint="drop RESULTS to predict now, or drop --model",
            )
        a = load_results(results, data=data, key_file=key)
    b = None
    if compare is not None and compare_model:
        raise EvaluateError("pass --compare or --compare-model, not both")
    if compare is not None:
        b = load_results(compare, data=data or a.inputs.get("data"), key_file=key)
    elif compare_model:
        source = data or a.inputs.get("data")
        if source is None:
            raise EvaluateError("--compare-model needs --data (the task data to run on)")
        b = run_model(
            source,
            parse_model_overrides(compare_model),
            config_path=config,
            out_dir=out / "run-b",
            max_items=max_items,
        )
    options = EvalOptions(
        resamples=resamples,
        confidence=confidence,
        alpha=alpha,
        seed=seed,
        quality=quality,
        nli=nli,
        low_score=_low_scores(low_score or []),
        worst=worst,
        plots=plots,
    )
    result = evaluate(a, b=b, options=options, out_dir=out)
    print_evaluation(result.report)
    typer.echo(f"report: {out / 'report.html'}")


def print_evaluation(report: object) -> None:
    """The overview table (primary metric with interval per task) and A-vs-B verdicts."""
    from rich.table import Table

    from taskloop.evaluate.records import EvalReport
    from taskloop.evaluate.report import verdict
    from taskloop.runcli import results_console

    assert isinstance(report, EvalReport)
    con = results_console()
    table = Table(title=f"taskloop evaluate: {report.label}")
    for col in ("task", "items", "metric", "value", "interval", "also"):
        table.add_column(col, overflow="fold")
    for t in report.tasks:
        m = t.metrics.get(t.primary)
        interval = (
            f"[{m.low:.3g}, {m.high:.3g}]"
            if m and m.low is not None and m.high is not None
            else "–"
        )
        also = " ".join(
            f"{k}={v.value:.3g}" for k, v in list(t.metrics.items())[:6] if k != t.primary
        )
        table.add_row(t.task, str(t.n), t.primary, f"{m.value:.4g}" if m else "–", interval, also)
    con.print(table)
    if report.comparisons:
        cmp = Table(title=f"A = {report.label}  vs  B = {report.compare_label} (paired bootstrap)")
        for col in ("task", "metric", "A", "B", "B - A", "p", "verdict"):
            cmp.add_column(col)
        for c in report.comparisons:
            cmp.add_row(
                c.task,
                c.metric,
                f"{c.a:.4g}",
                f"{c.b:.4g}",
                f"{c.delta:+.3g}",
                f"{c.p_value:.3g}",
                verdict(c),
            )
        con.print(cmp)
    if report.analysis is not None:
        counts = ", ".join(f"{k} {v}" for k, v in report.analysis.counts.items() if v)
        con.print(f"errors: {counts or 'none found'}", highlight=False)
        if report.analysis.hard_examples:
            con.print(
                f"{report.analysis.hard_count} hard examples: {report.analysis.hard_examples}",
                highlight=False,
            )
    for n in report.notes:
        con.print(f"note: {n}", style="yellow", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("evaluate", epilog=EPILOG)(handle_errors(evaluate_command))
