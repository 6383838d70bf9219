"""Ensembles: vote, MBR and rerank on crafted candidates with known winners; alignment of
members; ``taskloop ensemble`` on results folders written here (mounted on a test app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sacrebleu
import typer
from typer.testing import CliRunner

from taskloop.data.records import Prediction, Where
from taskloop.evaluate.errors import EnsembleError, EvalInputError, MetricError
from taskloop.models.ensemble import (
    align,
    combine,
    majority_vote,
    mbr_select,
    normaliser,
    read_results,
    rerank,
    reward_scorer,
    utility,
)
from taskloop.models.ensemble_cli import register

# --- majority vote ------------------------------------------------------------------------


def test_vote_qa_normalisation_and_earliest_text() -> None:
    """SQuAD normalisation makes "Paris", "paris." and "the Paris" one answer (3 votes)
    against "Lyon" (1); the earliest member's own spelling is returned."""
    sel = majority_vote(
        ["Lyon", "Paris", "paris.", "the Paris"],
        normalise=normaliser("qa"),
        names=["a", "b", "c", "d"],
    )
    assert (sel.index, sel.member, sel.text) == (1, "b", "Paris")
    assert sel.scores == (1.0, 3.0, 3.0, 3.0)
    assert sel.tied == (1,)
    assert sel.why.startswith("3 of 4 votes for 'Paris'")


def test_vote_whitespace_and_case_for_text_but_not_punctuation() -> None:
    """Translations: "The cat." and "the  cat." agree (case, spaces); "The cat" without the
    full stop is another answer: 2 votes to 1."""
    sel = majority_vote(["The cat", "The cat.", "the  cat."], normalise=normaliser("translate"))
    assert (sel.index, sel.scores) == (1, (1.0, 2.0, 2.0))


def test_vote_tie_goes_to_the_earlier_member() -> None:
    """2 votes each for Lyon (members 0, 2) and Paris (1, 3): member 0 has priority; listing
    Paris first flips the winner, so order alone decides."""
    sel = majority_vote(["Lyon", "Paris", "lyon", "paris"], normalise=normaliser("qa"))
    assert (sel.text, sel.tied) == ("Lyon", (0, 1))
    assert "broken by member order (#0 first)" in sel.why
    flipped = majority_vote(["Paris", "Lyon", "lyon", "paris"], normalise=normaliser("qa"))
    assert flipped.text == "Paris"


def test_vote_tie_broken_by_mbr_utility() -> None:
    """Lyon {0, 2} and Paris {1, 3} tie at 2 votes; "Paris, France" (1 vote) sides with Paris.

    Expected SQuAD F1 x100 of each tied answer's first candidate against the other four:
    Lyon: (F1 vs Paris 0 + lyon 1 + paris 0 + "paris france" 0) / 4 = 25.00;
    Paris: (0 + 0 + 1 + F1("paris", "paris france") = 2*1*0.5/1.5 = 0.667) / 4 = 41.67.
    By order Lyon would win; by MBR Paris does.
    """
    cands = ["Lyon", "Paris", "lyon", "paris", "Paris, France"]
    by_order = majority_vote(cands, normalise=normaliser("qa"))
    by_mbr = majority_vote(cands, normalise=normaliser("qa"), tie_break="mbr", metric="f1")
    assert by_order.text == "Lyon"
    assert (by_mbr.text, by_mbr.index, by_mbr.metric) == ("Paris", 1, "f1")
    assert "'Lyon' 25.00, 'Paris' 41.67" in by_mbr.why
    expected = mbr_select(cands, metric="f1").scores
    assert expected[0] == pytest.approx(25.0) and expected[1] == pytest.approx(125 / 3)


def test_vote_weights_outvote_a_majority() -> None:
    """Weights 3, 1, 1: "A" has 3 votes against 2 for "B"; unweighted, "B" wins 2 to 1."""
    assert majority_vote(["A", "B", "B"], weights=[3, 1, 1]).text == "A"
    assert majority_vote(["A", "B", "B"]).text == "B"
    with pytest.raises(EnsembleError, match="3 weights for 2 candidates"):
        majority_vote(["A", "B"], weights=[1, 1, 1])
    with pytest.raises(EnsembleError, match="no candidates"):
        majority_vote([])


# --- MBR --------------------------------------------------------------------------------------


