"""Threshold tuning on synthetic scores with known optima, decide(), persistence, the
``tune`` and ``show`` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.evaluate.errors import EvalInputError, ThresholdError
from taskloop.evaluate.thresholds import (
    THRESHOLDS_FILE,
    decide,
    load_all_thresholds,
    load_thresholds,
    parse_rule,
    read_scores,
    save_thresholds,
    slug,
    threshold_tuning,
    thresholds_file,
    tuned_threshold,
)

# Eight scores; the positives are 0.4, 0.6, 0.7 and 0.8 (table in test_max_f1_threshold).
F1_SCORES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
F1_LABELS = [0, 0, 0, 1, 0, 1, 1, 1]

# Ten scores, best first; positives cumulate 1,2,3,4,4,5,6,7,8,8 over the top k.
P_SCORES = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5]
P_LABELS = [1, 1, 1, 1, 0, 1, 1, 1, 1, 0]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test saves under its own TASKLOOP_HOME, never the developer's."""
    path = tmp_path / "home"
    monkeypatch.setenv("TASKLOOP_HOME", str(path))
    return path


# ------------------------------------------------------------------------ binary rules


def test_max_f1_threshold() -> None:
    """Predict positive when score >= t; 4 positives (0.4, 0.6, 0.7, 0.8).

    t    TP FP  P     R     F1
    0.1  4  4   .500  1     .667
    0.2  4  3   .571  1     .727
    0.3  4  2   .667  1     .800
    0.4  4  1   .800  1     .889   <- max: 2 * .8 * 1 / 1.8 = 8/9
    0.5  3  1   .750  .75   .750
    0.6  3  0   1     .75   .857
    0.7  2  0   1     .5    .667
    0.8  1  0   1     .25   .400
    At 0.4 FPR = 1/4 (0.5 of the 4 negatives is above it)."""
    th = threshold_tuning(F1_SCORES, F1_LABELS, rule="f1", name="reward.accept")
    assert th.kind == "binary" and th.rule == "f1" and th.n == 8
    assert th.thresholds == {"positive": 0.4} and th.value == 0.4
    v = th.validation["positive"]
    assert v["precision"] == pytest.approx(0.8) and v["recall"] == 1.0
    assert v["f1"] == pytest.approx(8 / 9) and v["tpr"] == 1.0
    assert v["fpr"] == pytest.approx(0.25) and v["support"] == 4


def test_youden_on_two_gaussians_lies_between_the_modes() -> None:
    """Negatives ~ N(0, 1), positives ~ N(3, 1), 300 each, seed 0. The population optimum
    of TPR - FPR is the midpoint 1.5; the sample optimum is checked against a brute
    force over every observed score (J(t) = mean(pos >= t) - mean(neg >= t))."""
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 300), rng.normal(3, 1, 300)
    scores = np.concatenate([neg, pos])
    labels = np.array([0] * 300 + [1] * 300)
    th = threshold_tuning(scores, labels, rule="youden")
    j = np.array([(pos >= t).mean() - (neg >= t).mean() for t in scores])
    best = scores[j == j.max()].max()  # ties: the highest threshold
    assert th.value == best
    assert 0.5 < th.value < 2.5
    v = th.validation["positive"]
    assert v["tpr"] - v["fpr"] == pytest.approx(j.max())
    assert j.max() > 0.8  # two modes 3 sigma apart separate well


def test_youden_on_separated_scores_is_the_lowest_positive() -> None:
    """Every negative is below every positive: J = 1 only at the lowest positive score
    (TPR 1, FPR 0); one step down lets a negative in, one step up loses a positive."""
    th = threshold_tuning([0.1, 0.2, 0.35, 0.6, 0.9], [0, 0, 0, 1, 1], rule="youden")
    assert th.value == 0.6
    assert th.validation["positive"]["tpr"] == 1.0 and th.validation["positive"]["fpr"] == 0.0


