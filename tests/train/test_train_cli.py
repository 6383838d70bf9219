"""``taskloop train`` and ``taskloop pretrain`` from the command line (in-process CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.models.tiny import build_tiny_model
from tests.train.copytask import copy_rows, write_jsonl

VOCAB = [
    "red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star",
    "rain", "wind", "fire",
]  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = write_jsonl(root / "translate.jsonl", copy_rows(40, VOCAB))
    return build_tiny_model(root / "model", "causal", texts=VOCAB), data


def fast(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "tracking.enabled=false", f"model.name={model}", f"data.train=[{data}]", f"out={out}",
        "data.clean.enabled=false", "run.device=cpu", "run.max_steps=2", "eval.metric=loss",
        "eval.every_steps=null", "batch.tokens=null", "batch.size=8",
    ]  # fmt: skip


def test_a_first_override_may_hold_a_path(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """``model.name=runs/x/best`` first: a KEY=VALUE whose value has slashes is not a file."""
    model, data = setup
    args = fast(model, data, tmp_path / "run")
    args.insert(0, args.pop(1))  # model.name=/tmp/.../model first
    result = runner.invoke(app, ["train", *args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2


def test_train_with_overrides_only_prints_json(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = setup
    result = runner.invoke(app, ["train", *fast(model, data, tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2
    assert summary["stopped"] == "max_steps"
    assert summary["data"]["train_pairs"] == {"translate": 38}
    assert Path(summary["model_dir"]) == tmp_path / "run" / "best"
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["run"]["max_steps"] == 2


def test_train_with_a_config_file_and_a_table(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = setup
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"model:\n  name: {model}\nrun:\n  max_steps: 5\n")
    args = [a for a in fast(model, data, tmp_path / "run") if not a.startswith("model.")]
    result = runner.invoke(app, ["train", str(cfg), *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained 2 steps (max_steps)" in result.stdout  # the override beat the file's 5
    assert "translate" in result.stdout


def test_unknown_key_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "model.name=x", "optim.lrr=1"])
    assert result.exit_code == 2
    assert "error[train.config]" in result.output
    assert "optim.lrr" in result.output
    assert "Traceback" not in result.output


def test_missing_data_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "model.name=x", f"data.train=[{tmp_path / 'nope.jsonl'}]",
              "tracking.enabled=false", "data.clean.enabled=false", f"out={tmp_path / 'o'}"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "error[train.data]" in result.output
    assert "Traceback" not in result.output


def test_resume_without_a_checkpoint_exits_with_the_checkpoint_status(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = setup
    result = runner.invoke(app, ["train", *fast(model, data, tmp_path / "run"), "--resume"])
    assert result.exit_code not in (0, 1)
    assert "error[train.checkpoint]" in result.output
    assert "nothing to resume" in result.output


def test_pretrain_without_text_exits_2() -> None:
    result = runner.invoke(app, ["pretrain", "model.name=x"])
    assert result.exit_code == 2
    assert "error[train.config]" in result.output
    assert "pretrain.text" in result.output
    result = runner.invoke(app, ["pretrain", "model.name=x", "pretrain.text=[a.txt]"])
    assert result.exit_code == 2  # steps still 0


def test_pretrain_writes_the_adapted_model(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, _ = setup
    text = tmp_path / "domain.txt"
    text.write_text("\n".join(" ".join(VOCAB[i : i + 6]) for i in range(10)))
    out = tmp_path / "pt"
    result = runner.invoke(
        app, ["pretrain", "pretrain.steps=3", f"model.name={model}", f"pretrain.text=[{text}]",
              f"out={out}", "run.device=cpu", "batch.tokens=null", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"adapted model: {out / 'pretrained'}" in result.stdout
    assert (out / "pretrained" / "config.json").is_file()
