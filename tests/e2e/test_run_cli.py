"""`taskloop run` in real subprocesses: outputs, exit statuses, messages without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from taskloop.blob import decode_utf8_blob_to_zip
from taskloop.demo import build_sample_archive
from tests.conftest import read_zip
from tests.e2e.test_cli import run


def test_run_a_zip_writes_results_and_a_result_blob(tmp_path: Path):
    (tmp_path / "tasks.zip").write_bytes(build_sample_archive())
    proc = run("run", "tasks.zip", "-o", "out", "--task", "qa", "--task", "translate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "taskloop results" in proc.stdout and "data/qa.jsonl" in proc.stdout
    assert "--model translate=" in proc.stdout
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "MiniLM" in report["tasks"][0]["model"]
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert {json.loads(line)["task"] for line in lines} == {"qa", "translate"}
    archive = read_zip(decode_utf8_blob_to_zip((tmp_path / "out" / "result.blob").read_text()))
    assert "report.html" in archive
    # every step logged its duration and memory
    assert "step task.qa" in proc.stderr and "rss_mb=" in proc.stderr


def test_json_logs_name_each_step(tmp_path: Path):
    (tmp_path / "in").mkdir()
    row = {"question": "Which river flows through Vienna?", "context": "Vienna lies on the Danube."}
    (tmp_path / "in" / "qa.jsonl").write_text(json.dumps(row) + "\n")
    proc = run("--log-format", "json", "run", "in", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    steps = {r.get("step") for r in records}
    assert {"load", "task.qa", "qa.score", "write", "encode_result"} <= steps
    assert all("duration_ms" in r and "rss_mb" in r for r in records if r.get("step"))


def test_bad_input_is_a_clear_error_with_a_status(tmp_path: Path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qa.jsonl").write_text('{"question": "q", "context": "c"}\n')
    (bad / "manifest.json").write_text('{"files": {"qa.jsonl": {"modle": "x"}}}')
    proc = run("run", "bad", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 4
    assert "error[data.manifest]" in proc.stderr and "files.qa.jsonl.modle" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run("run", "missing.blob", cwd=tmp_path)
    assert proc.returncode == 7 and "error[io.file]" in proc.stderr

    proc = run("run", "bad", "--model", "poetry=x", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown task 'poetry'" in proc.stderr


def test_a_model_that_is_not_here_skips_its_task_and_says_what_to_pass(tmp_path: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "summarize.jsonl").write_text('{"document": "One thing. Another thing."}\n')
    proc = run("run", "in", "-o", "out", "-m", "summarize=./no-such-model", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (line,) = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    pred = json.loads(line)
    assert pred["status"] == "skipped" and "no-such-model" in pred["reason"]


def test_a_damaged_blob_runs_what_survived_and_exits_3(tmp_path: Path):
    """The demo's damage (three characters inside data/translate.jsonl, CRLF, a BOM):
    the file is lost in the repair and reported; every other task still runs."""
    from taskloop.blob import encode_zip_to_utf8_blob
    from taskloop.demo import DAMAGED_MEMBER, damage_blob

    archive = build_sample_archive()
    text = encode_zip_to_utf8_blob(archive, wrap=76).encode()
    damaged = b"\xef\xbb\xbf" + damage_blob(text, archive, DAMAGED_MEMBER).replace(b"\n", b"\r\n")
    (tmp_path / "damaged.blob").write_bytes(damaged)
    proc = run("run", "damaged.blob", "-o", "out", "-t", "qa", "-t", "translate", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "repaired_with_losses" in proc.stdout and DAMAGED_MEMBER in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [t["task"] for t in report["tasks"]] == ["qa"]
    assert report["row_errors"][0]["file"] == DAMAGED_MEMBER
