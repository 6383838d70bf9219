"""PPO for seq2seq and causal task models: rollouts, rewards with a KL penalty, GAE, and
clipped policy and value updates (:func:`ppo_train`).

One step: sample ``batch_size`` examples; build each prompt as training and serving do
(:func:`taskloop.data.pairs.model_input`); sample a response per prompt from the current
policy; score the responses with the reward function (a reward model and/or verifiable
checks); normalise the scores with running statistics; give every response token a
reward of −β·KL(policy‖reference) and the last token the score as well; estimate
advantages with GAE on the value head's values; then ``ppo_epochs`` passes over shuffled
mini-batches minimise the clipped policy loss plus ``vf_coef`` × the clipped value loss
(minus an optional entropy bonus). β follows the adaptive KL controller. The arithmetic
is :mod:`taskloop.rlhf.ppo_math`; the forward passes are :mod:`taskloop.rlhf.logprobs`.

Each step is a :class:`~taskloop.rlhf.records.PolicyStep` in ``OUT/steps.jsonl``; the run
ends with ``OUT/policy`` (a task model), ``OUT/ppo.png`` and ``OUT/summary.json``.
:func:`check_step` watches for reward hacking (length collapse or blow-up, KL runaway,
reward rising while the reference metric falls).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from taskloop import progress
from taskloop.log import step as log_step
from taskloop.rlhf import ppo_math
from taskloop.rlhf.errors import PolicyError
from taskloop.rlhf.logprobs import (
    ResponseBatch,
    decoder_start_id,
    encode_prompts,
    forward,
    make_batch,
    split_generated,
    token_logprobs,
)
from taskloop.rlhf.policy import Policy, load_policy, response_logits, save_policy, values
from taskloop.rlhf.records import PolicyStep, RewardFn, Rewards, mean

if TYPE_CHECKING:
    from taskloop.data.records import Example
    from taskloop.models.registry import RunRecord

logger = logging.getLogger("taskloop.rlhf")

POLICY_DIR = "policy"
STEPS_FILE = "steps.jsonl"
PLOT_FILE = "ppo.png"
SUMMARY_FILE = "summary.json"


@dataclass
class PPOConfig:
    """Settings of one PPO run (defaults suit a small pretrained task model).

    Rollout: ``batch_size`` prompts per step, one sampled response each (at most
    ``max_new_tokens``; ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off)),
    prompts cut to ``max_prompt_tokens``.
    Update: ``ppo_epochs`` passes over the batch in mini-batches of ``mini_batch_size``;
    AdamW with ``lr`` (the value head: ``value_lr``, default ``lr``), gradients clipped to
    ``max_grad_norm``; loss = clipped policy loss (``clip``) + ``vf_coef`` × clipped value
    loss (``value_clip``) − ``entropy_coef`` × entropy. GAE with ``gamma`` and ``lam``.
    Rewards: scores normalised by running mean/std (``score_norm``), clipped to
    ±``score_clip``; per-token rewards whitened when ``whiten_rewards``. KL penalty β
    starts at ``init_kl_coef`` and follows the adaptive controller towards ``kl_target``
    nats per response over ``kl_horizon`` samples (``kl_target`` None: β stays fixed).
    Watch: see :func:`check_step`; ``stop_on_kl_runaway`` ends the run at a KL runaway.
    """

    steps: int = 20
    batch_size: int = 16
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    lr: float = 1e-5
    value_lr: float | None = None
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    clip: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    init_kl_coef: float = 0.05
    kl_target: float | None = 6.0
    kl_horizon: int = 10_000
    score_norm: bool = True
    score_clip: float | None = None
    whiten_rewards: bool = False
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_tokens: int = 256
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    reference: str | None = None  # default: the policy's starting weights
    save_every: int = 0  # also save the policy every N steps (0: at the end only)
    register_as: str | None = None  # register OUT/policy as a challenger of this model
    # reward-hacking watch
    baseline_steps: int = 3
    collapse_fraction: float = 0.5
    empty_share: float = 0.5
    blowup_share: float = 0.8
    kl_runaway: float = 3.0  # warn above this multiple of kl_target
    kl_limit: float | None = None  # or above this KL (nats); default kl_runaway × kl_target
    kl_rising_steps: int = 5
    reference_part: str | None = "reference"
    reference_drop: float = 0.05
    stop_on_kl_runaway: bool = False

    def kl_ceiling(self) -> float | None:
        """The KL (nats per response) above which the run counts as a KL runaway."""
        if self.kl_limit is not None:
            return self.kl_limit
        return None if self.kl_target is None else self.kl_runaway * self.kl_target


def check_config(config: PPOConfig) -> None:
    """Refuse settings PPO cannot run with.

    Raises:
        PolicyError: naming the setting and the value it needs.
    """
    positive = ("steps", "batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens")
    for name in positive:
        if getattr(config, name) < 1:
            raise PolicyError(f"PPO setting {name} must be at least 1, got {getattr(config, name)}")
    if config.mini_batch_size > config.batch_size:
        raise PolicyError(
            f"mini_batch_size {config.mini_batch_size} is larger than batch_size "
            f"{config.batch_size}",
            hint="a mini-batch is a share of the rollout batch: make it at most batch_size",
        )
    checks = [
        ("lr", config.lr > 0, "above 0"),
        ("clip", config.clip > 0, "above 0"),
        ("value_clip", config.value_clip > 0, "above 0"),
        ("temperature", config.temperature > 0, "above 0"),
        ("top_p", 0 < config.top_p <= 1, "in (0, 1]"),
        ("gamma", 0 <= config.gamma <= 1, "in [0, 1]"),
        ("lam", 0 <= config.lam <= 1, "in [0, 1]"),
        ("init_kl_coef", config.init_kl_coef >= 0, "at least 0"),
        ("kl_target", config.kl_target is None or config.kl_target > 0, "above 0 (or None)"),
        ("kl_horizon", config.kl_horizon > 0, "above 0"),
        ("max_grad_norm", config.max_grad_norm > 0, "above 0"),
        ("score_clip", config.score_clip is None or config.score_clip > 0, "above 0 or None"),
    ]
    for name, ok, need in checks:
        if not ok:
            raise PolicyError(f"PPO setting {name} must be {need}, got {getattr(config, name)}")


# -- score normalisation ---------------------------------------------------------------


@dataclass
class RunningMoments:
    """Mean and (population) variance of every score seen so far, merged batch by batch
    (Chan et al.'s parallel update)."""

    count: int = 0
    mean: float = 0.0
    var: float = 0.0

    def update(self, xs: Sequence[float]) -> None:
        """Fold a batch of values in."""
        n = len(xs)
        if n == 0:
            return
        b_mean = sum(xs) / n
        b_var = sum((x - b_mean) ** 2 for x in xs) / n
        total = self.count + n
        delta = b_mean - self.mean
        self.var = (self.var * self.count + b_var * n + delta**2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.var)


def normalise_scores(
    scores: Sequence[float], moments: RunningMoments, *, clip: float | None = None
) -> list[float]:
    """Scores as z-values under the running statistics, after folding them in; a
    spread of 0 (one sample, or all equal so far) divides by 1. Clipped to ±``clip``."""
    moments.update(scores)
    std = moments.std if moments.std > 1e-8 else 1.0
    out = [(s - moments.mean) / std for s in scores]
    if clip is not None:
        out = [max(-clip, min(clip, s)) for s in out]
    return out


# -- the reward-hacking watch ----------------------------------------------------------


@dataclass(frozen=True)
class LengthShares:
    """Of one rollout's responses: the share with no text (only the end token), and
    the share that hit ``max_new_tokens`` without ending."""

    empty: float
    truncated: float


def check_step(history: Sequence[PolicyStep], shares: LengthShares, config: PPOConfig) -> list[str]:
    """Warnings about the last step of ``history`` (signs the policy games the reward).

    - length collapse: mean response length below ``collapse_fraction`` × the mean of
      the first ``baseline_steps`` steps, or over ``empty_share`` of responses empty;
    - length blow-up: over ``blowup_share`` of responses cut at ``max_new_tokens``;
    - KL runaway: KL above :meth:`PPOConfig.kl_ceiling`, or KL rising at each of the last
      ``kl_rising_steps`` steps while above ``kl_target`` (the controller raises β and
      cannot pull it back);
    - reference falling: the mean total reward of the last ``kl_rising_steps`` steps is
      above that of the first ones while the ``reference_part`` (a metric against the
      reference answer) fell by more than ``reference_drop``.
    """
    if not history:
        return []
    now = history[-1]
    out: list[str] = []
    base = history[: config.baseline_steps]
    if len(history) > config.baseline_steps:
        base_len = mean([s.response_length for s in base])
        if base_len > 0 and now.response_length < config.collapse_fraction * base_len:
            out.append(
                f"length collapse: mean response {now.response_length:.1f} tokens, below "
                f"{config.collapse_fraction:.0%} of the first {len(base)} steps' "
                f"{base_len:.1f}"
            )
    if shares.empty > config.empty_share:
        out.append(f"length collapse: {shares.empty:.0%} of responses are empty")
    if shares.truncated > config.blowup_share:
        out.append(
            f"length blow-up: {shares.truncated:.0%} of responses hit max_new_tokens="
            f"{config.max_new_tokens} without ending"
        )
    ceiling = config.kl_ceiling()
    n = config.kl_rising_steps
    if ceiling is not None and now.kl > ceiling:
        out.append(f"KL runaway: KL {now.kl:.2f} nats is above the limit {ceiling:.2f}")
    elif n > 0 and len(history) > n and config.kl_target is not None:
        kls = [s.kl for s in history[-(n + 1) :]]
        rising = all(b > a for a, b in itertools.pairwise(kls))
        if rising and now.kl > config.kl_target:
            out.append(
                f"KL runaway: KL rose for {n} steps to {now.kl:.2f} nats (target "
                f"{config.kl_target:g}) although β rose to {now.kl_coef:.3g}"
            )
    part = config.reference_part
    if part and n > 0 and len(history) >= 2 * n and all(part in s.parts for s in history):
        first, last = history[:n], history[-n:]
        reward_up = mean([s.reward for s in last]) - mean([s.reward for s in first])
        ref_down = mean([s.parts[part] for s in first]) - mean([s.parts[part] for s in last])
        if reward_up > 0 and ref_down > config.reference_drop:
            out.append(
                f"reward hacking: reward rose by {reward_up:.3g} while {part!r} fell by "
                f"{ref_down:.3g} (last {n} steps vs first {n})"
            )
    return out


def is_kl_runaway(warnings: Sequence[str]) -> bool:
    """Whether one of a step's warnings is a KL runaway."""
    return any(w.startswith("KL runaway") for w in warnings)


# -- rollout -----------------------------------------------------------------------------


@dataclass
class Rollout:
    """One step's sampled responses with everything the update needs (B rows)."""

    examples: list[Example]
    texts: list[str]
    batch: ResponseBatch
    rewards: Rewards
    old_logprobs: torch.Tensor  # (B, T)
    ref_logprobs: torch.Tensor
    old_values: torch.Tensor
    entropy: float
    shares: LengthShares
    seconds: dict[str, float] = field(default_factory=dict)  # generate, reward, score


def _examples_forever(examples: Sequence[Example], seed: int) -> Iterator[Example]:
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in order:
            yield examples[i]


def _pad_prompts(kind: str, ids: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        cols = slice(width - len(row), width) if kind == "causal" else slice(0, len(row))
        input_ids[i, cols] = torch.tensor(list(row), dtype=torch.long)
        mask[i, cols] = 1
    return input_ids, mask


def generation_config(policy: Policy, config: PPOConfig) -> Any:
    """Pure sampling from the policy: no beam, no repetition penalties, only the banned
    tokens suppressed (the same ones :func:`~taskloop.rlhf.policy.response_logits` masks),
    the model's forced first token kept."""
    from transformers import GenerationConfig

    own = policy.model.generation_config
    tok = policy.tokenizer
    return GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=True,
        num_beams=1,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=getattr(own, "bos_token_id", None),
        decoder_start_token_id=decoder_start_id(policy.model),
        forced_bos_token_id=getattr(own, "forced_bos_token_id", None),
        suppress_tokens=policy.banned or None,
    )


def _chunks(n: int, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, n, size):
        yield torch.arange(start, min(n, start + size))


def rollout(
    policy: Policy,
    examples: Sequence[Example],
    reward: RewardFn,
    config: PPOConfig,
    *,
    prompt_limit: int,
) -> Rollout:
    """Sample a response per example, score it, and compute the old log-probs, values and
    reference log-probs the update compares against."""
    from taskloop.data.pairs import model_input

    model, tok = policy.model, policy.tokenizer
    model_type = str(getattr(model.config, "model_type", ""))
    # only a multi-target Marian model's prompt depends on the vocabulary (its >>de<< token)
    vocab = tok.get_vocab() if model_type == "marian" else ()
    prompts = [
        model_input(ex, kind=policy.kind, model_type=model_type, vocab=vocab) for ex in examples
    ]
    prompt_ids = encode_prompts(tok, prompts, policy.kind, prompt_limit)
    input_ids, attention = _pad_prompts(policy.kind, prompt_ids, tok.pad_token_id)
    t0 = time.perf_counter()
    with torch.no_grad():
        sequences = model.generate(
            input_ids=input_ids.to(policy.device),
            attention_mask=attention.to(policy.device),
            generation_config=generation_config(policy, config),
        )
    responses = split_generated(
        policy.kind,
        sequences.cpu(),
        input_ids.size(1),
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
    )
    keep = [i for i, r in enumerate(responses) if r]
    if len(keep) < len(responses):  # only when the end token is also padding
        logger.debug("ppo: %d empty responses left out", len(responses) - len(keep))
    examples = [examples[i] for i in keep]
    prompt_ids = [prompt_ids[i] for i in keep]
    responses = [responses[i] for i in keep]
    if not responses:
        raise PolicyError(
            "every sampled response was empty",
            hint="the tokenizer's pad and end tokens coincide; check the policy's tokenizer",
        )
    texts = tok.batch_decode(responses, skip_special_tokens=True)
    eos = tok.eos_token_id
    shares = LengthShares(
        empty=mean([float(not t.strip()) for t in texts]),
        truncated=mean(
            [float(len(r) >= config.max_new_tokens and r[-1] != eos) for r in responses]
        ),
    )
    t1 = time.perf_counter()
    rewards = reward(examples, texts)
    t2 = time.perf_counter()
    if len(rewards.total) != len(texts):
        raise PolicyError(
            f"the reward function returned {len(rewards.total)} rewards for {len(texts)} responses",
            hint="a RewardFn returns one total (and one value per part) per response",
        )
    batch = make_batch(
        policy.kind,
        prompt_ids,
        responses,
        pad_id=tok.pad_token_id,
        decoder_start_id=decoder_start_id(model),
        device=policy.device,
    )
    old_lp, ref_lp, old_v, ents = [], [], [], []
    with torch.no_grad():
        for index in _chunks(len(batch), config.mini_batch_size):
            part = batch.select(index)
            logits, hidden = forward(model, part, hidden=True)
            logits = response_logits(policy, logits, config.temperature)
            old_lp.append(token_logprobs(logits, part.response_ids))
            assert hidden is not None
            old_v.append(values(policy, hidden))
            ents.append(ppo_math.entropy(logits, part.response_mask) * len(index))
            ref_logits, _ = forward(policy.ref, part)
            ref_logits = response_logits(policy, ref_logits, config.temperature)
            ref_lp.append(token_logprobs(ref_logits, part.response_ids))
    mask = batch.response_mask
    return Rollout(
        examples=list(examples),
        texts=list(texts),
        batch=batch,
        rewards=rewards,
        old_logprobs=torch.cat(old_lp) * mask,
        ref_logprobs=torch.cat(ref_lp) * mask,
        old_values=torch.cat(old_v) * mask,
        entropy=float(sum(e.item() for e in ents) / len(batch)),
        shares=shares,
        seconds={
            "generate": t1 - t0,
            "reward": t2 - t1,
            "score": time.perf_counter() - t2,
        },
    )


# -- update ------------------------------------------------------------------------------


@dataclass
class UpdateStats:
    """Means over the mini-batches of one step's update."""

    policy_loss: float
    value_loss: float
    clip_fraction: float
    approx_kl: float


def advantages_and_returns(
    roll: Rollout, scores: torch.Tensor, kl_coef: float, config: PPOConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(advantages (whitened), returns, per-token KL) of a rollout."""
    mask = roll.batch.response_mask
    rewards, kl = ppo_math.token_rewards(
        scores, roll.old_logprobs, roll.ref_logprobs, mask, kl_coef
    )
    if config.whiten_rewards:
        rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
    adv, returns = ppo_math.gae(rewards, roll.old_values, mask, gamma=config.gamma, lam=config.lam)
    return ppo_math.masked_whiten(adv, mask), returns, kl


def update(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    roll: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    generator: torch.Generator,
) -> UpdateStats:
    """``ppo_epochs`` passes of clipped policy + value updates over shuffled mini-batches."""
    stats: dict[str, list[float]] = {"pl": [], "vl": [], "clip": [], "akl": []}
    params = policy.parameters()
    n = len(roll.batch)
    for _ in range(config.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.mini_batch_size):
            index = order[start : start + config.mini_batch_size]
            part = roll.batch.select(index.to(roll.batch.response_ids.device))
            mask = part.response_mask
            logits, hidden = forward(policy.model, part, hidden=True)
            assert hidden is not None
            logits = response_logits(policy, logits, config.temperature)
            # padding holds a banned token (log-prob -1e9): keep it out of the ratios
            logprobs = token_logprobs(logits, part.response_ids) * mask
            v = values(policy, hidden) * mask
            pl = ppo_math.policy_loss(
                logprobs, roll.old_logprobs[index], advantages[index], mask, clip=config.clip
            )
            vl, _ = ppo_math.value_loss(
                v, roll.old_values[index], returns[index], mask, clip=config.value_clip
            )
            loss = pl.loss + config.vf_coef * vl
            if config.entropy_coef:
                loss = loss - config.entropy_coef * ppo_math.entropy(logits, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            stats["pl"].append(float(pl.loss.item()))
            stats["vl"].append(float(vl.item()))
            stats["clip"].append(float(pl.clip_fraction.item()))
            stats["akl"].append(float(pl.approx_kl.item()))
    return UpdateStats(
        policy_loss=mean(stats["pl"]),
        value_loss=mean(stats["vl"]),
        clip_fraction=mean(stats["clip"]),
        approx_kl=mean(stats["akl"]),
    )


def make_optimizer(policy: Policy, config: PPOConfig) -> torch.optim.Optimizer:
    """AdamW over the model (``lr``) and the value head (``value_lr``, default ``lr``)."""
    groups = [
        {"params": list(policy.model.parameters()), "lr": config.lr},
        {"params": list(policy.value_head.parameters()), "lr": config.value_lr or config.lr},
    ]
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


# -- the run -----------------------------------------------------------------------------


@dataclass
class PPOResult:
    """What :func:`ppo_train` produced.

    ``path``: the saved policy (a task model folder, value head beside it); ``steps``:
    one record per step; ``warnings``: the reward-hacking warnings, each kind once with
    the step it first appeared and how often; ``stopped_early``: why the run ended before
    ``steps`` (None when it did not); ``run``: the registry record when registered.
    """

    path: Path
    out: Path
    steps: list[PolicyStep]
    warnings: list[str] = field(default_factory=list)
    stopped_early: str | None = None
    seconds: float = 0.0
    run: RunRecord | None = None


def step_metrics(s: PolicyStep) -> dict[str, float]:
    """A step's numbers, flat (for the registry's metric histories)."""
    out = {
        k: float(v)
        for k, v in dataclasses.asdict(s).items()
        if isinstance(v, int | float) and k != "step"
    }
    out.update({f"part_{k}": float(v) for k, v in s.parts.items()})
    return out


def summarise_warnings(steps: Sequence[PolicyStep]) -> list[str]:
    """Each kind of warning once: its first message, the step, and how many steps had it."""
    first: dict[str, tuple[int, str]] = {}
    count: dict[str, int] = {}
    for s in steps:
        for w in s.warnings:
            kind = w.split(":", 1)[0]
            first.setdefault(kind, (s.step, w))
            count[kind] = count.get(kind, 0) + 1
    return [
        f"step {at}: {w}" + (f" (at {count[k]} steps in all)" if count[k] > 1 else "")
        for k, (at, w) in first.items()
    ]


def plot_steps(steps: Sequence[PolicyStep], path: Path, *, kl_target: float | None) -> Path:
    """Reward (± std), KL (and its target), response length and entropy against the step,
    as one PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.4), dpi=100)
    axes = fig.subplots(2, 2, sharex=True)
    x = [s.step for s in steps]
    r = [s.reward for s in steps]
    sd = [s.reward_std for s in steps]
    ax = axes[0][0]
    ax.plot(x, r, color="#3b6ea8", label="mean reward")
    ax.fill_between(x, [a - b for a, b in zip(r, sd, strict=True)],
                    [a + b for a, b in zip(r, sd, strict=True)], color="#3b6ea8", alpha=0.2,
                    label="± std")  # fmt: skip
    ax.set(title="reward (before normalisation)", ylabel="reward")
    ax.legend(loc="best", fontsize=8)
    ax = axes[0][1]
    ax.plot(x, [s.kl for s in steps], color="#d9822b", label="KL(policy ‖ reference)")
    if kl_target is not None:
        ax.axhline(kl_target, color="grey", linestyle="--", label=f"target {kl_target:g}")
    ax.set(title="KL per response (nats), and β", ylabel="nats")
    beta = ax.twinx()
    beta.plot(x, [s.kl_coef for s in steps], color="grey", linestyle=":", label="β (right)")
    beta.set_ylabel("β")
    lines = ax.get_legend_handles_labels()
    more = beta.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best", fontsize=8)
    ax = axes[1][0]
    ax.plot(x, [s.response_length for s in steps], color="#4a9a5b")
    ax.set(title="mean response length", xlabel="step", ylabel="tokens")
    ax = axes[1][1]
    ax.plot(x, [s.entropy for s in steps], color="#8a5aa8")
    ax.set(title="entropy of the sampled distributions", xlabel="step", ylabel="nats per token")
    for s in steps:
        if s.warnings:
            for a in (axes[0][0], axes[0][1]):
                a.axvline(s.step, color="#c0392b", alpha=0.15, linewidth=3)
    fig.suptitle("PPO: red bands mark steps with reward-hacking warnings", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _write_summary(
    out: Path, result: PPOResult, config: PPOConfig, policy: Policy, examples: int
) -> Path:
    steps = result.steps
    k = min(len(steps), max(1, config.baseline_steps))
    summary = {
        "policy": policy.source,
        "reference": policy.reference,
        "kind": policy.kind,
        "saved": str(result.path),
        "examples": examples,
        "steps_done": len(steps),
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 3),
        "reward_first": mean([s.reward for s in steps[:k]]),
        "reward_last": mean([s.reward for s in steps[-k:]]),
        "kl_last": steps[-1].kl if steps else None,
        "kl_coef_last": steps[-1].kl_coef if steps else None,
        "warnings": result.warnings,
        "registered": dataclasses.asdict(result.run) if result.run else None,
        "config": dataclasses.asdict(config),
    }
    path = out / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return path


