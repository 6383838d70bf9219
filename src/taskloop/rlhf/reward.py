"""A reward model: one scalar per (prompt, completion), learned from preferences and ratings.

The model is an ``AutoModelForSequenceClassification`` with one logit, built on an
encoder (the packaged all-MiniLM-L6-v2 by default) or any Hugging Face sequence
classifier. It reads ``tokenizer(prompt, completion)`` text pairs exactly as
:func:`taskloop.models.ensemble.reward_scorer` does (that function scores the saved model;
:class:`RewardModel` is built on it), so ``taskloop ensemble --method rerank`` and PPO use
what was trained.

Losses, over rows weighted by their ``weight`` (a weighted mean per batch):

* pairs, Bradley-Terry: ``-log σ(r_chosen - r_rejected - m)`` with ``m`` the score gap of
  a pair made from two 1-5 scores when ``use_margin`` (0 otherwise and for A-vs-B
  preferences), as in Llama 2's reward model;
* rated answers, pointwise binary cross-entropy of ``σ(r)``: against 1/0 for a thumb
  up/down, and against the soft label ``(score - 1) / 4`` for a 1-5 score (a row with both
  uses the thumb);
* one optimizer step per batch of one kind; a pointwise batch's loss is multiplied by
  ``pointwise_weight``.

Held out (whole prompts, :func:`taskloop.rlhf.feedback.split_by_prompt`): pair accuracy
(with a bootstrap interval), the mean reward gap, and the calibration of
``σ(r_chosen - r_rejected)`` as the probability that the chosen answer is better (ECE and
Brier score, and a reliability diagram), the thumbs' AUC and accuracy when rated answers
are held out. The accept/reject threshold ``reward.accept`` is tuned on the held-out
rewards and saved in the model folder.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from taskloop import progress
from taskloop.log import logger, step
from taskloop.rlhf.errors import RewardModelError
from taskloop.rlhf.feedback import NO_FEEDBACK_HINT, split_by_prompt
from taskloop.rlhf.records import PointLabel, PreferencePair

if TYPE_CHECKING:
    import torch

    from taskloop.evaluate.thresholds import Thresholds
    from taskloop.models.loader import LoadedModel

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
PLOT_FILE = "reliability.png"
CONFIG_FILE = "reward_config.json"
SCORE_NAME = "reward"
CALIBRATION_BINS = 10
ACCEPT_DESCRIPTION = (
    "accept an answer when its reward reaches the threshold; positives were thumbs-up or "
    "score >= 4 answers (or chosen answers when no rated answers were held out)"
)


@dataclass
class RewardConfig:
    """How to train a reward model.

    Args:
        backbone: a model folder, hub id or ``models:/`` name: an encoder (a fresh
            one-logit head is added) or a sequence classifier (its head is replaced by one
            logit). None: the packaged all-MiniLM-L6-v2.
        max_tokens: tokens per (prompt, completion) pair; longer pairs lose tokens from
            the longer side first. Saved as the tokenizer's limit, so scoring cuts alike.
        epochs, lr, batch_size, weight_decay: AdamW with linear warm-up (10% of the
            steps) and decay; ``batch_size`` pairs (two sequences each) or rated answers.
        train_layers: the top N transformer layers are trained (with the pooler and the
            head); None trains everything, 0 only the head.
        pointwise_weight: scale of the thumbs/scores loss against the pairs' loss.
        use_margin: score-gap pairs ask the reward gap to exceed the score gap.
        valid_fraction: share of rows (whole prompts) held out for the metrics and the
            threshold.
        seed: the split, the head's initialisation and the batch order.
        device: "auto", "cpu", "cuda", "mps".
        threads: torch CPU threads (None: torch's default).
        threshold_rule: the rule tuning ``reward.accept`` (see
            :func:`taskloop.evaluate.thresholds.threshold_tuning`).
        truncation_side: which end of a text longer than the budget is cut: "right" (its
            end) or "left" (its start; keeps a long dialogue's last turns).
    """

    backbone: str | None = None
    max_tokens: int = 256
    epochs: int = 2
    lr: float = 3e-5
    batch_size: int = 16
    weight_decay: float = 0.01
    train_layers: int | None = None
    pointwise_weight: float = 1.0
    use_margin: bool = True
    valid_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    threshold_rule: str = "youden"
    truncation_side: str = "right"

    def check(self) -> None:
        """Raise RewardModelError for settings that cannot train."""
        bad = [
            (self.max_tokens < 8, f"max_tokens must be at least 8, got {self.max_tokens}"),
            (self.epochs < 1, f"epochs must be at least 1, got {self.epochs}"),
            (not self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.batch_size < 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.weight_decay < 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.train_layers is not None and self.train_layers < 0,
                f"train_layers must be >= 0 (or None for all), got {self.train_layers}",
            ),
            (self.pointwise_weight < 0, f"pointwise_weight must be >= 0: {self.pointwise_weight}"),
            (
                not 0 <= self.valid_fraction < 1,
                f"valid_fraction must be in [0, 1), got {self.valid_fraction}",
            ),
            (
                self.threads is not None and self.threads < 1,
                f"threads must be >= 1: {self.threads}",
            ),
            (
                self.truncation_side not in ("left", "right"),
                f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}",
            ),
        ]
        for failed, message in bad:
            if failed:
                raise RewardModelError(message, hint="see `taskloop rlhf reward --help`")


@dataclass
class RewardResult:
    """What :func:`train_reward_model` wrote and measured.

    ``path`` is the model folder (``OUT/model``: load it with :func:`load_reward_model`,
    ``taskloop.models.loader`` kind "classify" or ``reward_scorer``); ``metrics`` the
    held-out figures (also in ``OUT/metrics.json``); ``history`` one dict per epoch;
    ``valid_gaps`` the reward gap ``r_chosen - r_rejected`` of each held-out pair.
    """

    path: Path
    out: Path
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    threshold: float | None = None
    plot: Path | None = None
    registered: str | None = None
    warnings: list[str] = field(default_factory=list)
    valid_gaps: list[float] = field(default_factory=list)


# --- losses -------------------------------------------------------------------------------


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    weights: torch.Tensor | None = None,
    margins: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean of ``-log σ(r_chosen - r_rejected - margin)`` over pairs (B,)."""
    import torch
    import torch.nn.functional as F

    gap = chosen - rejected
    if margins is not None:
        gap = gap - margins
    losses = F.softplus(-gap)  # = -log σ(gap), stable for large |gap|
    return _weighted_mean(losses, weights if weights is not None else torch.ones_like(losses))


def pointwise_loss(
    rewards: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean binary cross-entropy of ``σ(reward)`` against targets in [0, 1] (B,)."""
    import torch
    import torch.nn.functional as F

    losses = F.binary_cross_entropy_with_logits(rewards, targets, reduction="none")
    return _weighted_mean(losses, weights if weights is not None else torch.ones_like(losses))


def point_target(point: PointLabel) -> float:
    """The pointwise target: 1/0 for a thumb up/down, else ``(score - 1) / 4``."""
    if point.label is not None:
        return 1.0 if point.label else 0.0
    if point.score is None:
        raise RewardModelError("a rated answer has neither a thumb nor a score")
    return (point.score - 1.0) / 4.0


def pair_margin(pair: PreferencePair, use_margin: bool) -> float:
    """The margin the pair's reward gap must exceed: its score gap when ``use_margin``."""
    return float(pair.margin) if use_margin and pair.margin is not None else 0.0


def is_positive(point: PointLabel) -> bool:
    """An accepted answer: thumbs up, or a score of 4 or 5."""
    if point.label is not None:
        return point.label
    return point.score is not None and point.score >= 4


# --- the model ----------------------------------------------------------------------------


def encode_pairs(
    tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], max_length: int
) -> Any:
    """(prompt, completion) text pairs as model inputs, cut like ``reward_scorer`` cuts
    them (longest side first, to ``max_length`` tokens)."""
    return tokenizer(
        list(prompts),
        list(completions),
        padding=True,
        truncation="longest_first",
        max_length=max_length,
        return_tensors="pt",
    )


def _positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _backbone_path(backbone: str | None) -> Path:
    from taskloop.models.encoder import packaged_minilm_path
    from taskloop.models.loader import ModelSpec, resolve

    if backbone is None:
        return packaged_minilm_path()
    return resolve(ModelSpec(backbone))


def _load_backbone(config: RewardConfig, device: str) -> tuple[Any, Any, int]:
    """(model with one fresh logit, tokenizer, token limit) from the backbone."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _backbone_path(config.backbone)
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    name = config.backbone or str(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=1,
            ignore_mismatched_sizes=True,
            id2label={0: SCORE_NAME},
            label2id={SCORE_NAME: 0},
        )
    except (OSError, ValueError) as exc:
        raise RewardModelError(
            f"backbone {name!r} cannot be a sequence classifier: {str(exc).splitlines()[0]}",
            hint="use an encoder (BERT, MiniLM, RoBERTa, DeBERTa ...) or a sequence-"
            "classification model folder with its tokenizer",
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    tokenizer.truncation_side = config.truncation_side
    positions = _positions(model.config)
    limit = min(config.max_tokens, positions) if positions else config.max_tokens
    tokenizer.model_max_length = limit  # saved: reward_scorer cuts where training cut
    model.config.problem_type = "regression"
    model.to(device)
    return model, tokenizer, limit


def _layers(base: Any, n_layers: int | None) -> Any:
    """The transformer's list of layers: the longest ModuleList (of the config's length)."""
    import torch

    lists = [m for m in base.modules() if isinstance(m, torch.nn.ModuleList)]
    if n_layers is not None:
        lists = [m for m in lists if len(m) == n_layers] or lists
    if not lists:
        raise RewardModelError(
            f"cannot find the layers of {type(base).__name__} to train only the top ones",
            hint="train all layers (no --train-layers)",
        )
    return max(lists, key=len)


def freeze_layers(model: Any, train_layers: int | None) -> tuple[int, int]:
    """Train only the top ``train_layers`` layers, the pooler and head (None: all).

    The embeddings and lower layers are frozen. Returns (trainable, total) parameters.
    """
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if train_layers is None:
        return total, total
    base = model.base_model
    layers = _layers(base, getattr(model.config, "num_hidden_layers", None))
    embeddings = base.get_input_embeddings()
    frozen = {id(p) for p in base.parameters()}
    # Everything in the base model outside the layers and embeddings trains (pooler,
    # final norms); so do the top layers and everything outside the base (the head).
    in_layers = {id(p) for p in layers.parameters()}
    in_embeddings = {id(p) for p in embeddings.parameters()}
    for module_name, module in base.named_children():
        if "embed" in module_name:
            in_embeddings |= {id(p) for p in module.parameters()}
    top = {
        id(p) for layer in list(layers)[len(layers) - train_layers :] for p in layer.parameters()
    }
    for p in params:
        if id(p) not in frozen:
            p.requires_grad_(True)
        elif id(p) in in_embeddings or (id(p) in in_layers and id(p) not in top):
            p.requires_grad_(False)
        else:
            p.requires_grad_(True)
    return sum(p.numel() for p in params if p.requires_grad), total


def _optimizer(model: Any, config: RewardConfig, steps: int) -> tuple[Any, Any]:
    """AdamW (no decay on biases and norms), linear warm-up over 10% then linear decay."""
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    warmup = max(1, steps // 10)

    def factor(at: int) -> float:
        if at < warmup:
            return (at + 1) / warmup
        return max(0.0, (steps - at) / max(1, steps - warmup))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _forward_kwargs(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


@dataclass
class RewardModel:
    """A loaded reward model: ``score`` gives one raw reward per (prompt, completion).

    ``threshold`` is the tuned ``reward.accept`` threshold (None when none was saved).
    Scoring goes through :func:`taskloop.models.ensemble.reward_pair_scorer` (the
    tokenisation of :func:`~taskloop.models.ensemble.reward_scorer`, many prompts in one
    batch).
    """

    loaded: LoadedModel
    threshold: float | None = None
    batch_size: int = 16
    _scorer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from taskloop.models.ensemble import reward_pair_scorer

        self._scorer = reward_pair_scorer(self.loaded, batch_size=self.batch_size)

    @property
    def path(self) -> Path:
        return Path(self.loaded.path)

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """The reward of each ``completions[i]`` as an answer to ``prompts[i]`` (float64).

        Raises:
            RewardModelError: the two lists differ in length.
        """
        if len(prompts) != len(completions):
            raise RewardModelError(
                f"{len(prompts)} prompts but {len(completions)} completions",
                hint="give one prompt per completion",
            )
        training = self.loaded.model.training  # only a model being trained (no dropout here)
        if training:
            self.loaded.model.eval()
        try:
            out = np.asarray(self._scorer(list(prompts), list(completions)), dtype=np.float64)
        finally:
            if training:
                self.loaded.model.train()
        return out

    def accept(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """True where a reward reaches the tuned threshold.

        Raises:
            RewardModelError: no threshold was tuned for this model.
        """
        if self.threshold is None:
            raise RewardModelError(
                f"reward model {self.loaded.name!r} has no tuned reward.accept threshold",
                hint="train it with held-out data (valid fraction > 0) so one is tuned, or "
                "tune one: taskloop thresholds tune --name reward.accept",
            )
        return np.asarray(scores, dtype=np.float64) >= self.threshold


def _model_folder(name: str | Path) -> str:
    """A training output folder stands for its ``model/`` folder."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        inner = path / MODEL_DIR
        if (inner / "config.json").is_file():
            return str(inner)
    return text


def load_reward_model(
    name: str | Path, *, device: str = "auto", batch_size: int = 16
) -> RewardModel:
    """Load a reward model (a folder, a training output folder, a hub id or a
    ``models:/`` name) with its tuned ``reward.accept`` threshold.

    Raises:
        ModelNotFoundError: the model cannot be found.
        RewardModelError: it is not a sequence classifier.
    """
    from taskloop.evaluate.errors import EnsembleError
    from taskloop.evaluate.thresholds import REWARD_ACCEPT, tuned_threshold
    from taskloop.models.errors import ModelKindError
    from taskloop.models.loader import ModelSpec, load_model

    spec = ModelSpec(_model_folder(name), kind="classify", device=device)
    try:
        lm = load_model(spec)
        model = RewardModel(lm, batch_size=batch_size)
    except (EnsembleError, ModelKindError) as exc:
        raise RewardModelError(exc.message, hint=exc.hint) from None
    tuned = tuned_threshold(REWARD_ACCEPT, lm.path)
    model.threshold = tuned.value if tuned is not None else None
    return model


def _in_memory(model: Any, tokenizer: Any, limit: int, device: str, path: Path) -> RewardModel:
    """The model being trained, wrapped as a :class:`RewardModel` (scored as if saved)."""
    from taskloop.models.loader import LoadedModel, ModelSpec

    lm = LoadedModel(
        spec=ModelSpec(str(path), kind="classify", device=device),
        model=model,
        tokenizer=tokenizer,
        kind="classify",
        device=device,
        window=limit,
        version="training",
        path=str(path),
    )
    return RewardModel(lm, batch_size=32)


# --- evaluation ---------------------------------------------------------------------------


@dataclass
class Calibration:
    """Reliability of probabilities ``p`` of binary outcomes: per-bin mean probability,
    observed frequency and count; ECE (count-weighted mean |frequency - probability|) and
    the Brier score."""

    ece: float
    brier: float
    bin_edges: list[float]
    mean_probability: list[float]
    frequency: list[float]
    counts: list[int]


def calibration(
    probabilities: Sequence[float] | np.ndarray,
    outcomes: Sequence[bool] | np.ndarray,
    bins: int = CALIBRATION_BINS,
) -> Calibration:
    """Calibration of probabilities against 0/1 outcomes over ``bins`` equal-width bins
    (a probability of exactly 1 falls in the last bin)."""
    from sklearn.metrics import brier_score_loss

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=y, minlength=bins)
    filled = counts > 0
    mean_p = np.divide(sum_p, counts, out=np.zeros(bins), where=filled)
    freq = np.divide(sum_y, counts, out=np.zeros(bins), where=filled)
    ece = float(np.sum(counts * np.abs(freq - mean_p)) / max(1, len(p)))
    brier = float(brier_score_loss(y, p, pos_label=1.0)) if len(p) else float("nan")
    return Calibration(
        ece=ece,
        brier=brier,
        bin_edges=edges.tolist(),
        mean_probability=mean_p.tolist(),
        frequency=freq.tolist(),
        counts=counts.astype(int).tolist(),
    )


