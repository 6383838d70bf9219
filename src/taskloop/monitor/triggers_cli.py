"""``taskloop retrain check|run|gate``: retraining triggers, the retraining job and the
champion/challenger gate (thin faces of :mod:`taskloop.monitor.triggers` and
:mod:`taskloop.monitor.retrain`). docs/retraining.md explains the rules and the gate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import EPILOG, handle_errors, progress_bars

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from taskloop.monitor.retrain import GateResult, RetrainResult
    from taskloop.monitor.triggers import StatsOptions, TriggerResult

TRIGGER_EXIT = 1  # with --fail-on-trigger, as `taskloop drift --fail-on-drift` uses 1
CHECK_EPILOG = EPILOG + f"\n  with --fail-on-trigger, {TRIGGER_EXIT} also means: a rule fired"

app = typer.Typer(
    name="retrain",
    help="Retraining: check the trigger rules on what the service saw, run a retraining "
    "job that registers a challenger, and gate it against the champion (promote only "
    "when significantly better). Undo a promotion with `taskloop models rollback NAME`.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

Name = Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")]
Task = Annotated[
    str, typer.Option("--task", metavar="TASK", help="codegen, qa, summarize or translate.")
]
Probe = Annotated[
    Path,
    typer.Option(
        "--probe",
        metavar="FILE",
        help="Probe set: task data with references (a task file, folder or archive); "
        "champion and challenger are scored on the same items.",
    ),
]
Rules = Annotated[
    Path | None,
    typer.Option(
        "--rules", metavar="FILE", help="Trigger rules (YAML or JSON; default: built-in)."
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="The service's store (default: $TASKLOOP_SERVE_DATABASE_URL, else "
        "sqlite:///$TASKLOOP_HOME/serve.db).",
    ),
]
StateFile = Annotated[
    Path | None,
    typer.Option(
        "--state",
        metavar="FILE",
        help="Retraining state (default: $TASKLOOP_HOME/retrain/NAME.json).",
    ),
]
Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        metavar="FILE",
        help="Reference inputs for the drift rule (.txt, task files, JSONL); without it "
        "drift is not measured.",
    ),
]
Mmd = Annotated[
    bool,
    typer.Option("--mmd/--no-mmd", help="Drift: also the embedding MMD test (loads the encoder)."),
]
Alpha = Annotated[
    float,
    typer.Option(help="Gate: promote only when the paired-bootstrap p-value is below it.", min=0.0),
]
MinDelta = Annotated[
    float,
    typer.Option(
        "--min-delta",
        metavar="POINTS",
        help="Gate: the smallest gain (0-100 points of the primary metric) worth promoting.",
    ),
]
Resamples = Annotated[int, typer.Option(min=1, help="Gate: bootstrap resamples.")]
MaxItems = Annotated[
    int | None,
    typer.Option("--max-items", metavar="N", min=2, help="Gate: score the first N probe items."),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Where to write (default: $TASKLOOP_HOME/retrain/NAME/<what>-<time>).",
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking/registry URI (default: $TASKLOOP_TRACKING_URI, else the "
        "embedded store in $TASKLOOP_HOME).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


# ----------------------------------------------------------------------------- helpers


def _sessions(url: str | None) -> sessionmaker[Session]:
    """Sessions on the service's store (migrated to head first, as the service does)."""
    from taskloop.serve.settings import ServeSettings
    from taskloop.serve.storage import make_engine, session_factory, upgrade

    resolved = url or ServeSettings().resolved_database_url()
    upgrade(resolved)
    return session_factory(make_engine(resolved))


def _drift(reference: Path | None, mmd: bool) -> StatsOptions | None:
    if reference is None:
        return None
    from taskloop.monitor.drift import load_texts
    from taskloop.monitor.triggers import StatsOptions

    return StatsOptions(reference=load_texts(reference).texts, mmd=mmd)


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=140)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def print_triggers(results: list[TriggerResult]) -> None:
    """The rules as a table, and the verdict on one line."""
    from rich.table import Table

    table = Table(title="retraining triggers")
    for col in ("rule", "value", "threshold", "fired", "detail"):
        table.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for r in results:
        table.add_row(
            r.name, _fmt(r.value), _fmt(r.threshold), "YES" if r.fired else "no", r.detail
        )
    _console().print(table, soft_wrap=False)
    hits = [r.name for r in results if r.fired]
    typer.echo(f"retrain: yes ({', '.join(hits)})" if hits else "retrain: no")


