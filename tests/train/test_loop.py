"""The supervised training loop: loss, learning, exact resume, multi-task, stopping rules.

Every run uses a tiny model built from config (1 layer, width 32) on a toy copy task
(source == target, 2–6 words from a 15-word vocabulary), so a few dozen steps on a CPU
are enough to see the loss fall.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from taskloop.data.pairs import Pair
from taskloop.models.tiny import build_tiny_model
from taskloop.train import loop as loop_mod
from taskloop.train.batching import Encoded, collate
from taskloop.train.config import TrainConfig, load_train_config
from taskloop.train.errors import CheckpointError, TrainConfigError, TrainDataError
from taskloop.train.loop import StepLog, TrainResult, fit_pairs, forward_loss, train
from taskloop.train.losses import shift_for_causal, token_cross_entropy
from taskloop.train.prepare import load_for_training, split_eval
from taskloop.train.runtime import lr_factor
from tests.train.copytask import copy_rows as shared_copy_rows
from tests.train.copytask import write_jsonl

VOCAB = [
    "red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star",
    "rain", "wind", "fire",
]  # fmt: skip
QA_WORDS = ["question", "context", "answer", ":", "where", "is", "the", "in", "unanswerable"]


def copy_rows(n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    return shared_copy_rows(n, VOCAB, seed=seed)


def qa_rows(n: int = 40, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        thing, place = rng.choice(VOCAB[:8]), rng.choice(VOCAB[8:])
        rows.append({
            "id": f"q{i}", "task": "qa", "question": f"where is the {thing}",
            "context": f"the {thing} is in the {place}", "answers": [place],
        })  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    texts = [*VOCAB, *QA_WORDS]
    return {
        kind: build_tiny_model(root / kind, kind, texts=texts, layers=1, width=32)  # type: ignore[arg-type]
        for kind in ("seq2seq", "causal")
    }


@pytest.fixture(scope="module")
def copy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "copy.jsonl", copy_rows())


def config(model: Path, data: list[Path], out: Path, *extra: str) -> TrainConfig:
    """A fast config: no tracking, no cleaning, evaluation on loss at the end only."""
    paths = ", ".join(str(p) for p in data)
    return load_train_config(None, [
        f"model.name={model}", f"data.train=[{paths}]", f"out={out}",
        "tracking.enabled=false", "data.clean.enabled=false", "run.device=cpu",
        "run.log_every=1", "eval.every_steps=null", "eval.metric=loss",
        "checkpoint.every_steps=null", "optim.warmup_steps=0", "batch.tokens=null",
        "batch.size=16", *extra,
    ])  # fmt: skip


def run(cfg: TrainConfig, **kw: Any) -> tuple[TrainResult, dict[int, float]]:
    losses: dict[int, float] = {}

    def on_step(log: StepLog) -> None:
        losses[log.step] = log.loss

    return train(cfg, on_step=on_step, **kw), losses


def state_of(model_dir: Path, kind: str) -> dict[str, torch.Tensor]:
    model, _, _ = load_for_training(str(model_dir), kind)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# -------------------------------------------------------------------------- the loss


def test_token_cross_entropy_by_hand() -> None:
    """Logits ln[1, 1, 2] give p = [¼, ¼, ½] at every position.

    Labels [[2, 0, -100]]: CE = (−ln ½ − ln ¼) / 2 real tokens = (ln 2 + 2 ln 2)/2 = 1.5 ln 2.
    The -100 position is left out of both the sum and the count.
    """
    logits = torch.log(torch.tensor([1.0, 1.0, 2.0])).expand(1, 3, 3).clone()
    labels = torch.tensor([[2, 0, -100]])
    assert float(token_cross_entropy(logits, labels)) == pytest.approx(1.5 * math.log(2))
    assert float(token_cross_entropy(logits, labels, reduction="sum")) == pytest.approx(
        3 * math.log(2)
    )
    per_token = token_cross_entropy(logits, labels, reduction="none")
    assert per_token.shape == (1, 3)
    assert per_token[0].tolist() == pytest.approx([math.log(2), 2 * math.log(2), 0.0])


def test_padding_positions_do_not_change_the_loss() -> None:
    """Whatever the logits at -100 positions, and however many there are, the mean stays."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, -100, -100], [3, -100, -100, -100]])
    base = float(token_cross_entropy(logits, labels))
    noisy = logits.clone()
    noisy[0, 2:] = torch.randn(2, 7) * 50
    noisy[1, 1:] = torch.randn(3, 7) * 50
    assert float(token_cross_entropy(noisy, labels)) == pytest.approx(base, abs=1e-6)
    # The mean over the 3 real tokens, not over the 8 cells.
    by_hand = -sum(
        float(torch.log_softmax(logits[b, t], -1)[labels[b, t]])
        for b, t in [(0, 0), (0, 1), (1, 0)]
    )
    assert base == pytest.approx(by_hand / 3, rel=1e-6)
    padded = torch.cat([logits, torch.randn(2, 3, 7)], dim=1)
    more_pad = torch.cat([labels, torch.full((2, 3), -100)], dim=1)
    assert float(token_cross_entropy(padded, more_pad)) == pytest.approx(base, abs=1e-6)


