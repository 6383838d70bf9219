"""DPO, IPO and KTO: the losses on hand-computed numbers, and training on a toy preference
set (the chosen answer says "green", the rejected one "red") that must raise the
held-out margin for a seq2seq and a causal policy, with the reference kept frozen and
the saved policy loadable by the normal loader."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model
from taskloop.rlhf.direct import (
    DirectConfig,
    dpo_loss,
    encode_rows,
    fit_direct,
    kto_kl_estimate,
    kto_loss,
    load_policy,
    train_direct,
)
from taskloop.rlhf.errors import FeedbackDataError, PolicyError
from taskloop.rlhf.records import PointLabel, PreferencePair
from tests.evaluate.test_explain import build_classifier

torch.set_num_threads(1)

SUBJECTS = ["dog", "cat", "bird", "fish", "horse", "cow", "sheep", "goat", "mouse", "frog",
            "duck", "bear", "wolf", "fox", "lion", "tiger"]  # fmt: skip
TEXTS = [f"tell me about the {s} . the {s} is green red blue" for s in SUBJECTS]


def toy_pairs() -> list[PreferencePair]:
    return [
        PreferencePair(f"tell me about the {s}", f"the {s} is green", f"the {s} is red")
        for s in SUBJECTS
    ]


def toy_thumbs() -> list[PointLabel]:
    up = [PointLabel(f"tell me about the {s}", f"the {s} is green", label=True) for s in SUBJECTS]
    down = [PointLabel(f"tell me about the {s}", f"the {s} is red", label=False) for s in SUBJECTS]
    return up + down


def toy_config(loss: str = "dpo", **kw: object) -> DirectConfig:
    settings: dict[str, object] = dict(
        loss=loss, beta=0.5, epochs=4, batch_size=4, lr=3e-3, valid_fraction=0.25,
        device="cpu", max_prompt_tokens=16, max_response_tokens=8, seed=0,
    )  # fmt: skip
    settings.update(kw)
    return DirectConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("direct-models")
    return {
        kind: build_tiny_model(root / kind, kind, texts=TEXTS, seed=1)  # type: ignore[arg-type]
        for kind in ("seq2seq", "causal")
    }


# ----------------------------------------------------------------------------- losses

# policy and reference log-probs of two pairs, beta 0.5:
#   r_chosen = pc - rc = [0.5, -0.5], r_rejected = pr - rr = [-0.5, 0.5], h = [1, -1]
PC, PR = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
RC, RR = torch.tensor([-1.5, -1.5]), torch.tensor([-1.5, -1.5])
SP_HALF = math.log1p(math.exp(-0.5))  # -log σ(0.5) = 0.474077
SP_MINUS = math.log1p(math.exp(0.5))  # -log σ(-0.5) = 0.974077


def test_dpo_loss_by_hand() -> None:
    """loss_i = -log σ(β h_i): [-log σ(0.5), -log σ(-0.5)] = [0.474077, 0.974077], mean
    0.724077; rewards β r: chosen [0.25, -0.25], rejected [-0.25, 0.25], margins
    [0.5, -0.5], accuracy 1/2, mean log-ratio (r_c + r_r)/2 = 0."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.5)
    assert out.losses.tolist() == pytest.approx([SP_HALF, SP_MINUS], abs=1e-6)
    assert float(out.loss) == pytest.approx(0.724077, abs=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([0.25, -0.25])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.25, 0.25])
    assert out.accuracy == pytest.approx(0.5)
    assert out.margin == pytest.approx(0.0)
    assert out.kl == pytest.approx(0.0)


def test_dpo_row_weights() -> None:
    """weights [3, 1]: loss (3·0.474077 + 0.974077)/4 = 0.599077; accuracy 3/4; margin
    (3·0.5 − 0.5)/4 = 0.25."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.5, weights=torch.tensor([3.0, 1.0]))
    assert float(out.loss) == pytest.approx((3 * SP_HALF + SP_MINUS) / 4, abs=1e-6)
    assert float(out.loss) == pytest.approx(0.599077, abs=1e-6)
    assert out.accuracy == pytest.approx(0.75)
    assert out.margin == pytest.approx(0.25)
    # a zero weight removes the row
    only_first = dpo_loss(PC, PR, RC, RR, beta=0.5, weights=torch.tensor([1.0, 0.0]))
    assert float(only_first.loss) == pytest.approx(SP_HALF, abs=1e-6)


def test_dpo_label_smoothing() -> None:
    """ε = 0.1: loss_i = 0.9·(-log σ(βh)) + 0.1·(-log σ(-βh)) = [0.524077, 0.924077]."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    assert out.losses.tolist() == pytest.approx(
        [0.9 * SP_HALF + 0.1 * SP_MINUS, 0.9 * SP_MINUS + 0.1 * SP_HALF], abs=1e-6
    )
    assert out.losses.tolist() == pytest.approx([0.524077, 0.924077], abs=1e-6)


