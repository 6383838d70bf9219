"""PPO's arithmetic on hand-computed tensors (the math is in each docstring)."""

from __future__ import annotations

import math

import pytest
import torch

from taskloop.rlhf.ppo_math import (
    AdaptiveKL,
    entropy,
    gae,
    kl_k3,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)


def t(x: list) -> torch.Tensor:  # type: ignore[type-arg]
    return torch.tensor(x, dtype=torch.float64)


def test_masked_mean_ignores_padding():
    """(1 + 2 + 4) / 3 = 7/3; per row: (1+2)/2 = 1.5 and 4/1 = 4."""
    x, m = t([[1, 2, 3], [4, 5, 6]]), t([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(7 / 3)
    assert masked_mean(x, m, dim=1).tolist() == pytest.approx([1.5, 4.0])


def test_whitened_values_have_zero_mean_unit_variance_and_padding_stays_zero():
    x, m = t([[1, 2, 3], [4, 100, 100]]), t([[1, 1, 1], [1, 0, 0]])
    w = masked_whiten(x, m)
    assert masked_mean(w, m).item() == pytest.approx(0, abs=1e-9)
    assert masked_mean(w**2, m).item() == pytest.approx(1, rel=1e-6)
    assert w[1, 1].item() == 0 and w[1, 2].item() == 0


def test_token_rewards_put_the_score_on_the_last_token_and_penalise_kl():
    """β = 0.1; KL = logπ − logπ_ref = [[0.5, 0, 0], [−1, 0, ·]]; rewards = −0.1·KL, plus
    score 1 on row 0's token 2 and score 2 on row 1's token 1 (its last real token)."""
    logp = t([[-1, -1, -1], [-2, -2, 0]])
    ref = t([[-1.5, -1, -1], [-1, -2, 0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = token_rewards(t([1.0, 2.0]), logp, ref, mask, kl_coef=0.1)
    assert kl.flatten().tolist() == pytest.approx([0.5, 0, 0, -1, 0, 0])
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 0, 1, 0.1, 2, 0])


def test_gae_by_hand():
    """γ = 1, λ = 0.5, r = [0, 0, 1], V = 0.5 everywhere:
    δ2 = 1 − 0.5 = 0.5 → A2 = 0.5; δ1 = 0 + 0.5 − 0.5 = 0 → A1 = 0.5·0.5 = 0.25;
    δ0 = 0 → A0 = 0.5·0.25 = 0.125; returns = A + V = [0.625, 0.75, 1.0]."""
    adv, ret = gae(t([[0, 0, 1]]), t([[0.5, 0.5, 0.5]]), t([[1, 1, 1]]), gamma=1.0, lam=0.5)
    assert adv.flatten().tolist() == pytest.approx([0.125, 0.25, 0.5])
    assert ret.flatten().tolist() == pytest.approx([0.625, 0.75, 1.0])


def test_gae_stops_at_the_last_response_token():
    """γ = λ = 1, r = [0, 1, (pad 5)], V = [0.2, 0.3, (pad 9)]: the padded step must not
    leak back. A1 = 1 − 0.3 = 0.7; A0 = (0 + 0.3 − 0.2) + 0.7 = 0.8; returns = 1, 1 (the
    reward still to come from each token)."""
    adv, ret = gae(t([[0, 1, 5]]), t([[0.2, 0.3, 9]]), t([[1, 1, 0]]), gamma=1.0, lam=1.0)
    assert adv.flatten().tolist() == pytest.approx([0.8, 0.7, 0.0])
    assert ret.flatten().tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_clipped_policy_loss_by_hand():
    """ε = 0.2. Token 1: r = 1.5, A = 1 → max(−1.5, −1.2) = −1.2 (clipped). Token 2:
    r = 0.5, A = 1 → max(−0.5, −0.8) = −0.5 (not clipped). Mean −0.85, clip share 0.5.
    With A = −1 and r = 0.5 the pessimistic term is the clipped 0.8."""
    old = t([[0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5)]])
    out = policy_loss(new, old, t([[1.0, 1.0]]), t([[1, 1]]), clip=0.2)
    assert out.loss.item() == pytest.approx(-0.85)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    neg = policy_loss(t([[math.log(0.5)]]), t([[0.0]]), t([[-1.0]]), t([[1]]), clip=0.2)
    assert neg.loss.item() == pytest.approx(0.8)
    same = policy_loss(old, old, t([[1.0, -2.0]]), t([[1, 1]]))
    assert same.approx_kl.item() == 0 and same.clip_fraction.item() == 0


def test_clipped_value_loss_by_hand():
    """V = 1.0, V_old = 0.5, R = 2, ε = 0.2: clipped V = 0.7; (1 − 2)² = 1 and
    (0.7 − 2)² = 1.69 → ½·1.69 = 0.845, and the clipped term won."""
    loss, frac = value_loss(t([[1.0]]), t([[0.5]]), t([[2.0]]), t([[1]]), clip=0.2)
    assert loss.item() == pytest.approx(0.845)
    assert frac.item() == 1.0


def test_entropy_of_a_uniform_distribution_is_log_k():
    logits = torch.zeros(1, 2, 4)
    assert entropy(logits, torch.ones(1, 2)).item() == pytest.approx(math.log(4))


def test_k3_kl_is_zero_for_equal_policies_and_positive_otherwise():
    a = t([[-1.0, -2.0]])
    assert kl_k3(a, a).tolist() == [[0.0, 0.0]]
    assert (kl_k3(a, t([[-1.5, -0.5]])) > 0).all()


def test_adaptive_kl_moves_beta_toward_the_target():
    """target 6, horizon 100, 50 samples: KL 9 → error +0.5 clipped to +0.2 →
    β·(1 + 0.2·0.5) = 0.1·1.1 = 0.11; then KL 3 → −0.2 → 0.11·0.9 = 0.099."""
    ctl = AdaptiveKL(coef=0.1, target=6.0, horizon=100)
    assert ctl.update(9.0, 50) == pytest.approx(0.11)
    assert ctl.update(3.0, 50) == pytest.approx(0.099)
    assert ctl.update(float("nan"), 50) == pytest.approx(0.099)
