"""`taskloop evaluate` in real subprocesses: a run's output in, report files out; clear
errors (code, file and line, hint) and no tracebacks for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from taskloop.demo import build_sample_archive
from tests.e2e.test_cli import run


def test_evaluate_a_run_output_and_compare_it_with_itself(tmp_path: Path):
    (tmp_path / "tasks.zip").write_bytes(build_sample_archive())
    assert run("run", "tasks.zip", "-o", "run", "--task", "qa", cwd=tmp_path).returncode == 0
    proc = run("evaluate", "run", "-o", "ev", "--compare", "run", "--resamples", "50",
               "--no-quality", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "taskloop evaluate: run" in proc.stdout and "no significant difference" in proc.stdout
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert [t["task"] for t in report["tasks"]] == ["qa"]
    assert report["tasks"][0]["metrics"]["f1"]["low"] is not None  # an interval
    assert all(c["delta"] == 0 for c in report["comparisons"])  # A against itself
    assert (tmp_path / "ev" / "report.html").read_text().count('id="metrics-qa"') == 1
    assert (tmp_path / "ev" / "plots" / "qa-metrics.png").is_file()


def test_plain_jsonl_in_and_errors_that_say_where(tmp_path: Path):
    rows = [
        {"task": "translate", "id": "1", "prediction": "Ein Hund läuft.", "target": "Ein Hund."},
        {"task": "translate", "id": "2", "prediction": "Zwei Katzen.", "target": "Zwei Katzen."},
    ]  # fmt: skip
    (tmp_path / "out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ok = run("evaluate", "out.jsonl", "-o", "ev", "--resamples", "0", "--no-plots", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "translate" in ok.stdout and "bleu" in ok.stdout
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n" + '{"task": "translate"}\n')
    bad = run("evaluate", "bad.jsonl", cwd=tmp_path)
    assert bad.returncode == 4
    assert "error[evaluate.input]" in bad.stderr and "bad.jsonl:2: no prediction" in bad.stderr
    none = run("evaluate", cwd=tmp_path)
    assert none.returncode == 2 and "error[evaluate.error]" in none.stderr
    assert "hint:" in none.stderr and "Traceback" not in none.stderr + bad.stderr