def test_mbr_chrf_picks_the_centre() -> None:
    """chrF++ (sacrebleu sentence_chrf, word_order=2) of candidate i against j:

    =========================  ======================  ======================  =====
    hypothesis                  vs "the cat sat ..."    vs "a cat sat ..."      vs "a cat lay ..."
    =========================  ======================  ======================  =====
    0 "the cat sat on the mat"  -                       87.19                   14.54
    1 "a cat sat on the mat"    81.43                   -                       23.66
    2 "a cat lay on a rug"      12.95                   22.36                   -
    =========================  ======================  ======================  =====

    Expected utility (mean over the other two): 0: 50.87, 1: 52.55, 2: 17.65. Candidate 1
    is the centre and wins although candidate 0 comes first.
    """
    cands = ["the cat sat on the mat", "a cat sat on the mat", "a cat lay on a rug"]
    sel = mbr_select(cands, metric="chrf++", names=["x", "y", "z"])
    assert (sel.index, sel.member, sel.metric) == (1, "y", "chrf++")
    assert sel.scores == pytest.approx(
        ((87.19496 + 14.53776) / 2, (81.43372 + 23.66200) / 2, (12.94653 + 22.35656) / 2),
        abs=1e-4,
    )
    assert "52.55 (next 50.87)" in sel.why


def test_mbr_weights_move_the_centre() -> None:
    """Weight 0 on candidate 2 leaves 0 and 1 judged by each other only: 0 scores 87.19
    against 1, 1 scores 81.43 against 0, so candidate 0 wins."""
    cands = ["the cat sat on the mat", "a cat sat on the mat", "a cat lay on a rug"]
    sel = mbr_select(cands, metric="chrf++", weights=[1, 1, 0])
    assert sel.index == 0
    assert sel.scores[0] == pytest.approx(87.19496, abs=1e-4)


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("bleu", lambda h, r: sacrebleu.sentence_bleu(h, [r]).score),
        ("f1", None),
        ("rougeL", None),
        ("meteor", None),
    ],
)
def test_mbr_other_metrics_agree_on_an_obvious_centre(metric: str, reference: object) -> None:
    """Two near copies and an outlier: every metric puts a near copy on top; BLEU's
    utilities equal sacrebleu's sentence BLEU."""
    cands = [
        "completely different words here",
        "the quick brown fox jumps over the lazy dog",
        "the quick brown fox jumped over the lazy dog",
    ]
    sel = mbr_select(cands, metric=metric)
    assert sel.index == 1
    assert sel.scores[0] < sel.scores[1]
    if callable(reference):
        expected = (reference(cands[1], cands[0]) + reference(cands[1], cands[2])) / 2
        assert sel.scores[1] == pytest.approx(expected)


def test_utility_empty_answers_agree_and_unknown_metric() -> None:
    """Two no-answers ("") agree fully; "" against text scores 0 (chrF alone gives 0 for
    both)."""
    u = utility("chrf++")
    assert (u("", " "), u("", "Paris"), u("Paris", "")) == (100.0, 0.0, 0.0)
    with pytest.raises(MetricError, match="unknown MBR metric 'cider'"):
        utility("cider")


# --- rerank -----------------------------------------------------------------------------------


def test_rerank_with_a_callable() -> None:
    """A scorer that rewards overlap with the source's words: 2, 0, 2 -> tie between 0 and
    2, the earlier wins; a wrong-length scorer is an error."""

    def overlap(source: str, cands: list[str]) -> list[float]:
        words = set(source.split())
        return [float(len(words & set(c.split()))) for c in cands]

    sel = rerank(["red car", "blue sky", "red car fast"], scorer=overlap, source="red car")
    assert (sel.index, sel.scores, sel.tied) == (0, (2.0, 0.0, 2.0), (0, 2))
    same = rerank(["red car", "red car", "blue"], scorer=overlap, source="red car")
    assert (same.index, same.tied) == (0, (0,))  # equal texts are no tie to break
    assert "tied" not in same.why
    with pytest.raises(EnsembleError, match="returned 1 scores for 2 candidates"):
        rerank(["a", "b"], scorer=lambda s, c: [1.0], source="")
    with pytest.raises(EnsembleError, match="NaN"):
        rerank(["a", "b"], scorer=lambda s, c: [1.0, float("nan")], source="")


def _tiny_classifier(folder: Path, num_labels: int, label2id: dict[str, int] | None = None) -> Path:
    """A 1-layer BERT sequence classifier of width 16 with a word-level tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from taskloop.models.tiny import BUILTIN_CORPUS, build_tokenizer

    tok = build_tokenizer(BUILTIN_CORPUS, append_eos=False, max_length=64)
    extra: dict[str, Any] = (
        {"label2id": label2id, "id2label": {v: k for k, v in label2id.items()}} if label2id else {}
    )
    config = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, num_labels=num_labels,
        pad_token_id=tok.pad_token_id, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _one_by_one(folder: Path, source: str, cands: list[str], index: int) -> list[float]:
    """The classifier's logit ``index`` for each pair alone: no padding, no batching."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return [float(model(**tok(source, c, return_tensors="pt")).logits[0, index]) for c in cands]


