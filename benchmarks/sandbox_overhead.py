"""What the sandbox costs per run, next to a plain subprocess measured in the same run.

Times, interleaved, a trivial program (``pass``) run through
:func:`taskloop.tasks.sandbox.run_python` and through
``subprocess.run([sys.executable, "-c", "pass"])``, and prints mean and median wall time
of each, their ratio and the difference (the sandbox's overhead per run). Then runs the
164 HumanEval canonical solutions through :func:`taskloop.tasks.humaneval.evaluate` with
``--workers`` (default 2, as on CI) and prints the total time::

    python benchmarks/sandbox_overhead.py             # 50 runs each, all of HumanEval
    python benchmarks/sandbox_overhead.py --quick     # a smoke test: 5 runs, 10 problems

The isolation layers that were in force (uid change, namespaces, audit hook) are printed
with the machine, since they change the cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from machine import describe  # benchmarks/machine.py, beside this script
from taskloop.tasks.humaneval import evaluate, load_humaneval
from taskloop.tasks.sandbox import SandboxStatus, run_python


def log(message: str) -> None:
    print(message, flush=True)


def machine() -> list[str]:
    probe = run_python("pass")
    return [
        *describe((), extra=f"euid {os.geteuid()}"),
        f"sandbox layers: {', '.join(probe.layers) or '(none reported)'}",
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def sandboxed() -> None:
    result = run_python("pass")
    if result.status is not SandboxStatus.PASSED:
        raise SystemExit(f"sandbox run failed: {result.status}: {result.detail}")


def overhead(repeats: int) -> tuple[list[float], list[float]]:
    plain()
    sandboxed()  # warm: the host plan and the interpreter's files are cached after this
    ours: list[float] = []
    theirs: list[float] = []
    for rep in range(repeats):
        order = [(ours, sandboxed), (theirs, plain)]
        if rep % 2:
            order.reverse()  # alternate, so drift in load hits both sides alike
        for bucket, fn in order:
            bucket.append(timed(fn))
    return ours, theirs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-run cost of the sandbox next to a plain subprocess, and the time "
        "to run HumanEval's 164 canonical solutions in it."
    )
    parser.add_argument("--repeats", type=int, default=50, help="runs of each (default 50)")
    parser.add_argument(
        "--workers", type=int, default=2, help="sandboxes at a time for HumanEval (default 2)"
    )
    parser.add_argument(
        "--problems", type=int, default=None, help="HumanEval problems (default: all 164)"
    )
    parser.add_argument("--skip-humaneval", action="store_true", help="only the overhead")
    parser.add_argument("--quick", action="store_true", help="smoke test: 5 runs each, 10 problems")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 5)
        args.problems = args.problems or 10
    if args.repeats < 1 or args.workers < 1:
        parser.error("--repeats and --workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for line in machine():
        log(line)
    log(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")

    log(f"\n== a trivial program, {args.repeats} runs each, interleaved")
    ours, theirs = overhead(args.repeats)
    log("| case | runs | mean ms | median ms |")
    log("|---|---:|---:|---:|")
    log(
        f"| plain `python -c pass` (subprocess.run) | {len(theirs)} | "
        f"{ms(statistics.mean(theirs))} | {ms(statistics.median(theirs))} |"
    )
    log(
        f"| sandbox run of `pass` | {len(ours)} | {ms(statistics.mean(ours))} | "
        f"{ms(statistics.median(ours))} |"
    )
    ratio = statistics.median(ours) / statistics.median(theirs)
    extra = statistics.median(ours) - statistics.median(theirs)
    log(f"overhead per run: {ms(extra)} ms (median), {ratio:.2f}x a plain subprocess")

    if not args.skip_humaneval:
        problems = load_humaneval()[: args.problems]
        log(f"\n== HumanEval canonical solutions: {len(problems)} problems, {args.workers} workers")
        completions = {p.task_id: [p.canonical_solution] for p in problems}
        started = time.perf_counter()
        report = evaluate(problems, completions, workers=args.workers)
        total = time.perf_counter() - started
        log("| problems | workers | passed | total s | per problem ms |")
        log("|---:|---:|---:|---:|---:|")
        log(
            f"| {len(problems)} | {args.workers} | {report.num_passed}/{report.num_samples} | "
            f"{total:.2f} | {ms(total / len(problems))} |"
        )
        if report.num_passed != report.num_samples:
            for sample in report.failures():
                log(f"  FAILED {sample.task_id}: {sample.status.value}: {sample.detail}")
            return 1
    log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
