"""``taskloop rlhf ppo``: fine-tune a task model with PPO against a reward model and/or
verifiable checks.

Reads task rows (``--data``: an archive, blob, folder or task file, as ``taskloop
train`` reads them) for prompts, builds the reward (:func:`taskloop.rlhf.rewards.make_reward`)
and runs :func:`taskloop.rlhf.ppo.ppo_train`. Writes ``OUT/policy`` (the fine-tuned model,
loadable wherever a model folder is accepted, with its value head), ``OUT/steps.jsonl``,
``OUT/ppo.png`` and ``OUT/summary.json``; prints a table of the steps, the reward-hacking
warnings and where the policy went. docs/ppo.md explains every option and figure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import handle_errors, progress_bars
from taskloop.rlhf.errors import PolicyError, RLHFError

if TYPE_CHECKING:
    from taskloop.data.records import Example
    from taskloop.rlhf.ppo import PPOResult
    from taskloop.rlhf.records import PolicyStep

# "tokens": mean response length; reward parts follow as "r:NAME" (mean weighted part).
COLUMNS = ("step", "reward", "± std", "KL", "β", "entropy", "tokens", "clip", "seconds")


def parse_weights(values: Sequence[str]) -> dict[str, float]:
    """``NAME=WEIGHT`` options as a dict (a bare ``NAME`` weighs 1).

    Raises:
        RLHFError: a weight that is not a number >= 0, an unknown scorer, a name given
            twice.
    """
    from taskloop.cliutil import parse_weights as parse
    from taskloop.rlhf.simulate import SCORERS

    return parse(values, option="--verifiable", known=SCORERS, bare=1.0, error=RLHFError)


def read_examples(data: Path, task: str | None) -> list[Example]:
    """The examples of ``data`` (only ``task``'s when given), read as training reads them.

    Raises:
        PolicyError: no usable rows.
    """
    from taskloop.data.records import TASKS
    from taskloop.train.inputs import read_inputs

    if task is not None and task not in TASKS:
        raise PolicyError(f"unknown --task {task!r}", hint="use one of " + ", ".join(TASKS))
    inputs = read_inputs([str(data)], tasks=[task] if task else None)
    if inputs.errors:
        typer.echo(
            f"warning: --data {data}: {len(inputs.errors)} rows unusable "
            f"(first: {inputs.errors[0]})",
            err=True,
        )
    if not inputs.examples:
        raise PolicyError(
            f"--data {data}: no usable task rows" + (f" of task {task}" if task else ""),
            hint="pass task rows (see docs/task-format.md); labels are not needed",
        )
    return list(inputs.examples)


def step_row(s: PolicyStep) -> tuple[str, ...]:
    """One step as the table's cells."""
    return (
        str(s.step),
        f"{s.reward:.4g}",
        f"{s.reward_std:.3g}",
        f"{s.kl:.3f}",
        f"{s.kl_coef:.3g}",
        f"{s.entropy:.3f}",
        f"{s.response_length:.1f}",
        f"{s.clip_fraction:.3f}",
        f"{s.seconds:.2f}",
    )


def _kinds(s: PolicyStep) -> set[str]:
    return {w.split(":", 1)[0] for w in s.warnings}


def shown_steps(steps: Sequence[PolicyStep], every: int | None) -> list[PolicyStep]:
    """Every ``every``-th step (default: about 20 rows), always the first and the last,
    and each step where a kind of warning appears that the step before did not have."""
    if not steps:
        return []
    n = every or max(1, len(steps) // 20)
    return [
        s
        for i, s in enumerate(steps)
        if i % n == 0 or i == len(steps) - 1 or _kinds(s) - (_kinds(steps[i - 1]) if i else set())
    ]


def print_result(result: PPOResult, every: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title=f"taskloop rlhf ppo: {len(result.steps)} steps")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    parts = sorted({k for s in result.steps for k in s.parts})
    for part in parts:
        table.add_column(f"r:{part}", justify="right")
    for s in shown_steps(result.steps, every):
        cells = step_row(s) + tuple(f"{s.parts.get(p, 0.0):.3g}" for p in parts)
        table.add_row(*cells, style="red" if s.warnings else None)
    console.print(table, soft_wrap=False)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}")
    if result.stopped_early:
        typer.echo(f"stopped early: {result.stopped_early}")
    typer.echo(f"policy saved to {result.path} (a task model folder; value head beside it)")
    typer.echo(f"steps, plot and summary in {result.out}")
    if result.run is not None:
        typer.echo(f"registered as {result.run.uri} (alias challenger)")


def _default_out() -> Path:
    from taskloop.config import taskloop_home

    return taskloop_home() / "ppo" / datetime.now().strftime("%Y%m%d-%H%M%S")


@handle_errors
def ppo_command(
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            metavar="MODEL",
            help="The model to fine-tune: a save_pretrained folder (a seq2seq or causal "
            "LM), models:/NAME@champion, or a cached hub id. A folder written by an earlier "
            "run (OUT/policy) brings its value head and reference back.",
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="FILE",
            help="Task rows for prompts: an archive, blob, folder or task file (.jsonl/"
            ".json/.csv), as `taskloop train` reads them.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="DIR", help="Folder to write (default: <home>/ppo/<time>)."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task", help="Use only rows of this task (codegen, qa, summarize, translate)."
        ),
    ] = None,
    reward_model: Annotated[
        str | None,
        typer.Option(
            "--reward-model",
            metavar="NAME",
            help="A reward model: a folder or output of `taskloop rlhf reward`, or models:/NAME.",
        ),
    ] = None,
    reward_model_weight: Annotated[
        float, typer.Option(help="Weight of the reward model's score in the reward.")
    ] = 1.0,
    verifiable: Annotated[
        list[str] | None,
        typer.Option(
            "--verifiable",
            metavar="NAME=W",
            help="A verifiable check and its weight (repeatable): tests, glossary, factual, "
            "language, format, length, reference.",
        ),
    ] = None,
    glossary: Annotated[
        Path | None,
        typer.Option(
            metavar="TSV", help="Glossary (source<TAB>target per line) for the glossary check."
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="PPO steps (rollout + update).")] = 20,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per rollout.")] = 16,
    mini_batch_size: Annotated[int, typer.Option(min=1, help="Responses per gradient step.")] = 4,
    ppo_epochs: Annotated[int, typer.Option(min=1, help="Passes over each rollout.")] = 4,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-5,
    kl_target: Annotated[
        float,
        typer.Option(
            help="KL (nats per response) the adaptive controller aims at; 0 keeps β fixed "
            "at --kl-coef."
        ),
    ] = 6.0,
    kl_coef: Annotated[float, typer.Option(min=0.0, help="Starting KL penalty β.")] = 0.05,
    kl_horizon: Annotated[
        int,
        typer.Option(
            min=1,
            help="Responses over which the controller may move β by up to 20% (smaller: faster).",
        ),
    ] = 10_000,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest response sampled.")] = 32,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    reference: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="The frozen reference of the KL (default: the policy's starting weights).",
        ),
    ] = None,
    stop_on_kl_runaway: Annotated[
        bool,
        typer.Option("--stop-on-kl-runaway", help="End the run at the first KL runaway."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of sampling, order and the value head.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for torch (default: torch's).")
    ] = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            metavar="NAME",
            help="Register the policy in the model registry as NAME, alias challenger.",
        ),
    ] = None,
    every: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Print every N-th step (default: ~20 rows)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary and the steps as JSON.")
    ] = False,
) -> None:
    """Fine-tune a seq2seq or causal task model with PPO.

    Each step samples --batch-size prompts from --data, generates a response per prompt,
    scores it with the reward (--reward-model and/or --verifiable checks) minus a KL
    penalty to the frozen reference, and updates the policy for --ppo-epochs passes.
    Writes OUT/policy, OUT/steps.jsonl, OUT/ppo.png and OUT/summary.json; prints the
    steps, the reward-hacking warnings and where the policy was saved.

    Example:
      taskloop rlhf ppo --policy models:/translate@champion --data tasks.zip
        --verifiable glossary=2 --verifiable format=0.5 --glossary terms.tsv
        --out runs/ppo1 --register translate
    """
    from taskloop.rlhf.ppo import PPOConfig, ppo_train
    from taskloop.rlhf.rewards import make_reward

    weights = parse_weights(verifiable or [])
    if reward_model is None and not any(weights.values()):
        raise RLHFError(
            "no reward to optimise: pass --reward-model and/or --verifiable",
            hint="e.g. --reward-model models:/reward@champion, or --verifiable format=1 "
            "--verifiable reference=2 (checks: tests, glossary, factual, language, format, "
            "length, reference)",
        )
    terms = None
    if glossary is not None:
        from taskloop.tasks.glossary import load_glossary

        terms = load_glossary(glossary)
    examples = read_examples(data, task)
    reward = make_reward(
        reward_model=reward_model,
        reward_model_weight=reward_model_weight,
        verifiable=weights,
        glossary=terms,
        device=device,
    )
    config = PPOConfig(
        steps=steps,
        batch_size=batch_size,
        mini_batch_size=mini_batch_size,
        ppo_epochs=ppo_epochs,
        lr=lr,
        kl_target=kl_target if kl_target > 0 else None,
        init_kl_coef=kl_coef,
        kl_horizon=kl_horizon,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        reference=reference,
        stop_on_kl_runaway=stop_on_kl_runaway,
        seed=seed,
        device=device,
        threads=threads,
        register_as=register,
    )
    target = out or _default_out()
    with progress_bars(not json_out):
        result = ppo_train(policy, examples, reward, target, config)
    if json_out:
        summary: dict[str, Any] = json.loads((result.out / "summary.json").read_text("utf-8"))
        lines = (result.out / "steps.jsonl").read_text("utf-8").splitlines()
        summary["steps"] = [json.loads(line) for line in lines]
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        print_result(result, every)
