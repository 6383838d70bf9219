"""Edges of training found in review: configs that cannot stop, model kinds and dtypes,
teachers that cannot teach, per-task validation loss, pacing by loss, a registry that
cannot be reached, Marian language prefixes, QA's further answers, encrypted inputs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

from taskloop.blob import encode_zip_to_utf8_blob
from taskloop.blob.crypto import generate_key
from taskloop.data.pairs import example_to_pairs
from taskloop.data.records import QAExample, TranslateExample, Where
from taskloop.models.errors import ModelKindError
from taskloop.models.tiny import build_tiny_model
from taskloop.train.config import load_train_config
from taskloop.train.errors import DistillError, TrainConfigError
from taskloop.train.evaluation import eval_items
from taskloop.train.loop import train
from taskloop.train.prepare import load_for_training

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "where", "is", "the", "in"]
HERE = Where(file="t.jsonl", row=1)


def rows(n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(n):
        a, b = WORDS[i % 8], WORDS[(i * 3 + 1) % 8]
        out.append({"id": f"t{i}", "task": "translate", "source": f"{a} {b}", "target": f"{a} {b}"})
        out.append({
            "id": f"q{i}", "task": "qa", "question": f"where is the {a}",
            "context": f"the {a} is in the {b}", "answers": [b],
        })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edges")
    data = root / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(40)), "utf-8")
    texts = [*WORDS, "question", "context", "answer", ":", "unanswerable"]
    return {
        "data": data,
        "seq2seq": build_tiny_model(root / "s2s", "seq2seq", texts=texts, width=32),
        "causal": build_tiny_model(root / "causal", "causal", texts=texts, width=32),
    }


def cfg_for(setup: dict[str, Path], out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_train_config(None, [
        f"model.name={setup['seq2seq']}", f"data.train=[{setup['data']}]", f"out={out}",
        "tracking.enabled=false", "data.clean.enabled=false", "run.device=cpu",
        "run.max_steps=4", "eval.every_steps=2", "eval.metric=loss", "batch.tokens=null",
        "batch.size=8", "checkpoint.every_steps=null", *extra,
    ])  # fmt: skip


def test_a_config_that_never_stops_is_refused(setup: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match="never ends"):
        cfg_for(setup, tmp_path, "run.max_steps=null", "run.epochs=null")
    with pytest.raises(TrainConfigError, match=r"eval\.metric"):
        cfg_for(setup, tmp_path, "eval.metric=bleu")


def test_models_train_in_float32_and_kinds_are_checked(
    tmp_path: Path, setup: dict[str, Path]
) -> None:
    model, _, _ = load_for_training(str(setup["seq2seq"]))
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "bf16" / name).write_bytes((setup["seq2seq"] / name).read_bytes())
    again, _, kind = load_for_training(str(tmp_path / "bf16"))
    assert kind == "seq2seq"
    assert {p.dtype for p in again.parameters()} == {torch.float32}
    with pytest.raises(ModelKindError, match="is a seq2seq model, not causal"):
        load_for_training(str(setup["seq2seq"]), "causal")


def test_teachers_are_checked_before_training(setup: dict[str, Path], tmp_path: Path) -> None:
    only_qa = cfg_for(setup, tmp_path / "a", f"distill.teachers={{qa: {setup['seq2seq']}}}")
    with pytest.raises(DistillError, match="no teacher for task translate"):
        train(only_qa)
    assert not (tmp_path / "a" / "best").exists()
    wrong_kind = cfg_for(setup, tmp_path / "b", f"distill.teachers={{'*': {setup['causal']}}}")
    with pytest.raises(DistillError, match=r"teacher '\*'.*causal model, not seq2seq"):
        train(wrong_kind)


def test_validation_loss_is_per_task_and_no_final_checkpoint_when_off(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    result = train(cfg_for(setup, tmp_path))
    last = result.history[-1]
    assert set(last.tasks) == {"translate", "qa"}
    per_task = [last.tasks[t]["loss"] for t in ("translate", "qa")]
    assert per_task[0] != per_task[1]
    assert min(per_task) <= last.loss <= max(per_task)  # the overall loss is their mix
    assert not (tmp_path / "checkpoints").exists()


def test_pacing_follows_the_loss_when_that_is_the_metric(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """Validation loss falls from the first to the second evaluation at lr 3e-3, so each
    task's competence rises by curriculum.step (0.3 → 0.5) the second time."""
    cfg = cfg_for(
        setup, tmp_path, "curriculum.enabled=true", "curriculum.step=0.2", "optim.lr=3e-3",
        "optim.warmup_steps=0",
    )  # fmt: skip
    result = train(cfg)
    first, second = result.history[0], result.history[1]
    for task in ("translate", "qa"):
        assert second.tasks[task]["loss"] < first.tasks[task]["loss"]
        assert first.competence[task] == pytest.approx(0.3)
        assert second.competence[task] == pytest.approx(0.5)


def test_an_unreachable_registry_costs_a_warning_not_the_run(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    cfg = cfg_for(setup, tmp_path, "tracking.enabled=true", "tracking.uri=nosuchscheme://x")
    result = train(cfg)
    assert any("not logged to the registry" in w for w in result.data.warnings)
    saved = json.loads((tmp_path / "result.json").read_text("utf-8"))
    assert saved["steps"] == 4 and saved["run_id"] is None


def test_marian_language_prefix_follows_the_vocabulary() -> None:
    ex = TranslateExample(id="a", where=HERE, source="a dog", target="ein Hund", target_lang="de")
    multi = example_to_pairs(ex, model_type="marian", vocab={">>de<<", ">>fr<<", "▁a"})
    single = example_to_pairs(ex, model_type="marian", vocab={"▁a"})
    assert multi[0].source == ">>de<< a dog"
    assert single[0].source == "a dog"


def test_qa_trains_on_the_first_answer_and_is_scored_against_all() -> None:
    ex = QAExample(
        id="q",
        where=HERE,
        question="where?",
        context="in the park by the lake",
        answers=["the park", "park", "the park"],
    )
    (pair,) = example_to_pairs(ex)
    assert pair.target == "the park" and pair.alternatives == ("park",)
    (item,) = eval_items([pair])
    assert item.references == ("the park", "park")


def test_encrypted_blob_inputs_take_the_key_file(setup: dict[str, Path], tmp_path: Path) -> None:
    key = generate_key()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data/train.jsonl", setup["data"].read_text("utf-8"))
    (tmp_path / "tasks.blob").write_text(encode_zip_to_utf8_blob(buf.getvalue(), key=key))
    (tmp_path / "blob.key").write_text(key.hex() + "\n")
    base = [f"data.train=[{tmp_path / 'tasks.blob'}]", "run.max_steps=1", "eval.every_steps=null"]
    cfg = cfg_for(setup, tmp_path / "run", *base, f"data.key_file={tmp_path / 'blob.key'}")
    assert train(cfg).data.train_pairs == {"translate": 38, "qa": 38}
