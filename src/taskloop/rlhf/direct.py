"""Direct preference training (DPO, IPO, KTO): fine-tune a policy on ratings without a
reward model or sampling, the cheaper alternative to PPO.

Reads top to bottom: the losses as pure functions of per-sequence log-probs (policy and
frozen reference), the records the trainer reports, the data preparation (token ids via
:mod:`taskloop.rlhf.logprobs`), the loop (:func:`fit_direct`, in-memory models), the
held-out evaluation, and :func:`train_direct`, which loads the policy, trains, writes
``steps.jsonl``, ``steps.png``, ``summary.json`` and the policy (``save_pretrained``) into
one folder, and optionally registers it as a challenger.

The losses (``r = log π(y|x) − log π_ref(y|x)``, summed over the response's tokens):

- DPO (Rafailov et al. 2023): ``h = r_chosen − r_rejected``;
  ``−(1−ε)·log σ(βh) − ε·log σ(−βh)`` (ε = label smoothing, "conservative DPO").
- IPO (Azar et al. 2023): ``(h − 1/(2β))²``.
- KTO (Ethayarajh et al. 2024), unpaired thumbs: desirable ``λ_D·(1 − σ(β(r − z0)))``,
  undesirable ``λ_U·(1 − σ(β(z0 − r)))``; ``z0`` is the batch's KL estimate
  (:func:`kto_kl_estimate`): the mean of ``r`` over *mismatched* (prompt, completion)
  pairs — each prompt with another row's completion — clamped at 0 and detached.

Every row's loss is weighted by its ``weight`` (``PreferencePair.weight`` /
``PointLabel.weight``): the batch loss is ``Σ wᵢ·lossᵢ / Σ wᵢ``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from taskloop import progress
from taskloop.log import logger, step
from taskloop.rlhf.errors import FeedbackDataError, PolicyError
from taskloop.rlhf.feedback import split_by_prompt
from taskloop.rlhf.logprobs import (
    Kind,
    decoder_start_id,
    encode_prompts,
    encode_responses,
    make_batch,
    policy_kind,
    sequence_logprobs,
)
from taskloop.rlhf.records import PointLabel, PreferencePair

if TYPE_CHECKING:
    from taskloop.models.registry import RunRecord

LossName = Literal["dpo", "ipo", "kto"]
LOSSES: tuple[LossName, ...] = ("dpo", "ipo", "kto")
EXPERIMENT = "dpo"  # the registry experiment of every direct run, whatever the loss

STEPS_FILE = "steps.jsonl"
PLOT_FILE = "steps.png"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "direct_config.json"
TIE = 1e-4  # reward differences this small (nats) count as ties


# ----------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class LossOutput:
    """One batch's loss and what to log about it.

    ``loss``: the weighted mean over rows (carries the gradient); ``losses``: (B,) per
    row, λ-weighted for KTO but not row-weighted. ``chosen_rewards``/``rejected_rewards``:
    implicit rewards ``β·r`` (detached) of the chosen/rejected answers (KTO: of the
    desirable/undesirable rows, so their lengths may differ). ``accuracy``: weighted share
    of rows ranked right, ties counting ½ (DPO: chosen reward above rejected; KTO:
    desirable ``r`` above ``z0``, undesirable below). ``margin``: weighted mean chosen minus
    rejected reward (KTO: difference of the two classes' weighted means; None when a
    class is absent). ``kl``: KTO's ``z0``; DPO/IPO: the weighted mean log-ratio ``r`` over
    the chosen and rejected answers (how far the policy moved on these sequences; a true
    KL would need samples from the policy).
    """

    loss: torch.Tensor
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    accuracy: float
    margin: float | None
    kl: float


def _weights(like: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return torch.ones_like(like)
    w = weights.to(like)
    if w.shape != like.shape:
        raise ValueError(f"weights have shape {tuple(w.shape)}, rows {tuple(like.shape)}")
    if bool((w < 0).any()):
        raise ValueError("row weights must be >= 0")
    return w


def _wmean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # all-zero weights give 0 (no gradient) rather than a division by zero
    return (x * w).sum() / w.sum().clamp_min(1e-12)


def _ranked(diff: torch.Tensor) -> torch.Tensor:
    """1 where ``diff`` > 0, ½ on a tie, 0 below. A tie is ``|diff| <= TIE``: summed
    float32 log-probs of one sequence differ by ~1e-6 between batch compositions, and
    such noise must not decide a ranking."""
    return (diff > TIE).float() + 0.5 * (diff.abs() <= TIE).float()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss: Literal["dpo", "ipo"] = "dpo",
    weights: torch.Tensor | None = None,
) -> LossOutput:
    """The DPO (or IPO) loss of a batch of pairs from per-sequence log-probs, shape (B,).

    With ``h = (π_c − ref_c) − (π_r − ref_r)``: DPO is
    ``−(1−ε)·log σ(βh) − ε·log σ(−βh)`` (ε = ``label_smoothing``, the probability that a
    label is flipped; 0 is plain DPO), IPO is ``(h − 1/(2β))²``.

    Raises:
        ValueError: beta <= 0, label smoothing outside [0, 0.5) or given with IPO,
            an unknown loss, or weights of the wrong shape or negative.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss not in ("dpo", "ipo"):
        raise ValueError(f"loss must be 'dpo' or 'ipo', got {loss!r}")
    if loss == "ipo" and label_smoothing:
        raise ValueError("label smoothing applies to the DPO loss, not IPO")
    w = _weights(policy_chosen, weights)
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(
            -beta * h
        )
    chosen_rewards = beta * chosen_ratio.detach()
    rejected_rewards = beta * rejected_ratio.detach()
    margins = chosen_rewards - rejected_rewards
    moved = (chosen_ratio.detach() + rejected_ratio.detach()) / 2
    return LossOutput(
        loss=_wmean(losses, w),
        losses=losses,
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        accuracy=float(_wmean(_ranked(margins), w)),
        margin=float(_wmean(margins, w)),
        kl=float(_wmean(moved, w)),
    )