def _register(result: PPOResult, config: PPOConfig, policy: Policy, tasks: list[str]) -> RunRecord:
    from taskloop.models.registry import CHALLENGER, log_run

    name = config.register_as
    assert name is not None
    return log_run(
        experiment="ppo",
        run_name=f"ppo-{name}",
        config={
            **dataclasses.asdict(config),
            "policy": policy.source,
            "reference": policy.reference,
        },
        metrics=[(s.step, step_metrics(s)) for s in result.steps],
        artifacts=[p for p in (result.out / STEPS_FILE, result.out / PLOT_FILE) if p.exists()],
        model_dir=result.path,
        register_as=name,
        alias=CHALLENGER,
        tags={"taskloop.tasks": ",".join(tasks), "taskloop.trained_by": "ppo"},
    )


def _threads(config: PPOConfig) -> None:
    if config.threads is not None:
        if config.threads < 1:
            raise PolicyError(f"threads must be at least 1, got {config.threads}")
        torch.set_num_threads(config.threads)


def _prompt_limit(policy: Policy, config: PPOConfig) -> int:
    limit = min(config.max_prompt_tokens, policy.window)
    if policy.kind == "causal":
        limit = min(limit, policy.window - config.max_new_tokens)
    if limit < 1:
        raise PolicyError(
            f"max_new_tokens={config.max_new_tokens} leaves no room for a prompt in the "
            f"causal policy's {policy.window}-token window",
            hint="lower max_new_tokens",
        )
    return limit