def test_ipo_loss_by_hand() -> None:
    """IPO with β = 0.5: target 1/(2β) = 1, h = [1, -1] → losses [(1-1)², (-1-1)²] = [0, 4]."""
    out = dpo_loss(PC, PR, RC, RR, beta=0.5, loss="ipo")
    assert out.losses.tolist() == pytest.approx([0.0, 4.0])
    assert float(out.loss) == pytest.approx(2.0)
    # the minimum sits at h = 1/(2β), not at h → ∞ as with DPO
    at_target = dpo_loss(torch.tensor([0.0]), torch.tensor([-1.0]), torch.zeros(1), torch.zeros(1),
                         beta=0.5, loss="ipo")  # fmt: skip
    assert float(at_target.loss) == pytest.approx(0.0)


def test_dpo_gradient_raises_chosen_lowers_rejected() -> None:
    """d loss / d π_c = -β σ(-βh) < 0 and d loss / d π_r = +β σ(-βh) > 0; at h = 0 with
    β = 0.5 each has magnitude 0.5 · 0.5 = 0.25 (one row, so the mean is that row)."""
    pc = torch.tensor([-3.0], requires_grad=True)
    pr = torch.tensor([-3.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.5).loss.backward()
    assert pc.grad is not None and pr.grad is not None
    assert float(pc.grad) == pytest.approx(-0.25)
    assert float(pr.grad) == pytest.approx(0.25)


def test_kto_loss_by_hand() -> None:
    """Mismatched log-ratios [1, 0] → z0 = 0.5. r = π − ref = [1, -1, 0], desirable
    [T, F, T], β = 1, λ_D = 1, λ_U = 2:
    row 0: 1 − σ(1 − 0.5) = 0.377541; row 1: 2·(1 − σ(0.5 + 1)) = 0.364851;
    row 2: 1 − σ(0 − 0.5) = 0.622459; mean 0.454950. Ranked right: rows 0, 1 (row 2 is
    desirable but below z0) → 2/3. Rewards: desirable [1, 0], undesirable [-1];
    margin 0.5 − (−1) = 1.5."""
    z0 = kto_kl_estimate(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -2.0]))
    assert float(z0) == pytest.approx(0.5)
    policy = torch.tensor([-1.0, -3.0, -2.0])
    ref = torch.tensor([-2.0, -2.0, -2.0])
    good = torch.tensor([True, False, True])
    out = kto_loss(policy, ref, good, z0, beta=1.0, desirable_weight=1.0, undesirable_weight=2.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [1 - sig(0.5), 2 * (1 - sig(1.5)), 1 - sig(-0.5)]
    assert out.losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert out.losses.tolist() == pytest.approx([0.377541, 0.364851, 0.622459], abs=1e-6)
    assert float(out.loss) == pytest.approx(0.454950, abs=1e-6)
    assert out.accuracy == pytest.approx(2 / 3)
    assert out.chosen_rewards.tolist() == pytest.approx([1.0, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-1.0])
    assert out.margin == pytest.approx(1.5)
    assert out.kl == pytest.approx(0.5)
    # row weights [1, 1, 2]: (0.377541 + 0.364851 + 2·0.622459)/4 = 0.496828; accuracy 2/4;
    # margin (1·1 + 2·0)/3 − (−1) = 4/3
    weighted = kto_loss(policy, ref, good, z0, beta=1.0, undesirable_weight=2.0,
                        weights=torch.tensor([1.0, 1.0, 2.0]))  # fmt: skip
    assert float(weighted.loss) == pytest.approx(0.496828, abs=1e-6)
    assert weighted.accuracy == pytest.approx(0.5)
    assert weighted.margin == pytest.approx(4 / 3)


def test_kto_reference_point_is_clamped_and_detached() -> None:
    """A negative mean mismatched log-ratio (−1.5) gives z0 = 0; no gradient reaches the
    mismatched log-probs, while a desirable row's gradient is −β σ'(β(r − z0)) < 0."""
    mis = torch.tensor([-3.0, -2.0], requires_grad=True)
    z0 = kto_kl_estimate(mis, torch.tensor([-1.0, -1.0]))
    assert float(z0) == 0.0 and not z0.requires_grad
    pol = torch.tensor([-1.0], requires_grad=True)
    kto_loss(pol, torch.tensor([-1.0]), torch.tensor([True]), z0, beta=2.0).loss.backward()
    # r = 0, z0 = 0: d/dr (1 − σ(2r)) = −2·σ(0)·(1 − σ(0)) = −0.5
    assert pol.grad is not None and float(pol.grad) == pytest.approx(-0.5)
    assert mis.grad is None


def test_losses_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(PC, PR, RC, RR, beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(PC, PR, RC, RR, label_smoothing=0.5)
    with pytest.raises(ValueError, match="IPO"):
        dpo_loss(PC, PR, RC, RR, loss="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(PC, PR, RC, RR, weights=torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        kto_loss(PC, RC, torch.tensor([True, False]), 0.0, weights=torch.tensor([1.0, -1.0]))


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_preference_training_raises_held_out_margin(
    models: dict[str, Path], tmp_path: Path, kind: str, loss: str
) -> None:
    """Held-out prompts (other animals) must come out preferring "green": before training
    the implicit reward is 0 everywhere (accuracy exactly 0.5, margin 0); after, every
    held-out pair is ranked right with a clear margin. With the loss's sign flipped the
    policy learns "red" and this fails (margin < 0, accuracy 0)."""
    result = train_direct(models[kind], toy_pairs(), [], tmp_path / "out", toy_config(loss))
    assert result.kind == kind and result.evaluated_on == "valid"
    assert result.counts["valid"] == 4 and result.counts["train"] == 12
    assert result.before["reward_accuracy"] == 0.5
    assert result.before["margin"] == 0.0
    assert result.after["reward_accuracy"] == 1.0
    assert result.after["margin"] is not None and result.after["margin"] > 0.2
    assert result.after["loss"] is not None and result.before["loss"] is not None
    assert result.after["loss"] < result.before["loss"]
    # the policy's own ranking does not get worse; DPO (no target margin) makes it perfect,
    # IPO stops at h = 1/(2β) = 1 nat over the base model's own ranking
    before_lp, after_lp = result.before["logprob_accuracy"], result.after["logprob_accuracy"]
    assert before_lp is not None and after_lp is not None and after_lp >= before_lp
    if loss == "dpo":
        assert after_lp == 1.0
    # training steps saw the margin grow
    assert result.steps[-1].margin is not None and result.steps[-1].margin > 0
    assert result.steps[-1].reward_accuracy == 1.0


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_kto_raises_desirable_over_undesirable(
    models: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Thumbs up on "green" answers, down on "red" ones: after KTO the held-out thumbs-up
    answers get the higher implicit reward (AUC 1, positive margin); before, all 0."""
    result = train_direct(models[kind], [], toy_thumbs(), tmp_path / "out", toy_config("kto"))
    assert result.before["reward_accuracy"] == 0.5 and result.before["margin"] == 0.0
    assert result.after["reward_accuracy"] == 1.0
    assert result.after["margin"] is not None and result.after["margin"] > 0.5
    assert any(s.kl > 0 for s in result.steps)  # z0 estimated, not always clamped to 0


def test_outputs_and_saved_policy_loads(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    result = train_direct(models["seq2seq"], toy_pairs(), toy_thumbs(), out, toy_config())
    assert result.path == out
    lines = (out / "steps.jsonl").read_text().splitlines()
    assert len(lines) == len(result.steps) == 4 * 3  # 12 training pairs, batches of 4
    first = json.loads(lines[0])
    assert set(first) >= {"loss", "reward_accuracy", "margin", "chosen_reward", "kl"}
    assert (out / "steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["before"]["reward_accuracy"] == 0.5
    assert summary["after"]["reward_accuracy"] == result.after["reward_accuracy"]
    assert summary["counts"]["points_given"] == 32
    assert any("32 single ratings ignored" in w for w in summary["warnings"])
    assert json.loads((out / "direct_config.json").read_text())["beta"] == 0.5
    loaded = load_model(str(out))
    assert loaded.kind == "seq2seq"
    base = load_model(str(models["seq2seq"]))
    trained = dict(loaded.model.named_parameters())
    assert any(not torch.equal(p, trained[n]) for n, p in base.model.named_parameters())


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_reference_stays_frozen_and_policy_moves(models: dict[str, Path], kind: str) -> None:
    """After a few steps the reference equals the checkpoint bit for bit and needs no
    gradients; every trainable parameter tensor of the policy has changed (as TRL checks)."""
    policy, tok, got = load_policy(models[kind])
    assert got == kind
    reference = copy.deepcopy(policy)
    before = {n: p.detach().clone() for n, p in reference.named_parameters()}
    start = {n: p.detach().clone() for n, p in policy.named_parameters()}
    cfg = toy_config(epochs=1)
    rows = encode_rows(tok, got, "dpo", toy_pairs(), max_prompt_tokens=16, max_response_tokens=8)
    steps = fit_direct(policy, reference, tok, rows, cfg)
    assert len(steps) == 4
    for name, param in reference.named_parameters():
        assert not param.requires_grad
        assert torch.equal(param, before[name]), name
    unchanged = [n for n, p in policy.named_parameters() if torch.equal(p, start[n])]
    assert unchanged == []


def test_causal_window_cuts_budgets(tmp_path: Path) -> None:
    """Defaults (256 + 128 tokens) exceed a 32-token causal window: the response keeps
    half (16) and the prompt the rest, with a warning, and training still runs."""
    path = build_tiny_model(tmp_path / "small", "causal", texts=TEXTS, max_length=32)
    cfg = toy_config(max_prompt_tokens=256, max_response_tokens=128, epochs=1)
    result = train_direct(path, toy_pairs(), [], tmp_path / "out", cfg)
    assert any("cut to 16/16 tokens" in w for w in result.warnings)
    assert len(result.steps) == 3


def test_no_held_out_rows_evaluates_on_training(models: dict[str, Path], tmp_path: Path) -> None:
    result = train_direct(
        models["causal"], toy_pairs()[:4], [], tmp_path / "o", toy_config(valid_fraction=0.0)
    )
    assert result.evaluated_on == "train" and result.counts["valid"] == 0
    assert any("no held-out rows" in w for w in result.warnings)


def test_register_as_challenger(models: dict[str, Path], tmp_path: Path) -> None:
    """The run is logged and the policy registered with alias challenger; the registry
    name loads through the loader."""
    result = train_direct(
        models["causal"], toy_pairs(), [], tmp_path / "o", toy_config(epochs=1),
        register_as="toy-dpo",
    )  # fmt: skip
    assert result.run is not None and result.run.version == 1
    assert result.run.experiment == "dpo"
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["registered"]["name"] == "toy-dpo"
    loaded = load_model("models:/toy-dpo@challenger")
    assert loaded.kind == "causal"


# ----------------------------------------------------------------------------- errors


def test_errors_name_what_is_missing(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FeedbackDataError, match="no preference pairs") as exc:
        train_direct(models["seq2seq"], [], toy_thumbs(), tmp_path / "a", toy_config())
    assert exc.value.hint and "--loss kto" in exc.value.hint
    with pytest.raises(FeedbackDataError, match="no thumbs") as exc:
        scores = [PointLabel("p", "c", score=4.0)]
        train_direct(models["seq2seq"], toy_pairs(), scores, tmp_path / "b", toy_config("kto"))
    assert exc.value.hint and "--loss dpo" in exc.value.hint
    zero = [PreferencePair("p", "a", "b", weight=0.0)]
    with pytest.raises(FeedbackDataError, match="no preference pairs"):
        train_direct(models["seq2seq"], zero, [], tmp_path / "c", toy_config())
    with pytest.raises(PolicyError, match="beta"):
        train_direct(models["seq2seq"], toy_pairs(), [], tmp_path / "d", toy_config(beta=0))
    with pytest.raises(PolicyError, match="loss"):
        toy_config("ppo").check()
    assert not (tmp_path / "a").exists()


def test_classifier_is_not_a_policy(tmp_path: Path) -> None:
    folder = build_classifier(tmp_path / "clf")
    with pytest.raises(PolicyError, match="BertForSequenceClassification") as exc:
        train_direct(folder, toy_pairs(), [], tmp_path / "o", toy_config())
    assert exc.value.hint and "reward model" in exc.value.hint
