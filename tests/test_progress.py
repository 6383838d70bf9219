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

    def start(self, phase: str, total: int) -> None:
        self.phases.append((phase, total))

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