def pair_calibration(gaps: Sequence[float] | np.ndarray) -> Calibration:
    """Calibration of ``σ(gap)`` as the probability that the chosen answer is better.

    Each pair is counted in both orders, (σ(gap), chosen better) and (1 - σ(gap), not),
    so that both outcomes occur and the diagram spans 0-1; the ECE equals that of the
    confidence ``max(p, 1 - p)`` against "ranked right", and the Brier score that of
    ``σ(gap)`` against 1.
    """
    from scipy.special import expit

    p = expit(np.asarray(gaps, dtype=np.float64))
    both = np.concatenate([p, 1.0 - p])
    outcome = np.concatenate([np.ones(len(p)), np.zeros(len(p))])
    return calibration(both, outcome)


def pair_metrics(gaps: Sequence[float] | np.ndarray, *, resamples: int = 1000) -> dict[str, float]:
    """Accuracy (a tie counts half; with its 95% bootstrap interval), mean reward gap,
    ECE and Brier score of held-out pairs' reward gaps ``r_chosen - r_rejected``."""
    from taskloop.evaluate.stats import bootstrap_ci

    g = np.asarray(gaps, dtype=np.float64)
    if not len(g):
        return {}
    correct = (g > 0).astype(np.float64) + 0.5 * (g == 0)
    ci = bootstrap_ci(correct, resamples=resamples, seed=0)
    cal = pair_calibration(g)
    out = {
        "pair_accuracy": ci.value,
        "mean_reward_gap": float(g.mean()),
        "ece": cal.ece,
        "brier": cal.brier,
    }
    if ci.low is not None and ci.high is not None:
        out |= {"pair_accuracy_low": ci.low, "pair_accuracy_high": ci.high}
    return out


