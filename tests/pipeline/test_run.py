"""The main job end to end in-process: blob/zip/folder in, verified results and reports out.

Uses the real packaged MiniLM encoder (QA and summarization offline defaults) and the real
sandbox (codegen with supplied completions); translation and codegen without a model must
be reported as skipped with what to pass, never answered.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

import taskloop
from taskloop.blob import decode_utf8_blob_to_zip, encode_zip_to_utf8_blob
from taskloop.data.errors import ManifestError, NoTasksError
from taskloop.demo import build_sample_archive, sample_files
from taskloop.errors import InputFileError
from taskloop.models.tiny import build_tiny_model
from taskloop.pipeline import run
from taskloop.runconfig import RunConfig
from tests.conftest import make_zip, read_zip

SAMPLE_ROWS = sum(
    len(data.splitlines()) for name, data in sample_files().items() if name.endswith(".jsonl")
)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("run")
    blob = tmp / "sample.blob"
    blob.write_text(encode_zip_to_utf8_blob(build_sample_archive()))
    return run(blob, tmp / "out"), tmp / "out"


def test_every_row_gets_one_prediction_in_order(sample_run):
    result, _ = sample_run
    assert len(result.predictions) == SAMPLE_ROWS == result.report.examples
    assert result.report.input.kind == "blob"
    assert result.report.input.blob_outcome == "intact"
    ids = [p.id for p in result.predictions]
    assert len(set(ids)) == len(ids)
    for task in ("codegen", "qa", "summarize", "translate"):
        rows = [p.where.row for p in result.predictions if p.task == task]
        assert rows == sorted(rows) and rows, task


def test_offline_defaults_answer_or_say_what_to_pass(sample_run):
    result, _ = sample_run
    by_task = {t.task: t for t in result.report.tasks}
    assert "MiniLM" in (by_task["qa"].model or "")
    assert "MiniLM" in (by_task["summarize"].model or "")
    translate = [p for p in result.predictions if p.task == "translate"]
    assert {p.status for p in translate} == {"skipped"}
    assert all(p.output is None and "--model translate=" in p.reason for p in translate)
    code = {p.id: p for p in result.predictions if p.task == "codegen"}
    # code-1's supplied completion is right, code-2's ignores case (fails), code-3 has none.
    assert code["code-1"].status == "ok"
    assert code["code-2"].status == "flagged"
    assert code["code-3"].status == "skipped" and "--model codegen=" in code["code-3"].reason
    assert by_task["qa"].metrics["exact"] >= 0.75  # 3 of 4 by hand; the sample is easy


def test_outputs_written_and_result_blob_holds_them(sample_run):
    result, out = sample_run
    for name in ("results.jsonl", "report.json", "report.html", "config.json", "result.blob"):
        assert (out / name).is_file(), name
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(result.predictions)
    assert json.loads(lines[0])["id"] == result.predictions[0].id
    report = json.loads((out / "report.json").read_text())
    assert report["examples"] == SAMPLE_ROWS
    assert {t["task"] for t in report["tasks"]} == {"codegen", "qa", "summarize", "translate"}
    # each file's resolved options (manifest.json's, here) are kept with its results
    translate = next(t for t in report["tasks"] if t["task"] == "translate")
    assert translate["options"]["glossary"] == "data/glossary.tsv"
    archive = read_zip(decode_utf8_blob_to_zip((out / "result.blob").read_text()))
    assert set(archive) == {"results.jsonl", "report.json", "report.html", "config.json"}
    assert archive["results.jsonl"] == (out / "results.jsonl").read_bytes()
    html = (out / "report.html").read_text()
    assert "qa-1" in html and "Danube" in html and "no translation model" in html


def test_zip_folder_and_blob_inputs_agree(tmp_path: Path, sample_run):
    result, _ = sample_run
    (tmp_path / "s.zip").write_bytes(build_sample_archive())
    folder = tmp_path / "folder"
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        zf.extractall(folder)
    config = RunConfig(tasks=["qa"])
    via_zip = run(tmp_path / "s.zip", config=config)
    via_dir = run(folder, config=config)
    expected = [(p.id, p.output) for p in result.predictions if p.task == "qa"]
    assert [(p.id, p.output) for p in via_zip.predictions] == expected
    assert [(p.id, p.output) for p in via_dir.predictions] == expected
    assert via_zip.report.input.kind == "zip" and via_dir.report.input.kind == "folder"
    # a single task file is read as a folder holding just that file (gzipped too)
    qa_files = sorted(folder.rglob("qa*.jsonl"))
    assert len(qa_files) == 1
    gz = tmp_path / "qa.jsonl.gz"
    gz.write_bytes(gzip.compress(qa_files[0].read_bytes()))
    for single in (qa_files[0], gz):
        via_file = run(single, config=config)
        assert via_file.report.input.kind == "file"
        assert [(p.id, p.output) for p in via_file.predictions] == expected


def test_bad_rows_are_reported_and_good_rows_still_run(tmp_path: Path):
    folder = tmp_path / "in"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "qa.jsonl").write_text(
        '{"id": "a", "question": "Which river?", "context": "Vienna lies on the Danube."}\n'
        "{not json\n"
        '{"id": "c", "question": "Where?"}\n'
        '{"id": "d", "task": "poetry", "question": "x", "context": "y"}\n'
        '{"id": "e", "question": "Which city?", "context": "Vienna lies on the Danube."}\n'
    )
    result = run(folder, tmp_path / "out", RunConfig())
    assert [p.id for p in result.predictions] == ["a", "e"]
    errors = {(e.row, e.field) for e in result.report.row_errors}
    assert errors == {(2, None), (3, "context"), (4, "task")}
    assert all(e.file == "data/qa.jsonl" for e in result.report.row_errors)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Rows not used (3)" in html and "unknown task" in html


def test_damaged_blob_is_repaired_and_losses_reported(tmp_path: Path):
    files = {
        "a/qa.jsonl": b'{"question": "Which river?", "context": "Vienna lies on the Danube."}\n',
        "b/summarize.jsonl": json.dumps({"document": "One. Two. Three. " * 200}).encode(),
    }
    archive = make_zip(files, zipfile.ZIP_STORED)
    text = encode_zip_to_utf8_blob(archive)
    # Damage a payload character inside the second member's stored data.
    offset = archive.index(b"One. Two.") + 500
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("C ")) + 1
    wrap = len(lines[first])
    char = 4 * (offset // 3)
    row, col = first + char // wrap, char % wrap
    lines[row] = lines[row][:col] + ("A" if lines[row][col] != "A" else "B") + lines[row][col + 1 :]
    (tmp_path / "d.blob").write_text("\n".join(lines))
    result = run(tmp_path / "d.blob", config=RunConfig())
    assert result.report.input.blob_outcome in ("repaired", "repaired_with_losses")
    assert any("b/summarize.jsonl" in p for p in result.report.input.blob_problems)
    assert [p.task for p in result.predictions] == ["qa"]


def test_python_api_entry_point(tmp_path: Path):
    row = {
        "question": "Which river flows through Vienna?",
        "context": "Vienna lies on the Danube.",
        "answers": ["Danube"],
    }
    (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
    result = taskloop.run(tmp_path, None, taskloop.RunConfig())
    assert result.predictions[0].id == "qa.jsonl#1"
    assert result.report.tasks[0].metrics["exact"] == 1.0
    assert result.out_dir is None


def test_input_errors(tmp_path: Path):
    with pytest.raises(InputFileError):
        run(tmp_path / "missing.blob")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoTasksError):
        run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qa.jsonl").write_text("{}\n")
    (bad / "manifest.json").write_text('{"files": {"qa.jsonl": {"task": "qa", "modle": "x"}}}')
    with pytest.raises(ManifestError, match=r"files\.qa\.jsonl\.modle"):
        run(bad)


def test_a_configured_model_is_used_and_named(tmp_path: Path):
    """A tiny seq2seq model for summarization: hybrid mode, its noise caught by the fact
    check and repaired from extractive sentences; the model is named in the results."""
    model = build_tiny_model(tmp_path / "tiny", "seq2seq")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "summarize.jsonl").write_text(
        json.dumps(
            {
                "document": "The council met on Tuesday. It voted 7 to 2 for new cycling lanes. "
                "The lanes will cost 4.5 million euros. Work starts in spring."
            }
        )
        + "\n"
    )
    result = run(tmp_path / "in", config=RunConfig(models={"summarize": str(model)}))
    (pred,) = result.predictions
    assert pred.model and str(model) in pred.model
    assert pred.mode.startswith("hybrid")
    assert pred.status in ("ok", "flagged")


def test_a_cache_file_serves_a_second_run(tmp_path: Path):
    """With ``cache_path`` the generated outputs persist: a second run of the same input
    with the same model and settings generates nothing (all hits) and answers the same."""
    model = build_tiny_model(tmp_path / "tiny", "seq2seq")
    (tmp_path / "in").mkdir()
    rows = [
        {"document": f"Item {i} was sold. The buyer paid {i} euros. It rained."} for i in range(3)
    ]
    (tmp_path / "in" / "summarize.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = RunConfig(
        models={"summarize": str(model)},
        task_defaults={"summarize": {"mode": "abstractive"}},
        cache_path=str(tmp_path / "cache.sqlite"),
    )
    first = run(tmp_path / "in", config=config)
    second = run(tmp_path / "in", config=config)
    assert first.report.cache["misses"] >= 3 and first.report.cache["hits"] == 0
    assert second.report.cache["misses"] == 0 and second.report.cache["hits"] >= 3
    assert [p.output for p in second.predictions] == [p.output for p in first.predictions]


def test_tokenizer_coverage_is_one_warning_per_language_in_the_summary(tmp_path: Path):
    """Text the model's vocabulary cannot read is reported once per source language in
    the file's summary, and as a warning check on each item."""
    model = build_tiny_model(tmp_path / "tiny", "seq2seq", lang_tokens=["__en__", "__de__"])
    (tmp_path / "in").mkdir()
    rows = [
        {"source": "Привет мир", "source_lang": "ru", "target_lang": "de"},
        {"source": "Как дела", "source_lang": "ru", "target_lang": "de"},
        {"source": "The model runs.", "source_lang": "en", "target_lang": "de"},
    ]
    (tmp_path / "in" / "translate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(tmp_path / "in", config=RunConfig(models={"translate": str(model)}))
    (summary,) = result.report.tasks
    coverage = [w for w in summary.warnings if "unknown to the tokenizer" in w]
    assert len(coverage) == 1 and coverage[0].startswith("source language ru:")
    assert "CYRILLIC" in coverage[0]
    russian = [p for p in result.predictions if p.where.row in (1, 2)]
    for pred in russian:
        (check,) = [c for c in pred.checks if c.name == "tokenizer_coverage"]
        assert not check.passed and check.severity == "warning"
