"""``taskloop rlhf ppo`` end to end with verifiable rewards on a tiny policy, and its
error paths (each an error message with a hint and a usage exit status, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.models.tiny import build_tiny_model
from taskloop.rlhf.ppo_cli import parse_weights, shown_steps
from taskloop.rlhf.records import PolicyStep

runner = CliRunner()

ROWS = [
    {"task": "translate", "id": "t1", "source": "A dog is running", "target": "Ein Hund rennt",
     "source_lang": "en", "target_lang": "de"},
    {"task": "translate", "id": "t2", "source": "The model runs on a single GPU",
     "target": "Das Modell läuft auf einer einzigen GPU", "source_lang": "en", "target_lang": "de"},
    {"task": "qa", "id": "q1", "question": "What runs?", "context": "The model runs on a GPU.",
     "answers": ["The model"]},
]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ppo-cli")
    model = build_tiny_model(root / "model", "seq2seq", seed=1)
    data = root / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return model, data


FAST = ["--steps", "3", "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1",
        "--max-new-tokens", "5", "--device", "cpu", "--threads", "1", "--lr", "1e-3"]  # fmt: skip


def test_end_to_end_with_verifiable_rewards(setup: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("taskloop.rlhf.simulate")
    model, data = setup
    out = tmp_path / "run"
    args = ["rlhf", "ppo", "--policy", str(model), "--data", str(data), "--out", str(out),
            "--verifiable", "format=1", "--verifiable", "length=0.5", "--task", "translate",
            *FAST]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "taskloop rlhf ppo: 3 steps" in result.output
    for column in ("reward", "KL", "entropy", "tokens", "r:format", "r:length"):
        assert column in result.output
    assert f"policy saved to {out / 'policy'}" in result.output
    assert (out / "policy" / "config.json").is_file()
    assert (out / "policy" / "value_head.safetensors").is_file()
    assert (out / "ppo.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == 2  # --task translate keeps the two translate rows
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 3
    for s in steps:
        assert set(s["parts"]) == {"format", "length"}
        # the parts are weighted scores in [0, weight], summing to the reward
        assert 0.0 <= s["parts"]["format"] <= 1.0 and 0.0 <= s["parts"]["length"] <= 0.5
        assert s["reward"] == pytest.approx(s["parts"]["format"] + s["parts"]["length"])


def test_json_output_and_registration(setup: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("taskloop.rlhf.simulate")
    model, data = setup
    args = ["rlhf", "ppo", "--policy", str(model), "--data", str(data),
            "--out", str(tmp_path / "run"), "--verifiable", "format", "--json",
            "--register", "ppo-cli-test", "--kl-target", "0", "--kl-coef", "0.2",
            *FAST]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["steps_done"] == 3 and len(report["steps"]) == 3
    assert report["examples"] == 3  # all rows, both tasks
    assert report["config"]["kl_target"] is None  # --kl-target 0: β fixed
    assert all(s["kl_coef"] == 0.2 for s in report["steps"])
    assert report["registered"]["model_name"] == "ppo-cli-test"
    assert report["registered"]["uri"] == "models:/ppo-cli-test/1"


def _fails(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, ["rlhf", "ppo", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


def test_error_paths(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = setup
    base = ["--policy", str(model), "--data", str(data), "--out", str(tmp_path / "o")]
    _fails(base, "error[rlhf.error]: no reward to optimise", "hint:", "--verifiable")
    _fails([*base, "--verifiable", "format=0"], "no reward to optimise")
    _fails([*base, "--verifiable", "format=lots"], "'lots' is not a number", "--verifiable NAME=")
    _fails([*base, "--verifiable", "format=1", "--verifiable", "format=2"], "given twice")
    _fails([*base, "--verifiable", "nope=1"], "unknown name 'nope'", "hint:")
    _fails([*base, "--verifiable", "format", "--task", "poetry"], "unknown --task 'poetry'")
    _fails([*base, "--verifiable", "format", "--task", "codegen"],
           "no usable task rows of task codegen")  # fmt: skip
    _fails([*base, "--verifiable", "format", "--batch-size", "2", "--mini-batch-size", "4"],
           "error[rlhf.policy]: mini_batch_size 4 is larger than batch_size 2")  # fmt: skip
    missing = ["--policy", str(tmp_path / "nothing"), "--data", str(data), "--verifiable",
               "format", "--out", str(tmp_path / "o"), *FAST]  # fmt: skip
    _fails(missing, "error[rlhf.policy]", "does not exist")
    absent = str(tmp_path / "none.jsonl")
    result = runner.invoke(
        app, ["rlhf", "ppo", "--policy", str(model), "--data", absent, "--verifiable", "format"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "none.jsonl" in result.output


def test_help_lists_every_option() -> None:
    result = runner.invoke(app, ["rlhf", "ppo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--policy", "--data", "--task", "--reward-model", "--reward-model-weight",
                   "--verifiable", "--glossary", "--out", "--steps", "--batch-size",
                   "--mini-batch-size", "--ppo-epochs", "--lr", "--kl-target", "--kl-coef",
                   "--max-new-tokens", "--seed", "--register", "--json"):  # fmt: skip
        assert option in result.output, option


def test_parse_weights() -> None:
    assert parse_weights(["tests=2", "format", " glossary = 0.5"]) == {
        "tests": 2.0, "format": 1.0, "glossary": 0.5,
    }  # fmt: skip
    assert parse_weights([]) == {}


def _s(i: int, warnings: tuple[str, ...] = ()) -> PolicyStep:
    return PolicyStep(step=i, reward=0, reward_std=0, kl=0, kl_coef=0, entropy=0,
                      response_length=0, clip_fraction=0, policy_loss=0, value_loss=0,
                      approx_kl=0, seconds=0, samples=1, warnings=warnings)  # fmt: skip


def test_shown_steps_keeps_first_last_and_warned() -> None:
    steps = [_s(i, ("x: y",) if i == 6 else ()) for i in range(1, 11)]
    assert [s.step for s in shown_steps(steps, 4)] == [1, 5, 6, 9, 10]
    # a warning that holds for many steps shows where it starts, not at every step
    lasting = [_s(i, ("x: y",) if 3 <= i <= 8 else ()) for i in range(1, 11)]
    assert [s.step for s in shown_steps(lasting, 4)] == [1, 3, 5, 9, 10]
    other = [*lasting[:6], _s(7, ("x: y", "z: w")), *lasting[7:]]
    assert [s.step for s in shown_steps(other, 4)] == [1, 3, 5, 7, 9, 10]
    assert [s.step for s in shown_steps(steps, None)] == list(range(1, 11))  # ≤ 20 rows
    many = [_s(i) for i in range(1, 101)]
    assert [s.step for s in shown_steps(many, None)][:3] == [1, 6, 11]
    assert shown_steps([], 3) == []