def test_rerank_with_a_tiny_reward_model(tmp_path: Path) -> None:
    """Batched, length-sorted and padded scores equal each pair scored alone (the single
    logit); the winner is their argmax."""
    folder = _tiny_classifier(tmp_path / "rm", 1)
    source = "The model runs on a single GPU ."
    cands = ["A dog is running .", "The council voted seven to two", "children play in the park"]
    scorer = reward_scorer(folder, batch_size=2, device="cpu")
    scores = scorer(source, cands)
    alone = _one_by_one(folder, source, cands, 0)
    assert scores == pytest.approx(alone, abs=1e-5)
    sel = rerank(cands, scorer=scorer, source=source)
    assert sel.index == max(range(3), key=lambda i: alone[i])


def test_reward_model_uses_the_positive_label(tmp_path: Path) -> None:
    """Two labels with "positive" at index 0: the reward is logit 0, not logit 1."""
    folder = _tiny_classifier(tmp_path / "rm2", 2, {"positive": 0, "negative": 1})
    from taskloop.models.loader import ModelSpec, load_model

    lm = load_model(ModelSpec(str(folder), kind="classify", device="cpu"))
    cands = ["A dog is running .", "Das Modell läuft"]
    scores = reward_scorer(lm)("a question", cands)
    assert scores == pytest.approx(_one_by_one(folder, "a question", cands, 0), abs=1e-5)
    assert scores != pytest.approx(_one_by_one(folder, "a question", cands, 1), abs=1e-5)


# --- combine and alignment --------------------------------------------------------------------


def _pred(id_: str, output: str | None, task: str = "qa", **extra: object) -> Prediction:
    return Prediction.model_validate(
        {
            "id": id_, "task": task, "where": Where(file=f"{task}.jsonl", row=1),
            "output": output, "status": "ok" if output is not None else "failed", **extra,
        }
    )  # fmt: skip


def test_combine_skips_members_without_output() -> None:
    """q1: A "Paris", B "Lyon", C failed -> A and B tie 1-1, A first; q2: only C answers;
    q3: nobody answers, so no selection."""
    members = {
        "A": [_pred("q1", "Paris"), _pred("q2", None), _pred("q3", None)],
        "B": [_pred("q1", "Lyon"), _pred("q2", None), _pred("q3", None)],
        "C": [_pred("q1", None), _pred("q2", "1066"), _pred("q3", None)],
    }
    sels = combine(members, method="vote")
    assert [(s.id, s.member, s.text, s.members) for s in sels] == [
        ("q1", "A", "Paris", ("A", "B")),
        ("q2", "C", "1066", ("C",)),
    ]
    assert all(s.task == "qa" for s in sels)


def test_combine_mismatched_ids_fail_or_intersect() -> None:
    """B lacks q2 and q3: an error naming counts and ids; "intersection" keeps q1 only and
    says why."""
    members = {
        "A": [_pred("q1", "x"), _pred("q2", "y"), _pred("q3", "z")],
        "B": [_pred("q1", "x")],
    }
    with pytest.raises(EnsembleError, match=r"items per member: A 3, B 1; B lacks 2: qa/q2, qa/q3"):
        combine(members, method="mbr")
    aligned = align(members, on_mismatch="intersection")
    assert [i.id for i in aligned.items] == ["q1"]
    assert "kept the 1 items every member has, dropped 2" in aligned.warnings[0]


def test_combine_plain_strings_by_position_with_sources() -> None:
    """Strings are matched by position (None = no output); rerank gets the item's source."""
    sels = combine(
        {"A": ["short", None], "B": ["a much longer answer", "only B"]},
        method="rerank",
        scorer=lambda source, cands: [float(len(c)) - len(source) for c in cands],
        sources=["src0", "src1"],
    )
    assert [(s.id, s.member, s.scores) for s in sels] == [
        ("0", "B", (1.0, 16.0)),
        ("1", "B", (2.0,)),
    ]
    with pytest.raises(EnsembleError, match="differ in length: A 1, B 2"):
        combine({"A": ["x"], "B": ["x", "y"]}, method="vote")
    with pytest.raises(EnsembleError, match="at least two members"):
        combine({"A": ["x"]}, method="vote")


