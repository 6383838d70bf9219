"""The reward model: losses on hand-computed tensors, calibration arithmetic, training a
tiny BERT until it ranks crafted held-out pairs right, the saved folder read back by
load_reward_model, reward_scorer and the loader, the tuned threshold, the registry."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from taskloop.evaluate.thresholds import REWARD_ACCEPT, load_thresholds
from taskloop.rlhf.errors import RewardModelError
from taskloop.rlhf.records import PointLabel, PreferencePair
from taskloop.rlhf.reward import (
    RewardConfig,
    bradley_terry_loss,
    calibration,
    freeze_layers,
    load_reward_model,
    pair_calibration,
    pair_margin,
    pair_metrics,
    point_target,
    pointwise_loss,
    train_reward_model,
)

GOOD = ["correct", "right", "true", "yes"]
BAD = ["wrong", "false", "bad", "no"]
NOUNS = ["sky", "grass", "sun", "sea", "snow", "coal", "milk", "rose", "leaf", "fire"]
HELD_OUT_NOUNS = ["ice", "sand"]  # never in training prompts
FILLER = ["it", "is", "the", "answer", "maybe", "surely", "I", "think", "so"]


def tiny_backbone(folder: Path, seed: int = 0) -> Path:
    """A 1-layer, width-32 BERT encoder (random weights) with a word-level tokenizer over
    the toy vocabulary, saved like a hub checkpoint."""
    from taskloop.models.tiny import build_tiny_encoder

    texts = [" ".join(GOOD + BAD + NOUNS + HELD_OUT_NOUNS + FILLER), "what colour is the"]
    return build_tiny_encoder(folder, texts=texts, seed=seed)


def toy_pairs(n: int, seed: int, nouns: list[str] = NOUNS) -> list[PreferencePair]:
    """Chosen answers say a GOOD word, rejected ones a BAD word, amid random filler."""
    rng = random.Random(seed)

    def filler() -> str:
        return " ".join(rng.sample(FILLER, 3))

    return [
        PreferencePair(
            f"what colour is the {rng.choice(nouns)}",
            f"{filler()} {rng.choice(GOOD)} {filler()}",
            f"{filler()} {rng.choice(BAD)} {filler()}",
        )
        for _ in range(n)
    ]


TOY = RewardConfig(epochs=8, lr=5e-3, batch_size=16, valid_fraction=0.2, device="cpu")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_backbone(tmp_path_factory.mktemp("backbone"))


@pytest.fixture(scope="module")
def trained(backbone: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("reward")
    config = replace(TOY, backbone=str(backbone))
    return train_reward_model(toy_pairs(200, seed=0), [], out, config)


# --- losses ---------------------------------------------------------------------------------


def t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_bradley_terry_loss_by_hand():
    """Gaps r_c - r_r = 1 and -0.5: -log σ(1) = log(1 + e^-1) = 0.313262,
    -log σ(-0.5) = log(1 + e^0.5) = 0.974077; the mean is 0.643670."""
    chosen, rejected = t([1.0, 0.0]), t([0.0, 0.5])
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(0.643670, abs=1e-6)


def test_margin_and_weights_change_the_loss_by_hand():
    """Margins (0.5, 0) make the gaps 0.5 and -0.5: losses log(1 + e^-0.5) = 0.474077 and
    0.974077; weights (1, 3) give (0.474077 + 3 * 0.974077) / 4 = 0.849077."""
    chosen, rejected = t([1.0, 0.0]), t([0.0, 0.5])
    margins, weights = t([0.5, 0.0]), t([1.0, 3.0])
    unweighted = bradley_terry_loss(chosen, rejected, margins=margins).item()
    assert unweighted == pytest.approx((0.474077 + 0.974077) / 2, abs=1e-6)
    weighted = bradley_terry_loss(chosen, rejected, weights, margins).item()
    assert weighted == pytest.approx(0.849077, abs=1e-6)
    # a zero weight drops the pair
    assert bradley_terry_loss(chosen, rejected, t([1.0, 0.0]), margins).item() == pytest.approx(
        math.log1p(math.exp(-0.5)), abs=1e-9
    )


def test_pointwise_loss_by_hand():
    """BCE(σ(0), 1) = log 2 = 0.693147; BCE(σ(2), 0.25) = softplus(2) - 0.25 * 2 = 1.626928
    (softplus(2) = 2.126928); mean 1.160038; weights (3, 1): (3 * 0.693147 + 1.626928) / 4."""
    rewards, targets = t([0.0, 2.0]), t([1.0, 0.25])
    assert pointwise_loss(rewards, targets).item() == pytest.approx(1.160038, abs=1e-6)
    weighted = pointwise_loss(rewards, targets, t([3.0, 1.0])).item()
    assert weighted == pytest.approx((3 * 0.693147 + 1.626928) / 4, abs=1e-6)


def test_targets_and_margins():
    assert point_target(PointLabel("p", "a", label=True)) == 1.0
    assert point_target(PointLabel("p", "a", label=False, score=5)) == 0.0  # the thumb wins
    assert point_target(PointLabel("p", "a", score=4)) == 0.75
    assert point_target(PointLabel("p", "a", score=1)) == 0.0
    gap = PreferencePair("p", "a", "b", margin=3.0, origin="score_gap")
    assert pair_margin(gap, True) == 3.0
    assert pair_margin(gap, False) == 0.0
    assert pair_margin(PreferencePair("p", "a", "b"), True) == 0.0


# --- calibration ----------------------------------------------------------------------------


def test_calibration_by_hand():
    """Bins of width 0.1: 0.05 (outcome 0) -> |0 - 0.05|; 0.15 (1) -> 0.85; two 0.95 (1)
    -> 0.05 each: ECE (0.05 + 0.85 + 0.1) / 4 = 0.25; Brier (0.05² + 0.85² + 2 * 0.05²)
    / 4 = 0.1825."""
    cal = calibration([0.05, 0.15, 0.95, 0.95], [0, 1, 1, 1])
    assert cal.ece == pytest.approx(0.25)
    assert cal.brier == pytest.approx(0.1825)
    assert cal.counts == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert cal.frequency[9] == 1.0 and cal.mean_probability[9] == pytest.approx(0.95)


def test_pair_calibration_and_metrics_by_hand():
    """A zero gap says 50/50 in both orders: perfectly calibrated, Brier 0.25. Gaps
    (1, -1, 0, 2): accuracy (1 + 0 + 0.5 + 1) / 4 = 0.625 (a tie counts half), mean 0.5."""
    cal = pair_calibration([0.0, 0.0])
    assert cal.ece == pytest.approx(0.0) and cal.brier == pytest.approx(0.25)
    m = pair_metrics([1.0, -1.0, 0.0, 2.0])
    assert m["pair_accuracy"] == pytest.approx(0.625)
    assert m["mean_reward_gap"] == pytest.approx(0.5)
    sig = [1 / (1 + math.exp(-g)) for g in (1.0, -1.0, 0.0, 2.0)]
    assert m["brier"] == pytest.approx(np.mean([(1 - p) ** 2 for p in sig]))
    assert 0.0 <= m["pair_accuracy_low"] <= 0.625 <= m["pair_accuracy_high"] <= 1.0


# --- training -------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_ranks_held_out_pairs(trained, backbone: Path):
    """The loss falls, held-out metrics are written, and pairs about nouns never seen in
    training are ranked right by the saved model."""
    losses = [row["train_pair_loss"] for row in trained.history]
    assert losses[-1] < 0.5 * losses[0]
    assert trained.metrics["pair_accuracy"] == 1.0
    assert trained.metrics["valid_pairs"] + trained.metrics["train_pairs"] == 200
    saved = json.loads((trained.out / "metrics.json").read_text())
    assert saved["pair_accuracy"] == trained.metrics["pair_accuracy"]
    assert len((trained.out / "history.jsonl").read_text().splitlines()) == TOY.epochs
    assert (trained.out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    model = load_reward_model(trained.out)  # the output folder stands for its model/
    fresh = toy_pairs(40, seed=99, nouns=HELD_OUT_NOUNS)
    prompts = [p.prompt for p in fresh]
    chosen = model.score(prompts, [p.chosen for p in fresh])
    rejected = model.score(prompts, [p.rejected for p in fresh])
    assert (chosen > rejected).all()


def test_saved_model_reads_like_any_classifier(trained):
    """kind "classify" with one logit; reward_scorer gives exactly RewardModel.score."""
    from taskloop.models.ensemble import reward_scorer
    from taskloop.models.loader import ModelSpec, load_model

    lm = load_model(ModelSpec(str(trained.path), device="cpu"))
    assert lm.kind == "classify" and lm.model.config.num_labels == 1
    assert lm.window == TOY.max_tokens or lm.window == 64  # the tokenizer keeps the limit
    pair = toy_pairs(1, seed=7)[0]
    candidates = [pair.chosen, pair.rejected, pair.chosen + " so"]
    by_scorer = reward_scorer(trained.path, device="cpu")(pair.prompt, candidates)
    model = load_reward_model(trained.path, device="cpu")
    by_model = model.score([pair.prompt] * 3, candidates)
    np.testing.assert_allclose(by_model, by_scorer, rtol=1e-6)
    assert by_model[0] > by_model[1]
    with pytest.raises(RewardModelError, match="2 prompts but 1 completions"):
        model.score([pair.prompt] * 2, [pair.chosen])


def test_threshold_saved_and_read_back(trained):
    th = load_thresholds(REWARD_ACCEPT, trained.path)
    assert th is not None and th.score_name == "reward"
    assert th.value == pytest.approx(trained.threshold)
    model = load_reward_model(trained.path)
    assert model.threshold == pytest.approx(trained.threshold)
    pair = toy_pairs(1, seed=8, nouns=HELD_OUT_NOUNS)[0]
    scores = model.score([pair.prompt] * 2, [pair.chosen, pair.rejected])
    assert model.accept(scores).tolist() == [True, False]


def test_only_top_layers_train(backbone: Path, tmp_path: Path):
    """train_layers=0: embeddings and the layer stay as loaded; pooler and head change
    (TRL's check that what should train did)."""
    from safetensors.torch import load_file

    config = replace(TOY, backbone=str(backbone), epochs=2, train_layers=0)
    result = train_reward_model(toy_pairs(64, seed=1), [], tmp_path, config)
    before = load_file(str(backbone / "model.safetensors"))
    after = load_file(str(result.path / "model.safetensors"))
    for name, value in after.items():
        base = name.removeprefix("bert.")
        if name.startswith(("bert.embeddings", "bert.encoder")):
            assert torch.equal(value, before[base]), name
        elif name.startswith("bert.pooler.dense.weight") or name == "classifier.weight":
            assert not torch.equal(value, before.get(base, torch.zeros_like(value))), name
    assert result.metrics["trainable_params"] == 32 * 32 + 32 + 32 + 1


def test_freeze_layers_counts(backbone: Path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    trainable, total = freeze_layers(model, None)
    assert trainable == total
    trainable_top, _ = freeze_layers(model, 1)
    embed = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert trainable_top == total - embed


def test_thumbs_and_scores_train_and_tune_on_rated_answers(backbone: Path, tmp_path: Path):
    """Rated answers only: pointwise loss; thumbs AUC/accuracy reported; the threshold is
    tuned on thumbs-up / score >= 4 answers."""
    rng = random.Random(3)
    points = []
    for i in range(160):
        noun = rng.choice(NOUNS + HELD_OUT_NOUNS)
        good = i % 2 == 0
        word = rng.choice(GOOD if good else BAD)
        if i % 4 < 2:
            points.append(PointLabel(f"what colour is the {noun}", f"it is {word}", label=good))
        else:
            score = rng.choice([4, 5] if good else [1, 2])
            points.append(PointLabel(f"what colour is the {noun}", f"so {word}", score=score))
    config = replace(TOY, backbone=str(backbone), epochs=10)
    result = train_reward_model([], points, tmp_path, config)
    assert result.metrics["thumbs_auc"] > 0.95
    assert result.metrics["thumbs_accuracy"] > 0.9
    assert "pair_accuracy" not in result.metrics
    assert result.threshold is not None
    th = load_thresholds(REWARD_ACCEPT, result.path)
    assert th is not None and th.validation["positive"]["support"] > 0


def test_no_rows_and_bad_settings(tmp_path: Path):
    with pytest.raises(RewardModelError, match="no feedback") as info:
        train_reward_model([], [], tmp_path)
    assert "simulate" in (info.value.hint or "")
    with pytest.raises(RewardModelError, match="epochs"):
        train_reward_model([PreferencePair("p", "a", "b")], [], tmp_path, RewardConfig(epochs=0))
    with pytest.raises(RewardModelError, match="weight 0"):
        train_reward_model([PreferencePair("p", "a", "b", weight=0.0)], [], tmp_path)


def test_accept_without_threshold(backbone: Path, tmp_path: Path):
    """valid_fraction 0: no metrics, no threshold; accept says how to get one."""
    config = replace(TOY, backbone=str(backbone), epochs=1, valid_fraction=0.0)
    result = train_reward_model(toy_pairs(20, seed=2), [], tmp_path, config)
    assert result.threshold is None and "pair_accuracy" not in result.metrics
    assert any("no held-out rows" in w for w in result.warnings)
    model = load_reward_model(result.path)
    with pytest.raises(RewardModelError, match=r"no tuned reward\.accept"):
        model.accept([0.1])


def test_registered_model_loads_by_name(backbone: Path, tmp_path: Path):
    """--register: the run is logged, the version loads by models:/ name with its threshold."""
    config = replace(TOY, backbone=str(backbone), epochs=2)
    result = train_reward_model(
        toy_pairs(60, seed=4), [], tmp_path, config, register_as="toy-reward", alias="challenger"
    )
    assert result.registered == "models:/toy-reward/1"
    model = load_reward_model("models:/toy-reward@challenger")
    assert model.threshold == pytest.approx(result.threshold)


def test_real_hh_pairs_train_one_epoch(shared_data: Path, tmp_path: Path):
    """A few hundred real HH-RLHF pairs read and train one epoch on a tiny backbone (the
    figure that matters is in benchmarks/reward_model.py)."""
    from taskloop.rlhf.feedback import read_feedback

    pairs, _ = read_feedback(shared_data / "preferences" / "hh_rlhf_harmless_base_test.jsonl.gz")
    folder = tiny_backbone(tmp_path / "bb")
    config = RewardConfig(backbone=str(folder), epochs=1, max_tokens=48, lr=1e-3, device="cpu")
    result = train_reward_model(pairs[:300], [], tmp_path / "out", config)
    assert result.metrics["valid_pairs"] >= 30
    assert 0.0 <= result.metrics["pair_accuracy"] <= 1.0
    assert math.isfinite(result.history[0]["train_pair_loss"])
