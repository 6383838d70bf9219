"""``taskloop ensemble``: combine several runs' results by vote, MBR or a reward model (thin)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.evaluate.errors import EnsembleError

if TYPE_CHECKING:
    from taskloop.data.records import Example, Prediction, TaskName
    from taskloop.models.ensemble import Scorer, Selection, TaskScores

HELP = (
    "Combine the results of several `taskloop run`s over the same data into one.\n\n"
    "Each RESULTS is a run's output folder (or its results.jsonl); items are matched by "
    "task and id. Member order is priority: a tie goes to the earlier member, so put the "
    "champion first. Writes OUT/results.jsonl (the chosen member's rows, model "
    '"ensemble(A,B,...)", details.ensemble saying who was chosen and why) and '
    "OUT/ensemble.json, and prints how often each member was picked. With --data, every "
    "member and the ensemble are scored with the task's own metrics and the ensemble is "
    "compared with the best single member."
)


def _names(paths: list[Path], names: str | None) -> list[str]:
    from taskloop.models.ensemble import member_names

    if names is None:
        return member_names(paths)
    given = [n.strip() for n in names.split(",")]
    if len(given) != len(paths) or len(set(given)) != len(given) or not all(given):
        raise EnsembleError(
            f"--names {names!r}: need {len(paths)} distinct names, one per RESULTS",
            hint="e.g. --names champion,challenger,distilled",
        )
    return given


def _load_data(path: Path) -> list[tuple[TaskName, list[Example]]]:
    """(task, examples) of the task data (a folder, .zip or blob), as `taskloop run` reads it."""
    from taskloop.data.loader import load_tasks
    from taskloop.pipeline import open_input
    from taskloop.runconfig import RunConfig

    with open_input(path, RunConfig()) as (root, _info):
        loaded = load_tasks(root)
    if loaded.errors:
        first = loaded.errors[0]
        typer.echo(
            f"warning: --data {path}: {len(loaded.errors)} rows unusable (first: {first})",
            err=True,
        )
    return [(g.task, list(g.examples)) for g in loaded.groups]


def _sources(groups: list[tuple[TaskName, list[Example]]]) -> dict[tuple[str, str], str]:
    from taskloop.models.ensemble import source_text

    return {(task, ex.id): source_text(ex) for task, exs in groups for ex in exs}


def _print_scores(scores: list[TaskScores]) -> None:
    for ts in scores:
        typer.echo(f"\n{ts.task}: {ts.n} items, the task's metrics as `taskloop run` reports them")
        keys = [k for k in next(iter(ts.systems.values())) if k != "missing"][:6]
        typer.echo("| system | " + " | ".join(keys) + " |")
        typer.echo("|---|" + "---:|" * len(keys))
        for system, metrics in ts.systems.items():
            cells = [f"{metrics[k]:.4g}" if k in metrics else "-" for k in keys]
            typer.echo(f"| {system} | " + " | ".join(cells) + " |")
        if ts.best_member is None or ts.delta is None:
            typer.echo(f"{ts.task}: no {ts.primary} to compare")
            continue
        ens, best = ts.primary_values[ts.ensemble], ts.primary_values[ts.best_member]
        typer.echo(
            f"{ts.task}: ensemble vs best single member: {ts.primary} (0-100) {ens:.2f} vs "
            f"{best:.2f} ({ts.best_member}), {ts.delta:+.2f}"
        )


@handle_errors
def ensemble_command(
    results: Annotated[
        list[Path],
        typer.Argument(metavar="RESULTS", help="Two or more run folders or results.jsonl."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    method: Annotated[
        str, typer.Option("--method", help="vote, mbr (minimum Bayes risk) or rerank.")
    ] = "vote",
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="MBR utility and vote tie-break metric: chrf++, bleu, rougeL, f1, meteor "
            "(default: translate chrf++, summarize rougeL, qa f1, codegen chrf++).",
        ),
    ] = None,
    tie_break: Annotated[
        str,
        typer.Option(
            "--tie-break", help="Vote ties: order (earlier member) or mbr (expected utility)."
        ),
    ] = "order",
    reward_model: Annotated[
        Path | None,
        typer.Option(
            "--reward-model", help="rerank: a sequence-classification model folder (reward)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Task data (folder, .zip or blob) with references: score members and "
            "ensemble; rerank reads each item's source from it.",
        ),
    ] = None,
    names: Annotated[
        str | None,
        typer.Option("--names", help="Member names, comma-separated (default: folder names)."),
    ] = None,
    intersection: Annotated[
        bool,
        typer.Option(
            "--intersection",
            help="Ensemble only the items every member has (default: mismatched ids fail).",
        ),
    ] = False,
    device: Annotated[str, typer.Option("--device", help="Reward model device.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Reward batch.")] = 16,
) -> None:
    """Combine several runs' results by majority vote, MBR or a reward model."""
    from taskloop.models import ensemble as ens

    if method not in ens.METHODS:
        raise EnsembleError(f"unknown --method {method!r}", hint="use vote, mbr or rerank")
    if metric is not None and metric not in ens.MBR_METRICS:
        raise EnsembleError(
            f"unknown --metric {metric!r}", hint="use one of " + ", ".join(ens.MBR_METRICS)
        )
    if tie_break not in ("order", "mbr"):
        raise EnsembleError(f"unknown --tie-break {tie_break!r}", hint="use order or mbr")
    if method == "rerank" and (reward_model is None or data is None):
        raise EnsembleError(
            "--method rerank needs --reward-model (the scorer) and --data (each item's source)",
            hint="pass a sequence-classification folder and the task data the runs read",
        )
    if reward_model is not None and method != "rerank":
        raise EnsembleError("--reward-model is for --method rerank", hint="drop it, or rerank")
    member = _names(results, names)
    per_member = {m: ens.read_results(p) for m, p in zip(member, results, strict=True)}
    alignment = ens.align(per_member, on_mismatch="intersection" if intersection else "error")
    for warning in alignment.warnings:
        typer.echo(f"warning: {warning}", err=True)
    groups = _load_data(data) if data is not None else []
    scorer: Scorer | None = None
    if reward_model is not None:
        scorer = ens.reward_scorer(reward_model, device=device, batch_size=batch_size)
    sources = _sources(groups)
    if data is not None:
        absent = [i for i in alignment.items if (i.task or "", i.id) not in sources]
        shown = ", ".join(f"{i.task}/{i.id}" for i in absent[:5])
        if absent and method == "rerank":
            raise EnsembleError(
                f"rerank needs every item's source: {len(absent)} items are not in "
                f"--data {data} ({shown})",
                hint="pass the task data the members were run on",
            )
        if absent:
            typer.echo(
                f"warning: {len(absent)} items are not in --data {data} ({shown}): not scored",
                err=True,
            )
    tie: Literal["order", "mbr"] = "mbr" if tie_break == "mbr" else "order"
    selections: list[Selection] = []
    preds: list[Prediction] = []
    for item in alignment.items:
        sel = None
        if item.candidates:
            sel = ens.select(
                item,
                method=method,
                metric=metric,
                tie_break=tie,
                scorer=scorer,
                source=sources.get((item.task or "", item.id)),
            )
            selections.append(sel)
        preds.append(ens.to_prediction(item, sel, alignment.members))
    name = ens.ensemble_name(alignment.members)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text(
        "".join(p.model_dump_json() + "\n" for p in preds), encoding="utf-8"
    )
    picked = ens.picked_counts(selections, alignment.members)
    ties = sum(len(s.tied) > 1 for s in selections)
    empty = len(preds) - len(selections)
    scores: list[TaskScores] = []
    if groups:
        systems = {m: list(per_member[m]) for m in alignment.members}
        systems[name] = preds
        scores = ens.score_systems(groups, systems, ensemble=name)
    notes = [n for n in {ens.metric_note(s.metric or "") for s in selections} if n]
    summary: dict[str, Any] = {
        "name": name,
        "members": dict(zip(alignment.members, map(str, results), strict=True)),
        "method": method,
        "metric": metric,
        "tie_break": tie_break,
        "items": len(preds),
        "picked": picked,
        "ties_broken": ties,
        "no_output": empty,
        "warnings": alignment.warnings + notes,
        "scores": [s.model_dump() for s in scores],
    }
    import json

    (out / "ensemble.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    typer.echo(
        f"{name}: {method} over {len(alignment.members)} members, {len(preds)} items "
        f"-> {out / 'results.jsonl'}"
    )
    n = max(len(selections), 1)
    typer.echo("picked: " + ", ".join(f"{m} {c} ({100 * c / n:.1f}%)" for m, c in picked.items()))
    typer.echo(f"ties broken: {ties}; items with no output from any member: {empty}")
    for note in notes:
        typer.echo(f"note: {note}")
    _print_scores(scores)


def register(app: typer.Typer) -> None:
    app.command("ensemble", help=HELP, epilog=EPILOG)(ensemble_command)
