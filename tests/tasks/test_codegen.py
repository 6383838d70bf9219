"""The codegen task: supplied or generated code, generated tests, reference tests, pass@k.

Every program really runs in the sandbox; models are tiny (their code is noise, so the
tests assert structure and that the checks catch it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloop.data.records import CodegenExample, Prediction, Where
from taskloop.models.tiny import build_tiny_model
from taskloop.tasks import codegen
from taskloop.tasks.context import FileOptions, Resources, TaskContext

ADD_PROMPT = (
    "def add(a: int, b: int) -> int:\n"
    '    """Return the sum of a and b.\n\n'
    "    >>> add(1, 2)\n    3\n    >>> add(-4, 4)\n    0\n"
    '    """\n'
)
ADD_TEST = (
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(5, 5) == 10\n"
)


def example(i: int = 1, **fields: object) -> CodegenExample:
    data: dict[str, object] = {
        "id": f"c{i}",
        "where": Where(file="code.jsonl", row=i),
        "prompt": ADD_PROMPT,
        "entry_point": "add",
        "test": ADD_TEST,
    }
    data.update(fields)
    return CodegenExample.model_validate(data)


def ctx(**options: object) -> TaskContext:
    return TaskContext(
        file="code.jsonl",
        options=FileOptions.model_validate({"task": "codegen", **options}),
        resources=Resources(workers=2),
    )


def by_name(pred: Prediction) -> dict[str, object]:
    return {c.name: c for c in pred.checks}


def test_right_and_wrong_completions_are_told_apart():
    good, wrong, subtracts = codegen.run(
        [
            example(1, completion="    return a + b\n"),
            example(2, completion="    return a + b + 1\n"),
            example(3, completion="    return a - b\n"),
        ],
        ctx(),
    )
    assert good.status == "ok" and good.mode == "verify supplied completion"
    checks = by_name(good)
    assert checks["generated_tests"].passed and checks["generated_tests"].detail == "2/2 passed"
    assert checks["reference_tests"].passed
    # The output holds the code and the tests generated for it.
    assert "return a + b" in good.output
    assert (
        "def test_add_docstring_0():  # from the docstring\n    assert (add(1, 2)) == 3"
        in good.output
    )
    assert [t["origin"] for t in good.details["tests"]] == ["docstring", "docstring"]
    assert wrong.status == "flagged"
    assert by_name(wrong)["generated_tests"].detail.startswith("0/2 passed")
    assert not by_name(wrong)["reference_tests"].passed
    # a - b fails both docstring examples (1 - 2 = -1, -4 - 4 = -8) and the reference.
    assert subtracts.status == "flagged"
    assert by_name(subtracts)["generated_tests"].detail.startswith("0/2 passed")


def test_a_hang_a_syntax_error_and_an_exit_are_failures_not_crashes():
    hang, broken, exits = codegen.run(
        [
            example(1, completion="    while True:\n        pass\n"),
            example(2, completion="    return a +\n"),
            example(3, completion="    import sys\n    sys.exit(0)\n"),
        ],
        ctx(timeout_s=2),
    )
    assert hang.status == "flagged"
    assert "timeout" in by_name(hang)["reference_tests"].detail
    assert broken.status == "flagged" and not by_name(broken)["syntax"].passed
    assert "not run" in by_name(broken)["reference_tests"].detail
    # sys.exit(0) inside the function must not count as passing the reference test.
    assert exits.status == "flagged" and not by_name(exits)["reference_tests"].passed


def test_no_model_means_skipped_with_what_to_pass():
    (pred,) = codegen.run([example()], ctx())
    assert pred.status == "skipped" and pred.output is None
    assert "--model codegen=" in pred.reason


def test_missing_model_is_skipped_with_the_loader_hint(tmp_path: Path):
    (pred,) = codegen.run([example()], ctx(model=str(tmp_path / "nope")))
    assert pred.status == "skipped"
    assert "does not exist" in pred.reason


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [ADD_PROMPT, "return a + b", "    return a", "assert add(1, 2) == 3"]
    return build_tiny_model(
        tmp_path_factory.mktemp("code") / "lm", "causal", texts=texts, max_length=256
    )


