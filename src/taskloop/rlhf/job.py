"""The ``rlhf`` retraining job: a reward model from the feedback store (or a given one),
then PPO on the champion with prompts from the stored inputs of the task.

:func:`taskloop.monitor.retrain.run_job` calls :func:`run_rlhf_job` with a
:class:`~taskloop.monitor.retrain.JobContext`; it registers the returned policy as the
challenger, and the gate decides. ``taskloop retrain run NAME --job rlhf`` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from taskloop.log import logger, step
from taskloop.rlhf.errors import RetrainError
from taskloop.rlhf.feedback import SOURCES, SourceFilter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from taskloop.data.records import Example, TaskName
    from taskloop.monitor.retrain import JobContext, JobOutput


@dataclass(frozen=True)
class RlhfOptions:
    """The ``rlhf`` job's options (``JobContext.options``).

    Attributes:
        reward_model: a reward model to use as is (folder or ``models:/`` name); None
            trains one from the store's pairs and ratings first.
        source: which ratings train the reward model: human, simulated or all.
        simulated_weight: weight of a simulated rating relative to a person's.
        reward_epochs: epochs of reward-model training.
        reward_model_weight: weight of the reward model's score in the PPO reward.
        verifiable: scorer name -> weight of verifiable checks added to the reward
            (docs/simulated-feedback.md lists the scorers).
        prompts: how many stored inputs of the task (newest first) PPO samples from.
        steps, batch_size, mini_batch_size, ppo_epochs, lr, kl_target, max_new_tokens:
            PPO settings (docs/ppo.md).
        device, seed: where and how reproducibly.
    """

    reward_model: str | None = None
    source: SourceFilter = "all"
    simulated_weight: float = 1.0
    reward_epochs: int = 1
    reward_model_weight: float = 1.0
    verifiable: Mapping[str, float] = field(default_factory=dict)
    prompts: int = 1000
    steps: int = 20
    batch_size: int = 16
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    lr: float = 1e-5
    kl_target: float | None = 6.0
    max_new_tokens: int = 32
    device: str = "auto"
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RlhfOptions:
        """Options from a job's options dict.

        Raises:
            RetrainError: an unknown key.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RetrainError(
                f"rlhf job: unknown option(s) {', '.join(unknown)}",
                hint=f"the rlhf job takes {', '.join(sorted(known))}",
            )
        data = {k: v for k, v in values.items() if v is not None}
        if data.get("source", "all") not in SOURCES:
            raise RetrainError(
                f"rlhf job: source {data['source']!r} is not one of {', '.join(SOURCES)}",
                hint="which ratings train the reward model: human, simulated or all",
            )
        data["verifiable"] = dict(data.get("verifiable") or {})
        return cls(**data)


def stored_examples(sessions: sessionmaker[Session], task: TaskName, limit: int) -> list[Example]:
    """The task's stored inputs (newest first, each input once) as examples; inputs that
    no longer validate are skipped."""
    from taskloop.data.loader import validate_row
    from taskloop.data.records import Where
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    with session_scope(sessions, readonly=True) as s:
        records = repo.recent_predictions(s, limit, task)
    seen: set[str] = set()
    out: list[Example] = []
    for i, rec in enumerate(records, 1):
        if rec.input_hash in seen:
            continue
        seen.add(rec.input_hash)
        row = {**rec.input, "id": rec.id}
        example, _ = validate_row(task, row, Where(file="store", row=i))
        if example is not None:
            out.append(example)
    return out


def _examples(ctx: JobContext, opts: RlhfOptions) -> list[Example]:
    from taskloop.train.inputs import read_inputs

    examples: list[Example] = []
    if ctx.sessions is not None:
        examples.extend(stored_examples(ctx.sessions, ctx.task, opts.prompts))
    if ctx.data:
        examples.extend(read_inputs([str(p) for p in ctx.data], tasks=[ctx.task]).examples)
    if not examples:
        raise RetrainError(
            f"rlhf job: no {ctx.task} inputs to take prompts from",
            hint="serve the task and collect some answers, or pass task rows with --data",
        )
    return examples


def _reward_model(
    ctx: JobContext, opts: RlhfOptions, notes: list[str]
) -> tuple[str, dict[str, float]]:
    """The reward model to use: the given one, else one trained now on the store."""
    if opts.reward_model is not None:
        return opts.reward_model, {}
    if ctx.sessions is None:
        raise RetrainError(
            "rlhf job: no reward model given and no feedback store to train one from",
            hint="pass --reward-model, or run with the service's database",
        )
    from taskloop.rlhf.feedback import read_session, select_source
    from taskloop.rlhf.reward import RewardConfig, train_reward_model

    read = read_session(ctx.sessions)
    pairs, points = select_source(read.pairs, read.points, opts.source, opts.simulated_weight)
    result = train_reward_model(
        pairs,
        points,
        ctx.out / "reward",
        RewardConfig(epochs=opts.reward_epochs, seed=opts.seed, device=opts.device),
    )
    notes.append(
        f"reward model trained on {len(pairs)} pairs and {len(points)} ratings "
        f"({opts.source}): {result.path}"
    )
    metrics = {f"reward.{k}": float(v) for k, v in result.metrics.items()}
    return str(result.path), metrics


def run_rlhf_job(ctx: JobContext) -> JobOutput:
    """Reward model (given, or trained on the store) + PPO from the champion.

    Raises:
        RetrainError: bad options, no prompts, no reward model and no store.
        RewardModelError, PolicyError, FeedbackDataError: from the stages.
    """
    from taskloop.monitor.retrain import JobOutput
    from taskloop.rlhf.ppo import PPOConfig, ppo_train
    from taskloop.rlhf.records import mean
    from taskloop.rlhf.rewards import make_reward

    opts = RlhfOptions.from_mapping(ctx.options)
    notes: list[str] = []
    with step("retrain.rlhf", model=ctx.name, task=ctx.task) as info:
        examples = _examples(ctx, opts)
        reward_path, metrics = _reward_model(ctx, opts, notes)
        reward = make_reward(
            reward_model=reward_path,
            reward_model_weight=opts.reward_model_weight,
            verifiable=opts.verifiable,
            device=opts.device,
        )
        config = PPOConfig(
            steps=opts.steps,
            batch_size=opts.batch_size,
            mini_batch_size=min(opts.mini_batch_size, opts.batch_size),
            ppo_epochs=opts.ppo_epochs,
            lr=opts.lr,
            kl_target=opts.kl_target,
            max_new_tokens=opts.max_new_tokens,
            device=opts.device,
            seed=opts.seed,
        )
        result = ppo_train(ctx.champion, examples, reward, ctx.out / "ppo", config)
        info.update(prompts=len(examples), steps=len(result.steps))
    for warning in result.warnings:
        logger.warning("rlhf job: %s", warning)
    notes.extend(result.warnings)
    last = result.steps[-3:]
    metrics.update(
        {
            "ppo.reward_first": result.steps[0].reward if result.steps else 0.0,
            "ppo.reward_last": mean([s.reward for s in last]),
            "ppo.kl_last": mean([s.kl for s in last]),
        }
    )
    return JobOutput(
        model_dir=result.path,
        metrics=metrics,
        config={"job": "rlhf", "options": _plain(opts), "ppo": asdict(config)},
        steps=len(result.steps),
        rows=len(examples),
        notes=notes,
    )


def _plain(opts: RlhfOptions) -> dict[str, Any]:
    data = asdict(opts)
    data["verifiable"] = dict(opts.verifiable)
    return data
