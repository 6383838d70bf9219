"""Checkpoints: the format version, migrations, and the saved first-format fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from taskloop.train import checkpoint as ckpt
from taskloop.train.config import load_train_config
from taskloop.train.errors import CheckpointError
from taskloop.train.loop import StepLog, train
from taskloop.train.prepare import load_for_training

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v1"


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """A writable copy of the fixture (tests must never change the fixture itself)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "checkpoint_v1"))


def fixture_config(v1: Path, out: Path, *extra: str) -> Any:
    """The settings the fixture was trained with (see its README), with ``extra`` on top."""
    return load_train_config(None, [
        f"model.name={v1 / 'model'}", f"data.train=[{v1 / 'translate.jsonl'}]", f"out={out}",
        "tracking.enabled=false", "data.clean.enabled=false", "run.device=cpu",
        "eval.every_steps=null", "eval.metric=loss", "batch.tokens=null", "batch.size=4",
        "optim.warmup_steps=0", "run.seed=0", "run.log_every=1", *extra,
    ])  # fmt: skip


def write_meta(path: Path, **changes: Any) -> None:
    meta_file = path / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta.update(changes)
    meta_file.write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- fixture


def test_fixture_is_small_and_complete() -> None:
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300_000
    names = {str(p.relative_to(FIXTURE)) for p in files}
    assert {"README.md", "checkpoint.json", "trainer.pt", "translate.jsonl"} <= names
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= names


def test_fixture_of_the_first_format_reads() -> None:
    found = ckpt.read(FIXTURE)
    assert found.step == 2
    assert found.meta["format_version"] == ckpt.FORMAT_VERSION  # migrated when newer
    assert found.meta["kind"] == "seq2seq"
    assert found.model_dir == FIXTURE / "model"
    assert len(found.meta["streams"]) == 1
    state = ckpt.load_trainer_state(found)
    assert state["loop"]["step"] == 2
    assert {"optimizer", "torch_rng"} <= set(state)
    model, tokenizer, kind = load_for_training(str(found.model_dir), "auto")
    assert kind == "seq2seq"
    assert model.config.d_model == 16
    assert tokenizer.pad_token_id == 0


def test_fixture_resumes_training(v1: Path, tmp_path: Path) -> None:
    """Step 3 follows the fixture's step 2: one more optimizer step, and a new checkpoint."""
    losses: dict[int, float] = {}

    def on_step(log: StepLog) -> None:
        losses[log.step] = log.loss

    cfg = fixture_config(v1, tmp_path / "out", "run.max_steps=3", "checkpoint.every_steps=1")
    result = train(cfg, resume=str(v1), on_step=on_step)
    assert result.steps == 3
    assert list(losses) == [3]
    assert losses[3] > 0
    latest = ckpt.latest(tmp_path / "out")
    assert latest is not None
    assert latest.step == 3
    assert latest.meta["format_version"] == ckpt.FORMAT_VERSION
    # The fixture's stream state carried on: step 3 read the batch after step 2's.
    before, after = ckpt.read(v1).meta["streams"][0], latest.meta["streams"][0]
    assert (after["epoch"], after["pos"]) in {
        (before["epoch"], before["pos"] + 1),
        (before["epoch"] + 1, 1),
    }


# ------------------------------------------------------------------------------ format


def test_a_run_writes_the_format_version(v1: Path, tmp_path: Path) -> None:
    cfg = fixture_config(v1, tmp_path / "out", "run.max_steps=2", "checkpoint.every_steps=1")
    train(cfg)
    found = ckpt.list_checkpoints(tmp_path / "out")
    assert [c.step for c in found] == [1, 2]  # keep=2 pruned nothing yet
    for c in found:
        raw = json.loads((c.path / "checkpoint.json").read_text())
        assert raw["format_version"] == ckpt.FORMAT_VERSION
        assert raw["step"] == c.step
        assert raw["kind"] == "seq2seq"
        assert raw["config"]["run"]["max_steps"] == 2
        assert (c.path / "trainer.pt").is_file()
        assert (c.path / "model" / "tokenizer.json").is_file()
    assert not list((tmp_path / "out" / "checkpoints").glob(".tmp-*"))