def test_combine_summaries_by_mbr_uses_rougeL_by_default() -> None:
    """summarize's default utility is ROUGE-L: the two summaries sharing "met at the cafe"
    outscore the outlier; the metric is recorded."""
    members = {
        "lead": [_pred("d1", "Tom met Ann at the cafe .", "summarize")],
        "textrank": [_pred("d1", "Ann and Tom met at the cafe .", "summarize")],
        "short": [_pred("d1", "They argue about money .", "summarize")],
    }
    (sel,) = combine(members, method="mbr")
    assert sel.metric == "rougeL" and sel.member in ("lead", "textrank")
    assert min(sel.scores[:2]) > sel.scores[2]


# --- the CLI ----------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so "ensemble" is a sub-command as in taskloop's app
        """Test app."""

    register(app)
    return app


def _write_run(folder: Path, preds: list[Prediction]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in preds))
    return folder


QA_ROWS = [("q1", "Paris"), ("q2", "1066"), ("q3", "William")]
TR_ROWS = [
    ("t1", "Ein Hund läuft.", "A dog runs."),
    ("t2", "Die Katze schläft.", "The cat sleeps."),
    ("t3", "Es regnet heute.", "It is raining today."),
]
# Each member is wrong on a different item: the vote is right on all of them.
QA_OUT = {
    "A": ["Paris", "1066", "Harold"],
    "B": ["Paris", "1067", "William"],
    "C": ["Lyon", "1066", "William"],
}
TR_OUT = {
    "A": ["A cat runs.", "The cat sleeps.", "It is raining today."],
    "B": ["A dog runs.", "The dog sleeps.", "It is raining today."],
    "C": ["A dog runs.", "The cat sleeps.", "It rains."],
}