def test_generated_samples_are_run_and_scored(tiny_lm: Path):
    preds = codegen.run(
        [example(1), example(2)], ctx(model=str(tiny_lm), samples=3, max_new_tokens=12)
    )
    for pred in preds:
        assert pred.model and str(tiny_lm) in pred.model
        assert pred.mode == "generate (3 samples)"
        assert len(pred.details["samples"]) == 3
        assert pred.status in ("ok", "flagged")
    metrics = codegen.score([example(1), example(2)], preds)
    assert metrics["problems"] == 2 and "pass@1" in metrics and "pass@10" not in metrics
    assert 0.0 <= metrics["pass@1"] <= 1.0


def test_score_is_the_unbiased_pass_at_k():
    """Two problems, 4 samples each, 1 and 2 correct: pass@1 = mean(1/4, 2/4) = 0.375;
    pass@2 = mean(1 - C(3,2)/C(4,2), 1 - C(2,2)/C(4,2)) = mean(1 - 3/6, 1 - 1/6) = 2/3."""

    def pred(i: int, correct: int) -> Prediction:
        return Prediction(
            id=f"c{i}",
            task="codegen",
            where=Where(file="f", row=i),
            output="x",
            status="ok",
            details={"samples": [{}] * 4, "reference_passed": correct, "tests": []},
        )

    metrics = codegen.score([example(1), example(2)], [pred(1, 1), pred(2, 2)])
    assert metrics["pass@1"] == pytest.approx(0.375)
    assert "pass@2" not in metrics  # only k in (1, 10, 100) are reported
    from taskloop.evaluate.metrics import pass_at_k

    assert pass_at_k([4, 4], [1, 2], 2) == pytest.approx(2 / 3)


def test_helpers():
    assert codegen.truncate_completion("    return 1\ndef other():\n    pass") == "    return 1\n"
    assert (
        codegen.truncate_completion("    x = 1\n    return x\n\nprint(x)")
        == "    x = 1\n    return x\n"
    )
    no_entry = example(completion="    return a + b\n", entry_point=None)
    assert codegen.entry_point_of(no_entry) == "add"
    assert codegen.syntax_error("def f(:\n") is not None


def test_the_output_runs_under_pytest_as_is(tmp_path: Path):
    import subprocess
    import sys

    (pred,) = codegen.run([example(completion="    return a + b\n")], ctx())
    (tmp_path / "test_out.py").write_text(pred.output or "")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    assert "2 passed" in proc.stdout


def test_humaneval_rows_through_the_task():
    """HumanEval rows (prompt, entry_point, test) carrying the canonical solution as the
    completion all pass their reference tests and every docstring test generated for them;
    with a broken body (``return None``) none passes its reference test."""
    from taskloop.tasks.humaneval import load_humaneval

    problems = load_humaneval()[:24]
    rows = [
        example(
            i,
            id=p.task_id,
            prompt=p.prompt,
            entry_point=p.entry_point,
            test=p.test,
            completion=p.canonical_solution,
        )
        for i, p in enumerate(problems, 1)
    ]
    preds = codegen.run(rows, ctx())
    assert all(by_name(p)["reference_tests"].passed for p in preds), [
        (p.id, by_name(p)["reference_tests"].detail) for p in preds
    ]
    with_tests = [p for p in preds if p.details["tests"]]
    assert len(with_tests) >= 20
    assert all(p.status == "ok" for p in with_tests)
    assert codegen.score(rows, preds)["pass@1"] == 1.0

    broken = [r.model_copy(update={"completion": "    return None\n"}) for r in rows]
    assert codegen.score(broken, codegen.run(broken, ctx()))["pass@1"] == 0.0


def test_a_prompt_over_the_window_is_reported(tmp_path: Path):
    """A causal model with a 32-token window sees only the end of a longer prompt (it is
    cut on the left, so generation still continues the function) and the item says so."""
    model = build_tiny_model(tmp_path / "small", "causal", texts=[ADD_PROMPT], max_length=32)
    long_prompt = "# " + "padding words " * 40 + "\n" + ADD_PROMPT
    (pred,) = codegen.run([example(prompt=long_prompt)], ctx(model=str(model), max_new_tokens=4))
    assert pred.status in ("ok", "flagged")
    assert any("over the model's window" in t for t in pred.truncation)
