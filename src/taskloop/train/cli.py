"""``taskloop train`` and ``taskloop pretrain``: thin CLI faces of :mod:`taskloop.train.loop`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import EPILOG, handle_errors

if TYPE_CHECKING:
    from taskloop.train.loop import StepLog, TrainResult

ConfigArg = Annotated[
    Path | None,
    typer.Argument(metavar="CONFIG.yaml", help="Training config (see docs/training.md)."),
]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[KEY=VALUE]...",
        help="Overrides of config keys, e.g. optim.lr=3e-4 run.max_steps=200 data.tasks=\\[qa].",
        show_default=False,
    ),
]


def split_args(config: Path | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """CONFIG is optional: a first argument like ``key=value`` is an override, not a file."""
    items = list(overrides or [])
    if config is not None and "=" in str(config) and not config.exists():
        return None, [str(config), *items]
    return config, items


@contextmanager
def step_bar(enabled: bool) -> Iterator[Any]:
    """A progress bar showing step, loss, tokens/s and ETA; yields the on_step callback."""
    if not enabled or not sys.stderr.isatty():

        def log_line(log: StepLog) -> None:
            if log.step == 1 or log.step % 50 == 0:
                total = f"/{log.total}" if log.total else ""
                typer.echo(
                    f"step {log.step}{total} loss {log.loss:.4f} lr {log.lr:.2e} "
                    f"{log.tokens_per_s:,.0f} tok/s",
                    err=True,
                )

        yield log_line
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
        console=Console(stderr=True),
        transient=True,
    )
    with bars:
        task = bars.add_task("train", total=None, loss=float("nan"), rate=0.0, eta="?")

        def update(log: StepLog) -> None:
            eta = "?" if log.eta_s is None else f"{int(log.eta_s) // 60}:{int(log.eta_s) % 60:02d}"
            bars.update(
                task, completed=log.step, total=log.total, loss=log.loss, rate=log.tokens_per_s,
                eta=eta,
            )  # fmt: skip

        yield update


def print_result(result: TrainResult) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title=f"trained {result.steps} steps ({result.stopped})")
    for col in ("task", "train pairs", "eval pairs", "metrics"):
        table.add_column(col)
    for task, n in result.data.train_pairs.items():
        metrics = result.final.get(task, {})
        shown = " ".join(f"{k}={v:.3g}" for k, v in metrics.items())
        table.add_row(task, str(n), str(result.data.eval_pairs.get(task, 0)), shown)
    con.print(table)
    con.print(
        f"{result.train_tokens:,} target tokens in {result.train_seconds:.0f} s "
        f"({result.tokens_per_s:,.0f} tok/s); best step {result.best_step}",
        highlight=False,
    )
    d = result.data
    if d.bad_rows or d.cleaned_away:
        con.print(
            f"{d.bad_rows} bad rows skipped, {d.cleaned_away} removed by cleaning", highlight=False
        )
        for rule, n in (d.clean.get("counts") or {}).items():
            if n:
                con.print(f"  {rule}: {n}", highlight=False)
    for w in d.warnings:
        con.print(f"warning: {w}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if result.model_version is not None:
        con.print(f"registered as version {result.model_version} (run {result.run_id})")
    con.print(
        f"model: {result.model_dir}  summary: {result.out_dir / 'result.json'}", highlight=False
    )


def train_command(
    config: ConfigArg = None,
    overrides: Overrides = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the latest checkpoint in `out`.")
    ] = False,
    resume_from: Annotated[
        Path | None,
        typer.Option("--resume-from", metavar="CHECKPOINT", help="Continue from this checkpoint."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fine-tune a model (or train one from scratch) on task data.

    Reads CONFIG.yaml, applies KEY=VALUE overrides (unknown keys fail), cleans and
    augments the data, trains with periodic evaluation and checkpoints, keeps the best
    model in OUT/best and logs the run (config, metrics, curves, model) to MLflow.
    """
    from taskloop.train.config import load_train_config
    from taskloop.train.loop import train

    cfg = load_train_config(*split_args(config, overrides))
    with step_bar(progress and not as_json) as on_step:
        result = train(cfg, resume=str(resume_from) if resume_from else resume, on_step=on_step)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under `accelerate launch`, the main process reports for all
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_result(result)


def pretrain_command(
    config: ConfigArg = None,
    overrides: Overrides = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Domain-adaptive pretraining on unlabeled text (pretrain.text), then stop.

    Seq2seq models learn span corruption, causal models next-token prediction. The
    adapted model is written to OUT/pretrained; point model.name at it (or set
    pretrain.steps in a training config to run both stages in one go).
    """
    from taskloop.train.config import load_train_config
    from taskloop.train.errors import TrainConfigError
    from taskloop.train.prepare import build_or_load, quiet_transformers
    from taskloop.train.pretrain import domain_pretrain
    from taskloop.train.runtime import make_runtime, seed_everything

    quiet_transformers()
    cfg = load_train_config(*split_args(config, overrides))
    if cfg.pretrain.steps <= 0 or not cfg.pretrain.text:
        raise TrainConfigError(
            "pretrain needs pretrain.text (files) and pretrain.steps > 0",
            hint="e.g. taskloop pretrain cfg.yaml pretrain.text=[domain.txt] pretrain.steps=500",
        )
    out = Path(cfg.out)
    seed_everything(cfg.run.seed)
    rt = make_runtime(cfg)
    if cfg.model.init is not None:
        from taskloop.train.pretrain import read_text

        texts = read_text(cfg.pretrain.text)
        from taskloop.train.scratch import build_from_scratch

        build_from_scratch(cfg.model.init, texts, out / "init")
    model, tokenizer, kind = build_or_load(cfg, [], out)
    with step_bar(progress) as on_step:
        domain_pretrain(cfg, model, tokenizer, kind, rt, out, on_step=on_step)
    typer.echo(f"adapted model: {out / 'pretrained'}")


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EPILOG)(handle_errors(train_command))
    app.command("pretrain", epilog=EPILOG)(handle_errors(pretrain_command))