def _runs(tmp_path: Path) -> list[Path]:
    runs = []
    for m in ("A", "B", "C"):
        preds = [
            _pred(i, o, model=f"model-{m}", details={"evidence": m})
            for (i, _), o in zip(QA_ROWS, QA_OUT[m], strict=True)
        ] + [
            _pred(i, o, "translate", model=f"model-{m}")
            for (i, _, _), o in zip(TR_ROWS, TR_OUT[m], strict=True)
        ]
        runs.append(_write_run(tmp_path / m, preds))
    return runs


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    qa = [{"id": i, "question": "q?", "context": "c.", "answers": [a]} for i, a in QA_ROWS]
    tr = [{"id": i, "source": s, "target": t} for i, s, t in TR_ROWS]
    (data / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
    (data / "translate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tr))
    return data


def test_cli_vote_writes_results_and_pick_counts(tmp_path: Path) -> None:
    """Vote over A, B, C: 6 items; qa q1 "Paris" (A, B agree; A earlier) ... A is picked
    for q1, q2, t2, t3 (4), B for q3 (B's "William" before C's) and t1 (2), C never."""
    out = tmp_path / "out"
    result = CliRunner().invoke(_app(), ["ensemble", *map(str, _runs(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "picked: A 4 (66.7%), B 2 (33.3%), C 0 (0.0%)" in result.stdout
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["output"] for r in rows] == [
        "Paris", "1066", "William", "A dog runs.", "The cat sleeps.", "It is raining today.",
    ]  # fmt: skip
    assert {r["model"] for r in rows} == {"ensemble(A,B,C)"}
    q3 = rows[2]
    assert q3["details"]["evidence"] == "B"  # the chosen member's own details stay
    assert q3["details"]["ensemble"]["chosen"] == "B"
    assert q3["details"]["ensemble"]["chosen_model"] == "model-B"
    assert q3["details"]["ensemble"]["why"].startswith("2 of 3 votes for 'William'")
    summary = json.loads((out / "ensemble.json").read_text())
    assert summary["picked"] == {"A": 4, "B": 2, "C": 0}


def test_cli_data_scores_ensemble_against_best_member(tmp_path: Path) -> None:
    """QA: every member gets 2 of 3 right (F1 66.67), the vote gets all 3 (100.00), best
    member A (first of three level members): +33.33. Translate: corpus BLEU of each member
    and the ensemble equals sacrebleu's on the same outputs; the ensemble is the references
    (BLEU 100)."""
    out = tmp_path / "out"
    args = ["ensemble", *map(str, _runs(tmp_path)), "-o", str(out), "--data", str(_data(tmp_path))]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert (
        "qa: ensemble vs best single member: f1 (0-100) 100.00 vs 66.67 (A), +33.33"
        in result.stdout
    )
    scores = {s["task"]: s for s in json.loads((out / "ensemble.json").read_text())["scores"]}
    refs = [[t for _, _, t in TR_ROWS]]
    tr = scores["translate"]
    for m, outputs in TR_OUT.items():
        assert tr["primary_values"][m] == pytest.approx(sacrebleu.corpus_bleu(outputs, refs).score)
    assert tr["primary_values"]["ensemble(A,B,C)"] == pytest.approx(100.0)
    assert tr["best_member"] == max(TR_OUT, key=lambda m: tr["primary_values"][m])
    assert scores["qa"]["primary_values"] == pytest.approx(
        {"A": 200 / 3, "B": 200 / 3, "C": 200 / 3, "ensemble(A,B,C)": 100.0}
    )


def test_cli_mbr_and_rerank(tmp_path: Path) -> None:
    """MBR with chrF++ on translate t1: "A dog runs." twice beats "A cat runs." (B chosen);
    rerank with the tiny reward model picks each item's top-scored member."""
    runs = _runs(tmp_path)
    out = tmp_path / "mbr"
    result = CliRunner().invoke(
        _app(),
        ["ensemble", *map(str, runs), "--method", "mbr", "--metric", "chrf++", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["t1"]["details"]["ensemble"]["chosen"] == "B"
    assert rows["t1"]["details"]["ensemble"]["metric"] == "chrf++"

    rm = _tiny_classifier(tmp_path / "rm", 1)
    out = tmp_path / "rr"
    args = ["ensemble", *map(str, runs), "--method", "rerank", "--reward-model", str(rm)]
    args += ["--data", str(_data(tmp_path)), "--device", "cpu", "-o", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    scorer = reward_scorer(rm, device="cpu")
    expected = scorer("Ein Hund läuft.", [TR_OUT[m][0] for m in "ABC"])
    chosen = rows["t1"]["details"]["ensemble"]
    assert chosen["chosen"] == "ABC"[max(range(3), key=lambda i: (expected[i], -i))]
    assert [c["score"] for c in chosen["candidates"]] == pytest.approx(expected, abs=1e-4)


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    """Mismatched members, rerank without a reward model, a bad row: error[code] lines,
    no traceback; --intersection goes on with a warning."""
    a = _write_run(tmp_path / "A", [_pred("q1", "x"), _pred("q2", "y")])
    b = _write_run(tmp_path / "B", [_pred("q1", "x")])
    app = _app()
    runner = CliRunner()
    result = runner.invoke(app, ["ensemble", str(a), str(b), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error[evaluate.ensemble]: members do not cover the same items" in result.stderr
    assert "B lacks 1: qa/q2" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(
        app, ["ensemble", str(a), str(b), "--intersection", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: kept the 1 items every member has, dropped 1" in result.stderr
    result = runner.invoke(
        app, ["ensemble", str(a), str(a), "--method", "rerank", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "needs --reward-model" in result.stderr
    (tmp_path / "bad.jsonl").write_text('{"id": "q1"}\n')
    result = runner.invoke(
        app, ["ensemble", str(a), str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 4
    assert "bad.jsonl:1: not a prediction row: task: Field required" in result.stderr


def test_read_results_repeated_id(tmp_path: Path) -> None:
    """The same (task, id) twice in one member names both lines."""
    run = _write_run(tmp_path / "r", [_pred("q1", "x"), _pred("q1", "y")])
    with pytest.raises(EvalInputError, match=r"results.jsonl:2: qa id 'q1' repeats line 1"):
        read_results(run)


def test_cli_items_missing_from_data(tmp_path: Path) -> None:
    """--data with the QA rows only: the 3 translations are not scored (a warning naming
    them); rerank, which needs every item's source, refuses."""
    runs = [str(p) for p in _runs(tmp_path)]
    data = _data(tmp_path)
    (data / "translate.jsonl").unlink()
    runner = CliRunner()
    result = runner.invoke(
        _app(), ["ensemble", *runs, "--data", str(data), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: 3 items are not in --data" in result.stderr
    assert "translate/t1, translate/t2, translate/t3): not scored" in result.stderr
    scores = json.loads((tmp_path / "o" / "ensemble.json").read_text())["scores"]
    assert [s["task"] for s in scores] == ["qa"]
    rm = _tiny_classifier(tmp_path / "rm", 1)
    args = ["ensemble", *runs, "--method", "rerank", "--reward-model", str(rm)]
    result = runner.invoke(_app(), [*args, "--data", str(data), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "rerank needs every item's source: 3 items are not in" in result.stderr
