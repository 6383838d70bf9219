"""clean_labels: each rule on crafted rows, the order of rules, reports and warnings."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from taskloop.data.cleaning import (
    RULES,
    CleanReport,
    clean_labels,
    detect_language,
    jaccard,
    shingles,
)
from taskloop.data.records import (
    CodegenExample,
    Example,
    QAExample,
    SummarizeExample,
    TranslateExample,
    Where,
)
from taskloop.train.errors import TrainConfigError


def tr(
    i: int, source: str, target: str | None, file: str = "t.jsonl", **kw: str
) -> TranslateExample:
    return TranslateExample(
        id=f"t{i}", where=Where(file=file, row=i), source=source, target=target, **kw
    )


def qa(i: int, question: str, context: str, answers: list[str], **kw: bool) -> QAExample:
    return QAExample(
        id=f"q{i}",
        where=Where(file="qa.jsonl", row=i),
        question=question,
        context=context,
        answers=answers,
        **kw,
    )


def summ(i: int, document: str, summaries: list[str]) -> SummarizeExample:
    return SummarizeExample(
        id=f"s{i}", where=Where(file="s.jsonl", row=i), document=document, summaries=summaries
    )


def code(i: int, prompt: str, completion: str | None) -> CodegenExample:
    return CodegenExample(
        id=f"c{i}", where=Where(file="c.jsonl", row=i), prompt=prompt, completion=completion
    )


def removed_by(report: CleanReport) -> dict[str, str]:
    return {r.id: r.rule for r in report.removed}


DOG_EN = "A dog runs across the green meadow."
DOG_DE = "Ein Hund rennt über die grüne Wiese."


def test_empty_labels_of_every_task() -> None:
    rows: list[Example] = [
        tr(1, DOG_EN, "   "),
        tr(2, DOG_EN + " Again.", None),
        summ(3, "A long document about dogs.", ["", "  "]),
        summ(4, "Another document about cats.", []),
        qa(5, "Who?", "Nobody knows.", [" "]),
        qa(6, "Why?", "Nobody knows.", [], is_impossible=True),  # "no answer" is a label
        code(7, "def f():\n", None),
        code(8, "def g():\n", "    return 1\n"),
    ]
    report = clean_labels(rows)
    assert removed_by(report) == {
        "t1": "empty_label",
        "t2": "empty_label",
        "s3": "empty_label",
        "s4": "empty_label",
        "q5": "empty_label",
        "c7": "empty_label",
    }
    assert [ex.id for ex in report.kept] == ["q6", "c8"]
    assert report.counts["empty_label"] == 6
    assert report.total == 8
    details = {r.id: r.detail for r in report.removed}
    assert details["t1"] == "blank target" and details["t2"] == "no target"


def test_exact_duplicates_ignore_case_and_spacing_and_keep_the_first() -> None:
    rows = [
        tr(1, DOG_EN, DOG_DE),
        tr(2, "a dog  runs across the GREEN meadow.", "ein Hund rennt über die grüne Wiese."),
        tr(3, DOG_EN, "Ein Hund läuft über die grüne Wiese."),  # another label: kept
    ]
    report = clean_labels(rows, rules=["duplicate"])
    assert removed_by(report) == {"t2": "duplicate"}
    assert "t1 (t.jsonl:1)" in report.removed[0].detail
    assert [ex.id for ex in report.kept] == ["t1", "t3"]


def test_near_duplicate_threshold_on_hand_computed_similarity() -> None:
    """Character 3-grams of "abcdef" are {abc, bcd, cde, def}, of "abcdeg" {abc, bcd, cde,
    deg}: 3 shared of 5 distinct, Jaccard 3/5 = 0.6. Same label, so at threshold 0.6 the
    second row goes and at 0.61 it stays."""
    assert jaccard(shingles("abcdef"), shingles("abcdeg")) == pytest.approx(0.6)
    rows = [tr(1, "abcdef", "x y z"), tr(2, "abcdeg", "x y z"), tr(3, "abcdeh", "other")]
    at = clean_labels(rows, rules=["near_duplicate"], near_duplicate_threshold=0.6)
    assert removed_by(at) == {"t2": "near_duplicate"}
    assert "similarity 0.60" in at.removed[0].detail
    above = clean_labels(rows, rules=["near_duplicate"], near_duplicate_threshold=0.61)
    assert above.removed == []


def test_near_duplicates_in_a_large_group_use_minhash_and_find_the_copies() -> None:
    """60 rows with one label (above the pairwise limit, so MinHash banding runs): 50
    distinct inputs, then 10 that repeat earlier inputs with other punctuation and case
    (similarity 1.0 after normalisation). Exactly the 10 copies go, each naming the row it
    repeats; no distinct row is lost (candidates are verified exactly)."""
    words = ["red", "blue", "green", "yellow", "black", "white", "brown", "pink", "grey", "orange"]
    animals = ["dog", "cat", "horse", "cow", "sheep"]
    inputs = [f"The {w} {a} sleeps under a tree." for w in words for a in animals]
    copies = [inputs[k].upper().replace(".", "!") for k in range(0, 50, 5)]
    rows = [tr(i, text, "Ein Tier.") for i, text in enumerate(inputs + copies)]
    report = clean_labels(rows, rules=["near_duplicate"])
    assert sorted(removed_by(report)) == sorted(f"t{i}" for i in range(50, 60))
    for r, k in zip(report.removed, range(0, 50, 5), strict=True):
        assert f"same label as t{k} " in r.detail


def test_qa_near_duplicates_compare_questions_within_one_context() -> None:
    context = "Paris is the capital of France. Berlin is the capital of Germany."
    rows = [
        qa(1, "What is the capital of France?", context, ["Paris"]),
        qa(2, "What is the capital of France ?", context, ["Paris"]),  # a repeat
        qa(3, "Which city is the capital of France?", context, ["Paris"]),  # another question
        qa(4, "What is the capital of Germany?", context, ["Berlin"]),
    ]
    report = clean_labels(rows, rules=["near_duplicate"])
    assert removed_by(report) == {"q2": "near_duplicate"}


def test_copied_source_for_translations_and_summaries() -> None:
    rows: list[Example] = [
        tr(1, DOG_EN, DOG_EN.upper()),
        tr(2, "Hotel Berlin", "Hotel Berlin"),  # two words: a name may translate to itself
        tr(3, DOG_EN, "„" + DOG_EN + "“"),
        summ(4, "The council met. It voted.", ["The council met. It voted."]),
    ]
    report = clean_labels(rows, rules=["copied_source"])
    assert removed_by(report) == {
        "t1": "copied_source",
        "t3": "copied_source",
        "s4": "copied_source",
    }


def test_wrong_script_and_wrong_language() -> None:
    rows = [
        tr(1, DOG_EN, DOG_DE, target_lang="de"),
        tr(2, DOG_EN, "Собака бежит по зелёному лугу.", target_lang="de"),
        tr(3, DOG_EN, "The dog is running with his owner on the grass.", target_lang="de"),
        tr(4, DOG_EN, "狗跑过绿色的草地。", target_lang="de"),
        tr(5, DOG_EN, "Собака бежит по зелёному лугу.", target_lang="ru"),
    ]
    report = clean_labels(rows, rules=["wrong_language"])
    assert removed_by(report) == {
        "t2": "wrong_language",
        "t3": "wrong_language",
        "t4": "wrong_language",
    }
    details = {r.id: r.detail for r in report.removed}
    assert "CYRILLIC" in details["t2"] and "CJK" in details["t4"]
    assert "no de function words" in details["t3"] and "en" in details["t3"]


def test_wrong_language_from_the_files_majority_when_rows_do_not_say() -> None:
    """Ten German targets fix the file's language; the English one is then wrong. With
    fewer than ten rows there is no majority to judge by, and nothing is removed."""
    german = [
        "Ein Mann fährt mit dem Fahrrad auf der Straße.",
        "Zwei Kinder spielen im Park mit einem Ball.",
        "Eine Frau liest ein Buch auf der Bank.",
        "Der Hund springt über den Zaun.",
        "Ein Junge isst ein Eis am Strand.",
        "Die Katze schläft auf dem Sofa.",
        "Ein Mädchen malt ein Bild mit der Hand.",
        "Zwei Männer arbeiten auf einer Baustelle.",
        "Eine Gruppe von Leuten steht vor dem Haus.",
        "Ein älterer Mann sitzt auf einer Bank im Park.",
    ]
    rows = [tr(i, f"source sentence number {i}", t) for i, t in enumerate(german)]
    rows.append(tr(99, "source sentence number 99", "A man is sitting on the bench with his dog."))
    assert removed_by(clean_labels(rows, rules=["wrong_language"])) == {"t99": "wrong_language"}
    assert clean_labels(rows[5:], rules=["wrong_language"]).removed == []


def test_detect_language_needs_two_words_and_a_clear_lead() -> None:
    assert detect_language("Der Hund und die Katze schlafen.") == "de"
    assert detect_language("The dog and the cat are sleeping.") == "en"
    assert detect_language("Hund") is None  # no function word at all
    assert detect_language("in") is None  # one word, listed for several languages


def test_summary_in_another_script_than_its_document() -> None:
    doc = "The council met on Monday and voted to build new cycling lanes in the city centre."
    rows = [summ(1, doc, ["Совет проголосовал за велодорожки.", "The council voted for lanes."])]
    report = clean_labels(rows, rules=["wrong_language"])
    assert report.removed == []
    assert report.kept[0].summaries == ["The council voted for lanes."]  # type: ignore[union-attr]
    assert report.trimmed == {"wrong_language": 1}


def test_length_ratio_band() -> None:
    """Target/source characters: 100/20 = 5.0 is above 3.0, 20/20 = 1.0 inside; a pair
    shorter than 10 characters on both sides is not judged (8/2 = 4.0 kept)."""
    rows = [
        tr(1, "a" * 20, "b" * 100),
        tr(2, "c" * 20, "d" * 20),
        tr(3, "ja", "ja, gern"),
    ]
    report = clean_labels(rows, rules=["length_ratio"])
    assert removed_by(report) == {"t1": "length_ratio"}
    assert "5.00 (100/20 chars) outside 0.3–3.0" in report.removed[0].detail


def test_length_ratio_robust_outlier_of_the_file() -> None:
    """41 rows, sources of 50 characters: 20 targets of 50 (log ratio 0), 20 of 51
    (log 1.02 = 0.0198) and one of 100 (log 2 = 0.6931), all inside the 0.3–3.0 band.
    Sorted logs: the 21st (median) is 0.0198. Deviations: 20 of 0.0198, 20 of 0, one of
    0.6733; their median (MAD) is 0.0198. Robust z = (log r − median) / (1.4826 · MAD):
    the 2.0 row has 0.6733 / 0.02936 = 22.9 > 6 and goes; a 1.0 row has −0.67, a 1.02 row
    0: both stay."""
    rows = [tr(i, f"{i:02d}" + "s" * 48, "t" * 50) for i in range(20)]
    rows += [tr(i, f"{i:02d}" + "s" * 48, "t" * 51) for i in range(20, 40)]
    rows.append(tr(40, "40" + "s" * 48, "t" * 100))
    report = clean_labels(rows, rules=["length_ratio"])
    assert removed_by(report) == {"t40": "length_ratio"}
    z = (math.log(2.0) - math.log(1.02)) / (1.4826 * math.log(1.02))
    assert f"z = +{z:.1f}" in report.removed[0].detail
    # Fewer than 30 rows: no file statistics, the band alone decides.
    assert clean_labels(rows[10:30] + rows[40:], rules=["length_ratio"]).removed == []


def test_answer_not_in_context_trims_answers_and_removes_rows_without_one() -> None:
    context = "The Eiffel Tower stands in  Paris, the capital of France."
    rows = [
        qa(1, "Where is the tower?", context, ["paris", "London"]),
        qa(2, "Which country?", context, ["Germany"]),
        qa(3, "Who built it?", context, [], is_impossible=True),
    ]
    report = clean_labels(rows, rules=["answer_not_in_context"])
    assert removed_by(report) == {"q2": "answer_not_in_context"}
    assert report.kept[0].answers == ["paris"]  # type: ignore[union-attr]
    assert report.trimmed == {"answer_not_in_context": 1}
    assert "'Germany'" in report.removed[0].detail


def test_summary_not_shorter_and_code_does_not_parse() -> None:
    rows: list[Example] = [
        summ(1, "Short doc.", ["A summary that is longer than its document."]),
        summ(2, "A document that is much longer than its summary.", ["Short."]),
        code(3, "def f(x):\n", "    return (x\n"),
        code(4, "def f(x):\n", "    return x\n"),
    ]
    report = clean_labels(rows, rules=["summary_not_shorter", "code_does_not_parse"])
    assert removed_by(report) == {"s1": "summary_not_shorter", "c3": "code_does_not_parse"}
    assert report.removed[1].detail.startswith("line 2")


def test_per_row_rules_run_before_duplicates() -> None:
    """Row 1 loses its second summary (not shorter than the document), which makes it the
    same as row 2: the duplicate rule sees the cleaned rows and removes row 2."""
    doc = "The council met on Monday and voted for new lanes."
    rows = [
        summ(1, doc, ["Council voted.", doc + " And much more text after it."]),
        summ(2, doc, ["council  voted."]),
    ]
    report = clean_labels(rows)
    assert removed_by(report) == {"s2": "duplicate"}
    assert report.kept[0].summaries == ["Council voted."]  # type: ignore[union-attr]
    assert report.trimmed == {"summary_not_shorter": 1}


def test_only_the_chosen_rules_run() -> None:
    rows = [tr(1, DOG_EN, "  "), tr(2, DOG_EN, DOG_DE), tr(3, DOG_EN, DOG_DE)]
    report = clean_labels(rows, rules=["duplicate"])
    assert removed_by(report) == {"t3": "duplicate"}
    assert report.counts == {"duplicate": 1}
    assert report.rules == ["duplicate"]


def test_unknown_rule_and_bad_thresholds_raise_config_errors() -> None:
    with pytest.raises(TrainConfigError) as err:
        clean_labels([], rules=["duplicate", "typo"])
    assert err.value.code == "train.config"
    assert "'typo'" in str(err.value)
    assert all(rule in str(err.value) for rule in RULES)
    with pytest.raises(TrainConfigError, match="near_duplicate_threshold"):
        clean_labels([], near_duplicate_threshold=1.5)
    with pytest.raises(TrainConfigError, match="length_ratio"):
        clean_labels([], length_ratio=(2.0, 1.0))
    with pytest.raises(TrainConfigError):
        clean_labels([], rules="dup")  # one string is one name, not letters


def test_warning_when_a_rule_removes_a_large_share() -> None:
    """2 of 5 translate rows are blank: 40% > 20% warns; 1 of 5 codegen rows does not
    parse: 20% is not more than 20%, so no warning."""
    rows: list[Example] = [
        tr(i, f"{DOG_EN} {i}", "" if i < 2 else f"{DOG_DE} {i}") for i in range(5)
    ]
    rows += [
        code(i, "def f():\n", "    return (\n" if i == 0 else f"    return {i}\n") for i in range(5)
    ]
    report = clean_labels(rows)
    assert report.warnings == [
        "rule empty_label removed 40% of translate rows (2 of 5): "
        "check the data or disable the rule"
    ]


def test_report_dict_and_summary() -> None:
    rows = [tr(1, DOG_EN, DOG_DE), tr(2, DOG_EN, DOG_DE), tr(3, DOG_EN, "")]
    report = clean_labels(rows, warn_share=0.5)
    d = report.to_dict()
    assert d["total"] == 3 and d["kept"] == 1
    assert d["counts"]["duplicate"] == 1 and d["counts"]["empty_label"] == 1
    assert d["removed"][0] == {
        "id": "t3",
        "where": "t.jsonl:3",
        "task": "translate",
        "rule": "empty_label",
        "detail": "blank target",
    }
    assert report.summary() == "cleaned 3 rows: kept 1, removed 2 (empty_label 1, duplicate 1)"


def _multi30k(root: Path, split: str) -> tuple[list[str], list[str]]:
    def read(lang: str) -> list[str]:
        return (
            gzip.decompress((root / f"multi30k_{split}.{lang}.gz").read_bytes())
            .decode()
            .splitlines()
        )

    return read("en"), read("de")


def test_multi30k_keeps_good_pairs_and_catches_english_targets(shared_data: Path) -> None:
    """On Multi30k val (1014 human translations) hardly anything goes (< 1%); when every
    tenth German target is replaced by the next English caption, most of those are found
    as wrong_language (≥ 70%) while the rest of the file stays."""
    en, de = _multi30k(shared_data / "translation", "val")
    rows = [tr(i, e, d, file="val") for i, (e, d) in enumerate(zip(en, de, strict=True))]
    clean = clean_labels(rows, target_lang="de")
    assert len(clean.removed) < 0.01 * len(rows)
    swapped = {i for i in range(0, len(rows), 10)}
    bad = [
        tr(i, e, en[(i + 1) % len(en)] if i in swapped else d, file="val")
        for i, (e, d) in enumerate(zip(en, de, strict=True))
    ]
    report = clean_labels(bad)  # no target_lang: the file's majority (German) decides
    wrong = {r.id for r in report.removed if r.rule == "wrong_language"}
    assert len(wrong & {f"t{i}" for i in swapped}) >= 0.7 * len(swapped)
    assert len(wrong - {f"t{i}" for i in swapped}) <= 2