def kto_kl_estimate(mismatched_policy: torch.Tensor, mismatched_ref: torch.Tensor) -> torch.Tensor:
    """KTO's reference point ``z0``: the mean log-ratio ``log π − log π_ref`` over the
    batch's mismatched (prompt, completion) pairs, clamped at 0 and detached (no gradient
    flows through it). Unweighted: it estimates KL(π‖π_ref), not a row's importance."""
    return (mismatched_policy - mismatched_ref).detach().mean().clamp(min=0.0)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    z0: torch.Tensor | float,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    weights: torch.Tensor | None = None,
) -> LossOutput:
    """The KTO loss of a batch of unpaired rated answers, per-sequence log-probs (B,).

    With ``r = π − ref``: desirable rows (``desirable`` True, a thumbs-up) cost
    ``λ_D·(1 − σ(β(r − z0)))``, undesirable ones ``λ_U·(1 − σ(β(z0 − r)))``; ``z0`` from
    :func:`kto_kl_estimate`.

    Raises:
        ValueError: beta <= 0, a negative λ, or weights of the wrong shape or negative.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError("desirable and undesirable weights must be >= 0")
    w = _weights(policy_logps, weights)
    good = desirable.to(torch.bool)
    ratio = policy_logps - ref_logps
    z = torch.as_tensor(z0, dtype=ratio.dtype, device=ratio.device).detach()
    losses = torch.where(
        good,
        desirable_weight * (1.0 - torch.sigmoid(beta * (ratio - z))),
        undesirable_weight * (1.0 - torch.sigmoid(beta * (z - ratio))),
    )
    rewards = beta * ratio.detach()
    right = torch.where(good, _ranked(ratio.detach() - z), _ranked(z - ratio.detach()))
    chosen, rejected = rewards[good], rewards[~good]
    margin = None
    if chosen.numel() and rejected.numel():
        margin = float(_wmean(chosen, w[good]) - _wmean(rejected, w[~good]))
    return LossOutput(
        loss=_wmean(losses, w),
        losses=losses,
        chosen_rewards=chosen,
        rejected_rewards=rejected,
        accuracy=float(_wmean(right, w)),
        margin=margin,
        kl=float(z),
    )


# ---------------------------------------------------------------------------- records


@dataclass
class DirectConfig:
    """Settings of :func:`train_direct`.

    ``loss``: "dpo", "ipo" (pairs) or "kto" (thumbs). ``beta``: strength of the tie to
    the reference (smaller moves further). ``label_smoothing``: DPO only, the assumed
    share of flipped labels. ``desirable_weight``/``undesirable_weight``: KTO's λ_D/λ_U.
    ``max_prompt_tokens``/``max_response_tokens``: truncation (a causal policy's prompt
    budget shrinks to fit its context window). ``valid_fraction``: share of prompts held
    out (split by prompt, so no prompt is in both). ``threads``: torch CPU threads (None
    leaves torch's default). ``max_grad_norm``: gradient clipping (0 = off).
    """

    loss: LossName = "dpo"
    beta: float = 0.1
    label_smoothing: float = 0.0
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    epochs: int = 1
    batch_size: int = 8
    lr: float = 5e-6
    max_prompt_tokens: int = 256
    max_response_tokens: int = 128
    valid_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_grad_norm: float = 1.0

    def check(self) -> None:
        """Raise PolicyError for settings that cannot train."""
        problems = []
        if self.loss not in LOSSES:
            problems.append(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.beta <= 0:
            problems.append(f"beta must be > 0 (got {self.beta})")
        if not 0 <= self.label_smoothing < 0.5:
            problems.append(f"label_smoothing must be in [0, 0.5) (got {self.label_smoothing})")
        if self.label_smoothing and self.loss != "dpo":
            problems.append("label_smoothing applies to the dpo loss only")
        if self.desirable_weight < 0 or self.undesirable_weight < 0:
            problems.append("desirable/undesirable weights must be >= 0")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("epochs and batch_size must be >= 1")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.max_prompt_tokens < 1 or self.max_response_tokens < 2:
            problems.append("max_prompt_tokens must be >= 1 and max_response_tokens >= 2")
        if not 0 <= self.valid_fraction < 1:
            problems.append(f"valid_fraction must be in [0, 1) (got {self.valid_fraction})")
        if problems:
            raise PolicyError(
                "direct training settings: " + "; ".join(problems),
                hint="e.g. loss=dpo beta=0.1 epochs=1 batch_size=8 lr=5e-6 valid_fraction=0.1",
            )


@dataclass(frozen=True)
class DirectStep:
    """What one DPO/IPO/KTO optimizer step measured (a line of ``steps.jsonl``).

    ``chosen_reward``/``rejected_reward``: mean implicit reward ``β·r`` of the batch's
    chosen/rejected (KTO: desirable/undesirable) answers, None when the batch has none.
    """

    step: int
    epoch: int
    loss: float
    reward_accuracy: float
    margin: float | None
    chosen_reward: float | None
    rejected_reward: float | None
    kl: float
    grad_norm: float
    lr: float
    samples: int
    seconds: float

    def metrics(self) -> dict[str, float]:
        """The numeric fields (None left out), for the registry."""
        skip = ("step", "epoch")
        return {k: float(v) for k, v in asdict(self).items() if k not in skip and v is not None}


@dataclass
class DirectResult:
    """What :func:`train_direct` wrote: the policy folder ``path`` (loadable by
    :func:`taskloop.models.loader.load_model`), the steps, held-out metrics ``before`` and
    ``after`` training (see :func:`evaluate_direct`), and the registry record if any."""

    path: Path
    loss: LossName
    kind: Kind
    steps: list[DirectStep]
    before: dict[str, float | None]
    after: dict[str, float | None]
    evaluated_on: Literal["valid", "train"]
    counts: dict[str, int]
    seconds: float
    warnings: list[str] = field(default_factory=list)
    run: RunRecord | None = None

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s content."""
        last = self.steps[-1] if self.steps else None
        return {
            "path": str(self.path),
            "loss": self.loss,
            "kind": self.kind,
            "evaluated_on": self.evaluated_on,
            "before": self.before,
            "after": self.after,
            "counts": self.counts,
            "steps": len(self.steps),
            "final_step": asdict(last) if last else None,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "registered": None
            if self.run is None
            else {"name": self.run.model_name, "version": self.run.version, "uri": self.run.uri},
        }


# ------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Rows:
    """Token ids of the training or held-out rows.

    DPO/IPO: ``first`` = chosen, ``second`` = rejected. KTO: ``first`` = the rated
    completion, ``second`` = the mismatched completion (another row's) whose log-ratio
    under this row's prompt feeds ``z0``; ``desirable`` = thumbs up.
    """

    prompts: list[list[int]]
    first: list[list[int]]
    second: list[list[int]]
    weights: list[float]
    desirable: list[bool]

    def __len__(self) -> int:
        return len(self.prompts)


def _mismatched(n: int, seed: int) -> list[int]:
    """For each row, another row whose completion it is paired with for ``z0``: a seeded
    cycle through a random order (row ``order[k]`` takes ``order[k+1]``'s completion), so
    every row is used once as a mismatch. A single row is paired with itself."""
    if n < 2:
        return list(range(n))
    order = np.random.default_rng(seed).permutation(n)
    partner = [0] * n
    for k in range(n):
        partner[int(order[k])] = int(order[(k + 1) % n])
    return partner


def encode_rows(
    tokenizer: Any,
    kind: Kind,
    loss: LossName,
    items: Sequence[PreferencePair] | Sequence[PointLabel],
    *,
    max_prompt_tokens: int,
    max_response_tokens: int,
    seed: int = 0,
) -> Rows:
    """Tokenise pairs (DPO/IPO) or thumbs (KTO) with :mod:`taskloop.rlhf.logprobs`."""
    prompts = encode_prompts(tokenizer, [x.prompt for x in items], kind, max_prompt_tokens)
    weights = [float(x.weight) for x in items]
    if loss == "kto":
        points = [x for x in items if isinstance(x, PointLabel)]
        first = encode_responses(
            tokenizer, [p.completion for p in points], kind, max_response_tokens
        )
        partner = _mismatched(len(points), seed)
        return Rows(
            prompts, first, [first[j] for j in partner], weights, [bool(p.label) for p in points]
        )
    pairs = [x for x in items if isinstance(x, PreferencePair)]
    chosen = encode_responses(tokenizer, [p.chosen for p in pairs], kind, max_response_tokens)
    rejected = encode_responses(tokenizer, [p.rejected for p in pairs], kind, max_response_tokens)
    return Rows(prompts, chosen, rejected, weights, [True] * len(pairs))


def batch_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    batch_size: int,
    device: Any,
) -> torch.Tensor:
    """Summed response log-probs (N,) in batches, without gradients, on the CPU."""
    out = []
    start = decoder_start_id(model)
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            batch = make_batch(
                policy_kind(model), prompts[i : i + batch_size], responses[i : i + batch_size],
                pad_id=tokenizer.pad_token_id, decoder_start_id=start, device=device,
            )  # fmt: skip
            out.append(sequence_logprobs(model, batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


# ------------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class RefLogps:
    """The frozen reference's log-probs of every row's first and second response."""

    first: torch.Tensor
    second: torch.Tensor


def reference_logps(
    reference: Any, tokenizer: Any, rows: Rows, *, batch_size: int, device: Any
) -> RefLogps:
    """Computed once: the reference never changes, so every epoch reuses them."""
    kw = {"batch_size": batch_size, "device": device}
    return RefLogps(
        batch_logprobs(reference, tokenizer, rows.prompts, rows.first, **kw),
        batch_logprobs(reference, tokenizer, rows.prompts, rows.second, **kw),
    )


def _loss(
    policy: Any, tokenizer: Any, rows: Rows, ref: RefLogps, idx: list[int], cfg: DirectConfig,
    device: Any,
) -> LossOutput:  # fmt: skip
    """One batch's loss: a forward pass with gradients over the rows ``idx``."""
    kind = policy_kind(policy)
    pad, start = tokenizer.pad_token_id, decoder_start_id(policy)
    prompts = [rows.prompts[i] for i in idx]
    weights = torch.tensor([rows.weights[i] for i in idx], device=device)
    at = torch.tensor(idx)
    if cfg.loss == "kto":
        batch = make_batch(kind, prompts, [rows.first[i] for i in idx], pad_id=pad,
                           decoder_start_id=start, device=device)  # fmt: skip
        logps = sequence_logprobs(policy, batch)
        with torch.no_grad():
            mis = make_batch(kind, prompts, [rows.second[i] for i in idx], pad_id=pad,
                             decoder_start_id=start, device=device)  # fmt: skip
            z0 = kto_kl_estimate(sequence_logprobs(policy, mis), ref.second[at].to(device))
        return kto_loss(
            logps, ref.first[at].to(device),
            torch.tensor([rows.desirable[i] for i in idx], device=device), z0,
            beta=cfg.beta, desirable_weight=cfg.desirable_weight,
            undesirable_weight=cfg.undesirable_weight, weights=weights,
        )  # fmt: skip
    # chosen and rejected in one forward pass: rows 0..B-1 chosen, B..2B-1 rejected
    responses = [rows.first[i] for i in idx] + [rows.second[i] for i in idx]
    batch = make_batch(kind, prompts + prompts, responses, pad_id=pad, decoder_start_id=start,
                       device=device)  # fmt: skip
    logps = sequence_logprobs(policy, batch)
    b = len(idx)
    return dpo_loss(
        logps[:b], logps[b:], ref.first[at].to(device), ref.second[at].to(device),
        beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        loss="ipo" if cfg.loss == "ipo" else "dpo", weights=weights,
    )  # fmt: skip


def _mean(x: torch.Tensor) -> float | None:
    return float(x.mean()) if x.numel() else None


def fit_direct(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    rows: Rows,
    cfg: DirectConfig,
    *,
    device: Any = "cpu",
    on_step: Callable[[DirectStep], None] | None = None,
) -> list[DirectStep]:
    """Train the in-memory ``policy`` on ``rows`` against the frozen ``reference``.

    AdamW at a constant ``cfg.lr`` without weight decay (TRL's default), ``cfg.epochs``
    passes over the rows in a seeded shuffled order, mini-batches of ``cfg.batch_size``,
    gradients clipped to ``cfg.max_grad_norm``. Dropout stays off (both models in eval
    mode, as TRL does for DPO), so before the first step the policy's log-probs equal the
    reference's and every implicit reward starts at 0. The reference's parameters get
    ``requires_grad = False``; its log-probs are computed once, before the first step.
    """
    for p in reference.parameters():
        p.requires_grad_(False)
    reference.eval()
    policy.eval()
    ref = reference_logps(reference, tokenizer, rows, batch_size=cfg.batch_size, device=device)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    n = len(rows)
    per_epoch = math.ceil(n / cfg.batch_size)
    progress.start(cfg.loss, per_epoch * cfg.epochs, "items")
    steps: list[DirectStep] = []
    for epoch in range(cfg.epochs):
        order = rng.permutation(n).tolist()
        for k in range(0, n, cfg.batch_size):
            t0 = time.perf_counter()
            idx = order[k : k + cfg.batch_size]
            out = _loss(policy, tokenizer, rows, ref, idx, cfg, device)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()  # type: ignore[no-untyped-call]
            norm = torch.nn.utils.clip_grad_norm_(
                params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
            )
            optimizer.step()
            record = DirectStep(
                step=len(steps) + 1, epoch=epoch + 1, loss=float(out.loss.detach()),
                reward_accuracy=out.accuracy, margin=out.margin,
                chosen_reward=_mean(out.chosen_rewards),
                rejected_reward=_mean(out.rejected_rewards), kl=out.kl,
                grad_norm=float(norm), lr=cfg.lr, samples=len(idx),
                seconds=time.perf_counter() - t0,
            )  # fmt: skip
            steps.append(record)
            logger.debug("%s step", cfg.loss, extra=asdict(record))
            if on_step is not None:
                on_step(record)
            progress.advance(1)
    return steps


# ------------------------------------------------------------------------- evaluation


def evaluate_direct(
    loss: LossName,
    rows: Rows,
    policy_first: torch.Tensor,
    policy_second: torch.Tensor,
    ref: RefLogps,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> dict[str, float | None]:
    """Held-out metrics of the implicit reward ``β·(log π − log π_ref)``.

    DPO/IPO (pairs): ``reward_accuracy`` = weighted share of pairs whose chosen answer
    gets the higher implicit reward (ties ½: before training every reward is 0, so it is
    exactly 0.5); ``margin`` = weighted mean reward gap; ``loss`` = the training loss;
    ``logprob_accuracy`` = share of pairs where the policy itself gives the chosen answer
    the higher log-probability (not 0.5 before training: the base model's own ranking).
    KTO (thumbs): ``reward_accuracy`` = the same ranking over every (thumbs-up,
    thumbs-down) pair of held-out answers, i.e. the ROC AUC of the implicit reward
    (None without both kinds of thumb); ``margin`` = mean reward of thumbs-up minus
    thumbs-down answers; ``logprob_accuracy`` = the same AUC of the policy's log-prob.
    """
    w = torch.tensor(rows.weights)
    if loss == "kto":
        from sklearn.metrics import roc_auc_score

        labels = np.array(rows.desirable, dtype=bool)
        rewards = (beta * (policy_first - ref.first)).numpy()
        both = bool(labels.any() and (~labels).any())

        def auc(scores: np.ndarray) -> float | None:
            if not both:
                return None
            return float(roc_auc_score(labels, scores, sample_weight=w.numpy()))

        good, bad = torch.from_numpy(labels), torch.from_numpy(~labels)
        r = torch.from_numpy(rewards)
        margin = float(_wmean(r[good], w[good]) - _wmean(r[bad], w[bad])) if both else None
        return {
            "reward_accuracy": auc(rewards),
            "margin": margin,
            "logprob_accuracy": auc(policy_first.numpy()),
        }
    out = dpo_loss(
        policy_first, policy_second, ref.first, ref.second, beta=beta,
        label_smoothing=label_smoothing, loss="ipo" if loss == "ipo" else "dpo", weights=w,
    )  # fmt: skip
    return {
        "reward_accuracy": out.accuracy,
        "margin": out.margin,
        "loss": float(out.loss),
        "logprob_accuracy": float(_wmean(_ranked(policy_first - policy_second), w)),
    }


# ------------------------------------------------------------------------ entry point


_NOT_LM = ("SequenceClassification", "QuestionAnswering", "TokenClassification", "MaskedLM")


def load_policy(name: str | Path) -> tuple[Any, Any, Kind]:
    """(model, tokenizer, kind) of a seq2seq or causal LM folder, hub id or ``models:/``
    name, in float32.

    Raises:
        PolicyError: the model is a classifier, QA or masked-LM model, or cannot be
            loaded as a language model.
        ModelNotFoundError: the name resolves to nothing on this machine.
    """
    from transformers import AutoConfig

    from taskloop.models.errors import ModelKindError
    from taskloop.models.loader import ModelSpec, resolve
    from taskloop.train.prepare import load_for_training, quiet_transformers

    quiet_transformers()
    path = resolve(ModelSpec(str(name)))
    config = AutoConfig.from_pretrained(path)
    archs = getattr(config, "architectures", None) or []
    wrong = [a for a in archs if any(s in a for s in _NOT_LM)]
    if wrong and not getattr(config, "is_encoder_decoder", False):
        raise PolicyError(
            f"policy {str(name)!r} is a {wrong[0]}, not a language model "
            f"(seq2seq or causal) that generates answers",
            hint="pass the task model to fine-tune (e.g. a T5/Marian/BART or GPT-style "
            "folder), not a reward model or classifier",
        )
    try:
        model, tokenizer, _ = load_for_training(str(name))
    except ModelKindError as exc:
        raise PolicyError(exc.message, hint=exc.hint) from None
    return model, tokenizer, policy_kind(model)


def _budgets(kind: Kind, window: int, cfg: DirectConfig, warnings: list[str]) -> tuple[int, int]:
    """(prompt, response) token budgets. A causal policy reads both in one ``window``:
    when they do not fit, the response keeps at most half the window and the prompt the
    rest."""
    if kind != "causal":
        return cfg.max_prompt_tokens, cfg.max_response_tokens
    prompt, response = cfg.max_prompt_tokens, cfg.max_response_tokens
    if prompt + response <= window:
        return prompt, response
    response = max(2, min(response, window // 2))
    prompt = window - response
    warnings.append(
        f"prompt/response budgets cut to {prompt}/{response} tokens: "
        f"{cfg.max_prompt_tokens} + {cfg.max_response_tokens} exceed the causal policy's "
        f"{window}-token window"
    )
    return prompt, response


def select_rows(
    loss: LossName,
    pairs: Sequence[PreferencePair],
    points: Sequence[PointLabel],
    warnings: list[str],
) -> list[PreferencePair] | list[PointLabel]:
    """The rows the loss learns from: pairs for DPO/IPO, thumbs for KTO (rows with zero
    weight dropped).

    Raises:
        FeedbackDataError: none are left.
    """
    if loss == "kto":
        thumbs = [p for p in points if p.label is not None and p.weight > 0]
        if pairs:
            warnings.append(f"{len(pairs)} preference pairs ignored: KTO learns from thumbs")
        if not thumbs:
            scored = sum(p.label is None for p in points)
            raise FeedbackDataError(
                f"no thumbs to train KTO on ({len(points)} rated answers, {scored} of them "
                f"scores without a thumb, {len(pairs)} pairs)",
                hint="export thumbs (GET /v1/feedback/export?shape=thumbs) or collect some, "
                "or train on preference pairs with --loss dpo",
            )
        return thumbs
    chosen = [p for p in pairs if p.weight > 0]
    if points:
        warnings.append(f"{len(points)} single ratings ignored: {loss.upper()} learns from pairs")
    if not chosen:
        raise FeedbackDataError(
            f"no preference pairs to train {loss.upper()} on ({len(pairs)} pairs with weight "
            f"> 0 of {len(pairs)}, {len(points)} single ratings)",
            hint="export pairs (GET /v1/feedback/export?shape=pairs), rate answers A-vs-B "
            "or with 1-5 scores, or train on thumbs with --loss kto",
        )
    return chosen


def _split(items: Sequence[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    return split_by_prompt(items, fraction, seed)


def _plot(steps: Sequence[DirectStep], path: Path, loss: LossName) -> Path | None:
    """``steps.png``: loss, reward accuracy, implicit rewards and margin, KL per step."""
    if not steps:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [s.step for s in steps]

    def ys(values: Sequence[float | None]) -> list[float]:
        return [math.nan if v is None else v for v in values]

    fig = Figure(figsize=(10, 6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    axes[0, 0].plot(x, [s.loss for s in steps])
    axes[0, 0].set(title=f"{loss} loss", xlabel="step")
    axes[0, 1].plot(x, [s.reward_accuracy for s in steps], color="tab:green")
    axes[0, 1].set(title="reward accuracy", xlabel="step", ylim=(-0.02, 1.02))
    axes[1, 0].plot(x, ys([s.chosen_reward for s in steps]), label="chosen / desirable")
    axes[1, 0].plot(x, ys([s.rejected_reward for s in steps]), label="rejected / undesirable")
    axes[1, 0].plot(x, ys([s.margin for s in steps]), label="margin", linestyle="--")
    axes[1, 0].set(title="implicit reward β·log(π/π_ref)", xlabel="step")
    axes[1, 0].legend(fontsize=8)
    axes[1, 1].plot(x, [s.kl for s in steps], color="tab:red")
    axes[1, 1].set(title="KL estimate" if loss == "kto" else "mean log-ratio", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _json_default(value: Any) -> Any:
    return str(value)


def _finite(metrics: dict[str, float | None]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}


def train_direct(
    policy: str | Path,
    pairs: Sequence[PreferencePair],
    points: Sequence[PointLabel],
    out: Path,
    config: DirectConfig | None = None,
    *,
    register_as: str | None = None,
) -> DirectResult:
    """Fine-tune ``policy`` on ratings with DPO, IPO (``pairs``) or KTO (thumbs in
    ``points``) against a frozen copy of itself, and save it into ``out``.

    Splits the rows by prompt (``config.valid_fraction`` held out), measures the held-out
    metrics of :func:`evaluate_direct` before and after training, writes into ``out``:
    the policy (``save_pretrained`` with its tokenizer: ``load_model(out)`` opens it),
    ``steps.jsonl`` (one :class:`DirectStep` per line), ``steps.png``, ``summary.json``
    and ``direct_config.json``. With ``register_as``, logs the run to the registry
    (experiment "dpo") and registers the policy as a new version with alias
    ``challenger``.

    Args:
        policy: a seq2seq or causal LM folder, hub id in the local cache, or ``models:/``.
        pairs, points: the ratings (:mod:`taskloop.rlhf.feedback` reads them); each
            ``prompt`` is the model input as the feedback store rendered it.
        out: the folder to write (created).
        config: the settings (defaults: :class:`DirectConfig`).
        register_as: a registered model name.

    Raises:
        FeedbackDataError: no pairs (DPO/IPO) or no thumbs (KTO) to learn from.
        PolicyError: bad settings, or the model is not a seq2seq/causal LM.
        ModelNotFoundError: ``policy`` resolves to nothing here.
    """
    cfg = config or DirectConfig()
    cfg.check()
    from taskloop.models.loader import context_window, pick_device
    from taskloop.train.runtime import seed_everything

    t_start = time.perf_counter()
    warnings: list[str] = []
    items = select_rows(cfg.loss, pairs, points, warnings)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = torch.device(pick_device(cfg.device))
    with step("rlhf.direct", loss=cfg.loss, policy=str(policy), rows=len(items)) as info:
        model, tokenizer, kind = load_policy(policy)
        model.to(device)
        reference = copy.deepcopy(model)
        train_items, valid_items = _split(items, cfg.valid_fraction, cfg.seed)
        evaluated_on: Literal["valid", "train"] = "valid" if valid_items else "train"
        if not valid_items:
            warnings.append("no held-out rows: before/after metrics are on the training rows")
            valid_items = train_items
        window = context_window(tokenizer, model.config)
        prompt_budget, response_budget = _budgets(kind, window, cfg, warnings)

        def encode(chosen: list[Any], seed: int) -> Rows:
            return encode_rows(
                tokenizer, kind, cfg.loss, chosen, max_prompt_tokens=prompt_budget,
                max_response_tokens=response_budget, seed=seed,
            )  # fmt: skip

        train_rows, valid_rows = encode(train_items, cfg.seed), encode(valid_items, cfg.seed + 1)
        bs = cfg.batch_size
        valid_ref = reference_logps(reference, tokenizer, valid_rows, batch_size=bs, device=device)
        # before training the policy is the reference (same weights, dropout off)
        before = evaluate_direct(
            cfg.loss, valid_rows, valid_ref.first, valid_ref.second, valid_ref,
            beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        )  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        with (out / STEPS_FILE).open("w", encoding="utf-8") as log:

            def write(record: DirectStep) -> None:
                log.write(json.dumps(asdict(record)) + "\n")
                log.flush()

            steps = fit_direct(model, reference, tokenizer, train_rows, cfg, device=device,
                               on_step=write)  # fmt: skip
        model.eval()
        after = evaluate_direct(
            cfg.loss, valid_rows,
            batch_logprobs(model, tokenizer, valid_rows.prompts, valid_rows.first, batch_size=bs,
                           device=device),
            batch_logprobs(model, tokenizer, valid_rows.prompts, valid_rows.second, batch_size=bs,
                           device=device),
            valid_ref, beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        )  # fmt: skip
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        _plot(steps, out / PLOT_FILE, cfg.loss)
        resolved = {**asdict(cfg), "policy": str(policy), "kind": kind}
        (out / CONFIG_FILE).write_text(
            json.dumps(resolved, indent=2, default=_json_default), encoding="utf-8"
        )
        counts = {
            "train": len(train_rows),
            "valid": len(valid_rows) if evaluated_on == "valid" else 0,
            "pairs_given": len(pairs),
            "points_given": len(points),
        }
        result = DirectResult(
            path=out, loss=cfg.loss, kind=kind, steps=steps, before=before, after=after,
            evaluated_on=evaluated_on, counts=counts, seconds=0.0, warnings=warnings,
        )  # fmt: skip
        result.seconds = time.perf_counter() - t_start
        _write_summary(result)
        if register_as:
            result.run = _register(result, resolved, register_as)
            _write_summary(result)  # now naming the registered version
        info.update(
            kind=kind, steps=len(steps), train=len(train_rows),
            accuracy_before=before.get("reward_accuracy"),
            accuracy_after=after.get("reward_accuracy"),
        )  # fmt: skip
    for text in warnings:
        logger.warning(text)
    return result


def _write_summary(result: DirectResult) -> None:
    (result.path / SUMMARY_FILE).write_text(
        json.dumps(result.summary(), indent=2, default=_json_default), encoding="utf-8"
    )


def _register(result: DirectResult, config: dict[str, Any], name: str) -> RunRecord:
    from taskloop.models.registry import CHALLENGER, log_run

    metrics: list[tuple[int, dict[str, float]]] = [(s.step, s.metrics()) for s in result.steps]
    last = result.steps[-1].step if result.steps else 0
    held = {f"valid_{k}_before": v for k, v in _finite(result.before).items()}
    held |= {f"valid_{k}_after": v for k, v in _finite(result.after).items()}
    metrics.append((last, held))
    return log_run(
        experiment=EXPERIMENT, run_name=f"{result.loss}-{result.path.name}", config=config,
        metrics=metrics, model_dir=result.path, register_as=name, alias=CHALLENGER,
        tags={"taskloop.loss": result.loss, "taskloop.policy": str(config["policy"])},
    )  # fmt: skip
