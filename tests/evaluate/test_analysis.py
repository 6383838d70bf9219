"""Error analysis: error types of crafted items, groups, length buckets and hard examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskloop.data.loader import load_file
from taskloop.evaluate.analysis import (
    ERROR_TYPES,
    LOW_SCORE,
    analyse,
    bucket_lengths,
    find_errors,
    hard_example_rows,
    hard_examples,
    item_hardness,
    thresholds,
    write_hard_examples,
)
from taskloop.evaluate.errors import EvaluateError
from taskloop.evaluate.records import EvalItem, ItemScore, TaskEval


def score(primary: float | None = 90.0, **item: Any) -> ItemScore:
    """An ItemScore of a crafted EvalItem; the primary defaults to a passing 90."""
    item.setdefault("id", "x")
    return ItemScore(item=EvalItem(**item), primary=primary)


def errors(primary: float | None = 90.0, **item: Any) -> list[str]:
    return find_errors(score(primary, **item))


TR: dict[str, Any] = {"task": "translate", "source_lang": "en", "target_lang": "de"}
SUM_SOURCE = "Anna met Dr. Bob Smith in Paris on Monday. They ate 1,000 cakes."


# ------------------------------------------------------------------------ error types


def test_error_types_are_the_documented_names() -> None:
    assert ERROR_TYPES == (
        "failed_run", "empty_output", "no_answer_confusion", "hallucinated_number",
        "hallucinated_entity", "missed_glossary_term", "failed_test", "wrong_language",
        "low_score",
    )  # fmt: skip
    assert set(LOW_SCORE) == {"translate", "summarize", "qa", "codegen"}


@pytest.mark.parametrize("status", ["failed", "skipped"])
def test_failed_run_is_the_only_content_error_of_a_run_without_output(status: str) -> None:
    """No output: not also empty_output; a primary of 0 is still low."""
    assert errors(None, task="summarize", status=status) == ["failed_run"]
    assert errors(0.0, task="summarize", status=status) == ["failed_run", "low_score"]
    assert (
        errors(task="summarize", status="flagged", source=SUM_SOURCE, prediction="Anna met Bob.")
        == []
    )


def test_empty_output_but_not_for_qa() -> None:
    assert errors(task="summarize", prediction="  \n") == ["empty_output"]
    assert errors(task="codegen", prediction="") == ["empty_output"]
    assert errors(task="summarize", prediction="Anna.") == []
    # qa: "" to an answerable question is a no-answer confusion, not an empty output
    assert errors(task="qa", prediction="", references=("Paris",), answerable=True) == [
        "no_answer_confusion"
    ]


@pytest.mark.parametrize(
    ("prediction", "answerable", "references", "confused"),
    [
        ("Paris", False, (), True),  # answered an unanswerable question
        ("", True, ("Paris",), True),  # no answer to an answerable one
        ("unanswerable", None, ("Paris",), True),  # unknown, but references say answerable
        ("", False, (), False),  # rightly no answer
        ("No answer", False, (), False),  # a no-answer phrase is no answer
        ("Paris", True, ("Paris",), False),
        ("", None, (), False),  # nothing says whether an answer exists
    ],
)
def test_no_answer_confusion(
    prediction: str, answerable: bool | None, references: tuple[str, ...], confused: bool
) -> None:
    found = errors(
        task="qa", source="Anna lives in Paris.", question="Where does Anna live?",
        prediction=prediction, answerable=answerable, references=references,
    )  # fmt: skip
    assert ("no_answer_confusion" in found) is confused


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"task": "summarize", "source": SUM_SOURCE, "prediction": "They ate 4 cakes."}, True),
        # "1000" is 1,000 in canonical form; "one" is a pronoun, not a number
        ({"task": "summarize", "source": SUM_SOURCE, "prediction": "One ate 1000 cakes."}, False),
        # qa: numbers of the question count as the source's
        (
            {
                "task": "qa",
                "source": "It opened then.",
                "question": "Did it open in 1990?",
                "prediction": "in 1990",
                "answerable": True,
                "references": ("1990",),
            },
            False,
        ),
        (
            {
                "task": "qa",
                "source": "It opened in 1990.",
                "prediction": "1991",
                "answerable": True,
                "references": ("1990",),
            },
            True,
        ),
        # translation: each side with its decimal mark (4.5 is 4,5 in German)
        ({**TR, "source": "It costs 4.5 euros.", "prediction": "Es kostet 4,5 Euro."}, False),
        ({**TR, "source": "It costs 4.5 euros.", "prediction": "Es kostet 4.5 Euro."}, False),
        ({**TR, "source": "It costs 4.5 euros.", "prediction": "Es kostet 5 Euro."}, True),
        # codegen: constants of the code are not compared
        ({"task": "codegen", "source": "def f():", "prediction": "return 42"}, False),
    ],
)
def test_hallucinated_number(item: dict[str, Any], expected: bool) -> None:
    assert ("hallucinated_number" in errors(**item)) is expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"task": "summarize", "source": SUM_SOURCE, "prediction": "Anna met Carl."}, True),
        # a part that is not a title is enough ("Mr. Smith" → Smith), case does not matter
        ({"task": "summarize", "source": SUM_SOURCE, "prediction": "Then Mr. Smith left."}, False),
        ({"task": "summarize", "source": SUM_SOURCE, "prediction": "They flew to PARIS."}, False),
        (
            {
                "task": "qa",
                "source": "Anna lives in Paris.",
                "prediction": "near Lyon",
                "answerable": True,
                "references": ("Paris",),
            },
            True,
        ),
        # translation: names may be transliterated, so they are not checked
        ({**TR, "source": "Anna went to Moscow.", "prediction": "Anna fuhr nach Moskau."}, False),
    ],
)
def test_hallucinated_entity(item: dict[str, Any], expected: bool) -> None:
    assert ("hallucinated_entity" in errors(**item)) is expected


def test_missed_glossary_term_only_for_translation() -> None:
    base: dict[str, Any] = {"source": "Open the invoice.", "prediction": "Öffnen Sie die Rechnung."}
    assert "missed_glossary_term" in errors(**TR, **base, failed_checks=("glossary_terms",))
    assert "missed_glossary_term" not in errors(**TR, **base, failed_checks=("length_ratio",))
    assert "missed_glossary_term" not in errors(
        task="summarize", **base, failed_checks=("glossary_terms",)
    )


@pytest.mark.parametrize(
    ("samples", "correct", "checks", "expected"),
    [
        (3, 0, (), True),  # samples drawn, none passes the reference tests
        (None, None, ("reference_tests",), True),
        (None, None, ("generated_tests",), True),
        (3, 1, (), False),
        (0, 0, (), False),  # nothing drawn: nothing failed
        (None, None, ("syntax_warning",), False),
    ],
)
def test_failed_test(
    samples: int | None, correct: int | None, checks: tuple[str, ...], expected: bool
) -> None:
    found = errors(
        task="codegen", source="def f():", prediction="    return 1", samples=samples,
        correct=correct, failed_checks=checks,
    )  # fmt: skip
    assert ("failed_test" in found) is expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({**TR, "source": "a", "prediction": "b", "failed_checks": ("untranslated_copy",)}, True),
        # an English copy: "the", "is", "with" are English-only function words, none German
        (
            {
                **TR,
                "source": "The dog is in the garden with the cat.",
                "prediction": "The dog is in the garden with the cat.",
            },
            True,
        ),
        ({**TR, "source": "The dog sleeps.", "prediction": "Собака спит."}, True),  # Cyrillic
        (
            {
                **TR,
                "source": "The dog is in the garden.",
                "prediction": "Der Hund ist in dem Garten.",
            },
            False,
        ),
        # no target language known: only the run's checks can tell
        (
            {
                "task": "translate",
                "source": "The dog is in the garden with the cat.",
                "prediction": "The dog is in the garden with the cat.",
            },
            False,
        ),
    ],
)
def test_wrong_language(item: dict[str, Any], expected: bool) -> None:
    assert ("wrong_language" in errors(**item)) is expected


def test_low_score_threshold_per_task_and_given() -> None:
    """translate 40: 39.9 is low, 40 is not; qa 50; an unscored item is never low."""
    assert errors(39.9, **TR, source="a", prediction="b") == ["low_score"]
    assert errors(40.0, **TR, source="a", prediction="b") == []
    assert errors(None, **TR, source="a", prediction="b") == []
    assert "low_score" in errors(49.0, task="qa", prediction="x", references=("x",))
    assert find_errors(score(60.0, **TR, source="a", prediction="b"), low_score=70.0) == [
        "low_score"
    ]


def test_thresholds_take_a_number_or_a_mapping_and_refuse_bad_values() -> None:
    assert thresholds(None) == LOW_SCORE
    assert set(thresholds(30).values()) == {30.0}
    assert thresholds({"qa": 70})["qa"] == 70.0
    assert thresholds({"qa": 70})["translate"] == LOW_SCORE["translate"]
    with pytest.raises(EvaluateError, match="unknown task"):
        thresholds({"chat": 10})
    with pytest.raises(EvaluateError, match="0-100"):
        thresholds(0.5 * 300)


# ------------------------------------------------------------------------ grouping


def test_bucket_lengths_quantiles_and_labels() -> None:
    """Counts 1..8, 4 buckets: cut points at the 25/50/75% quantiles (linear rule)
    2.75, 4.5, 6.25 → {1,2}, {3,4}, {5,6}, {7,8}.

    [1,1,1,1,1,1,9,10]: quantile positions 1.75, 3.5, 5.25 → cuts 1, 1, 1 + 0.25·8 = 3;
    1 ≤ the first cut (bucket 0), 9 and 10 exceed all three (bucket 3); the empty buckets
    1 and 2 are dropped, so the two left are numbered 0 and 1.
    """
    index, labels = bucket_lengths(list(range(1, 9)), 4)
    assert labels == ["1-2 words", "3-4 words", "5-6 words", "7-8 words"]
    assert index == [0, 0, 1, 1, 2, 2, 3, 3]
    index, labels = bucket_lengths([1, 1, 1, 1, 1, 1, 9, 10], 4)
    assert labels == ["1 word", "9-10 words"]
    assert index == [0] * 6 + [1, 1]
    # a count equal to a cut point stays below it: median of 1..5 is 3 → {1,2,3}, {4,5}
    assert bucket_lengths([1, 2, 3, 4, 5], 2) == ([0, 0, 0, 1, 1], ["1-3 words", "4-5 words"])
    assert bucket_lengths([5, 5, 5], 4) == ([0, 0, 0], ["5 words"])
    assert bucket_lengths([3, 9], 1) == ([0, 0], ["3-9 words"])
    assert bucket_lengths([], 4) == ([], [])


def words(n: int) -> str:
    return " ".join(["word"] * n)


def translate_task() -> TaskEval:
    """Eight translations with sources of 1..8 words (see the grouping test)."""
    rows: list[tuple[str, int, float, dict[str, Any]]] = [
        # id, words, primary, extra fields
        ("k1", 1, 90.0, {}),
        ("k2", 2, 30.0, {}),
        ("k3", 3, 35.0, {"failed_checks": ("glossary_terms",)}),
        ("k4", 4, 60.0, {}),
        ("k5", 5, 20.0, {"status": "failed", "prediction": ""}),
        ("k6", 6, 80.0, {}),
        ("k7", 7, 30.0, {"failed_checks": ("glossary_terms",), "source_lang": "fr"}),
        ("a8", 8, 30.0, {}),
    ]
    items = []
    for id_, n, primary, extra in rows:
        item: dict[str, Any] = {**TR, "id": id_, "source": words(n), "prediction": "Haus"}
        items.append(score(primary, **{**item, **extra}))
    return TaskEval(task="translate", n=len(items), primary="bleu", items=items)


def qa_task() -> TaskEval:
    items = [
        score(0.0, task="qa", id="q1", source="Anna lives in Paris.", prediction="Paris",
              answerable=False),
        score(100.0, task="qa", id="q2", source="Bob lives in Rome.", prediction="Rome",
              answerable=True, references=("Rome",)),
    ]  # fmt: skip
    return TaskEval(task="qa", n=2, primary="f1", items=items)


def test_groups_by_error_length_and_language_with_counts_shares_and_worst() -> None:
    """Translate, 8 items (thresholds 40 translate, 50 qa; worst=3):

    wrong: k2 [low 30], k3 [glossary, low 35], k5 [failed_run, low 20],
    k7 [glossary, low 30, fr→de], a8 [low 30]; k1, k4, k6 score ≥ 60 and are right.

    - failed_run: 1 item, share 1/8, mean 20, worst [k5];
    - missed_glossary_term: k3, k7 → 2/8, mean (35+30)/2 = 32.5, worst k7 (30) then k3;
    - low_score: 5/8, mean (30+35+20+30+30)/5 = 29; worst k5 (20), then the 30s by id:
      a8, k2 (k7 is cut by worst=3);
    - length (words 1..8 → 1-2, 3-4, 5-6, 7-8): k2 | k3 | k5 | k7, a8 (mean 30, a8 first);
    - language: en→de k2, k3, k5, a8 (4/8, mean (30+35+20+30)/4 = 28.75), then fr→de k7.

    QA: q1 answers an unanswerable question with F1 0: no_answer_confusion and low_score,
    each 1/2; both contexts have 4 words → one bucket, no length groups; no language.
    """
    tasks = [translate_task(), qa_task()]
    result = analyse(tasks, worst=3)
    got = [
        (g.task, g.by, g.value, g.count, g.share, g.mean_score, [s.item.id for s in g.worst])
        for g in result.groups
    ]
    assert got == [
        ("translate", "error", "failed_run", 1, 1 / 8, 20.0, ["k5"]),
        ("translate", "error", "missed_glossary_term", 2, 2 / 8, 32.5, ["k7", "k3"]),
        ("translate", "error", "low_score", 5, 5 / 8, 29.0, ["k5", "a8", "k2"]),
        ("translate", "length", "1-2 words", 1, 1 / 8, 30.0, ["k2"]),
        ("translate", "length", "3-4 words", 1, 1 / 8, 35.0, ["k3"]),
        ("translate", "length", "5-6 words", 1, 1 / 8, 20.0, ["k5"]),
        ("translate", "length", "7-8 words", 2, 2 / 8, 30.0, ["a8", "k7"]),
        ("translate", "language", "en→de", 4, 4 / 8, 28.75, ["k5", "a8", "k2"]),
        ("translate", "language", "fr→de", 1, 1 / 8, 30.0, ["k7"]),
        ("qa", "error", "no_answer_confusion", 1, 1 / 2, 0.0, ["q1"]),
        ("qa", "error", "low_score", 1, 1 / 2, 0.0, ["q1"]),
    ]
    assert result.counts == {
        **dict.fromkeys(ERROR_TYPES, 0),
        "failed_run": 1, "missed_glossary_term": 2, "no_answer_confusion": 1, "low_score": 6,
    }  # fmt: skip
    assert result.low_score == {"translate": 40.0, "qa": 50.0}  # each task's threshold
    # errors are filled in place, [] for right items
    assert [s.errors for s in tasks[0].items[:3]] == [
        [],
        ["low_score"],
        ["missed_glossary_term", "low_score"],
    ]
    assert tasks[1].items[1].errors == []


def test_a_given_threshold_changes_what_is_low_and_worst_zero_shows_none() -> None:
    """low_score=25: only k5 (20) is low; k2 and a8 (30) are no longer wrong at all."""
    task = translate_task()
    result = analyse([task], low_score=25, worst=0)
    assert result.low_score == {"translate": 25.0}
    assert result.counts["low_score"] == 1
    assert task.items[1].errors == []
    assert all(g.worst == [] for g in result.groups)
    with pytest.raises(EvaluateError, match="worst"):
        analyse([task], worst=-1)
    with pytest.raises(EvaluateError, match="length_buckets"):
        analyse([task], length_buckets=0)


# ------------------------------------------------------------------------ hard examples


def test_item_hardness_rule() -> None:
    """1 - primary/100; at least 0.5 with an error other than low_score; 1 without a score."""
    assert item_hardness(30.0, ["low_score"]) == 0.7
    assert item_hardness(80.0, ["hallucinated_number"]) == 0.5
    assert item_hardness(80.0, ["low_score"]) == pytest.approx(0.2)
    assert item_hardness(10.0, ["failed_test", "low_score"]) == 0.9
    assert item_hardness(None, ["failed_run"]) == 1.0
    assert item_hardness(100.0, []) == 0.0


def hard_tasks() -> list[TaskEval]:
    code_details = {"entry_point": "add", "test": "def check(c):\n    assert c(1, 2) == 3\n",
                    "canonical_solution": "    return a + b\n"}  # fmt: skip
    translate = [
        score(
            30.0,
            **TR,
            id="t-low",
            source="The dog sleeps.",
            prediction="Katze",
            references=("Der Hund schläft.",),
        ),
        # a fair chrF++ but a missed glossary term: hardness raised to 0.5
        score(
            80.0,
            **TR,
            id="t-gloss",
            source="Open the invoice.",
            prediction="Öffne die Akte.",
            references=("Öffne die Rechnung.",),
            failed_checks=("glossary_terms",),
        ),
        score(90.0, **TR, id="t-ok", source="Hello.", prediction="Hallo.", references=("Hallo.",)),
        score(10.0, **TR, id="t-noref", source="Hi.", prediction="Tschüss."),
        score(None, **TR, id="t-skip", source="Hi.", status="skipped", references=("Hallo.",)),
        score(10.0, **TR, id="t-nosource", source="", prediction="x", references=("y",)),
    ]
    qa = [
        score(
            0.0,
            task="qa",
            id="q-impossible",
            source="Anna lives in Paris.",
            question="Where does Bob live?",
            prediction="Paris",
            answerable=False,
        ),
        score(
            0.0,
            task="qa",
            id="q-missed",
            source="Anna lives in Paris.",
            question="Where does Anna live?",
            prediction="",
            answerable=True,
            references=("Paris", "in Paris"),
        ),
    ]
    summarize = [
        score(
            10.0,
            task="summarize",
            id="s1",
            source="Anna met Bob. They ate cake.",
            prediction="Cake.",
            references=("Anna and Bob ate cake.",),
        ),
    ]
    codegen = [
        score(0.0, task="codegen", id="c-test", source="def add(a, b):\n", prediction="pass",
              samples=2, correct=0, details=code_details),
        score(0.0, task="codegen", id="c-none", source="def sub(a, b):\n", prediction="pass",
              samples=2, correct=0, details={"entry_point": "sub"}),
    ]  # fmt: skip
    return [
        TaskEval(task=t, n=len(items), primary="p", items=items)
        for t, items in (("translate", translate), ("qa", qa), ("summarize", summarize),
                         ("codegen", codegen))
    ]  # fmt: skip


def test_hard_example_rows_per_task_and_what_is_left_out() -> None:
    """t-low 1-0.30 = 0.7; t-gloss max(0.2, 0.5) = 0.5; q-* primary 0 → 1.0; s1 0.9;
    c-test 1.0. Left out: t-noref (no reference), t-skip (not run), t-nosource (the loader
    refuses an empty source) and c-none (no test to check it with); t-ok is right."""
    rows, skipped = hard_example_rows(hard_tasks())
    assert rows == [
        {"task": "translate", "id": "t-low", "source": "The dog sleeps.",
         "target": "Der Hund schläft.", "source_lang": "en", "target_lang": "de",
         "hardness": 0.7},
        {"task": "translate", "id": "t-gloss", "source": "Open the invoice.",
         "target": "Öffne die Rechnung.", "source_lang": "en", "target_lang": "de",
         "hardness": 0.5},
        {"task": "qa", "id": "q-impossible", "question": "Where does Bob live?",
         "context": "Anna lives in Paris.", "answers": [], "is_impossible": True,
         "hardness": 1.0},
        {"task": "qa", "id": "q-missed", "question": "Where does Anna live?",
         "context": "Anna lives in Paris.", "answers": ["Paris", "in Paris"],
         "is_impossible": False, "hardness": 1.0},
        {"task": "summarize", "id": "s1", "document": "Anna met Bob. They ate cake.",
         "summaries": ["Anna and Bob ate cake."], "hardness": 0.9},
        {"task": "codegen", "id": "c-test", "prompt": "def add(a, b):\n", "entry_point": "add",
         "test": "def check(c):\n    assert c(1, 2) == 3\n",
         "completion": "    return a + b\n", "hardness": 1.0},
    ]  # fmt: skip
    assert skipped == {"no_reference": 1, "not_rebuildable": 2, "not_run": 1}
    assert hard_examples(hard_tasks()) == rows


def test_hard_examples_round_trip_through_the_task_loader(tmp_path: Path) -> None:
    """Written rows load back with no bad row and no ignored field, hardness kept."""
    rows = hard_examples(hard_tasks())
    path = tmp_path / "out" / "hard.jsonl"
    assert write_hard_examples(rows, path) == 6
    assert [json.loads(line) for line in path.read_text("utf-8").splitlines()] == rows
    loaded = load_file(path)
    assert loaded.errors == [] and loaded.warnings == []
    examples = {ex.id: ex for g in loaded.groups for ex in g.examples}
    assert {i: ex.hardness for i, ex in examples.items()} == {
        "t-low": 0.7, "t-gloss": 0.5, "q-impossible": 1.0, "q-missed": 1.0, "s1": 0.9,
        "c-test": 1.0,
    }  # fmt: skip
    assert examples["t-low"].target == "Der Hund schläft."  # type: ignore[union-attr]
    assert examples["q-impossible"].is_impossible is True  # type: ignore[union-attr]
    assert examples["c-test"].completion == "    return a + b\n"  # type: ignore[union-attr]


def test_write_hard_examples_wants_a_jsonl_name(tmp_path: Path) -> None:
    with pytest.raises(EvaluateError, match=r"\.jsonl"):
        write_hard_examples([], tmp_path / "hard.json")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EvaluateError, match="cannot write"):
        write_hard_examples([{"task": "qa"}], blocker / "hard.jsonl")
