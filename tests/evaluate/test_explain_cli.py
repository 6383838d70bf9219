"""`taskloop explain` through a fresh Typer app: files written for texts and task files,
a self-contained and escaped HTML page, features, and errors with hints."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from taskloop.data.records import QAExample, Where
from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain_cli import example_item, methods_for, register
from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model
from tests.evaluate.test_explain import build_classifier

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """A root with a callback, so that `explain` is a sub-command as in taskloop's CLI."""

    register(app)
    return app


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain-cli-models")
    return {
        "seq2seq": build_tiny_model(root / "s2s", "seq2seq", max_length=32),
        "causal": build_tiny_model(root / "causal", "causal", max_length=32),
        "classify": build_classifier(root / "clf"),
    }


class _Page(HTMLParser):
    """Collects tags, <img> sources and any attribute that points outside the page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if tag == "img" and name == "src":
                self.images.append(value or "")
            if name in ("src", "href") and value and not value.startswith("data:"):
                self.external.append(value)


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_text_all_methods_writes_every_file(folders: dict[str, Path], tmp_path: Path) -> None:
    """--method all on a seq2seq model: IG and saliency PNGs, the cross-attention PNG, the
    JSON and the page with those 3 images embedded and nothing loaded from outside. The
    <script> in the text is escaped, never a tag."""
    out = tmp_path / "out"
    text = "The dog <script>alert(1)</script> runs"
    result = runner.invoke(_app(), ["explain", "--model", str(folders["seq2seq"]),
                                    "--text", text, "--method", "all", "--steps", "4",
                                    "--max-new-tokens", "3", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {"explain.html", "explanations.json", "text-1-attributions.png",
                     "text-1-attributions-saliency.png", "text-1-cross-attention.png"}  # fmt: skip
    assert "explain.html" in result.output and "text-1-cross-attention.png" in result.output
    page = _page(out / "explain.html")
    assert len(page.images) == 3 and all(
        s.startswith("data:image/png;base64,") for s in page.images
    )
    assert page.external == [] and "script" not in page.tags
    html = (out / "explain.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    data = json.loads((out / "explanations.json").read_text(encoding="utf-8"))
    assert [a["method"] for a in data[0]["attributions"]] == ["ig", "saliency"]
    ig = data[0]["attributions"][0]
    assert data[0]["attention"]["shape"] == [len(ig["target_tokens"]), len(ig["source_tokens"])]
    assert data[0]["generated"] is True


def test_task_file_with_references_and_features(folders: dict[str, Path], tmp_path: Path) -> None:
    """A translate file: each source is the T5 task prompt ("translate English to German: "
    prefix); --reference explains the reference where there is one and generates for the
    unlabelled row; --features writes the ranking files over the 3 examples."""
    rows = [
        {"id": "t1", "source": "The dog runs", "target": "Ein Hund rennt",
         "source_lang": "en", "target_lang": "de"},
        {"id": "t2", "source": "The dog plays", "target": "Ein Hund spielen",
         "source_lang": "en", "target_lang": "de"},
        {"id": "t3", "source": "A dog runs", "source_lang": "en", "target_lang": "de"},
    ]  # fmt: skip
    data = tmp_path / "translate.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(_app(), ["explain", str(data), "--model", str(folders["seq2seq"]),
                                    "--reference", "--features", "--min-count", "2",
                                    "--steps", "4", "--max-new-tokens", "2",
                                    "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "explanations.json").read_text(encoding="utf-8"))
    assert [e["id"] for e in explained] == ["t1", "t2", "t3"]
    assert all(e["source"].startswith("translate English to German: ") for e in explained)
    assert [e["generated"] for e in explained] == [False, False, True]
    assert explained[0]["target"] == "Ein Hund rennt"
    assert explained[0]["reference"] == "Ein Hund rennt"
    for name in ("features.json", "features.csv", "features.png", "t1-attributions.png"):
        assert (out / name).is_file(), name
    ranking = json.loads((out / "features.json").read_text(encoding="utf-8"))
    assert ranking["n_examples"] == 3
    assert {"dog", "translate"} <= {f["word"] for f in ranking["features"]}


def test_limit_and_classifier_label(folders: dict[str, Path], tmp_path: Path) -> None:
    """A classifier with --label c1: one row labelled c1 per example; --limit 1 keeps the
    first --text only."""
    out = tmp_path / "out"
    result = runner.invoke(_app(), ["explain", "--model", str(folders["classify"]),
                                    "--text", "good acting", "--text", "fine", "--limit", "1",
                                    "--label", "c1", "--steps", "8", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "explanations.json").read_text(encoding="utf-8"))
    assert len(explained) == 1 and explained[0]["kind"] == "classify"
    assert explained[0]["attributions"][0]["row_labels"] == ["c1"]
    assert explained[0]["target"] == "c1"
    assert (out / "text-1-attributions.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model", "--text", "x"], "cannot load"),
        (["--model", "{causal}", "--text", "x", "--method", "attention"], "encoder-decoder"),
        (["--model", "{seq2seq}", "--text", "x", "--method", "lime"], "unknown --method"),
        (["--model", "{seq2seq}", "--text", "a", "--target", "b", "--target", "c"], "2 --target"),
        (["--model", "{seq2seq}"], "nothing to explain"),
        (["--model", "{seq2seq}", "--text", "x", "--method", "attention", "--features"],
         "attention alone"),
    ],
)  # fmt: skip
def test_errors_have_code_and_hint(
    folders: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    """Expected errors exit with status 2 (usage), the explain code and a hint; no traceback."""
    args = [a.format(**{k: str(v) for k, v in folders.items()}) for a in args]
    result = runner.invoke(_app(), ["explain", *args, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "error[evaluate.explain]" in result.output and message in result.output
    assert "hint:" in result.output and "Traceback" not in result.output


def test_methods_for() -> None:
    assert methods_for("all", "seq2seq") == ["ig", "saliency", "attention"]
    assert methods_for("all", "classify") == ["ig", "saliency"]
    assert methods_for("saliency", "causal") == ["saliency"]
    with pytest.raises(ExplainError):
        methods_for("attention", "classify")


def test_unlabelled_example_gets_its_task_prompt(folders: dict[str, Path]) -> None:
    """A QA row with no answer has no training pair, but its prompt is still the task's:
    "question: … context: …" (with " answer:" appended for a causal LM)."""
    example = QAExample(id="q1", where=Where(file="qa.jsonl", row=1), question="Who?",
                        context="A dog.")  # fmt: skip
    s2s = example_item(example, load_model(str(folders["seq2seq"])))
    assert (s2s.source, s2s.reference) == ("question: Who? context: A dog.", None)
    causal = example_item(example, load_model(str(folders["causal"])))
    assert causal.source == "question: Who? context: A dog. answer:"
