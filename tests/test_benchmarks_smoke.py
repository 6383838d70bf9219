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


def _run_benchmark(name: str, *args: str, timeout: int = 180) -> str:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / name
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_train_throughput_benchmark_runs(tmp_path: Path, shared_data: Path) -> None:
    """taskloop's loop and both HF variants train the planned steps on the same ids."""
    out = _run_benchmark(
        "train_throughput.py",
        "--smoke",
        "--data-dir",
        str(shared_data / "translation"),
        "--work-dir",
        str(tmp_path),
    )
    assert "HF tokenisation gives the same ids: yes" in out
    assert "taskloop's loop trained on the planned batches: yes" in out
    assert (
        "| side | batching | target tokens/step | padding | loop s | wall s "
        "| target tokens/s | taskloop vs this | per repeat |" in out
    )
    assert "| taskloop train | 256 tokens, length-grouped |" in out
    assert "rows, random |" in out and "rows, group_by_length |" in out


def test_compression_benchmark_runs(tmp_path: Path, shared_data: Path) -> None:
    """Every variant gets a table row; a second run reuses the cached model."""
    args = ("--smoke", "--data-dir", str(shared_data / "translation"), "--work", str(tmp_path))
    out = _run_benchmark("compression.py", *args)
    assert "model: trained 10 steps" in out
    assert "| variant | BLEU | Δ BLEU | chrF++ |" in out
    for variant in (
        "fp32 (baseline)",
        "int8 dynamic",
        "magnitude pruning 30%",
        "magnitude pruning 50% + recovery",
        "ffn pruning 30% + recovery",
    ):
        assert f"| {variant} |" in out
    assert "| 1.00x, 1.00x |" in out  # fp32 against itself
    assert "| latency mean (ms / batch of 16) |" in out  # compression_report's table
    assert "| d_model | FFN | parameters | fp32 ms/batch | int8 ms/batch | fp32 / int8 |" in out
    assert "| 64 | 256 |" in out  # the smoke run's one width
    again = _run_benchmark("compression.py", *args, "--eval-rows", "4", "--int8-widths", "")
    assert "model: reusing" in again


def test_evaluation_benchmark_runs(tmp_path: Path, shared_data: Path) -> None:
    """The timing table, the metric table and the sample report (A greedy vs B beam 4)."""
    report = tmp_path / "report"
    out = _run_benchmark(
        "evaluation.py", "--smoke", "--data-dir", str(shared_data / "translation"),
        "--work", str(tmp_path), "--report", str(report),
    )  # fmt: skip
    assert "| evaluation of 50 pairs | seconds | ms per pair | × sacrebleu BLEU alone |" in out
    assert "| sacrebleu corpus BLEU alone (baseline) |" in out
    assert "| taskloop: every metric (+ diversity, factuality) |" in out
    assert "| bleu |" in out and "nrefs:1|case:mixed" in out
    html = (report / "report.html").read_text()
    assert "greedy vs beam 4" in html and 'id="comparisons"' in html
    assert (report / "plots" / "translate-a-vs-b.png").is_file()


def test_ensemble_benchmark_runs(shared_data: Path) -> None:
    """Both tables print with every ensemble rule and the oracle, on a few items."""
    out = _run_benchmark(
        "ensemble.py", "--data-dir", str(shared_data), "--limit", "8", "--qa-limit", "20"
    )
    assert "| data | system | n | R-1 | R-2 | R-L | Δ R-L vs best member | picked % |" in out
    for system in (
        "MBR, ROUGE-L",
        "vote (ties: expected ROUGE-L)",
        "oracle (best member per item, R-L)",
    ):
        assert f"| DialogSum test | {system} | 8 |" in out
    assert "| SQuAD v2 sample | vote (ties: member order) | 20 |" in out


def test_serve_batching_benchmark_runs() -> None:
    """The batcher benchmark prints rows for both models, batching off and on."""
    out = _run_benchmark("serve_batching.py", "--smoke")
    header = (
        "| model | clients | batching | requests | req/s | p50 ms | p99 ms | mean batch | vs off |"
    )
    assert header in out
    for row in ("| minilm | 8 | on |", "| t5 | 8 | on |", "| t5 | 1 | off |"):
        assert row in out


def test_new_benchmarks_help() -> None:
    for name, options in (
        ("evaluation.py", ("--rows", "--resamples", "--report", "--hypotheses", "--smoke")),
        ("ensemble.py", ("--limit", "--qa-limit", "--data-dir")),
        ("train_throughput.py", ("--rows", "--steps", "--tokens", "--device", "--smoke")),
        ("compression.py", ("--model", "--work", "--eval-rows", "--train-steps", "--smoke")),
    ):
        out = _run_benchmark(name, "--help", timeout=60)
        for option in options:
            assert option in out


def test_rlhf_ppo_benchmark_runs() -> None:
    """taskloop's side of the PPO benchmark on a tiny budget (TRL is not installed in CI:
    the script says so and still reports taskloop's figures)."""
    out = _run_benchmark(
        "rlhf_ppo.py", "--no-trl", "--steps", "1", "--warmup", "0", "--rounds", "1",
        "--batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1",
        "--max-new-tokens", "4", "--width", "32", "--layers", "1",
    )  # fmt: skip
    assert "| seq2seq | taskloop |" in out and "| causal | taskloop |" in out


def test_reward_model_benchmark_runs(shared_data: Path, tmp_path: Path) -> None:
    out = _run_benchmark(
        "reward_model.py", "--data-dir", str(shared_data), "--limit", "40", "--epochs", "1",
        "--max-tokens", "32", "--train-layers", "1", "--out", str(tmp_path / "rm"),
    )  # fmt: skip
    assert "pair accuracy" in out


def test_learning_loop_benchmarks_help() -> None:
    for name, options in (
        ("active_learning.py", ("--runs", "--seed-size", "--batch", "--budget", "--figure")),
        ("reward_model.py", ("--limit", "--data-dir", "--threads", "--train-layers")),
        ("rlhf_ppo.py", ("--steps", "--no-trl", "--batch-size", "--ppo-epochs")),
    ):
        out = _run_benchmark(name, "--help", timeout=60)
        for option in options:
            assert option in out
