"""``taskloop rlhf reward`` end to end: an export file and the store in, a trained model,
metrics and a table out; usage errors with hints and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from taskloop.cli import app
from taskloop.errors import ExitStatus
from tests.rlhf.test_feedback import _fill_store
from tests.rlhf.test_reward import tiny_backbone, toy_pairs

runner = CliRunner()
TRAIN = "--epochs 8 --lr 5e-3 --valid-fraction 0.2 --device cpu"


def reward(*args: str | Path) -> Result:
    """``taskloop rlhf reward`` with each argument split at spaces (paths have none)."""
    return runner.invoke(app, ["rlhf", "reward", *(w for a in args for w in str(a).split())])


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_backbone(tmp_path_factory.mktemp("cli-backbone"))


def export_file(path: Path, n: int = 160) -> Path:
    """Toy pairs as GET /v1/feedback/export writes them, a quarter simulated."""
    rows = []
    for i, p in enumerate(toy_pairs(n, seed=5)):
        source = "simulated" if i % 4 == 0 else "human"
        pair = {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "task": "qa"}
        extra = {"feedback_id": i, "margin": None, "other_feedback_id": None}
        rows.append(pair | {"source": source, "weight": 1.0, "origin": "preference"} | extra)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reward_command_trains_and_prints_the_table(backbone: Path, tmp_path: Path):
    data = export_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "rm"
    result = reward(f"--data {data} --backbone {backbone} --out {out}", TRAIN)
    assert result.exit_code == 0, result.output
    assert "held-out pair accuracy" in result.stdout
    assert "1.000" in result.stdout  # the toy pattern is learnt
    assert f"model: {out / 'model'}" in result.stdout
    assert "reliability diagram" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pair_accuracy"] == 1.0
    assert metrics["train_pairs"] + metrics["valid_pairs"] == 160
    assert (out / "model" / "taskloop_thresholds.json").is_file()
    assert json.loads((out / "reward_config.json").read_text())["backbone"] == str(backbone)


def test_reward_command_json_source_and_register(backbone: Path, tmp_path: Path):
    """--source human drops the simulated quarter; --register names the version."""
    data = export_file(tmp_path / "pairs.jsonl")
    result = reward(
        f"--data {data} --backbone {backbone} --out {tmp_path / 'rm'} --source human",
        "--register cli-reward --alias challenger --json",
        TRAIN,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"]["train_pairs"] + payload["metrics"]["valid_pairs"] == 120
    assert payload["registered"] == "models:/cli-reward/1"
    assert payload["threshold"] is not None
    assert len(payload["history"]) == 8


def test_reward_command_from_store(backbone: Path, tmp_path: Path):
    """The store's 2 pairs and 4 rated answers share one prompt: nothing can be held out,
    so the run trains on all of it and says there is no threshold."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    _fill_store(url)
    result = reward(
        f"--from-store --database-url {url} --backbone {backbone} --out {tmp_path / 'rm'}",
        "--epochs 1 --json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"]["train_pairs"] == 2 and payload["metrics"]["train_points"] == 4
    assert payload["threshold"] is None
    assert any("no held-out rows" in w for w in payload["warnings"])


def test_no_data_is_a_usage_error():
    result = reward()
    assert result.exit_code == ExitStatus.USAGE
    assert "no ratings to learn from" in result.output
    assert "taskloop rlhf simulate" in result.output


def test_only_simulated_rows_with_source_human(tmp_path: Path):
    path = tmp_path / "sim.jsonl"
    path.write_text(
        json.dumps({"prompt": "p", "completion": "a", "label": True, "source": "simulated"}) + "\n"
    )
    result = reward(f"--data {path} --source human")
    assert result.exit_code == ExitStatus.USAGE
    assert "no human feedback rows" in result.output
    assert "--source all" in result.output


def test_bad_file_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n')
    result = reward(f"--data {path}")
    assert result.exit_code == ExitStatus.CORRUPT
    assert f"{path}:2: not JSON" in result.output
    assert "hint:" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--source", "robots"], "unknown --source"),
        (["--alias", "challenger"], "--alias needs --register"),
        (["--truncation-side", "middle"], "truncation_side"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], needle: str):
    path = export_file(tmp_path / "pairs.jsonl", n=4)
    result = reward(f"--data {path}", *args)
    assert result.exit_code != 0
    assert needle in result.output