def test_label_smoothing_matches_the_formula() -> None:
    """Per token: (1−ε)·CE + ε·mean_v(−ln p_v).

    p = [¼, ¼, ½]: mean_v(−ln p_v) = (2 ln 2 + 2 ln 2 + ln 2)/3 = (5/3) ln 2.
    Labels [2, 0]: CE mean = 1.5 ln 2, so the loss is 0.9·1.5 ln 2 + 0.1·(5/3) ln 2.
    """
    logits = torch.log(torch.tensor([1.0, 1.0, 2.0])).expand(1, 3, 3).clone()
    labels = torch.tensor([[2, 0, -100]])
    eps = 0.1
    expected = (1 - eps) * 1.5 * math.log(2) + eps * (5 / 3) * math.log(2)
    got = float(token_cross_entropy(logits, labels, label_smoothing=eps))
    assert got == pytest.approx(expected)
    assert got != pytest.approx(float(token_cross_entropy(logits, labels)))


def test_shift_for_causal() -> None:
    logits = torch.arange(12.0).view(1, 4, 3)
    labels = torch.tensor([[10, 11, 12, 13]])
    shifted_logits, shifted_labels = shift_for_causal(logits, labels)
    assert shifted_logits.shape == (1, 3, 3)
    assert torch.equal(shifted_logits, logits[:, :3])
    assert shifted_labels.tolist() == [[11, 12, 13]]


def _batch(kind: str, model: Any) -> dict[str, torch.Tensor]:
    data = Encoded("t", source=[[5, 6, 7, 1], [8, 1]], target=[[9, 10, 1], [11, 12, 13, 14, 1]])
    if kind == "causal":
        data = Encoded("t", source=[[5, 6, 7], [8]], target=[[9, 10, 1], [11, 12, 13, 14, 1]])
    return collate(
        data, np.array([0, 1]), kind=kind, pad_id=model.config.pad_token_id,
        decoder_start_id=getattr(model.config, "decoder_start_token_id", None),
    )  # fmt: skip


def test_forward_loss_equals_the_hf_models_own_loss_seq2seq(models: dict[str, Path]) -> None:
    """Token CE on logits, padding masked: what T5 computes itself from ``labels``."""
    model, _, _ = load_for_training(str(models["seq2seq"]), "seq2seq")
    model.eval()
    batch = _batch("seq2seq", model)
    with torch.no_grad():
        ours, tokens = forward_loss(model, batch, kind="seq2seq", label_smoothing=0.0)
    assert tokens == 8  # 3 + 5 real target tokens
    with torch.no_grad():
        theirs = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            labels=batch["labels"],
        ).loss  # fmt: skip
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    assert float(ours) > 1.0  # random weights: near ln(vocab), not an MSE of ids


