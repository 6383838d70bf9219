"""PPO end to end on a toy task with a known reward, for a seq2seq and a causal policy;
the score normalisation on hand-computed values; the reward-hacking watch on crafted
step series; the reward composition (reward model + verifiable checks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from taskloop.data.records import Example, QAExample, TranslateExample, Where
from taskloop.models.tiny import build_tiny_model
from taskloop.rlhf.errors import PolicyError, RLHFError
from taskloop.rlhf.policy import load_policy
from taskloop.rlhf.ppo import (
    LengthShares,
    PPOConfig,
    RunningMoments,
    check_config,
    check_step,
    normalise_scores,
    ppo_train,
    summarise_warnings,
)
from taskloop.rlhf.records import PolicyStep, Rewards

SOURCES = [
    "A dog is running",
    "The model runs",
    "The council voted",
    "children play in the park",
    "Ein Hund rennt",
    "the sum of two numbers",
]
TARGET = "dog"


def _examples() -> list[Example]:
    return [
        TranslateExample(id=str(i), where=Where(file="t.jsonl", row=i + 1), source=s, target="x")
        for i, s in enumerate(SOURCES)
    ]


def target_reward(examples, texts) -> Rewards:
    """1 when the response holds the target word, else 0. The untrained tiny models say
    it in about 1 of 100 responses of 6 tokens; the cheapest policy that always says it
    (the reference conditioned on success) is -log P_ref(success) ≈ 2-3 nats away."""
    hit = [float(TARGET in t.split()) for t in texts]
    return Rewards(total=hit, parts={"target": hit})


TOY = dict(
    steps=40, batch_size=16, mini_batch_size=8, ppo_epochs=2, lr=1e-3, max_new_tokens=6,
    kl_target=None, init_kl_coef=0.15, device="cpu", threads=1, seed=0,
)  # fmt: skip
KL_LIMIT = (
    8.0  # nats per response: β = 0.15 stays below it (≤ 6.5); with β = 0 the same runs pass it
)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_toy_task_reward_rises_and_kl_stays_bounded(kind: str, tmp_path: Path) -> None:
    """Mean reward of the last 5 steps is far above the first 5, KL stays below 8 nats,
    the reference does not move while every policy parameter does. (With the policy
    loss's sign flipped, the last steps' reward stays at ~0 and this fails.)"""
    model = build_tiny_model(tmp_path / "model", kind, seed=1)
    policy = load_policy(model, device="cpu", seed=0)
    ref_before = [p.detach().clone() for p in policy.ref.parameters()]
    model_before = [p.detach().clone() for p in policy.parameters()]
    result = ppo_train(policy, _examples(), target_reward, tmp_path / "out", PPOConfig(**TOY))
    steps = result.steps
    assert [s.step for s in steps] == list(range(1, 41))
    first = sum(s.reward for s in steps[:5]) / 5
    last = sum(s.reward for s in steps[-5:]) / 5
    assert first < 0.1
    assert last > 0.6 and last - first > 0.5, (first, last)
    assert max(s.kl for s in steps) < KL_LIMIT
    assert steps[0].kl == pytest.approx(0.0, abs=1e-5)  # policy == reference at step 1
    assert all(s.samples == 16 and s.kl_coef == 0.15 for s in steps)
    assert all(s.parts["target"] == s.reward for s in steps)
    # the reference is frozen; every trainable parameter (value head included) moved
    for a, b in zip(policy.ref.parameters(), ref_before, strict=True):
        assert torch.equal(a, b)
    changed = [
        not torch.equal(a, b) for a, b in zip(policy.parameters(), model_before, strict=True)
    ]
    assert all(changed), f"{changed.count(False)} parameters did not change"
    # what the run wrote
    out = tmp_path / "out"
    lines = (out / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 40
    assert json.loads(lines[-1])["reward"] == steps[-1].reward
    assert (out / "ppo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_done"] == 40 and summary["kind"] == kind
    assert summary["reward_last"] > summary["reward_first"]
    assert result.path == out / "policy"


def test_saved_policy_is_a_task_model_and_says_the_target(tmp_path: Path) -> None:
    """The saved policy, loaded as an ordinary task model, samples the target word far
    more often than the model it started from."""
    from taskloop.models.generate import GenerationSettings, generate
    from taskloop.models.loader import ModelSpec, load_model

    model = build_tiny_model(tmp_path / "model", "seq2seq", seed=1)
    result = ppo_train(model, _examples(), target_reward, tmp_path / "out", PPOConfig(**TOY))
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, seed=0, batch_size=48)
    inputs = [f"{s} {i}" for i in range(8) for s in SOURCES]  # distinct: no cache hits

    def rate(path: Path) -> float:
        lm = load_model(ModelSpec(str(path), device="cpu"))
        out = generate(lm, inputs, settings)
        return sum(TARGET in g.text.split() for g in out) / len(out)

    assert rate(result.path) > rate(model) + 0.4


def test_stop_on_kl_runaway_ends_the_run_and_saves(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model", "causal", seed=1)
    config = PPOConfig(**{**TOY, "steps": 5, "kl_limit": -1.0, "stop_on_kl_runaway": True})
    result = ppo_train(model, _examples(), target_reward, tmp_path / "out", config)
    assert len(result.steps) == 1
    assert result.stopped_early == "KL runaway at step 1"
    assert result.steps[0].warnings and result.steps[0].warnings[-1].startswith("KL runaway")
    assert (result.path / "config.json").is_file()


def test_register_as_challenger(tmp_path: Path) -> None:
    from taskloop.models.registry import resolve_uri

    model = build_tiny_model(tmp_path / "model", "seq2seq", seed=1)
    config = PPOConfig(**{**TOY, "steps": 2, "register_as": "toy-ppo"})
    result = ppo_train(model, _examples(), target_reward, tmp_path / "out", config)
    assert result.run is not None and result.run.version == 1
    folder = resolve_uri("models:/toy-ppo@challenger")
    assert (folder / "config.json").is_file()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["registered"]["model_name"] == "toy-ppo"


def test_bad_settings_and_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="mini_batch_size 8 is larger than batch_size 4"):
        check_config(PPOConfig(batch_size=4, mini_batch_size=8))
    with pytest.raises(PolicyError, match="top_p"):
        check_config(PPOConfig(top_p=0.0))
    with pytest.raises(PolicyError, match="steps must be at least 1"):
        check_config(PPOConfig(steps=0))
    with pytest.raises(PolicyError, match="no examples"):
        ppo_train(tmp_path, [], target_reward, tmp_path / "out", PPOConfig())
    model = build_tiny_model(tmp_path / "model", "causal", seed=1)  # a 64-token window
    with pytest.raises(PolicyError, match="no room for a prompt"):
        ppo_train(model, _examples(), target_reward, tmp_path / "o", PPOConfig(max_new_tokens=64))

    def wrong_count(examples, texts) -> Rewards:
        return Rewards(total=[1.0])

    with pytest.raises(PolicyError, match="returned 1 rewards for 4"):
        ppo_train(
            model, _examples(), wrong_count, tmp_path / "o",
            PPOConfig(steps=1, batch_size=4, mini_batch_size=2, device="cpu"),
        )  # fmt: skip


# -- score normalisation -------------------------------------------------------------------


def test_running_moments_merge_batches() -> None:
    """[1, 2, 3] then [5]: the same mean and population variance as [1, 2, 3, 5] at once
    (mean 2.75, variance 9.75 - 2.75² = 2.1875)."""
    m = RunningMoments()
    m.update([1.0, 2.0, 3.0])
    assert m.mean == pytest.approx(2.0) and m.var == pytest.approx(2 / 3)
    m.update([5.0])
    assert m.count == 4
    assert m.mean == pytest.approx(2.75) and m.var == pytest.approx(2.1875)
    m.update([])
    assert m.count == 4


def test_normalise_scores_by_hand() -> None:
    m = RunningMoments()
    z = normalise_scores([1.0, 2.0, 3.0], m)
    s = math.sqrt(2 / 3)
    assert z == pytest.approx([-1 / s, 0.0, 1 / s])
    # the next batch is measured against all scores so far: (5 - 2.75) / sqrt(2.1875)
    assert normalise_scores([5.0], m) == pytest.approx([2.25 / math.sqrt(2.1875)])
    # clipping
    m2 = RunningMoments()
    normalise_scores([1.0, 2.0, 3.0], m2)
    assert normalise_scores([5.0], m2, clip=1.0) == [1.0]
    # one score with no spread yet: divided by 1, not by 0
    assert normalise_scores([7.0], RunningMoments()) == [0.0]


# -- the reward-hacking watch --------------------------------------------------------------


def _step(i: int, *, length: float = 5.0, kl: float = 1.0, reward: float = 0.0, coef: float = 0.05,
          parts: dict[str, float] | None = None) -> PolicyStep:  # fmt: skip
    return PolicyStep(
        step=i, reward=reward, reward_std=0.1, kl=kl, kl_coef=coef, entropy=2.0,
        response_length=length, clip_fraction=0.1, policy_loss=0.0, value_loss=0.1,
        approx_kl=0.01, seconds=0.1, samples=16, parts=parts or {},
    )  # fmt: skip


OK = LengthShares(empty=0.0, truncated=0.1)
WATCH = PPOConfig(kl_target=2.0, max_new_tokens=32)


def test_a_healthy_run_raises_no_warning() -> None:
    """Reward up, length steady, KL wandering around the target (up and down)."""
    kls = [0.5, 1.2, 1.9, 2.4, 2.1, 2.6, 2.2, 1.8, 2.5, 2.3, 2.9, 2.4]
    history: list[PolicyStep] = []
    for i, kl in enumerate(kls, start=1):
        history.append(_step(i, length=5.0 + (i % 3) * 0.5, kl=kl, reward=0.1 * i,
                             parts={"reference": 0.3 + 0.01 * i}))  # fmt: skip
        assert check_step(history, OK, WATCH) == [], i


def test_length_collapse() -> None:
    history = [_step(1, length=6.0), _step(2, length=5.0), _step(3, length=7.0)]
    assert check_step([*history, _step(4, length=3.1)], OK, WATCH) == []  # 3.1 ≥ 0.5 × 6
    (warning,) = check_step([*history, _step(4, length=2.9)], OK, WATCH)
    assert warning.startswith("length collapse") and "2.9" in warning and "6.0" in warning
    # before the baseline is complete, a short step is not a collapse
    assert check_step([_step(1, length=6.0), _step(2, length=1.0)], OK, WATCH) == []
    (empty,) = check_step(history, LengthShares(empty=0.6, truncated=0.0), WATCH)
    assert empty == "length collapse: 60% of responses are empty"


def test_length_blow_up() -> None:
    (warning,) = check_step([_step(1)], LengthShares(empty=0.0, truncated=0.9), WATCH)
    assert warning.startswith("length blow-up: 90%") and "max_new_tokens=32" in warning
    assert check_step([_step(1)], LengthShares(empty=0.0, truncated=0.8), WATCH) == []


def test_kl_runaway_above_the_limit() -> None:
    # default limit: kl_runaway (3) × kl_target (2) = 6 nats
    assert check_step([_step(1, kl=5.9)], OK, WATCH) == []
    (warning,) = check_step([_step(1, kl=6.5)], OK, WATCH)
    assert warning == "KL runaway: KL 6.50 nats is above the limit 6.00"
    fixed = PPOConfig(kl_target=None, kl_limit=4.0)
    assert check_step([_step(1, kl=4.5)], OK, fixed)[0].startswith("KL runaway")
    assert check_step([_step(1, kl=100.0)], OK, PPOConfig(kl_target=None)) == []


def test_kl_runaway_rising_while_the_controller_pushes() -> None:
    rising = [_step(i + 1, kl=kl, coef=0.05 * 1.1**i) for i, kl in enumerate([1, 2, 2.5, 3, 4, 5])]
    (warning,) = check_step(rising, OK, WATCH)
    assert warning.startswith("KL runaway: KL rose for 5 steps to 5.00")
    # one dip breaks the run; rising but below the target is the controller's job
    dipped = [*rising[:3], _step(4, kl=2.4), *rising[4:]]
    assert check_step(dipped, OK, WATCH) == []
    low = [_step(i + 1, kl=0.1 * (i + 1)) for i in range(6)]
    assert check_step(low, OK, WATCH) == []


def test_reward_up_while_the_reference_metric_falls() -> None:
    history = [_step(i, reward=0.1 * i, parts={"reference": 0.5 - 0.03 * i}) for i in range(1, 11)]
    warnings = check_step(history, OK, WATCH)
    assert len(warnings) == 1 and warnings[0].startswith("reward hacking")
    assert check_step(history, OK, PPOConfig(kl_target=2.0, reference_part=None)) == []


def test_summarise_warnings_names_each_kind_once() -> None:
    steps = [
        _step(1),
        PolicyStep(**{**_step(2).__dict__, "warnings": ("length blow-up: 90% x",)}),
        PolicyStep(**{**_step(3).__dict__, "warnings": ("length blow-up: 95% x", "KL runaway: y")}),
    ]
    assert summarise_warnings(steps) == [
        "step 2: length blow-up: 90% x (at 2 steps in all)",
        "step 3: KL runaway: y",
    ]


# -- the reward ------------------------------------------------------------------------------


def test_make_reward_needs_something_to_optimise() -> None:
    from taskloop.rlhf.rewards import make_reward

    with pytest.raises(RLHFError, match="no reward to optimise") as info:
        make_reward(reward_model=None, verifiable={"format": 0.0})
    assert "--verifiable" in (info.value.hint or "")


def test_make_reward_weights_verifiable_checks() -> None:
    simulate = pytest.importorskip("taskloop.rlhf.simulate")
    from taskloop.rlhf.rewards import make_reward

    examples = [
        QAExample(id="q1", where=Where(file="q.jsonl", row=1), question="Who won?",
                  context="Ada won the race in 1990.", answers=["Ada"]),
        TranslateExample(id="t1", where=Where(file="t.jsonl", row=1),
                         source="The dog runs in the park.", target="Der Hund rennt im Park."),
    ]  # fmt: skip
    outputs = ["Ada", "Der Hund rennt im Park."]
    reward = make_reward(reward_model=None, verifiable={"format": 0.5, "reference": 2.0})
    got = reward(examples, outputs)
    assert set(got.parts) == {"format", "reference"}
    for i, (ex, out) in enumerate(zip(examples, outputs, strict=True)):
        scores = simulate.score_output(ex, out)
        assert got.parts["format"][i] == pytest.approx(0.5 * scores["format"])
        assert got.parts["reference"][i] == pytest.approx(2.0 * scores["reference"])
        assert got.total[i] == pytest.approx(got.parts["format"][i] + got.parts["reference"][i])
    # exact answers: format and reference both 1 -> total 2.5
    assert got.total == pytest.approx([2.5, 2.5])
    with pytest.raises(RLHFError, match="unknown scorer"):
        make_reward(reward_model=None, verifiable={"nope": 1.0})


def _tiny_reward_model(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from taskloop.models.tiny import build_tokenizer

    tok = build_tokenizer([*SOURCES, "Der Hund rennt", "x"], append_eos=False)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, num_labels=1,
                        pad_token_id=tok.pad_token_id)  # fmt: skip
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_make_reward_adds_a_weighted_reward_model(tmp_path: Path) -> None:
    """The reward model's part is weight × its score of (the task input as the feedback
    store renders it, the response); the total adds the checks."""
    pytest.importorskip("taskloop.rlhf.reward")
    pytest.importorskip("taskloop.rlhf.simulate")
    from taskloop.rlhf.reward import load_reward_model
    from taskloop.rlhf.rewards import REWARD_MODEL_PART, make_reward, reward_prompt
    from taskloop.serve.storage.repo import render_prompt

    folder = _tiny_reward_model(tmp_path / "rm")
    examples = _examples()[:3]
    outputs = ["Der Hund rennt", "x", ""]
    reward = make_reward(reward_model=folder, reward_model_weight=2.0,
                         verifiable={"format": 1.0}, device="cpu")  # fmt: skip
    got = reward(examples, outputs)
    prompts = [reward_prompt(ex) for ex in examples]
    raw = load_reward_model(folder, device="cpu").score(prompts, outputs)
    assert got.parts[REWARD_MODEL_PART] == pytest.approx([2.0 * r for r in raw])
    assert got.total == pytest.approx(
        [2.0 * r + f for r, f in zip(raw, got.parts["format"], strict=True)]
    )
    # the prompt is what the feedback export gives the reward model for the same row
    row = {"source": SOURCES[0], "target": "x"}
    assert prompts[0] == render_prompt("translate", row) == SOURCES[0]