def print_gate(result: GateResult) -> None:
    """The gate's numbers and its decision."""
    from rich.table import Table

    table = Table(title=f"gate {result.name}: v{result.challenger_version} vs champion")
    for col in ("metric", "champion", "challenger", "delta", "CI", "p", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    ci = f"[{_fmt(result.low)}, {_fmt(result.high)}]" if result.low is not None else "-"
    champ = (
        f"v{result.champion_version}: {_fmt(result.champion_value)}"
        if result.champion_version is not None
        else "none"
    )
    table.add_row(
        result.metric, champ, _fmt(result.challenger_value), _fmt(result.delta), ci,
        _fmt(result.p_value), str(result.n),
    )  # fmt: skip
    _console().print(table, soft_wrap=False)
    typer.echo(f"{result.decision}: {result.reason}")


# ---------------------------------------------------------------------------- commands


@app.command(
    "check", epilog=EPILOG + f"\n  with --fail-on-trigger, {TRIGGER_EXIT} also means: a rule fired"
)
@handle_errors
def check_command(
    rules: Rules = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="Registered model name (its state and champion)."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", metavar="TASK", help="Only this task's predictions and ratings."),
    ] = None,
    probe: Annotated[
        Path | None,
        typer.Option(
            "--probe",
            metavar="FILE",
            help="Measure NAME's champion on this probe set now and record the value in "
            "the state (needs --name and --task).",
        ),
    ] = None,
    reference: Reference = None,
    mmd: Mmd = False,
    database_url: DatabaseUrl = None,
    state: StateFile = None,
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
    fail_on_trigger: Annotated[
        bool,
        typer.Option(
            "--fail-on-trigger",
            help=f"Exit {TRIGGER_EXIT} when a rule fires (default: 0 whenever the check ran).",
        ),
    ] = False,
) -> None:
    """Check the retraining rules against the service's store and the retraining state.

    Reads the newest ratings and predictions from the store, the retraining state
    (last retraining, probe baseline and recorded probe metrics) and, with --reference,
    compares recent inputs with reference inputs for drift. With --probe, measures the
    champion on the probe set first and appends the value to the state. Prints one row
    per rule (value, threshold, fired) and whether to retrain; writes nothing else.
    """
    from taskloop.monitor.retrain import aliases, measure_probe, version_folder
    from taskloop.monitor.triggers import (
        collect_stats,
        load_rules,
        load_state,
        record_probe,
        results_json,
        retraining_triggers,
        state_path,
        stats_json,
    )
    from taskloop.rlhf.errors import RetrainError

    loaded = load_rules(rules)
    at = state if state is not None else state_path(name)
    if probe is not None:
        if name is None or task is None:
            raise RetrainError(
                "--probe measures a registered champion: give --name NAME and --task TASK"
            )
        version = aliases(name, tracking_uri).get("champion")
        if version is None:
            raise RetrainError(
                f"model {name!r} has no champion to measure on the probe set",
                hint=f"promote a version first: `taskloop models promote {name} --version N`",
            )
        with progress_bars(not as_json):
            score = measure_probe(
                version_folder(name, version, tracking_uri), task=task, probe=probe
            )
        record_probe(at, score.value, metric=score.metric, version=version)
    sessions = _sessions(database_url)
    with progress_bars(not as_json):
        stats = collect_stats(
            sessions, window=loaded.window(), task=task, state=load_state(at),
            drift=_drift(reference, mmd),
        )  # fmt: skip
    results = retraining_triggers(stats, loaded)
    if as_json:
        out = {
            "retrain": any(r.fired for r in results),
            "fired": [r.name for r in results if r.fired],
            "triggers": results_json(results),
            "stats": stats_json(stats),
            "state": str(at),
        }
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        print_triggers(results)
    if fail_on_trigger and any(r.fired for r in results):
        raise typer.Exit(TRIGGER_EXIT)