def test_ties_go_to_the_higher_threshold() -> None:
    """Scores 0.1 (neg), 0.35 (pos), 0.4 (neg), 0.8 (pos). Youden's J at 0.35: TPR 1 -
    FPR 1/2 = 0.5; at 0.8: 1/2 - 0 = 0.5; at 0.4: 1/2 - 1/2 = 0; at 0.1: 1 - 1 = 0.
    The tie goes to 0.8 (fewer positives)."""
    th = threshold_tuning([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], rule="youden")
    assert th.value == 0.8


def test_precision_target_reached_exactly_at_a_crafted_cut() -> None:
    """Precision of the top k (8 positives in all): k=1..4: 1; k=5: 4/5; k=6: 5/6;
    k=7: 6/7; k=8: 7/8 = 0.875 exactly; k=9: 8/9; k=10: 8/10.
    precision >= 0.875: k in 1..4, 8 (and 9 at .889), highest recall: k=9 (8/8) -> 0.55.
    precision >= 0.88: k in 1..4, 9 -> k=9 again; precision >= 0.89: only k<=4 -> k=4,
    t = 0.8, recall 4/8."""
    th = threshold_tuning(P_SCORES, P_LABELS, rule="precision>=0.875")
    assert th.value == 0.55 and th.validation["positive"]["recall"] == 1.0
    th = threshold_tuning(P_SCORES, P_LABELS, rule="precision", target=0.89)
    assert th.value == 0.8 and th.rule == "precision>=0.89"
    assert th.validation["positive"]["precision"] == 1.0
    assert th.validation["positive"]["recall"] == 0.5


def test_precision_target_met_with_equality() -> None:
    """Drop the 0.55 positive: then k=8 gives precision 7/8 = 0.875 exactly and recall
    7/7 = 1, the only cut over 0.875 besides k<=4 (recall 4/7): t = 0.6."""
    scores = [s for s in P_SCORES if s != 0.55]
    labels = [y for s, y in zip(P_SCORES, P_LABELS, strict=True) if s != 0.55]
    th = threshold_tuning(scores, labels, rule="precision>=0.875")
    assert th.value == 0.6
    assert th.validation["positive"]["precision"] == 0.875
    assert th.validation["positive"]["recall"] == 1.0


def test_recall_target_gives_the_highest_precision() -> None:
    """recall >= 0.75 needs 6 of 8 positives: k >= 7. Precision k=7: 6/7 = .857, k=8:
    .875, k=9: .889, k=10: .8 -> k=9, t = 0.55."""
    th = threshold_tuning(P_SCORES, P_LABELS, rule="recall>=0.75")
    assert th.value == 0.55
    assert th.validation["positive"]["precision"] == pytest.approx(8 / 9)


def test_unreachable_precision_says_the_best_reachable() -> None:
    """Top k precision of (0.9: neg, 0.8: pos, 0.7: pos, 0.6: neg): 0, 1/2, 2/3, 2/4;
    the best reachable is 0.6667 at 0.7."""
    with pytest.raises(ThresholdError) as err:
        threshold_tuning([0.9, 0.8, 0.7, 0.6], [0, 1, 1, 0], rule="precision>=0.9")
    assert "best reachable precision is 0.6667" in err.value.message
    assert "at threshold 0.7" in err.value.message
    assert err.value.hint is not None and "0.6666" in err.value.hint


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], [False, False, False]])
def test_one_class_only_is_an_error_with_a_hint(labels: list[int]) -> None:
    with pytest.raises(ThresholdError) as err:
        threshold_tuning([0.1, 0.5, 0.9], labels)
    assert "both outcomes" in err.value.message
    assert err.value.hint == "add validation examples of the other outcome"


@pytest.mark.parametrize(
    ("rule", "target", "expected"),
    [
        ("f1", None, ("f1", None)),
        ("Youden", None, ("youden", None)),
        ("precision >= 0.9", None, ("precision", 0.9)),
        ("recall", 0.8, ("recall", 0.8)),
    ],
)
def test_parse_rule(rule: str, target: float | None, expected: tuple[str, float | None]) -> None:
    assert parse_rule(rule, target) == expected


