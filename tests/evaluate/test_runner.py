"""`evaluate()` end to end on crafted items: report.json, a parseable report.html with every
task's table, plots, A-vs-B comparisons and hard examples."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from taskloop.evaluate.items import Loaded
from taskloop.evaluate.records import EvalItem
from taskloop.evaluate.runner import EvalOptions, evaluate

SENTS = [
    ("A dog runs in the park.", "Ein Hund rennt im Park."),
    ("Two men play football.", "Zwei Männer spielen Fußball."),
    ("A woman reads a book.", "Eine Frau liest ein Buch."),
    ("Children swim in a lake.", "Kinder schwimmen in einem See."),
    ("The old man sits on 3 chairs.", "Der alte Mann sitzt auf 3 Stühlen."),
    ("A girl eats an apple.", "Ein Mädchen isst einen Apfel."),
]


def _items(worse: bool = False) -> list[EvalItem]:
    items = []
    for i, (en, de) in enumerate(SENTS):
        pred = de if not worse or i % 2 else "Hund Hund Hund 7"
        if i == 4 and not worse:
            pred = "Der alte Mann sitzt auf 5 Stühlen."  # a number that is not in the source
        items.append(EvalItem(task="translate", id=f"t{i}", file="t.jsonl", source=en,
                              prediction=pred, references=(de,), source_lang="en",
                              target_lang="de"))  # fmt: skip
    qa = [("Who reads?", "A woman reads a book.", ("A woman",), "a woman"),
          ("Who flies?", "A woman reads a book.", (), ""),
          ("What is eaten?", "A girl eats an apple.", ("an apple",), "" if worse else "apple"),
          ("Where?", "Children swim in a lake.", ("in a lake",), "lake")]  # fmt: skip
    for i, (q, c, refs, pred) in enumerate(qa):
        items.append(EvalItem(task="qa", id=f"q{i}", file="qa.jsonl", question=q, source=c,
                              references=refs, answerable=bool(refs), prediction=pred))  # fmt: skip
    return items


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.imgs = 0
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self.ids.append(a["id"] or "")
        if tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.imgs += 1


def test_report_files_tables_plots_and_hard_examples(tmp_path: Path):
    a = Loaded(items=_items(), label="A", inputs={"results": "a.jsonl"})
    b = Loaded(items=_items(worse=True), label="B", inputs={"results": "b.jsonl"})
    opts = EvalOptions(resamples=200, quality=False)
    result = evaluate(a, b=b, options=opts, out_dir=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [t["task"] for t in report["tasks"]] == ["qa", "translate"]
    html = (tmp_path / "report.html").read_text()
    parser = _Tables()
    parser.feed(html)
    for task in ("qa", "translate"):
        assert f"metrics-{task}" in parser.ids  # every task's table
    assert "comparisons" in parser.ids and "overview" in parser.ids
    assert parser.imgs >= 2 * 4  # per task: bars, distribution, length, A vs B
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    for task in ("qa", "translate"):
        assert {f"{task}-metrics.png", f"{task}-scores.png", f"{task}-a-vs-b.png"} <= names
    assert {"comparison.png", "errors.png"} <= names
    # B (degraded on half the sentences) is compared with A on every shared task
    bleu = next(c for c in result.report.comparisons if c.metric == "bleu")
    assert bleu.b < bleu.a and bleu.n == len(SENTS)
    from taskloop.evaluate.report import verdict

    assert not bleu.significant and verdict(bleu) == "B worse"  # p is one-sided: B better
    # the hard examples are task rows the loader reads back
    from taskloop.data.loader import load_file

    analysis = result.report.analysis
    assert analysis is not None and analysis.counts["hallucinated_number"] == 1
    assert analysis.hard_examples and analysis.hard_count >= 1
    loaded = load_file(analysis.hard_examples)
    assert not loaded.errors and loaded.examples == analysis.hard_count
    assert "t4" in {e.id for g in loaded.groups for e in g.examples}
    assert "<script" not in html  # self-contained, no scripts


def test_nothing_to_compare_is_an_error(tmp_path: Path):
    from taskloop.evaluate.errors import EvalInputError

    a = Loaded(items=[i for i in _items() if i.task == "qa"], label="A")
    b = Loaded(items=[i for i in _items() if i.task == "translate"], label="B")
    with pytest.raises(EvalInputError, match="nothing to compare"):
        evaluate(a, b=b, options=EvalOptions(resamples=10, quality=False, plots=False))


def test_comparing_without_resamples_says_what_to_pass():
    from taskloop.evaluate.errors import EvaluateError

    a = Loaded(items=_items(), label="A")
    with pytest.raises(EvaluateError, match="needs bootstrap resamples") as err:
        evaluate(a, b=a, options=EvalOptions(resamples=0, quality=False, plots=False))
    assert "--resamples" in (err.value.hint or "")


def test_skipped_items_are_counted_not_scored():
    items = [*_items(), EvalItem(task="summarize", id="s", source="d", status="skipped")]
    result = evaluate(Loaded(items=items, label="A"),
                      options=EvalOptions(resamples=0, quality=False, plots=False))  # fmt: skip
    assert [t.task for t in result.report.tasks] == ["qa", "translate"]
    assert any("1 summarize" in n for n in result.report.notes)