def point_metrics(rewards: np.ndarray, points: Sequence[PointLabel]) -> dict[str, float]:
    """Thumbs AUC and accuracy (σ(r) >= 0.5 means up; a score >= 4 counts as up)."""
    from sklearn.metrics import roc_auc_score

    if not points:
        return {}
    positive = np.array([is_positive(p) for p in points])
    out = {"thumbs_accuracy": float(np.mean((rewards >= 0.0) == positive))}
    if 0 < positive.sum() < len(positive):
        out["thumbs_auc"] = float(roc_auc_score(positive, rewards))
    return out


def reliability_png(cal: Calibration, title: str) -> bytes:
    """The reliability diagram: observed frequency against mean probability per bin,
    the diagonal for perfect calibration, and the counts below."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.6), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers = [(a + b) / 2 for a, b in zip(cal.bin_edges, cal.bin_edges[1:], strict=False)]
    width = 1.0 / len(centers)
    filled = [i for i, c in enumerate(cal.counts) if c]
    top.plot([0, 1], [0, 1], linestyle="--", color="#888888", label="perfectly calibrated")
    top.bar(
        [centers[i] for i in filled],
        [cal.frequency[i] for i in filled],
        width=width * 0.9,
        color="#3b6ea8",
        alpha=0.8,
        label="observed frequency per bin",
    )
    top.plot(
        [cal.mean_probability[i] for i in filled],
        [cal.frequency[i] for i in filled],
        marker="o",
        color="#d9822b",
        label="frequency at the bin's mean probability",
    )
    top.set_ylabel("first answer is the better one")
    top.set_ylim(0, 1)
    top.set_title(f"{title}\nECE {cal.ece:.3f}, Brier {cal.brier:.3f}", fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centers, cal.counts, width=width * 0.9, color="#888888")
    bottom.set_xlabel("σ(r_chosen − r_rejected), both orders of each pair")
    bottom.set_ylabel("pair orders")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@dataclass
class HeldOut:
    """Rewards on the held-out rows and the metrics they give."""

    metrics: dict[str, float] = field(default_factory=dict)
    chosen: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    points: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def gaps(self) -> np.ndarray:
        return np.asarray(self.chosen - self.rejected, dtype=np.float64)


def evaluate(
    model: RewardModel, pairs: Sequence[PreferencePair], points: Sequence[PointLabel]
) -> HeldOut:
    """Score held-out pairs and rated answers; :func:`pair_metrics` and
    :func:`point_metrics` of the rewards."""
    held = HeldOut()
    if pairs:
        prompts = [p.prompt for p in pairs]
        both = model.score(
            prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs]
        )
        held.chosen, held.rejected = both[: len(pairs)], both[len(pairs) :]
        held.metrics |= pair_metrics(held.gaps)
    if points:
        held.points = model.score([p.prompt for p in points], [p.completion for p in points])
        held.metrics |= point_metrics(held.points, points)
    return held


def tune_accept(
    held: HeldOut, points: Sequence[PointLabel], rule: str, model_dir: Path
) -> Thresholds:
    """Tune ``reward.accept`` on held-out rewards: rated answers (thumbs up / score >= 4
    positive) when there are any, else chosen (positive) vs rejected answers.

    Raises:
        ThresholdError: one outcome only, or a rule no threshold satisfies.
    """
    from taskloop.evaluate.thresholds import REWARD_ACCEPT, threshold_tuning

    if points:
        scores, labels = held.points, [is_positive(p) for p in points]
    else:
        scores = np.concatenate([held.chosen, held.rejected])
        labels = [True] * len(held.chosen) + [False] * len(held.rejected)
    return threshold_tuning(
        scores,
        labels,
        rule=rule,
        name=REWARD_ACCEPT,
        model=str(model_dir),
        score_name=SCORE_NAME,
        description=ACCEPT_DESCRIPTION,
    )


# --- training -----------------------------------------------------------------------------


def _batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, chunk: int = 32
) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within chunks of ``chunk`` batches), so
    that padding wastes little."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    span = batch_size * chunk
    for start in range(0, len(order), span):
        part = sorted(order[start : start + span], key=lambda i: lengths[i])
        out += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


@dataclass
class _Trainer:
    """The model being trained, its optimizer, and one epoch over the training rows."""

    model: Any
    tokenizer: Any
    limit: int
    device: str
    config: RewardConfig
    pairs: Sequence[PreferencePair]
    points: Sequence[PointLabel]
    optimizer: Any = None
    schedule: Any = None
    accepted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.accepted = _forward_kwargs(self.model)
        self.optimizer, self.schedule = _optimizer(
            self.model, self.config, self.steps * self.config.epochs
        )

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch."""
        size = self.config.batch_size
        return math.ceil(len(self.pairs) / size) + math.ceil(len(self.points) / size)

    def rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        enc = encode_pairs(self.tokenizer, prompts, completions, self.limit)
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self.accepted}
        logits: torch.Tensor = self.model(**inputs).logits
        return logits[:, 0].float()

    def pair_loss(self, pairs: Sequence[PreferencePair]) -> torch.Tensor:
        import torch

        prompts = [p.prompt for p in pairs]
        both = self.rewards(
            prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs]
        )
        n = len(pairs)
        weights = torch.tensor([p.weight for p in pairs], device=both.device)
        margins = torch.tensor(
            [pair_margin(p, self.config.use_margin) for p in pairs], device=both.device
        )
        return bradley_terry_loss(both[:n], both[n:], weights, margins)

    def point_loss(self, points: Sequence[PointLabel]) -> torch.Tensor:
        import torch

        r = self.rewards([p.prompt for p in points], [p.completion for p in points])
        targets = torch.tensor([point_target(p) for p in points], device=r.device)
        weights = torch.tensor([p.weight for p in points], device=r.device)
        return self.config.pointwise_weight * pointwise_loss(r, targets, weights)

    def epoch(self, rng: random.Random) -> dict[str, float]:
        """One pass in shuffled batches of one kind each; the mean loss of each kind."""
        import torch

        def length(prompt: str, completion: str) -> int:
            return min(len(prompt) + len(completion), 6 * self.limit)

        pair_len = [length(p.prompt, max(p.chosen, p.rejected, key=len)) for p in self.pairs]
        point_len = [length(p.prompt, p.completion) for p in self.points]
        size = self.config.batch_size
        batches = [("pair", b) for b in _batches(pair_len, size, rng)]
        batches += [("point", b) for b in _batches(point_len, size, rng)]
        rng.shuffle(batches)
        sums = {"pair": 0.0, "point": 0.0}
        counts = {"pair": 0, "point": 0}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        for kind, idx in batches:
            if kind == "pair":
                loss = self.pair_loss([self.pairs[i] for i in idx])
            else:
                loss = self.point_loss([self.points[i] for i in idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            self.optimizer.step()
            self.schedule.step()
            sums[kind] += float(loss.detach()) * len(idx)
            counts[kind] += len(idx)
            progress.advance(1)
        self.model.eval()
        return {f"train_{k}_loss": sums[k] / counts[k] for k in sums if counts[k]}


def _check_rows(pairs: Sequence[PreferencePair], points: Sequence[PointLabel]) -> None:
    if not pairs and not points:
        raise RewardModelError("no feedback to train a reward model on", hint=NO_FEEDBACK_HINT)
    for p in points:
        point_target(p)
    if sum(p.weight for p in pairs) + sum(p.weight for p in points) <= 0:
        raise RewardModelError(
            "every feedback row has weight 0",
            hint="raise --simulated-weight, or use --source all",
        )


def train_reward_model(
    pairs: Sequence[PreferencePair],
    points: Sequence[PointLabel],
    out: Path,
    config: RewardConfig | None = None,
    *,
    register_as: str | None = None,
    alias: str | None = None,
) -> RewardResult:
    """Train a reward model, measure it on held-out prompts, tune its accept threshold.

    Writes ``out/model/`` (save_pretrained: weights, tokenizer, ``taskloop_thresholds.json``),
    ``out/metrics.json``, ``out/history.jsonl`` (one line per epoch), ``out/reliability.png``
    and ``out/reward_config.json``. With ``register_as`` the run is logged to the model
    registry (experiment "reward") and the model registered under that name (``alias``
    pointed at the new version when given).

    Raises:
        RewardModelError: no rows, bad settings, or a backbone that cannot classify.
        ModelNotFoundError: the backbone cannot be found.
        RegistryError: registering failed.
    """
    import torch

    from taskloop.models.loader import pick_device

    config = config or RewardConfig()
    config.check()
    _check_rows(pairs, points)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    rows: list[PreferencePair | PointLabel] = [*pairs, *points]
    train_rows, valid_rows = split_by_prompt(rows, config.valid_fraction, config.seed)
    valid_pairs = [r for r in valid_rows if isinstance(r, PreferencePair)]
    valid_points = [r for r in valid_rows if isinstance(r, PointLabel)]
    out = Path(out)
    model_dir = out / MODEL_DIR
    model_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model, tokenizer, limit = _load_backbone(config, device)
    trainable, total = freeze_layers(model, config.train_layers)
    trainer = _Trainer(
        model,
        tokenizer,
        limit,
        device,
        config,
        pairs=[r for r in train_rows if isinstance(r, PreferencePair)],
        points=[r for r in train_rows if isinstance(r, PointLabel)],
    )
    scorer = _in_memory(model, tokenizer, limit, device, model_dir)
    history: list[dict[str, float]] = []
    held = HeldOut()
    seconds = 0.0
    with step(
        "rlhf.train_reward",
        pairs=len(trainer.pairs),
        points=len(trainer.points),
        trainable=trainable,
        params=total,
        device=device,
    ) as info:
        progress.start("train reward model", trainer.steps * config.epochs, "items")
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            row = {"epoch": float(epoch)} | trainer.epoch(rng)
            seconds += time.perf_counter() - started
            held = evaluate(scorer, valid_pairs, valid_points)
            row |= {"seconds": seconds}
            row |= {
                f"valid_{k}": v
                for k, v in held.metrics.items()
                if not k.endswith(("_low", "_high"))
            }
            history.append(row)
            logger.info(
                "reward epoch %d/%d: %s",
                epoch,
                config.epochs,
                ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
            )
        info.update(seconds=round(seconds, 2))
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    examples = config.epochs * (len(trainer.pairs) + len(trainer.points))
    metrics = held.metrics | {
        "train_pairs": float(len(trainer.pairs)),
        "train_points": float(len(trainer.points)),
        "valid_pairs": float(len(valid_pairs)),
        "valid_points": float(len(valid_points)),
        "epochs": float(config.epochs),
        "train_seconds": seconds,
        "examples_per_second": examples / seconds if seconds > 0 else 0.0,
        "trainable_params": float(trainable),
    }
    result = RewardResult(
        path=model_dir,
        out=out,
        metrics=metrics,
        history=history,
        valid_gaps=[float(g) for g in held.gaps],
    )
    _finish(result, held, valid_points, config, has_valid=bool(valid_rows))
    if register_as:
        result.registered = register_reward_model(result, _saved_config(config), register_as, alias)
    return result


def _saved_config(config: RewardConfig) -> dict[str, Any]:
    return asdict(config) | {"backbone": config.backbone or str(_backbone_path(None))}


def _finish(
    result: RewardResult,
    held: HeldOut,
    valid_points: Sequence[PointLabel],
    config: RewardConfig,
    *,
    has_valid: bool,
) -> None:
    """Tune and save the threshold; write metrics, history, config and the plot."""
    from taskloop.evaluate.errors import ThresholdError
    from taskloop.evaluate.thresholds import save_thresholds

    if not has_valid:
        result.warnings.append(
            "no held-out rows (valid fraction 0 or a single prompt): no metrics, no threshold"
        )
    else:
        try:
            th = tune_accept(held, valid_points, config.threshold_rule, result.path)
        except ThresholdError as exc:
            result.warnings.append(f"no accept threshold tuned: {exc.message}")
        else:
            save_thresholds(th, result.path)
            result.threshold = th.value
            result.metrics |= {
                "threshold": th.value,
                "accept_precision": th.validation["positive"]["precision"],
                "accept_recall": th.validation["positive"]["recall"],
            }
    if len(held.gaps):
        result.plot = result.out / PLOT_FILE
        cal = pair_calibration(held.gaps)
        result.plot.write_bytes(reliability_png(cal, "reward model: held-out pairs"))
    out = result.out
    (out / METRICS_FILE).write_text(json.dumps(result.metrics, indent=2) + "\n", encoding="utf-8")
    lines = "".join(json.dumps(r) + "\n" for r in result.history)
    (out / HISTORY_FILE).write_text(lines, encoding="utf-8")
    saved = json.dumps(_saved_config(config), indent=2)
    (out / CONFIG_FILE).write_text(saved + "\n", encoding="utf-8")
    for warning in result.warnings:
        logger.warning(warning)


def register_reward_model(
    result: RewardResult, config: dict[str, Any], name: str, alias: str | None = None
) -> str:
    """Log the training run (config, per-epoch and final metrics, plot) to the registry's
    "reward" experiment and register the model folder as a new version of ``name``.

    Returns:
        The version's ``models:/NAME/VERSION`` URI.

    Raises:
        RegistryError: the registry refused a write.
    """
    from taskloop.models.registry import log_run

    series = [
        (int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
        for row in result.history
    ]
    epochs = int(result.metrics.get("epochs", len(result.history)))
    artifacts = [p for p in (result.out / METRICS_FILE, result.plot) if p is not None]
    record = log_run(
        experiment="reward",
        run_name=f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
        config=config,
        metrics=[*series, (epochs, result.metrics)],
        artifacts=artifacts,
        model_dir=result.path,
        register_as=name,
        alias=alias,
        tags={"taskloop.kind": "reward"},
    )
    return record.uri