def ppo_train(
    policy: str | Path | Policy,
    examples: Sequence[Example],
    reward: RewardFn,
    out: Path,
    config: PPOConfig | None = None,
) -> PPOResult:
    """Optimise ``policy`` with PPO on prompts from ``examples`` against ``reward``.

    Args:
        policy: a model folder, ``models:/NAME@ALIAS``, or a loaded :class:`Policy`
            (whose device and reference then stand; ``config.device`` and
            ``config.reference`` apply to loading).
        examples: task examples; their model inputs are the prompts (labels unused,
            except by reward parts that compare with a reference).
        reward: scores a batch of (examples, response texts).
        out: folder to write: ``policy/``, ``steps.jsonl``, ``ppo.png``, ``summary.json``.
        config: settings (default :class:`PPOConfig`).

    Returns:
        The saved policy, the step records and the warnings.

    Raises:
        PolicyError: bad settings, no examples, a policy that is not a seq2seq/causal LM.
    """
    config = config or PPOConfig()
    check_config(config)
    if not examples:
        raise PolicyError("no examples to take prompts from", hint="pass task rows with --data")
    _threads(config)
    torch.manual_seed(config.seed)
    if not isinstance(policy, Policy):
        policy = load_policy(
            policy, reference=config.reference, device=config.device, seed=config.seed
        )
    out.mkdir(parents=True, exist_ok=True)
    prompt_limit = _prompt_limit(policy, config)
    optimizer = make_optimizer(policy, config)
    kl_ctl = ppo_math.AdaptiveKL(
        coef=config.init_kl_coef,
        target=config.kl_target if config.kl_target is not None else 1.0,
        horizon=config.kl_horizon,
    )
    moments = RunningMoments()
    generator = torch.Generator().manual_seed(config.seed)
    source = _examples_forever(examples, config.seed)
    steps: list[PolicyStep] = []
    stopped: str | None = None
    started = time.perf_counter()
    steps_file = out / STEPS_FILE
    steps_file.write_text("", encoding="utf-8")
    progress.start("ppo", config.steps, unit="items")
    with log_step("rlhf.ppo", policy=policy.source, kind=policy.kind, steps=config.steps) as info:
        for i in range(1, config.steps + 1):
            t0 = time.perf_counter()
            chosen = [next(source) for _ in range(config.batch_size)]
            with log_step("rlhf.ppo_step", step=i) as sinfo:
                roll = rollout(policy, chosen, reward, config, prompt_limit=prompt_limit)
                raw = roll.rewards.total
                scores = (
                    normalise_scores(raw, moments, clip=config.score_clip)
                    if config.score_norm
                    else [
                        max(-config.score_clip, min(config.score_clip, s))
                        if config.score_clip
                        else s
                        for s in raw
                    ]
                )
                coef = kl_ctl.coef
                adv, returns, kl = advantages_and_returns(
                    roll,
                    torch.tensor(scores, dtype=torch.float32, device=policy.device),
                    coef,
                    config,
                )
                t_update = time.perf_counter()
                stats = update(policy, optimizer, roll, adv, returns, config, generator)
                t_update = time.perf_counter() - t_update
                seq_kl = float(kl.sum(1).mean().item())
                if config.kl_target is not None:
                    kl_ctl.update(seq_kl, len(roll.texts))
                n = len(roll.texts)
                r_mean = mean(raw)
                record = PolicyStep(
                    step=i,
                    reward=r_mean,
                    reward_std=math.sqrt(mean([(x - r_mean) ** 2 for x in raw])),
                    kl=seq_kl,
                    kl_coef=coef,
                    entropy=roll.entropy,
                    response_length=float(roll.batch.response_mask.sum(1).mean().item()),
                    clip_fraction=stats.clip_fraction,
                    policy_loss=stats.policy_loss,
                    value_loss=stats.value_loss,
                    approx_kl=stats.approx_kl,
                    seconds=time.perf_counter() - t0,
                    samples=n,
                    parts={k: mean(v) for k, v in roll.rewards.parts.items()},
                )
                warned = check_step([*steps, record], roll.shares, config)
                record = dataclasses.replace(record, warnings=tuple(warned))
                steps.append(record)
                sinfo.update(
                    reward=round(record.reward, 4), kl=round(record.kl, 4),
                    kl_coef=round(coef, 5), length=round(record.response_length, 2),
                    entropy=round(record.entropy, 3), clip=round(record.clip_fraction, 3),
                    **{f"{k}_ms": round(v * 1000, 1) for k, v in roll.seconds.items()},
                    update_ms=round(t_update * 1000, 1),
                )  # fmt: skip
            with steps_file.open("a", encoding="utf-8") as f:
                f.write(json.dumps({**dataclasses.asdict(record),
                                    "empty_share": roll.shares.empty,
                                    "truncated_share": roll.shares.truncated}) + "\n")  # fmt: skip
            for w in warned:
                logger.warning("ppo step %d: %s", i, w, extra={"step_no": i})
            progress.advance(1)
            if config.save_every and i % config.save_every == 0 and i < config.steps:
                save_policy(policy, out / POLICY_DIR, metadata={"steps": str(i)})
            if config.stop_on_kl_runaway and is_kl_runaway(warned):
                stopped = f"KL runaway at step {i}"
                logger.warning("ppo: stopped early: %s", stopped)
                break
        info.update(steps_done=len(steps), stopped_early=stopped)
    path = save_policy(policy, out / POLICY_DIR, metadata={"steps": str(len(steps))})
    result = PPOResult(
        path=path,
        out=out,
        steps=steps,
        warnings=summarise_warnings(steps),
        stopped_early=stopped,
        seconds=time.perf_counter() - started,
    )
    plot_steps(steps, out / PLOT_FILE, kl_target=config.kl_target)
    if config.register_as:
        result.run = _register(result, config, policy, sorted({ex.task for ex in examples}))
    _write_summary(out, result, config, policy, len(examples))
    return result