def test_forward_loss_equals_the_hf_models_own_loss_causal(models: dict[str, Path]) -> None:
    """GPT-2 shifts labels itself; positions follow the left padding as in forward_loss."""
    model, _, _ = load_for_training(str(models["causal"]), "causal")
    model.eval()
    batch = _batch("causal", model)
    with torch.no_grad():
        ours, tokens = forward_loss(model, batch, kind="causal", label_smoothing=0.0)
    assert tokens == 8
    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        theirs = model(**batch, position_ids=position_ids).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    with torch.no_grad():
        smoothed, _ = forward_loss(model, batch, kind="causal", label_smoothing=0.2)
    assert float(smoothed) != pytest.approx(float(ours))


def test_lr_factor_warmup_and_schedules() -> None:
    """Warm-up (step+1)/warmup; linear 1−progress; cosine ½(1+cos πp); inverse √(w/step)."""
    assert lr_factor(0, 0.0, warmup=4, schedule="linear") == 0.25
    assert lr_factor(3, 0.0, warmup=4, schedule="linear") == 1.0
    assert lr_factor(10, 0.25, warmup=4, schedule="linear") == 0.75
    assert lr_factor(10, 0.5, warmup=0, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(10, 1.0, warmup=0, schedule="cosine") == pytest.approx(0.0)
    assert lr_factor(16, 0.9, warmup=4, schedule="inverse_sqrt") == pytest.approx(0.5)
    assert lr_factor(99, 0.9, warmup=0, schedule="constant") == 1.0


def test_split_eval_is_deterministic_per_task() -> None:
    from taskloop.data.records import TranslateExample, Where

    examples = [
        TranslateExample(id=str(i), where=Where(file="f", row=i), source="a", target="a")
        for i in range(40)
    ]
    train_a, held_a = split_eval(examples, 0.1, seed=3)
    _, held_b = split_eval(examples, 0.1, seed=3)
    assert [e.id for e in held_a] == [e.id for e in held_b]
    assert len(held_a) == 4
    assert len(train_a) == 36
    assert {e.id for e in train_a} | {e.id for e in held_a} == {str(i) for i in range(40)}
    assert split_eval(examples[:1], 0.5, seed=0) == (examples[:1], [])  # keeps one to train
    assert split_eval(examples, 0.0, seed=0) == (examples, [])


# ------------------------------------------------------------------ learning a copy task


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_loss_falls_and_every_parameter_changes(
    kind: str, models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    cfg = config(models[kind], [copy_file], tmp_path / "run", "run.max_steps=40", "optim.lr=3e-3")
    result, losses = run(cfg)
    assert result.steps == 40
    assert result.stopped == "max_steps"
    assert sorted(losses) == list(range(1, 41))
    first, last = (
        np.mean([losses[s] for s in range(1, 6)]),
        np.mean([losses[s] for s in range(36, 41)]),
    )
    assert last < 0.85 * first, (first, last)
    before = state_of(models[kind], kind)
    after = state_of(result.model_dir, kind)
    assert before.keys() == after.keys()
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert unchanged == []
    # What the run leaves behind
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    saved = json.loads((tmp_path / "run" / "best" / "taskloop_config.json").read_text())
    assert saved["model"]["name"] == str(models[kind])
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["steps"] == 40
    assert result.data.train_pairs["translate"] + result.data.eval_pairs["translate"] == 200
    assert result.train_tokens > 0


# ------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_resume_from_a_checkpoint_is_exact(
    kind: str, models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    """Dropout is on (0.1 in both tiny models), so equal losses need the RNG restored too."""
    args = ("run.max_steps=20", "checkpoint.every_steps=10", "optim.lr=3e-3")
    _, losses_a = run(config(models[kind], [copy_file], tmp_path / "a", *args))
    step10 = tmp_path / "a" / "checkpoints" / "step-0000010"
    assert step10.is_dir()
    result_b, losses_b = run(
        config(models[kind], [copy_file], tmp_path / "b", *args), resume=str(step10)
    )
    assert sorted(losses_b) == list(range(11, 21))
    for step in range(11, 21):
        assert losses_b[step] == pytest.approx(losses_a[step], abs=1e-6), step
    assert result_b.steps == 20
    # A run that starts afresh does not give the same step-11 loss (the check can fail).
    _, fresh = run(config(models[kind], [copy_file], tmp_path / "c", "run.max_steps=11"))
    assert fresh[11] != pytest.approx(losses_a[11], abs=1e-6)


def test_resume_true_takes_the_latest_checkpoint(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    args = ("run.max_steps=12", "checkpoint.every_steps=4", "checkpoint.keep=3")
    _, losses_a = run(config(models["causal"], [copy_file], tmp_path / "a", *args))
    names = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert names == ["step-0000004", "step-0000008", "step-0000012"]  # keep=3 pruned step 4? no
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-0000012")
    _, losses_b = run(config(models["causal"], [copy_file], tmp_path / "b", *args), resume=True)
    assert sorted(losses_b) == [9, 10, 11, 12]
    assert [losses_b[s] for s in (9, 10, 11, 12)] == pytest.approx(
        [losses_a[s] for s in (9, 10, 11, 12)], abs=1e-6
    )


def test_checkpoints_are_pruned_to_keep(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    args = ("run.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep=2")
    run(config(models["causal"], [copy_file], tmp_path / "a", *args))
    names = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert names == ["step-0000004", "step-0000006"]


def test_resume_without_a_checkpoint_fails(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    cfg = config(models["causal"], [copy_file], tmp_path / "empty", "run.max_steps=2")
    with pytest.raises(CheckpointError, match="nothing to resume") as info:
        train(cfg, resume=True)
    assert info.value.code == "train.checkpoint"
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        train(cfg, resume=str(tmp_path / "nowhere"))


# ----------------------------------------------------------------------------- multi-task


def test_two_tasks_train_together_and_are_both_evaluated(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    qa_file = write_jsonl(tmp_path / "qa.jsonl", qa_rows())
    cfg = config(
        models["seq2seq"], [copy_file, qa_file], tmp_path / "run", "run.max_steps=6",
        "eval.metric=auto", "eval.max_new_tokens=6", "data.eval_max_items=8",
        "data.eval_fraction=0.1",
    )  # fmt: skip
    result, _ = run(cfg)
    assert set(result.data.train_pairs) == {"translate", "qa"}
    assert result.data.train_pairs["qa"] + result.data.eval_pairs["qa"] == 40
    assert set(result.final) == {"translate", "qa"}
    assert {"bleu", "loss"} <= set(result.final["translate"])
    assert {"f1", "exact", "loss"} <= set(result.final["qa"])
    assert set(result.history[-1].tasks) == {"translate", "qa"}


def _count_tasks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    picked: list[int] = []
    original: Callable[..., int] = loop_mod.pick_task

    def recording(probs: np.ndarray, seed: int, micro_step: int) -> int:
        task = original(probs, seed, micro_step)
        picked.append(task)
        return task

    monkeypatch.setattr(loop_mod, "pick_task", recording)
    return picked


def test_sampling_temperature_changes_each_tasks_share(
    models: dict[str, Path], copy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 copy rows vs 20 QA rows (minus 5% held out: 190 vs 19).

    T=1: p(qa) = 19/209 ≈ 0.09; T=50: 19^0.02 / (19^0.02 + 190^0.02) ≈ 0.488.
    Over 60 micro-batches that is about 5 against about 29.
    """
    qa_file = write_jsonl(tmp_path / "qa.jsonl", qa_rows(20))
    shares = {}
    for temperature in (1.0, 50.0):
        picked = _count_tasks(monkeypatch)
        cfg = config(
            models["causal"], [copy_file, qa_file], tmp_path / f"t{temperature}",
            "run.max_steps=30", "batch.grad_accum=2", f"data.sampling_temperature={temperature}",
        )  # fmt: skip
        result, _ = run(cfg)
        assert list(result.data.train_pairs) == ["translate", "qa"]
        assert len(picked) == 60
        shares[temperature] = picked.count(1) / len(picked)
    assert shares[1.0] < 0.2
    assert shares[50.0] > 0.35


# ------------------------------------------------------------------- curriculum, stopping


def test_curriculum_run_reports_competence_and_starts_restricted(
    models: dict[str, Path], copy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """190 training rows, start 0.3: the first pool holds ceil(0.3·190) = 57 rows."""
    from taskloop.train.batching import TaskStream

    pools: list[int] = []
    original = TaskStream.restrict

    def recording(self: TaskStream, allowed: np.ndarray) -> None:
        pools.append(len(allowed))
        original(self, allowed)

    monkeypatch.setattr(TaskStream, "restrict", recording)
    cfg = config(
        models["seq2seq"], [copy_file], tmp_path / "run", "run.max_steps=6",
        "curriculum.enabled=true", "curriculum.start=0.3", "eval.every_steps=3",
        "eval.metric=auto", "eval.max_new_tokens=4", "data.eval_max_items=6",
    )  # fmt: skip
    result, _ = run(cfg)
    assert result.steps == 6
    assert pools[0] == math.ceil(0.3 * 190)
    assert [h.step for h in result.history] == [3, 6]
    for h in result.history:
        assert set(h.competence) == {"translate"}
        assert 0 < h.competence["translate"] <= 1
    report = result.curriculum
    assert report["competence"]["translate"] == result.history[-1].competence["translate"]
    assert [e["step"] for e in report["history"]["translate"]] == [3, 6]


def test_curriculum_off_leaves_every_row_allowed(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    cfg = config(
        models["causal"], [copy_file], tmp_path / "run", "run.max_steps=2",
        "checkpoint.every_steps=2",
    )  # fmt: skip
    result, _ = run(cfg)
    meta = json.loads(
        (tmp_path / "run" / "checkpoints" / "step-0000002" / "checkpoint.json").read_text()
    )
    assert len(meta["streams"][0]["allowed"]) == result.data.train_pairs["translate"] == 190
    assert meta["pacing"] == {}


def test_early_stopping_stops_before_max_steps(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    """lr 1e-12: the validation loss cannot improve by min_delta, so patience 1 stops at the
    second evaluation (step 4)."""
    cfg = config(
        models["causal"], [copy_file], tmp_path / "run", "run.max_steps=50",
        "optim.lr=1e-12", "eval.every_steps=2", "eval.patience=1", "eval.min_delta=0.001",
    )  # fmt: skip
    result, _ = run(cfg)
    assert result.stopped == "early_stopping"
    assert result.steps == 4
    assert result.best_step == 2
    assert [h.step for h in result.history] == [2, 4]


def test_epochs_set_the_number_of_steps(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    """190 rows in batches of 16 → 12 batches an epoch; 0.5 epochs → ceil(6) = 6 steps."""
    cfg = config(models["causal"], [copy_file], tmp_path / "run", "run.epochs=0.5")
    result, _ = run(cfg)
    assert result.stopped == "epochs"
    assert result.steps == 6


def test_time_budget_stops_the_run(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    cfg = config(
        models["causal"], [copy_file], tmp_path / "run", "run.time_budget_s=0.000001",
        "run.epochs=100",
    )  # fmt: skip
    result, _ = run(cfg)
    assert result.stopped == "time_budget"
    assert result.steps < 100


def test_no_labels_and_no_data_fail_clearly(models: dict[str, Path], tmp_path: Path) -> None:
    unlabeled = write_jsonl(
        tmp_path / "translate.jsonl", [{"id": "1", "task": "translate", "source": "red cat"}] * 3
    )
    cfg = config(models["causal"], [unlabeled], tmp_path / "run", "run.max_steps=2")
    with pytest.raises(TrainDataError, match="has a label"):
        train(cfg)
    cfg = config(models["causal"], [], tmp_path / "run", "run.max_steps=2")
    with pytest.raises(TrainConfigError, match=r"data\.train is empty"):
        train(cfg)


# ----------------------------------------------------------------------------- accelerate


def test_accelerate_path_runs_on_the_cpu_twice_in_one_process(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    """Accelerator(cpu=True) twice: its global state must not refuse the second run."""
    for name in ("a", "b"):
        cfg = config(models["causal"], [copy_file], tmp_path / name, "run.max_steps=3",
                     "run.accelerate=on", "checkpoint.every_steps=3")  # fmt: skip
        result, losses = run(cfg)
        assert result.steps == 3
        assert sorted(losses) == [1, 2, 3]
        assert (tmp_path / name / "checkpoints" / "step-0000003" / "model").is_dir()
    # Plain PyTorch and Accelerate give the same first-step loss on the same data.
    _, plain = run(config(models["causal"], [copy_file], tmp_path / "p", "run.max_steps=1"))
    _, acc = run(config(models["causal"], [copy_file], tmp_path / "q", "run.max_steps=1",
                        "run.accelerate=on"))  # fmt: skip
    assert acc[1] == pytest.approx(plain[1], abs=1e-5)


# ------------------------------------------------------------------------------ fit_pairs


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_fit_pairs_returns_a_loss_per_step_and_it_falls(kind: str, models: dict[str, Path]) -> None:
    model, tokenizer, _ = load_for_training(str(models[kind]), kind)
    pairs = [
        Pair("translate", r["source"], r["target"], r["id"], f"copy.jsonl:{i}")
        for i, r in enumerate(copy_rows(64))
    ]
    seen: list[int] = []
    losses = fit_pairs(
        model, tokenizer, pairs, kind=kind, steps=30, lr=3e-3, batch_size=16,
        after_step=lambda m: seen.append(id(m)),
    )  # fmt: skip
    assert len(losses) == 30
    assert seen == [id(model)] * 30
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert not model.training


def test_curriculum_resume_is_exact(
    models: dict[str, Path], copy_file: Path, tmp_path: Path
) -> None:
    """Pacing after the resume must use the difficulties of the original run (the loss part
    was measured on the model before training, not on the resumed one)."""
    args = (
        "run.max_steps=12", "checkpoint.every_steps=4", "checkpoint.keep=5", "optim.lr=3e-3",
        "curriculum.enabled=true", "curriculum.start=0.3", "curriculum.step=0.3",
        "eval.every_steps=2", "eval.metric=auto", "eval.max_new_tokens=6",
        "data.eval_max_items=10", "eval.patience=null",
    )  # fmt: skip
    result_a, losses_a = run(config(models["seq2seq"], [copy_file], tmp_path / "a", *args))
    step4 = tmp_path / "a" / "checkpoints" / "step-0000004"
    result_b, losses_b = run(
        config(models["seq2seq"], [copy_file], tmp_path / "b", *args), resume=str(step4)
    )
    assert [h.competence for h in result_b.history] == [h.competence for h in result_a.history]
    for step in range(5, 13):
        assert losses_b[step] == pytest.approx(losses_a[step], abs=1e-6), step


def test_pair_losses_do_not_depend_on_left_padding(models: dict[str, Path]) -> None:
    """A causal pair's loss alone equals its loss batched with a longer (padding) row."""
    from taskloop.train.loop import pair_losses
    from taskloop.train.runtime import Runtime

    model, tok, _ = load_for_training(str(models["causal"]), "causal")
    rt = Runtime(torch.device("cpu"), None)
    both = Encoded("t", [[5, 6, 7, 8, 9, 10], [5]], [[11, 1], [12, 1]])
    alone = Encoded("t", [[5]], [[12, 1]])
    kw: dict[str, Any] = {"kind": "causal", "pad_id": tok.pad_token_id, "start_id": None}
    batched = pair_losses(model, both, rt, **kw)
    single = pair_losses(model, alone, rt, **kw)
    assert batched[1] == pytest.approx(single[0], abs=1e-5)
