"""`taskloop rlhf dpo` end to end on a /v1/feedback/export "pairs" file: the held-out
accuracy rises, the policy loads, and bad inputs exit with a status and a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.errors import ExitStatus
from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model
from tests.evaluate.test_explain import build_classifier
from tests.rlhf.test_direct import SUBJECTS, TEXTS

runner = CliRunner()
TOY = ["--epochs", "4", "--batch-size", "4", "--lr", "3e-3", "--beta", "0.5",
       "--valid-fraction", "0.25", "--max-prompt-tokens", "16", "--max-response-tokens", "8",
       "--device", "cpu"]  # fmt: skip


def export_rows(source: str = "human") -> list[dict[str, object]]:
    """Rows as GET /v1/feedback/export?shape=pairs writes them."""
    return [
        {
            "prompt": f"tell me about the {s}",
            "chosen": f"the {s} is green",
            "rejected": f"the {s} is red",
            "task": "qa",
            "source": source,
            "weight": 1.0,
            "feedback_id": i + 1,
            "margin": None,
            "other_feedback_id": None,
            "origin": "preference",
        }
        for i, s in enumerate(SUBJECTS)
    ]


def thumb_rows() -> list[dict[str, object]]:
    """Rows as GET /v1/feedback/export?shape=thumbs writes them."""
    return [
        {
            "prompt": f"tell me about the {s}",
            "completion": f"the {s} is {color}",
            "label": color == "green",
            "task": "qa",
            "source": "human",
            "weight": 1.0,
            "feedback_id": 100 + i,
        }
        for i, s in enumerate(SUBJECTS)
        for color in ("green", "red")
    ]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("cli-policy"), "seq2seq", texts=TEXTS, seed=1)


def test_dpo_on_an_export_file_json(policy: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", export_rows())
    out = tmp_path / "policy"
    args = ["rlhf", "dpo", "--policy", str(policy), "--data", str(data), "--out", str(out)]
    result = runner.invoke(app, [*args, *TOY, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["loss"] == "dpo" and summary["evaluated_on"] == "valid"
    assert summary["before"]["reward_accuracy"] == 0.5
    assert summary["after"]["reward_accuracy"] == 1.0
    assert summary["after"]["margin"] > 0.2
    assert summary["counts"] == {"train": 12, "valid": 4, "pairs_given": 16, "points_given": 0}
    assert load_model(str(out)).kind == "seq2seq"
    assert json.loads((out / "summary.json").read_text())["after"] == summary["after"]


def test_table_output_and_repeated_data(policy: Path, tmp_path: Path) -> None:
    """Two --data files (pairs and thumbs): KTO learns from the thumbs, the table shows
    before and after, and the last line says where the policy went."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", export_rows())
    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", thumb_rows())
    out = tmp_path / "kto"
    result = runner.invoke(app, [
        "rlhf", "dpo", "--policy", str(policy), "--data", str(pairs), "--data", str(thumbs),
        "--loss", "kto", "--out", str(out), *TOY,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "preference accuracy of the implicit reward" in text
    assert "before" in text and "after" in text
    assert f"policy saved to {out}" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == "kto" and summary["counts"]["points_given"] == 32
    assert summary["after"]["reward_accuracy"] == 1.0
    assert "16 preference pairs ignored" in " ".join(summary["warnings"])


def test_source_filter_and_missing_rows(policy: Path, tmp_path: Path) -> None:
    """Only simulated pairs and --source human: nothing to learn from (exit 4, hint)."""
    data = write_jsonl(tmp_path / "sim.jsonl", export_rows("simulated"))
    base = ["rlhf", "dpo", "--policy", str(policy), "--data", str(data), "--out", str(tmp_path)]
    result = runner.invoke(app, [*base, "--source", "human"])
    assert result.exit_code == ExitStatus.CORRUPT, result.output
    assert "no preference pairs" in result.output and "hint:" in result.output
    result = runner.invoke(app, [*base, "--loss", "kto"])
    assert result.exit_code == ExitStatus.CORRUPT, result.output
    assert "no thumbs" in result.output and "--loss dpo" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "no ratings to learn from"),
        (["--loss", "ppo"], "not one of dpo, ipo, kto"),
        (["--beta", "0"], "beta must be > 0"),
        (["--database-url", "sqlite:///x.db", "--data", "{data}"], "--database-url is for"),
    ],
)
def test_usage_errors(policy: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", export_rows())
    args = [a.replace("{data}", str(data)) for a in extra]
    result = runner.invoke(app, ["rlhf", "dpo", "--policy", str(policy), "--out",
                                 str(tmp_path / "o"), *args])  # fmt: skip
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_classifier_policy_refused(tmp_path: Path) -> None:
    folder = build_classifier(tmp_path / "clf")
    data = write_jsonl(tmp_path / "pairs.jsonl", export_rows())
    result = runner.invoke(app, ["rlhf", "dpo", "--policy", str(folder), "--data", str(data),
                                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == ExitStatus.USAGE, result.output
    assert "not a language model" in result.output and "hint:" in result.output


def test_from_store_with_source_filter(policy: Path, tmp_path: Path) -> None:
    """The store holds one human A-vs-B pair and one simulated score-gap pair (and two
    thumbs, two scores): --source human keeps the human pair only."""
    from tests.rlhf.test_feedback import _fill_store

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    _fill_store(url)
    result = runner.invoke(app, [
        "rlhf", "dpo", "--policy", str(policy), "--from-store", "--database-url", url,
        "--source", "human", "--valid-fraction", "0", "--out", str(tmp_path / "o"),
        "--device", "cpu", "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"train": 1, "valid": 0, "pairs_given": 1, "points_given": 2}
    assert summary["evaluated_on"] == "train" and summary["steps"] == 1


def test_unreadable_export_names_the_line(policy: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(export_rows()[0]) + "\n{not json\n", encoding="utf-8")
    result = runner.invoke(app, ["rlhf", "dpo", "--policy", str(policy), "--data", str(data),
                                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == ExitStatus.CORRUPT, result.output
    assert f"{data}:2" in result.output
