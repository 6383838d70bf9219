"""Progress reporting: each phase's advances add up to the total it announced."""

from __future__ import annotations

import os
from collections import defaultdict

from taskloop import progress
from taskloop.blob import encode_file, extract_blob, verify_file
from tests.conftest import make_zip


class Recorder:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.done: dict[int, int] = defaultdict(int)
        self.units: list[str] = []

    def start(self, phase: str, total: int, unit: str = "bytes") -> None:
        self.phases.append((phase, total))
        self.units.append(unit)

    def advance(self, n: int) -> None:
        self.done[len(self.phases) - 1] += n


def test_file_operations_report_complete_phases(tmp_path):
    files = {f"f{i}.bin": os.urandom(5000 * (i + 1)) for i in range(8)}
    archive = make_zip(files, method=0)
    (tmp_path / "a.zip").write_bytes(archive)

    rec = Recorder()
    with progress.reporting(rec):
        encode_file(tmp_path / "a.zip", tmp_path / "a.blob")
        verify_file(tmp_path / "a.blob")
        extract_blob(tmp_path / "a.blob", tmp_path / "out")
    names = [phase for phase, _ in rec.phases]
    assert names == [
        "check members", "encode",  # encode: analysis, then the payload
        "decode", "check members",  # verify
        "decode", "extract",  # extract (hash matches: no second member check)
    ]  # fmt: skip
    for i, (phase, total) in enumerate(rec.phases):
        assert rec.done[i] == total, phase
    assert rec.phases[1] == ("encode", len(archive))
    assert rec.phases[2] == ("decode", (tmp_path / "a.blob").stat().st_size)
    assert rec.phases[5] == ("extract", sum(len(v) for v in files.values()))


def test_nothing_is_reported_without_a_reporter(tmp_path):
    progress.start("x", 10)  # no reporter installed: a no-op, not an error
    progress.advance(5)
    rec = Recorder()
    with progress.reporting(rec):
        pass
    progress.advance(5)
    assert rec.phases == [] and not rec.done


def test_pipeline_reports_task_files_as_items(tmp_path):
    """A run reports one "tasks" phase in items (one per task file), and the embedding
    of the QA sentences as an item phase of its own."""
    import json
    import uuid

    from taskloop.pipeline import run
    from taskloop.runconfig import RunConfig

    # Fresh words: the encoder's cache is per process, and other tests embed too.
    tag = uuid.uuid4().hex
    row = {"question": f"Which river flows through {tag}?", "context": f"{tag} is on the Danube."}
    (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
    recorder = Recorder()
    with progress.reporting(recorder):
        run(tmp_path, config=RunConfig())
    i = [name for name, _ in recorder.phases].index("tasks")
    assert recorder.units[i] == "items"
    assert recorder.phases[i][1] == 1
    # the question and the context's one sentence, then the candidate answer spans
    assert recorder.phases[i + 1] == ("embed", 2)


def test_bar_reporter_shows_item_phases_and_hides_small_byte_phases():
    from rich.progress import Progress

    from taskloop.cliutil import BarReporter

    bars = Progress()
    reporter = BarReporter(bars)
    reporter.start("generate", 10, "items")
    assert bars.tasks[-1].visible
    reporter.start("decode", 1000, "bytes")
    assert not bars.tasks[-1].visible


def test_bar_reporter_nests_item_phases():
    """tasks(2) → generate(3) fills and finishes → the next advance goes to tasks."""
    from rich.progress import Progress

    from taskloop.cliutil import BarReporter

    bars = Progress()
    reporter = BarReporter(bars)
    reporter.start("tasks", 2, "items")
    reporter.start("generate", 3, "items")
    reporter.advance(3)
    reporter.advance(1)
    tasks, generate = bars.tasks
    assert generate.finished and not generate.visible
    assert tasks.completed == 1 and tasks.visible