@pytest.mark.parametrize(
    ("rule", "target", "says"),
    [
        ("accuracy", None, "unknown threshold rule"),
        ("precision", None, "needs a target"),
        ("recall", 1.5, "needs a target"),
        ("f1", 0.9, "takes no target"),
        ("precision>=0.9", 0.8, "disagree"),
    ],
)
def test_bad_rules(rule: str, target: float | None, says: str) -> None:
    with pytest.raises(ThresholdError, match=says):
        parse_rule(rule, target)


def test_bad_inputs() -> None:
    with pytest.raises(ThresholdError, match="3 scores but 2 labels"):
        threshold_tuning([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ThresholdError, match="score 1 is not a finite number"):
        threshold_tuning([0.1, math.nan, 0.3], [0, 1, 1])
    with pytest.raises(ThresholdError, match="label 2 is 'yes'"):
        threshold_tuning([0.1, 0.2, 0.3], [0, 1, "yes"])
    with pytest.raises(ThresholdError, match="non-empty"):
        threshold_tuning([], [])


# ------------------------------------------------------------------------ multi-class

# Columns a, b, c; two examples of each class.
MC_SCORES = [
    [0.9, 0.1, 0.0],
    [0.6, 0.2, 0.1],
    [0.7, 0.8, 0.1],
    [0.2, 0.7, 0.2],
    [0.1, 0.3, 0.9],
    [0.3, 0.4, 0.5],
]
MC_LABELS = ["a", "a", "b", "b", "c", "c"]


def test_multiclass_one_vs_rest_per_class() -> None:
    """Column a: positives 0.9, 0.6; negatives 0.7, 0.2, 0.1, 0.3.
    t=.9: P1 R.5 F1 .667; t=.7: P.5 R.5 F1 .5; t=.6: P 2/3 R1 F1 .8 <- max; t=.3: P.5 R1
    F1 .667. Column b: positives 0.8, 0.7 above every negative (max 0.4): t = 0.7, F1 1.
    Column c: positives 0.9, 0.5 above every negative (max 0.2): t = 0.5, F1 1."""
    th = threshold_tuning(MC_SCORES, MC_LABELS, classes=["a", "b", "c"], name="route")
    assert th.kind == "multiclass" and th.fallback == "none"
    assert th.thresholds == {"a": 0.6, "b": 0.7, "c": 0.5}
    assert th.validation["a"]["f1"] == pytest.approx(0.8)
    assert th.validation["a"]["fpr"] == pytest.approx(1 / 4)
    assert th.validation["b"]["f1"] == 1.0 and th.validation["c"]["f1"] == 1.0
    assert all(v["support"] == 2 for v in th.validation.values())
    by_index = threshold_tuning(MC_SCORES, [0, 0, 1, 1, 2, 2])
    assert by_index.thresholds == {"0": 0.6, "1": 0.7, "2": 0.5}


def test_multiclass_errors_name_the_class() -> None:
    with pytest.raises(ThresholdError, match="class 'c'"):
        threshold_tuning(MC_SCORES, ["a", "a", "b", "b", "b", "b"], classes=["a", "b", "c"])
    with pytest.raises(ThresholdError, match="neither a class name"):
        threshold_tuning(MC_SCORES, MC_LABELS)  # names without classes
    with pytest.raises(ThresholdError, match="3 score columns"):
        threshold_tuning(MC_SCORES, MC_LABELS, classes=["a", "b"])


def test_decide_multiclass_and_binary() -> None:
    """Thresholds a .6, b .7, c .5. Margins (score - t):
    [.65, .9, .1] -> [.05, .2, -.4]: b; [.61, .1, .52] -> [.01, -.6, .02]: c;
    [.1, .1, .1]: none reaches its threshold -> the fallback; [.59, .69, .49]: just under
    each -> fallback."""
    th = threshold_tuning(MC_SCORES, MC_LABELS, classes=["a", "b", "c"], fallback="other")
    got = decide(th, [[0.65, 0.9, 0.1], [0.61, 0.1, 0.52], [0.1, 0.1, 0.1], [0.59, 0.69, 0.49]])
    assert list(got) == ["b", "c", "other", "other"]
    assert list(decide(th, MC_SCORES)) == ["a", "a", "b", "b", "c", "c"]
    with pytest.raises(ThresholdError, match="shape"):
        decide(th, [0.1, 0.2, 0.3])
    binary = threshold_tuning(F1_SCORES, F1_LABELS)
    assert list(decide(binary, [0.39, 0.4, 0.41])) == [False, True, True]


def test_decide_reproduces_the_validation_figures() -> None:
    """What decide() gives on the validation scores is what the file reports."""
    from sklearn.metrics import f1_score, precision_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = labels + rng.normal(0, 0.8, 200)
    for rule in ("f1", "youden", "precision>=0.8", "recall>=0.9"):
        th = threshold_tuning(scores, labels, rule=rule)
        pred = decide(th, scores)
        assert f1_score(labels, pred) == pytest.approx(th.validation["positive"]["f1"]), rule
        assert precision_score(labels, pred) == pytest.approx(
            th.validation["positive"]["precision"]
        )


# ------------------------------------------------------------------------ persistence


def test_save_and_load_in_a_model_folder(tmp_path: Path) -> None:
    """A local folder keeps taskloop_thresholds.json; two decisions live side by side."""
    folder = tmp_path / "model"
    folder.mkdir()
    first = threshold_tuning(F1_SCORES, F1_LABELS, name="reward.accept", model=str(folder))
    second = threshold_tuning(MC_SCORES, MC_LABELS, classes=["a", "b", "c"], name="route")
    assert save_thresholds(first) == folder / THRESHOLDS_FILE
    assert save_thresholds(second, folder) == folder / THRESHOLDS_FILE
    assert load_thresholds("reward.accept", folder) == first
    loaded = load_thresholds("route", str(folder))
    assert loaded is not None and loaded.model == str(folder)
    assert loaded.model_dump(exclude={"model"}) == second.model_dump(exclude={"model"})
    assert set(json.loads((folder / THRESHOLDS_FILE).read_text())) == {"reward.accept", "route"}
    assert load_thresholds("qa.no_answer", folder) is None
    tuned = tuned_threshold("reward.accept", folder, score_name="score")
    assert tuned is not None and tuned.value == 0.4
    assert tuned.source == f"tuned: {folder / THRESHOLDS_FILE}"
    with pytest.raises(ThresholdError, match="tuned on the score 'score'"):
        tuned_threshold("reward.accept", folder, score_name="reward")
    with pytest.raises(ThresholdError, match="multi-class"):
        tuned_threshold("route", folder)


def test_hub_ids_save_under_taskloop_home(home: Path) -> None:
    th = threshold_tuning(F1_SCORES, F1_LABELS, name="qa.no_answer")
    file = save_thresholds(th, "sentence-transformers/all-MiniLM-L6-v2")
    assert file == home / "thresholds" / "sentence-transformers--all-MiniLM-L6-v2.json"
    assert slug("a b/c:d") == "a--b--c--d"
    got = load_thresholds("qa.no_answer", "sentence-transformers/all-MiniLM-L6-v2")
    assert got is not None and got.value == 0.4
    assert got.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert load_thresholds("qa.no_answer", "other/model") is None


def test_installed_package_folders_are_not_written_into(tmp_path: Path, home: Path) -> None:
    """A folder inside site-packages (the packaged MiniLM) is shared: thresholds go home."""
    folder = tmp_path / "site-packages" / "pkg" / "model"
    folder.mkdir(parents=True)
    file = thresholds_file(folder)
    assert file.parent == home / "thresholds" and file.name.endswith("model.json")


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / THRESHOLDS_FILE).write_text('{"qa.no_answer": {"name": 1}')
    with pytest.raises(ThresholdError) as err:
        load_thresholds("qa.no_answer", folder)
    assert str(folder / THRESHOLDS_FILE) in err.value.message
    (folder / THRESHOLDS_FILE).write_text('{"qa.no_answer": {"name": "x"}}')
    with pytest.raises(ThresholdError, match="unreadable"):
        load_all_thresholds(folder)
    with pytest.raises(ThresholdError, match="unreadable"):  # never overwritten silently
        save_thresholds(threshold_tuning(F1_SCORES, F1_LABELS), folder)


