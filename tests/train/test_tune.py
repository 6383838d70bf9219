"""Hyper-parameter search: the search space, trials, pruning, failures, persistence, registry.

Every study trains a 1-layer T5 (width 32) on a toy copy task for 6 steps on the CPU,
evaluating at steps 3 and 6 with ``eval.metric: loss``, so a trial's score is minus its
best validation loss and takes about a second.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import optuna
import pytest
import typer
from typer.testing import CliRunner

from taskloop.models.tiny import build_tiny_model
from taskloop.train.config import load_train_config
from taskloop.train.errors import TrainConfigError, TrainError
from taskloop.train.tune import (
    CategoricalParam,
    FloatParam,
    IntParam,
    is_config_key,
    plan_tune,
    register,
    tune,
)

WORDS = ["red", "green", "blue", "cat", "dog", "sun", "moon", "tree", "fish", "bird"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny seq2seq model folder, copy-task JSONL of 100 rows)."""
    root = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    rows = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))) for _ in range(100)]
    data = root / "copy.jsonl"
    data.write_text(
        "".join(json.dumps({"task": "translate", "source": s, "target": s}) + "\n" for s in rows),
        "utf-8",
    )
    return build_tiny_model(root / "model", "seq2seq", texts=rows), data


def config(
    toy: tuple[Path, Path],
    out: Path,
    search: dict[str, Any],
    tune_section: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    model, data = toy
    base: dict[str, Any] = {
        "name": "toy",
        "out": str(out),
        "model": {"name": str(model)},
        "data": {"train": [str(data)], "clean": {"enabled": False}, "eval_fraction": 0.2},
        "optim": {"lr": 3e-3, "warmup_steps": 0},
        "batch": {"tokens": None, "size": 8},
        "run": {"max_steps": 6, "device": "cpu", "precision": "fp32"},
        "eval": {"every_steps": 3, "metric": "loss"},
        "tracking": {"enabled": False},
        "search": search,
        "tune": {"pruner": "none", "sampler": "random", **(tune_section or {})},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return base


def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/optuna.db"


def states(url: str, name: str = "toy") -> list[str]:
    study = optuna.load_study(study_name=name, storage=url)
    return [t.state.name for t in study.get_trials()]


LR = {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


# ------------------------------------------------------------------- the search space


def test_search_space_is_parsed_into_typed_params(toy: tuple[Path, Path], tmp_path: Path) -> None:
    plan = plan_tune(
        config(toy, tmp_path, {
            **LR,
            "batch.size": {"type": "categorical", "choices": [8, 16]},
            "optim.label_smoothing": {"type": "float", "low": 0, "high": 0.2},
            "batch.grad_accum": {"type": "int", "low": 1, "high": 4},
            "curriculum.weights.length": {"type": "float", "low": 0.1, "high": 0.9},
        }, {"trials": 7, "pruner": "median"}),
    )  # fmt: skip
    space = plan.space
    assert space["optim.lr"] == FloatParam(type="float", low=1e-4, high=1e-2, log=True)
    assert space["batch.size"] == CategoricalParam(type="categorical", choices=[8, 16])
    assert isinstance(space["batch.grad_accum"], IntParam)
    assert (plan.settings.trials, plan.settings.pruner) == (7, "median")
    assert "search" not in plan.base and "tune" not in plan.base
    assert plan.config.optim.lr == 3e-3  # the base itself is untouched
    assert is_config_key("curriculum.weights.length")  # an entry of a mapping
    assert not is_config_key("optim.lr.x") and not is_config_key("optim.lrr")


@pytest.mark.parametrize(
    ("search", "tune_section", "expected"),
    [
        ({"optim.lr": {"type": "float", "low": 1e-4, "hgh": 1e-2}}, {}, "hgh"),
        ({"optim.lr": {"type": "floaat", "low": 1e-4, "high": 1e-2}}, {}, "floaat"),
        ({"optim.lr": {"type": "float", "low": 0, "high": 1e-2, "log": True}}, {}, "low > 0"),
        ({"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-4}}, {}, "above high"),
        ({"batch.size": {"type": "categorical", "choices": []}}, {}, "at least 1"),
        (LR, {"pruner": "medain"}, "pruner"),
        (LR, {"trails": 3}, "trails"),
        ({}, {}, "at least 1"),
    ],
)
def test_a_bad_search_entry_fails_naming_it(
    toy: tuple[Path, Path], tmp_path: Path, search: Any, tune_section: Any, expected: str
) -> None:
    with pytest.raises(TrainConfigError, match=expected):
        plan_tune(config(toy, tmp_path, search, tune_section))


def test_a_typo_key_fails_before_any_trial_runs(toy: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = config(toy, out, {"optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}})
    with pytest.raises(TrainConfigError, match=r"'optim\.lrr' is not a training config key") as err:
        tune(cfg, trials=3, storage=storage(tmp_path))
    assert err.value.hint == "did you mean 'optim.lr'?"
    assert not (tmp_path / "optuna.db").exists()  # no study was even opened
    assert not out.exists()


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        # label_smoothing must be < 1: the high bound is refused by the config itself.
        ({"optim.label_smoothing": {"type": "float", "low": 0, "high": 1.0}}, "value 1.0"),
        # The base fine-tunes a named model: no value of model.init.* can be valid.
        ({"model.init.layers": {"type": "int", "low": 1, "high": 2}}, "exactly one"),
        ({"run.precision": {"type": "categorical", "choices": ["fp64", "fp8"]}}, "fp64"),
    ],
)
def test_values_the_config_refuses_fail_before_any_trial(
    toy: tuple[Path, Path], tmp_path: Path, search: Any, expected: str
) -> None:
    with pytest.raises(TrainConfigError, match=expected):
        tune(config(toy, tmp_path / "out", search), trials=1, storage=storage(tmp_path))
    assert not (tmp_path / "optuna.db").exists()


# -------------------------------------------------------------------------- the study


def test_trials_run_and_best_yaml_holds_the_best_params(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    """Three complete trials; the best is the highest score (minus the lowest loss)."""
    out = tmp_path / "out"
    space = {**LR, "optim.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2}}
    seen: list[int] = []
    result = tune(
        config(toy, out, space), trials=3, storage=storage(tmp_path),
        progress=lambda row: seen.append(row.number),
    )  # fmt: skip
    assert seen == [0, 1, 2]
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    values = {t.number: t.value for t in result.trials}
    assert all(v is not None and v < 0 for v in values.values())  # minus a loss
    best = max(values, key=lambda n: values[n] or 0.0)
    assert (result.best_trial, result.best_value) == (best, values[best])
    assert result.study_name == "toy" and result.new_trials == 3

    loaded = load_train_config(result.best_config)
    assert result.best_config == out / "best.yaml"
    assert loaded.optim.lr == result.best_params["optim.lr"]
    assert loaded.optim.label_smoothing == result.best_params["optim.label_smoothing"]
    assert loaded.out == str(out) and loaded.tracking.enabled is False  # the base's, not a trial's
    assert 1e-4 <= loaded.optim.lr <= 1e-2

    summary = json.loads((out / "tune.json").read_text("utf-8"))
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2]
    assert summary["best"]["number"] == best
    assert set(summary["trials"][0]["params"]) == {"optim.lr", "optim.label_smoothing"}
    assert all(t["duration_s"] > 0 for t in summary["trials"])
    assert (out / "tune.png").stat().st_size > 0
    # keep_models: best keeps the best trial's model only; checkpoints never stay.
    for n in range(3):
        assert (out / f"trial-{n}" / "best" / "config.json").is_file() == (n == best)
        assert not (out / f"trial-{n}" / "checkpoints").exists()


def test_the_study_persists_and_a_rerun_adds_trials(toy: tuple[Path, Path], tmp_path: Path) -> None:
    url = storage(tmp_path)
    cfg = config(toy, tmp_path / "out", LR, {"study_name": "lr-search"})
    first = tune(cfg, trials=1, storage=url)
    second = tune(cfg, trials=1, storage=url)
    assert (first.new_trials, second.new_trials) == (1, 1)
    assert [t.number for t in second.trials] == [0, 1]
    assert states(url, "lr-search") == ["COMPLETE"] * 2
    assert (tmp_path / "out" / "trial-1").is_dir()
    assert second.best_value == max(t.value or float("-inf") for t in second.trials)
    # The continued study's sampler is not reseeded to the first session's first draw.
    assert second.trials[1].params["optim.lr"] != first.trials[0].params["optim.lr"]


def test_the_median_pruner_stops_a_bad_trial(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """Trial 0 (lr 3e-3) reaches a validation loss near 3.4 at step 3; trials 1 and 2
    (lr 1e-7) stay at their random weights' loss near 4.1 (measured: 4.0755 at both steps).
    With one start-up trial and no warm-up the median of the completed trials at step 3 is
    trial 0's score (-3.4 > -4.1), so both bad trials are pruned at their first report
    (step 3) and never train further."""
    url = storage(tmp_path)
    ahead = optuna.create_study(study_name="toy", storage=url, direction="maximize")
    for lr in (3e-3, 1e-7, 1e-7):
        ahead.enqueue_trial({"optim.lr": lr})
    cfg = config(
        toy, tmp_path / "out", {"optim.lr": {"type": "categorical", "choices": [3e-3, 1e-7]}},
        {"pruner": "median", "pruner_startup_trials": 1, "pruner_warmup_steps": 0},
    )  # fmt: skip
    result = tune(cfg, trials=3, storage=url)
    assert [t.state for t in result.trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [t.pruned_at for t in result.trials] == [None, 3, 3]
    assert result.best_trial == 0 and result.best_params == {"optim.lr": 3e-3}
    study = optuna.load_study(study_name="toy", storage=url)
    assert list(study.trials[1].intermediate_values) == [3]  # pruned after its first report
    assert list(study.trials[0].intermediate_values) == [3, 6]


def test_a_failing_trial_is_recorded_and_the_study_goes_on(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    """fp16 on the CPU is refused when the run starts (TrainConfigError), not by the config
    check, so the first trial fails and the second completes."""
    url = storage(tmp_path)
    ahead = optuna.create_study(study_name="toy", storage=url, direction="maximize")
    for precision in ("fp16", "fp32"):
        ahead.enqueue_trial({"run.precision": precision})
    cfg = config(
        toy,
        tmp_path / "out",
        {"run.precision": {"type": "categorical", "choices": ["fp32", "fp16"]}},
    )
    result = tune(cfg, trials=2, storage=url)
    failed, done = result.trials
    assert (failed.state, done.state) == ("FAIL", "COMPLETE")
    assert failed.error is not None and "fp16 needs a GPU" in failed.error
    study = optuna.load_study(study_name="toy", storage=url)
    assert study.trials[0].user_attrs["error_code"] == "train.config"
    assert result.best_trial == 1


def test_a_study_where_no_trial_completes_fails_and_keeps_its_record(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = config(toy, out, {"run.precision": {"type": "categorical", "choices": ["fp16"]}})
    with pytest.raises(TrainError, match=r"no trial completed \(2 failed, 0 pruned\).*fp16"):
        tune(cfg, trials=2, storage=storage(tmp_path))
    summary = json.loads((out / "tune.json").read_text("utf-8"))
    assert [t["state"] for t in summary["trials"]] == ["FAIL", "FAIL"]
    assert summary["best"] is None and not (out / "best.yaml").exists()


def test_ctrl_c_stops_the_study_and_writes_what_was_found(
    toy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskloop.train.loop as loop

    real = loop.train
    calls: list[int] = []

    def train_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train", train_then_interrupt)
    url = storage(tmp_path)
    result = tune(config(toy, tmp_path / "out", LR), trials=5, storage=url)
    assert result.interrupted and len(calls) == 2
    assert [(t.state, t.error) for t in result.trials] == [
        ("COMPLETE", None), ("FAIL", "interrupted")
    ]  # fmt: skip
    assert result.best_trial == 0 and (tmp_path / "out" / "best.yaml").is_file()
    assert states(url) == ["COMPLETE", "FAIL"]  # no trial is left RUNNING in the study


# ------------------------------------------------------------------------ the registry


def test_the_best_model_is_registered_as_challenger(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """Registered once per best trial: a rerun whose new trial is worse (lr 1e-7 leaves
    the loss at its untrained value) registers nothing new."""
    from taskloop.models.registry import show

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    url = storage(tmp_path)
    cfg = config(
        toy, tmp_path / "out", {"optim.lr": {"type": "categorical", "choices": [3e-3, 1e-7]}},
        tracking={"enabled": True, "uri": uri, "experiment": "tune-test",
                  "register_as": "toy-tuned"},
    )  # fmt: skip
    ahead = optuna.create_study(study_name="toy", storage=url, direction="maximize")
    for lr in (3e-3, 1e-7):
        ahead.enqueue_trial({"optim.lr": lr})
    first = tune(cfg, trials=1, storage=url)
    assert (first.registered_model, first.registered_version) == ("toy-tuned", 1)
    detail = show("toy-tuned", uri=uri)
    assert detail.aliases == {"challenger": 1}
    assert detail.versions[0].metrics["score"] == pytest.approx(first.best_value)
    assert detail.versions[0].tags["taskloop.tune.trial"] == "0"

    second = tune(cfg, trials=1, storage=url)
    assert [t.state for t in second.trials] == ["COMPLETE", "COMPLETE"]
    assert second.best_trial == 0 and second.registered_version == 1
    assert [v.version for v in show("toy-tuned", uri=uri).versions] == [1]


# ----------------------------------------------------------------------------- the CLI


def test_the_command_prints_the_result_and_maps_errors(
    toy: tuple[Path, Path], tmp_path: Path
) -> None:
    import yaml

    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "tune" a sub-command
        pass

    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config(toy, tmp_path / "out", LR)), "utf-8")
    url = storage(tmp_path)
    runner = CliRunner()
    ran = runner.invoke(app, ["tune", str(path), "-n", "1", "--storage", url, "--study", "cli"])
    assert ran.exit_code == 0, ran.output
    assert "study cli (1 trials)" in ran.stdout and "best.yaml" in ran.stdout
    summary = json.loads((tmp_path / "out" / "tune.json").read_text("utf-8"))
    assert summary["study"] == "cli" and len(summary["trials"]) == 1

    bad = runner.invoke(app, ["tune", str(path), "optim.lr=-1", "--storage", url, "--json"])
    assert bad.exit_code == 2
    assert "error[train.config]" in bad.output and "optim.lr" in bad.output
