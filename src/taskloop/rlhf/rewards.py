"""The reward PPO optimises: a learned reward model and verifiable checks, weighted.

:func:`make_reward` composes a :data:`~taskloop.rlhf.records.RewardFn` from

- a reward model (:func:`taskloop.rlhf.reward.load_reward_model`), scoring each
  response against the prompt as the feedback store renders it
  (:func:`taskloop.serve.storage.repo.render_prompt`: the task's model input without a
  model family prefix), which is what the reward model was trained on; its part is
  ``"reward_model"``, the raw score times ``reward_model_weight``;
- verifiable checks (:func:`taskloop.rlhf.simulate.verifiable_reward`: tests, glossary,
  factual, language, format, length, reference), each part named by its scorer and
  already weighted.

The total is the sum of the parts. The KL penalty is not part of it: PPO adds that per
token (:func:`taskloop.rlhf.ppo_math.token_rewards`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from taskloop.rlhf.errors import RLHFError
from taskloop.rlhf.records import RewardFn, Rewards

if TYPE_CHECKING:
    from taskloop.data.records import Example

REWARD_MODEL_PART = "reward_model"
_NOTHING_HINT = (
    "pass --reward-model NAME (a reward model from `taskloop rlhf reward`) and/or "
    "--verifiable NAME=WEIGHT (tests, glossary, factual, language, format, length, "
    "reference)"
)


def reward_prompt(example: Example) -> str:
    """The prompt a reward model reads for ``example``: the task input as the feedback
    store rendered it for reward training (no model family prefix)."""
    from taskloop.data.pairs import model_input

    return model_input(example)


def make_reward(
    *,
    reward_model: str | Path | None,
    reward_model_weight: float = 1.0,
    verifiable: Mapping[str, float] | None = None,
    glossary: Mapping[str, str] | None = None,
    device: str = "auto",
) -> RewardFn:
    """A reward function from a reward model and/or weighted verifiable checks.

    Args:
        reward_model: a reward model folder, training output or ``models:/`` name (None:
            none).
        reward_model_weight: multiplies the reward model's raw score.
        verifiable: scorer name -> weight (a scorer that does not apply to an example
            gives 0 there).
        glossary: source term -> required target term, for the glossary check.
        device: where the reward model runs.

    Returns:
        ``reward(examples, responses) -> Rewards`` with one part per source.

    Raises:
        RLHFError: neither a reward model nor any verifiable weight, or an unknown scorer.
        RewardModelError / ModelNotFoundError: the reward model cannot be loaded.
    """
    checks = {k: float(v) for k, v in (verifiable or {}).items() if float(v) != 0.0}
    if reward_model is None and not checks:
        raise RLHFError(
            "no reward to optimise: neither a reward model nor verifiable checks given",
            hint=_NOTHING_HINT,
        )
    verify: RewardFn | None = None
    if checks:
        from taskloop.rlhf.simulate import verifiable_reward

        verify = verifiable_reward(checks, glossary=glossary)
    model = None
    if reward_model is not None:
        from taskloop.rlhf.reward import load_reward_model

        model = load_reward_model(reward_model, device=device)
    weight = float(reward_model_weight)

    def reward(examples: Sequence[Example], responses: Sequence[str]) -> Rewards:
        parts: dict[str, list[float]] = {}
        if model is not None:
            prompts = [reward_prompt(ex) for ex in examples]
            scores = model.score(prompts, list(responses))
            parts[REWARD_MODEL_PART] = [weight * float(s) for s in scores]
        if verify is not None:
            parts.update(verify(examples, responses).parts)
        total = [sum(values[i] for values in parts.values()) for i in range(len(responses))]
        return Rewards(total=total, parts=parts)

    return reward