def test_save_needs_a_model_and_an_existing_folder(tmp_path: Path) -> None:
    th = threshold_tuning(F1_SCORES, F1_LABELS)
    with pytest.raises(ThresholdError, match="no model"):
        save_thresholds(th)
    with pytest.raises(ThresholdError, match="does not exist"):
        save_thresholds(th, str(tmp_path / "missing"))
    with pytest.raises(ThresholdError, match="registered model"):
        save_thresholds(th, "models:/qa@champion")


# ------------------------------------------------------------------------ scores files


def test_read_scores_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    path.write_text('{"score": 0.5, "label": 1}\n\n{"score": [0.1, 0.2], "label": 0}\n')
    with pytest.raises(EvalInputError, match=rf"{path}:3: score has another shape"):
        read_scores(path)
    path.write_text('{"score": 0.5, "label": 1}\n{"score": "high", "label": 0}\n')
    with pytest.raises(EvalInputError, match=rf"{path}:2: score must be"):
        read_scores(path)
    path.write_text('{"score": 0.5}\n')
    with pytest.raises(EvalInputError, match=rf"{path}:1: a row needs"):
        read_scores(path)
    path.write_text("{nope\n")
    with pytest.raises(EvalInputError, match=rf"{path}:1: not valid JSON"):
        read_scores(path)


