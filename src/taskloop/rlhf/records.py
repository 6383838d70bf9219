"""Typed records between the learning loop's stages: labelled feedback rows (pairs and
points), reward breakdowns, and the per-step logs of policy optimisation.

The feedback rows are what ``GET /v1/feedback/export`` (and
:func:`taskloop.serve.storage.repo.export_feedback`) writes, so an export file, the live
store and the public preference data all become the same records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from taskloop.data.records import Example

Source = Literal["human", "simulated"]


@dataclass(frozen=True)
class PreferencePair:
    """``chosen`` is better than ``rejected`` as an answer to ``prompt``.

    ``margin`` is the score gap for pairs made from two 1-5 scores (None for a direct
    A-vs-B preference); the Bradley-Terry loss asks the reward gap to exceed it.
    """

    prompt: str
    chosen: str
    rejected: str
    task: str = ""
    source: Source = "human"
    weight: float = 1.0
    margin: float | None = None
    origin: str = "preference"  # preference | score_gap | dataset


@dataclass(frozen=True)
class PointLabel:
    """One rated answer: a thumb (``label`` True = up) and/or a 1-5 ``score``."""

    prompt: str
    completion: str
    label: bool | None = None
    score: float | None = None
    task: str = ""
    source: Source = "human"
    weight: float = 1.0


@dataclass(frozen=True)
class Rewards:
    """Rewards for a batch of responses: ``total`` per response, and each named
    component per response (``reward_model``, ``tests``, ``glossary``, ``factual`` ...),
    already weighted, so the components sum to ``total``."""

    total: list[float]
    parts: dict[str, list[float]] = field(default_factory=dict)


# What PPO calls for rewards: the examples the prompts came from and the decoded responses.
RewardFn = Callable[[Sequence["Example"], Sequence[str]], Rewards]


@dataclass(frozen=True)
class PolicyStep:
    """What one PPO (or DPO/KTO) optimisation step measured; logged and plotted."""

    step: int
    reward: float  # mean total reward of the batch (before normalisation)
    reward_std: float
    kl: float  # mean per-sequence KL(policy || reference), k1 summed over tokens
    kl_coef: float
    entropy: float
    response_length: float  # mean response tokens
    clip_fraction: float
    policy_loss: float
    value_loss: float
    approx_kl: float  # KL(old || new) over the epochs of this step
    seconds: float
    samples: int
    parts: dict[str, float] = field(default_factory=dict)  # mean of each reward component
    warnings: tuple[str, ...] = ()


def mean(values: Sequence[float]) -> float:
    """The mean, 0.0 for no values."""
    return sum(values) / len(values) if values else 0.0
