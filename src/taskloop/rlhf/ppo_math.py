"""PPO's arithmetic on tensors: per-token rewards with a KL penalty, GAE, the clipped
policy and value losses, entropy, and the adaptive KL controller.

Shapes: ``B`` responses of at most ``T`` tokens; ``mask`` (B, T) is 1 on response tokens
and 0 on padding. Everything is a pure function of its inputs (no model, no optimizer),
so each piece is checked against values computed by hand. References: Schulman et al.
2017 (PPO), Schulman et al. 2016 (GAE), Ziegler et al. 2019 (per-token KL penalty and the
adaptive controller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (over everything, or along ``dim``)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """``x`` normalised to unit variance over the masked entries (and zero mean unless
    ``shift_mean`` is False, as for advantages' scale only). Padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k1 estimate log π(a) − log π_ref(a) of each sampled token (unbiased per
    sample; what the penalty in the reward uses)."""
    return logprobs - ref_logprobs


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k3 estimate (r − 1) − log r with r = π_ref/π: non-negative, lower variance;
    what the logs report (Schulman, "Approximating KL divergence", 2020)."""
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio


def token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: −β·KL on every response token, plus the sequence's score on its
    last token.

    Returns:
        (rewards (B, T), kl (B, T)), both 0 on padding.
    """
    kl = kl_per_token(logprobs, ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.size(0)), last] += scores
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response, right to left.

    δ_t = r_t + γ·V_{t+1}·m_{t+1} − V_t ; A_t = δ_t + γλ·A_{t+1}·m_{t+1}; returns = A + V.
    The value after the last response token is 0 (the episode ends there).

    Returns:
        (advantages, returns), both (B, T) and 0 on padding.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        m_next = mask[:, t + 1] if t + 1 < T else torch.zeros_like(next_value)
        delta = rewards[:, t] + gamma * next_value * m_next - values[:, t]
        next_adv = delta + gamma * lam * next_adv * m_next
        advantages[:, t] = next_adv
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of tokens where the ratio was clipped
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new) over the batch


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float = 0.2,
) -> PolicyLoss:
    """PPO's clipped surrogate: mean over tokens of max(−A·r, −A·clip(r, 1−ε, 1+ε)),
    r = exp(log π − log π_old)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(kl_k3(logprobs, old_logprobs), mask)
    return PolicyLoss(loss, clip_fraction, approx_kl)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: ½·mean max((V − R)², (clip(V, V_old ± ε) − R)²), and the share
    of tokens where the clipped term was the larger."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    a = (values - returns) ** 2
    b = (clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(a, b), mask), masked_mean((b > a).float(), mask)


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the token distributions at the response positions."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    return masked_mean(ent, mask)


@dataclass
class AdaptiveKL:
    """Ziegler et al.'s controller: β grows when the measured KL is above the target and
    shrinks below it, proportionally to the error (clipped to ±20%) and to the number of
    samples since the last update over the horizon."""

    coef: float = 0.05
    target: float = 6.0
    horizon: int = 10_000

    def update(self, kl: float, n_samples: int) -> float:
        """β after a batch of ``n_samples`` responses with mean sequence KL ``kl``."""
        if not math.isfinite(kl):
            return self.coef
        error = max(-0.2, min(0.2, kl / self.target - 1.0))
        self.coef *= 1.0 + error * n_samples / self.horizon
        return self.coef