# ------------------------------------------------------------------------ CLI


def test_cli_tune_saves_and_show_prints(tmp_path: Path) -> None:
    """The F1 example as JSONL: the saved threshold is 0.4 (see test_max_f1_threshold)."""
    folder = tmp_path / "model"
    folder.mkdir()
    path = tmp_path / "scores.jsonl"
    rows = [{"score": s, "label": bool(y)} for s, y in zip(F1_SCORES, F1_LABELS, strict=True)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["thresholds", "tune", str(path), "--name", "reward.accept", "--model", str(folder)],
    )
    assert out.exit_code == 0, out.output
    assert "reward.accept: f1 on 8 validation examples" in out.output
    assert "0.889" in out.output and str(folder / THRESHOLDS_FILE) in out.output
    saved = load_thresholds("reward.accept", folder)
    assert saved is not None and saved.value == 0.4
    shown = runner.invoke(app, ["thresholds", "show", str(folder)])
    assert shown.exit_code == 0 and "reward.accept" in shown.output and "0.4" in shown.output
    none = runner.invoke(app, ["thresholds", "show", "owner/other"])
    assert none.exit_code == 0 and "no thresholds saved" in none.output


def test_cli_tune_multiclass_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "scores.jsonl"
    rows = [{"score": s, "label": y} for s, y in zip(MC_SCORES, MC_LABELS, strict=True)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    out = runner.invoke(
        app, ["thresholds", "tune", str(path), "-n", "route", "--classes", "a,b,c", "--no-save"]
    )
    assert out.exit_code == 0, out.output
    assert "not saved" in out.output and "0.6" in out.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"score": 0.2, "label": 0}\n{"score": 0.3}\n')
    out = runner.invoke(app, ["thresholds", "tune", str(bad), "-n", "x"])
    assert out.exit_code != 0 and f"{bad}:2" in out.output
    assert "Traceback" not in out.output
    one = tmp_path / "one.jsonl"
    one.write_text('{"score": 0.2, "label": 1}\n{"score": 0.3, "label": 1}\n')
    out = runner.invoke(app, ["thresholds", "tune", str(one), "-n", "x"])
    assert out.exit_code != 0 and "error[evaluate.threshold]" in out.output
    assert "hint: add validation examples" in out.output