def test_a_newer_format_is_refused_clearly(v1: Path) -> None:
    write_meta(v1, format_version=ckpt.FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError) as info:
        ckpt.read(v1)
    message = str(info.value)
    assert f"format {ckpt.FORMAT_VERSION + 1} is newer" in message
    assert "checkpoint.json" in message
    assert "upgrade taskloop" in (info.value.hint or "")
    assert info.value.code == "train.checkpoint"


@pytest.mark.parametrize("version", [None, 0, "1", 1.0])
def test_a_missing_or_invalid_version_is_refused(v1: Path, version: Any) -> None:
    write_meta(v1, format_version=version)
    with pytest.raises(CheckpointError, match="no valid format_version"):
        ckpt.read(v1)


def test_migrations_apply_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """v1 → v2 adds ``a``; v2 → v3 reads ``a`` (so the order shows) and renames ``old``."""
    calls: list[int] = []

    def one_to_two(meta: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        assert meta["format_version"] == 1
        return {**meta, "a": 10}

    def two_to_three(meta: dict[str, Any]) -> dict[str, Any]:
        calls.append(2)
        assert meta["format_version"] == 2
        meta["b"] = meta["a"] + 1
        meta["new"] = meta.pop("old")
        return meta

    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 3)
    monkeypatch.setattr(ckpt, "MIGRATIONS", {1: one_to_two, 2: two_to_three})
    original = {"format_version": 1, "step": 5, "old": "x"}
    migrated = ckpt.migrate(original)
    assert calls == [1, 2]
    assert migrated == {"format_version": 3, "step": 5, "a": 10, "b": 11, "new": "x"}
    assert original == {"format_version": 1, "step": 5, "old": "x"}  # not changed in place
    calls.clear()
    assert ckpt.migrate({"format_version": 2, "a": 1, "old": 0})["b"] == 2
    assert calls == [2]
    assert ckpt.migrate({"format_version": 3})["format_version"] == 3
    assert calls == [2]


def test_the_fixture_reads_through_migrations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 2)
    monkeypatch.setattr(ckpt, "MIGRATIONS", {1: lambda m: {**m, "migrated": True}})
    found = ckpt.read(FIXTURE)
    assert found.meta["format_version"] == 2
    assert found.meta["migrated"] is True
    assert found.step == 2


def test_a_gap_in_migrations_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", 3)
    monkeypatch.setattr(ckpt, "MIGRATIONS", {1: lambda m: m})
    with pytest.raises(CheckpointError, match="no migration from format 2"):
        ckpt.migrate({"format_version": 1}, "x/checkpoint.json")


# ----------------------------------------------------------------------- damaged folders


def test_damaged_checkpoints_are_refused(v1: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        ckpt.read(tmp_path / "nothing-here")
    (v1 / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ckpt.read(v1)


def test_a_missing_model_folder_is_refused(v1: Path) -> None:
    shutil.rmtree(v1 / "model")
    with pytest.raises(CheckpointError, match="model folder is missing"):
        ckpt.read(v1)


def test_an_unreadable_trainer_state_is_refused(v1: Path) -> None:
    (v1 / "trainer.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"trainer\.pt unreadable"):
        ckpt.load_trainer_state(ckpt.read(v1))


def test_listing_skips_partial_folders_and_sorts_by_step(v1: Path, tmp_path: Path) -> None:
    root = tmp_path / "out" / "checkpoints"
    root.mkdir(parents=True)
    for step in (2, 10, 9):
        dest = root / f"step-{step:07d}"
        shutil.copytree(v1, dest)
        write_meta(dest, step=step)
    (root / "step-0000011").mkdir()  # interrupted: no checkpoint.json
    shutil.copytree(v1, root / ".tmp-step-0000012")  # never renamed
    assert [c.step for c in ckpt.list_checkpoints(tmp_path / "out")] == [2, 9, 10]
    latest = ckpt.latest(tmp_path / "out")
    assert latest is not None
    assert latest.step == 10
    assert ckpt.latest(tmp_path / "empty") is None