@app.command("run", epilog=EPILOG)
@handle_errors
def run_command(
    name: Name,
    task: Task,
    probe: Probe,
    job: Annotated[
        str,
        typer.Option(
            "--job",
            metavar="JOB",
            help="The retraining job: sft (fine-tune on well-rated outputs) or rlhf (reward "
            "model + PPO).",
        ),
    ] = "sft",
    reward_model: Annotated[
        str | None,
        typer.Option(
            "--reward-model",
            metavar="MODEL",
            help="rlhf: use this reward model (default: train one on the store's ratings).",
        ),
    ] = None,
    verifiable: Annotated[
        list[str] | None,
        typer.Option(
            "--verifiable",
            metavar="NAME=W",
            help="rlhf: add a weighted verifiable check to the reward (repeatable; "
            "docs/simulated-feedback.md lists them).",
        ),
    ] = None,
    ppo_steps: Annotated[
        int, typer.Option("--ppo-steps", min=1, metavar="N", help="rlhf: PPO steps.")
    ] = 20,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", metavar="FILE", help="Extra task data to train on (repeatable)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain even when no rule fired.")
    ] = False,
    alpha: Alpha = 0.05,
    min_delta: MinDelta = 0.0,
    resamples: Resamples = 1000,
    max_items: MaxItems = None,
    rules: Rules = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            metavar="MODEL",
            help="Start from this model when NAME has no champion yet (folder, hub id, "
            "models:/ name).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="Training config YAML (docs/training.md)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Training overrides, e.g. --set run.max_steps=200 (repeatable).",
        ),
    ] = None,
    include_simulated: Annotated[
        bool,
        typer.Option("--include-simulated", help="Also train on outputs simulated raters liked."),
    ] = False,
    new_only: Annotated[
        bool,
        typer.Option("--new-only", help="Only ratings since the last retraining."),
    ] = False,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")] = (
        "auto"
    ),
    reference: Reference = None,
    mmd: Mmd = False,
    database_url: DatabaseUrl = None,
    state: StateFile = None,
    out: Out = None,
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Retrain NAME when a trigger fires (or --force), then gate the challenger.

    Checks the rules; if one fired, retrains the champion (sft: fine-tunes on stored
    outputs rated thumbs up or >= 4, plus --data; rlhf: trains a reward model on the
    store's ratings, or takes --reward-model, then runs PPO on the task's stored inputs
    and --data), registers the result as NAME@challenger,
    scores champion and challenger on the same --probe items and promotes the
    challenger only if it is significantly better on the task's primary metric.
    Writes OUT/job (data, training), OUT/gate (gate.json, evaluation report),
    OUT/retrain.json, and the retraining state.
    """
    from taskloop.monitor.retrain import run_retraining
    from taskloop.monitor.triggers import load_rules

    options: dict[str, Any] = {}
    if job == "rlhf":
        from taskloop.rlhf.ppo_cli import parse_weights

        options = {
            "reward_model": reward_model, "verifiable": parse_weights(verifiable or []),
            "steps": ppo_steps, "device": device,
        }  # fmt: skip
    elif job == "sft":
        options = {
            "config": config, "overrides": list(overrides or []),
            "include_simulated": include_simulated, "new_only": new_only, "device": device,
        }  # fmt: skip
    with progress_bars(not as_json):
        result = run_retraining(
            name, task=task, probe=probe, sessions=_sessions(database_url),
            rules=load_rules(rules), job=job, data=list(data or []), force=force, alpha=alpha,
            min_delta=min_delta, resamples=resamples, max_items=max_items, options=options,
            base=base, out=out, state_file=state, drift=_drift(reference, mmd),
            uri=tracking_uri,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    print_round(result)


def print_round(result: RetrainResult) -> None:
    """Triggers, then what the job registered and what the gate decided."""
    print_triggers(result.triggers)
    if not result.ran:
        typer.echo("nothing retrained (use --force to retrain anyway)")
        return
    if result.forced and not result.fired:
        typer.echo("retrained because of --force")
    if result.job is not None:
        j = result.job
        typer.echo(
            f"job {j.job}: {j.rows} stored rows; registered {j.name} v{j.version} "
            f"as challenger (run {j.run_id})"
        )
        for note in j.notes:
            typer.echo(f"warning: {note}", err=True)
    if result.gate is not None:
        print_gate(result.gate)
    typer.echo(f"written: {result.out}  state: {result.state_file}")


@app.command("gate", epilog=EPILOG)
@handle_errors
def gate_command(
    name: Name,
    task: Task,
    probe: Probe,
    alpha: Alpha = 0.05,
    min_delta: MinDelta = 0.0,
    resamples: Resamples = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    max_items: MaxItems = None,
    state: StateFile = None,
    out: Out = None,
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Gate NAME@challenger against NAME@champion on the same probe items.

    Both versions answer the --probe items; taskloop's evaluation scores them and a
    paired bootstrap compares the task's primary metric. The challenger is promoted to
    champion only when it is better with p < --alpha (and by at least --min-delta);
    otherwise it stays challenger. Writes OUT/gate.json and OUT/evaluation/, tags the
    challenger version with taskloop.gate, and records the champion's probe metric in
    the retraining state. Undo a promotion with `taskloop models rollback NAME`.
    """
    from taskloop.monitor.retrain import gate, updated_state
    from taskloop.monitor.triggers import load_state, save_state, state_path

    with progress_bars(not as_json):
        result = gate(
            name, task=task, probe=probe, alpha=alpha, min_delta=min_delta,
            resamples=resamples, seed=seed, max_items=max_items, out=out, uri=tracking_uri,
        )  # fmt: skip
    at = state if state is not None else state_path(name)
    if result.metric != "-":
        save_state(updated_state(load_state(at), name, result), at)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        print_gate(result)
