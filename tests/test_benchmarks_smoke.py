"""The throughput benchmark still runs: a 2 MiB archive, one repeat, no memory check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "blob_throughput.py"


def test_blob_throughput_benchmark_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--size",
            "2M",
            "--repeats",
            "1",
            "--skip-memory",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "| operation | plain way | taskloop MiB/s | plain MiB/s | ratio |" in out
    for operation in (
        "encode, in memory",
        "decode+verify, in memory",
        "encode_file",
        "verify_file",
        "decode_file",
    ):
        assert f"| {operation} |" in out
    assert "tasks/*.jsonl" in out and "assets/*.bin" in out  # the mix is described
    # Nothing but the archive and its description is left in the work dir.
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".zip"]


def test_blob_throughput_help() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    for option in ("--size", "--repeats", "--work-dir", "--skip-memory"):
        assert option in proc.stdout


def test_generation_benchmark_runs(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "generation.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| variant | batch | items/s | ms/item | padding | vs one at a time |" in proc.stdout
    assert "greedy outputs identical across all variants: yes" in proc.stdout
    assert "| cache hit |" in proc.stdout and "| cached |" in proc.stdout
