"""Unit tests for a piece of code without a model: from its docstring, or from model text.

:func:`tests_from_docstring` turns the examples in a function's docstring into one
``assert`` test each: doctest examples (``>>> f(x)`` then the expected value) and the
informal styles HumanEval prompts use (``f(x) ==> y``, ``f(x) -> y``, ``f(x) ➞ y``,
``f(x) should return y``, ``For x = ..., the output should be ...``, ``Input: ...`` /
``Output: ...``). An example is kept only when its arguments and expected value are
Python literals. :func:`tests_from_model_output` keeps the ``assert`` lines and
``def test_...`` functions of a model's answer that parse and call the function.

:func:`build_test_program` puts code and tests in one program that runs each test on its
own and prints one JSON line per test, so one sandbox run gives pass/fail per test;
:func:`run_generated_tests` does the run and :func:`parse_test_report` reads the lines.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import json
import math
import re
import textwrap
import warnings
from collections.abc import Iterator, Sequence

from taskloop.tasks.sandbox import (
    DEFAULT_LIMITS,
    SandboxLimits,
    SandboxResult,
    run_python,
)

__all__ = [
    "GeneratedTest",
    "GeneratedTestOutcome",
    "GeneratedTestRun",
    "build_test_program",
    "parse_test_report",
    "run_generated_tests",
    "tests_from_docstring",
    "tests_from_model_output",
]

_MAX_TEXT = 200_000  # longer docstrings/answers are cut: parsing stays fast on junk
_MAX_LINE = 2_000


@dataclasses.dataclass(frozen=True)
class GeneratedTest:
    """One test: statements that raise (``AssertionError``) when the code is wrong."""

    name: str
    source: str
    origin: str  # "docstring" or "model"


@dataclasses.dataclass(frozen=True)
class GeneratedTestOutcome:
    """Pass or fail of one test in one run."""

    name: str
    passed: bool
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class GeneratedTestRun:
    """The outcome of every test, and the sandbox run they came from.

    ``complete`` is False when the program ended before the last test (a timeout, a
    blocked operation, a crash); the tests that did not report count as failed.
    """

    outcomes: list[GeneratedTestOutcome]
    result: SandboxResult
    complete: bool

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)


# --- from docstrings ----------------------------------------------------------------------


def _function_docstring(prompt: str, entry_point: str) -> str | None:
    """The docstring of ``entry_point`` in ``prompt``, found by parsing or by pattern."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == entry_point
            ):
                return ast.get_docstring(node, clean=True)
    match = re.search(
        rf"def\s+{re.escape(entry_point)}\s*\(.*?(\"\"\"|''')(.*?)(\1|\Z)", prompt, re.DOTALL
    )
    return textwrap.dedent(match.group(2)) if match else None


def _prompt_names(prompt: str) -> set[str]:
    """Names a test may use besides literals: builtins and what the prompt defines."""
    names = set(dir(builtins))
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return names
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _parameters(prompt: str, entry_point: str) -> list[str] | None:
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return [a.arg for a in node.args.posonlyargs + node.args.args]
    return None


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _literal(text: str) -> object:
    """The value of a literal, or raises ValueError."""
    text = text.strip()
    if not text or len(text) > _MAX_LINE:
        raise ValueError("empty or too long")
    try:
        return ast.literal_eval(text)
    except (SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _scan(text: str) -> Iterator[tuple[int, str, int]]:
    """(index, char, bracket depth) for the characters outside string literals."""
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            if ch in ")]}":
                depth -= 1
            yield i, ch, depth
            if ch in "([{":
                depth += 1
        i += 1


def _cut_top_level(text: str) -> str:
    """``text`` up to its first comma or semicolon outside brackets and quotes."""
    for i, ch, depth in _scan(text):
        if depth < 0 or (depth == 0 and ch in ",;"):
            return text[:i]
    return text


def _after_last_equals(text: str) -> str:
    """The part after the last lone ``=`` outside quotes: ``19 - 5 - 6 = 8`` -> ``8``."""
    cut = -1
    for i, ch, depth in _scan(text):
        if ch == "=" and depth == 0:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if before not in "=!<>" and after != "=":
                cut = i
    return text[cut + 1 :] if cut >= 0 else text


# After a literal: prose ("5 (the sum)", "True if ...", "'ab'.") is fine; an operator, or a
# word glued to it, means the literal was only the start of an expression.
_CONTINUES = re.compile(r"\s*[-+*/%<>=&|^@\[{'\"]|\w|\.\w")


def _expected_literal(text: str) -> str | None:
    """The Python source of the literal value that ``text`` states, or None.

    Trailing prose ("5 (the sum)", "True.") is dropped and ``a - b = c`` gives ``c``;
    a literal followed by an operator (``1 + 9 = 10`` read up to ``1``) is refused, and
    so are a bare top-level comma (a tuple must have parentheses) and a parenthesised
    single value, which docstrings write for one-element tuples.
    """
    text = _cut_top_level(_after_last_equals(text.strip()))[:_MAX_LINE].strip()
    word = re.match(r"(true|false)\b", text, re.IGNORECASE)
    if word:
        return "True" if word.group(1).lower() == "true" else "False"
    ends = [m.start() for m in re.finditer(r"\s+|$", text)]
    for end in reversed(ends):
        candidate = text[:end].strip()
        for trimmed in (candidate.rstrip("."), candidate):
            if not trimmed:
                continue
            try:
                value = _literal(trimmed)
            except ValueError:
                continue
            if _CONTINUES.match(text[len(trimmed) :]):
                return None  # "1 + 9 = 10" read up to "1", or "5abc"
            if trimmed.startswith("(") and not isinstance(value, tuple):
                return None
            return repr(value)
    return None


def _balanced_call(text: str, start: int) -> int | None:
    """Index just past the parenthesis that closes the one at ``text[start]``."""
    for i, ch, depth in _scan(text[start:]):
        if ch in ")]}" and depth == 0:
            return start + i + 1
    return None


def _literal_call(call: str, entry_point: str, params: list[str] | None = None) -> str | None:
    """``call`` normalised if it is ``entry_point(<literals>)``, else None.

    Keyword arguments whose names are not the function's parameters (docstrings name
    them loosely) are passed by position.
    """
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == entry_point
        and all(_is_literal(a) and not isinstance(a, ast.Starred) for a in node.args)
        and all(k.arg is not None and _is_literal(k.value) for k in node.keywords)
    ):
        return None
    if node.keywords and (params is None or any(k.arg not in params for k in node.keywords)):
        node.args = [*node.args, *(k.value for k in node.keywords)]
        node.keywords = []
    return ast.unparse(node)


def _assertion(expr: str, expected: str | None) -> str:
    """``assert expr == expected`` (with a tolerance for a float), or ``assert expr``."""
    if expected is None:
        return f"assert {expr}, {expr!r}"
    value = ast.literal_eval(expected)
    if isinstance(value, float) and math.isfinite(value):
        return (
            "import math\n"
            f"assert math.isclose({expr}, {expected}, rel_tol=1e-6, abs_tol=1e-6), "
            f"{expr!r}"
        )
    return f"assert ({expr}) == {expected}, {expr!r}"


def _uses_only(node: ast.AST, allowed: set[str], entry_point: str) -> bool:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return entry_point in names and names <= allowed | {entry_point}


def _doctest_pairs(
    doc: str, entry_point: str, allowed: set[str]
) -> Iterator[tuple[str, str | None]]:
    """``>>> expr`` followed by its expected value; ``>>> f(x) == y`` on its own too.

    Read line by line rather than with :mod:`doctest`, which gives up on a whole
    docstring when one example is malformed.
    """
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith(">>>") or len(stripped) > _MAX_LINE:
            continue
        source = stripped[3:].strip()
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith("..."):
            source += "\n" + lines[j].strip()[3:].strip()
            j += 1
        want = lines[j].strip() if j < len(lines) else ""
        if want.startswith(">>>"):
            want = ""
        following = lines[j + 1].strip() if j + 1 < len(lines) else ""
        try:
            node = ast.parse(source, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if not _uses_only(node, allowed, entry_point):
            continue
        is_print = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
        if is_print:  # what follows is printed text, not a value
            continue
        if not want:
            if isinstance(node, ast.Compare) and all(isinstance(o, ast.Eq) for o in node.ops):
                yield ast.unparse(node), None
            continue
        if following and not following.startswith(">>>"):
            continue  # the output spans lines: printed text, not a value
        expected = _expected_literal(want)
        if expected is not None:
            yield ast.unparse(node), expected


_ARROW = re.compile(
    r"^\s*(?:#\s*)?(?:==>|=>|->|➞|→|⇒|==|=|:|\bshould\s+(?:return|be|equal|give)\b|"
    r"\b(?:returns?|gives?|is)\b)\s*(.+)$",
    re.IGNORECASE,
)
_EXAMPLES_HEADING = re.compile(r"^\s*(?:for\s+)?examples?\b", re.IGNORECASE | re.MULTILINE)


def _inline_pairs(
    doc: str, entry_point: str, params: list[str] | None
) -> Iterator[tuple[str, str]]:
    """``f(x) ==> y`` and its relatives, several per line allowed.

    Where the docstring has "Example(s)" headings, only what follows the last one (the
    first numbered one) is read: above it ``f(n) = ...`` is usually the maths the
    function implements, not a call of it.
    """
    headings = list(_EXAMPLES_HEADING.finditer(doc))
    numbered = [h for h in headings if re.match(r"\s*examples?\s*\d", doc[h.start() :], re.I)]
    if numbered:  # "Example 1:", "Example 2:": all of them
        doc = doc[numbered[0].start() :]
    elif headings:  # "For example:" ... "Examples:": the last one introduces the calls
        doc = doc[headings[-1].start() :]
    pattern = re.compile(rf"(?<![\w.]){re.escape(entry_point)}\s*\(")
    for line in doc.splitlines():
        if len(line) > _MAX_LINE or line.lstrip().startswith(">>>"):
            continue
        for match in pattern.finditer(line):
            end = _balanced_call(line, match.end() - 1)
            if end is None:
                continue
            call = _literal_call(line[match.start() : end], entry_point, params)
            arrow = _ARROW.match(line[end:])
            if call is None or arrow is None:
                continue
            expected = _expected_literal(arrow.group(1))
            if expected is not None:
                yield call, expected


_FOR_X = re.compile(
    r"\bfor\s+(\w+\s*=.+?)\s*,?\s+the\s+(?:output|result|answer|return\s+value)\s+"
    r"(?:should|will)\s+be\s+(.+?)(?:\n|$)",
    re.IGNORECASE,
)
_INPUT_OUTPUT = re.compile(r"\binput\s*:\s*(.+?)\s*\n\s*output\s*:\s*(.+?)(?:\n|$)", re.IGNORECASE)


def _call_from_assignments(entry_point: str, text: str, params: list[str] | None) -> str | None:
    """``entry_point(...)`` from ``x = 1`` / ``a = 1, b = 2`` / ``1, 2`` text."""
    text = text.strip().rstrip(".")
    call = _literal_call(f"{entry_point}({text})", entry_point, params)
    if call is not None:
        return call
    # "N = 1000, the sum of digits will be 1": one parameter, its value first
    if params is not None and len(params) == 1:
        first = re.match(r"\s*(?:\w+\s*=\s*)?(.*)", text, re.DOTALL)
        value = _expected_literal(first.group(1)) if first else None
        if value is not None:
            return _literal_call(f"{entry_point}({value})", entry_point, params)
    return None


def _prose_pairs(doc: str, entry_point: str, params: list[str] | None) -> Iterator[tuple[str, str]]:
    text = doc[:_MAX_TEXT]
    for match in _FOR_X.finditer(text):
        call = _call_from_assignments(entry_point, match.group(1), params)
        expected = _expected_literal(match.group(2))
        if call is not None and expected is not None:
            yield call, expected
    for match in _INPUT_OUTPUT.finditer(text):
        call = _call_from_assignments(entry_point, match.group(1), params)
        expected = _expected_literal(match.group(2))
        if call is not None and expected is not None:
            yield call, expected


def tests_from_docstring(prompt: str, entry_point: str) -> list[GeneratedTest]:
    """Assert-based tests from the examples in ``entry_point``'s docstring.

    Args:
        prompt: code holding the function (a HumanEval prompt: signature and docstring).
        entry_point: the function's name.

    Returns:
        One test per distinct example, in docstring order; empty when there are none.
        Never raises on odd input.
    """
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" from odd text
            warnings.simplefilter("ignore")
            return _tests_from_docstring(prompt[:_MAX_TEXT], entry_point)
    except Exception:  # a parser corner case must not break a pipeline: no tests
        return []


def _tests_from_docstring(prompt: str, entry_point: str) -> list[GeneratedTest]:
    if not entry_point.isidentifier():
        return []
    doc = _function_docstring(prompt, entry_point)
    if not doc:
        return []
    allowed = _prompt_names(prompt)
    params = _parameters(prompt, entry_point)
    pairs = [
        *_doctest_pairs(doc, entry_point, allowed),
        *_inline_pairs(doc, entry_point, params),
        *_prose_pairs(doc, entry_point, params),
    ]
    # A call the docstring gives two different results for is notation, not an example.
    answers: dict[str, set[str | None]] = {}
    for expr, expected in pairs:
        answers.setdefault(expr, set()).add(expected)
    tests: list[GeneratedTest] = []
    seen: set[str] = set()
    for expr, expected in pairs:
        if len(answers[expr]) > 1:
            continue
        source = _assertion(expr, expected)
        if source in seen:
            continue
        seen.add(source)
        tests.append(
            GeneratedTest(f"{entry_point}_docstring_{len(tests)}", source, origin="docstring")
        )
    return tests


# --- from model output --------------------------------------------------------------------


def _code_blocks(text: str) -> list[str]:
    blocks = re.findall(r"```[^\n`]*\n(.*?)```", text, re.DOTALL)
    return blocks or [text]


def _references(node: ast.AST, entry_point: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == entry_point for n in ast.walk(node))


_UNRUNNABLE = {"self", "pytest", "unittest", "mock"}  # fixtures and frameworks we do not have


def _runnable(node: ast.AST) -> bool:
    return not any(isinstance(n, ast.Name) and n.id in _UNRUNNABLE for n in ast.walk(node))


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _model_tests(block: str, entry_point: str) -> Iterator[tuple[str | None, str]]:
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        header = re.match(r"^(\s*)(?:async\s+)?def\s+(test\w*)\s*\(", line)
        if header:
            indent = len(header.group(1))
            end = i + 1
            while end < len(lines) and (
                not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
            ):
                end += 1
            source = textwrap.dedent("\n".join(lines[i:end])).strip() + "\n"
            tree = _parse(source)
            if tree is not None and len(tree.body) == 1:
                func = tree.body[0]
                if (
                    isinstance(func, ast.FunctionDef)
                    and not func.decorator_list
                    and not (func.args.args or func.args.posonlyargs or func.args.kwonlyargs)
                    and _references(func, entry_point)
                    and _runnable(func)
                ):
                    yield func.name, ast.unparse(func) + f"\n{func.name}()\n"
            i = end
            continue
        if stripped.startswith("assert ") or stripped.startswith("assert("):
            for end in range(i + 1, min(i + 15, len(lines)) + 1):
                source = textwrap.dedent("\n".join(x.strip() for x in lines[i:end]))
                tree = _parse(source)
                if tree is not None:
                    if (
                        len(tree.body) == 1
                        and isinstance(tree.body[0], ast.Assert)
                        and _references(tree, entry_point)
                        and _runnable(tree)
                    ):
                        yield None, ast.unparse(tree.body[0])
                    i = end - 1
                    break
        i += 1


def tests_from_model_output(text: str, entry_point: str) -> list[GeneratedTest]:
    """The tests in a model's answer: ``assert`` statements and ``def test_...`` functions.

    Fenced code blocks are searched when there are any, else the whole text. Kept are the
    ones that parse, call ``entry_point`` and need no fixtures or test framework.

    Args:
        text: the model's answer.
        entry_point: the function under test.

    Returns:
        One test per distinct assert or test function, in order; never raises.
    """
    try:
        if not entry_point.isidentifier():
            return []
        tests: list[GeneratedTest] = []
        seen: set[str] = set()
        names: set[str] = set()
        with warnings.catch_warnings():  # "invalid escape sequence" from odd text
            warnings.simplefilter("ignore")
            blocks = _code_blocks(text[:_MAX_TEXT])
            found = [pair for block in blocks for pair in _model_tests(block, entry_point)]
        for name, source in found:
            if source in seen:
                continue
            seen.add(source)
            label = name or f"model_assert_{len(tests)}"
            while label in names:
                label += "_"
            names.add(label)
            tests.append(GeneratedTest(label, source, origin="model"))
        return tests
    except Exception:  # odd text must never break a pipeline
        return []


# --- running ------------------------------------------------------------------------------


def build_test_program(
    code: str,
    tests: Sequence[GeneratedTest],
    marker: str,
    *,
    per_test_timeout_s: float | None = None,
) -> str:
    """One program: ``code``, then each test on its own, then ``marker``.

    Each test prints ``<marker> {"name": ..., "passed": ..., "error": ...}`` on a line of
    its own; the marker prefix keeps the code under test from forging results, and the
    bare marker as the last line says every test ran.

    Args:
        code: the code under test.
        tests: the tests, run in order; an exception (any, ``SystemExit`` too) fails one
            test and the next one runs.
        marker: a fresh random nonce for this run.
        per_test_timeout_s: stop a test after this many seconds (SIGALRM; a test stuck
            in C code is only stopped by the sandbox's own limit).
    """
    parts = [code, "\n\n"]
    parts.append("def _taskloop_tests():\n")
    parts.append("    import json as _json\n    import signal as _signal\n")
    for index, test in enumerate(tests):
        body = textwrap.indent(test.source.strip() or "pass", "        ")
        parts.append(f"    def _test_{index}():\n{body}\n")
    names = ", ".join(f"({t.name!r}, _test_{i})" for i, t in enumerate(tests))
    parts.append(f"    tests = [{names}]\n")
    parts.append(
        textwrap.indent(
            textwrap.dedent(
                f"""\
                timeout = {per_test_timeout_s!r}

                def _expire(signum, frame):
                    raise TimeoutError(f"test took more than {{timeout}} s")

                if timeout:
                    _signal.signal(_signal.SIGALRM, _expire)
                for name, test in tests:
                    error = None
                    try:
                        if timeout:
                            _signal.setitimer(_signal.ITIMER_REAL, timeout)
                        try:
                            test()
                        finally:
                            if timeout:
                                _signal.setitimer(_signal.ITIMER_REAL, 0)
                    except BaseException as exc:
                        try:
                            error = f"{{type(exc).__name__}}: {{exc}}".rstrip(": ")
                        except BaseException:
                            error = type(exc).__name__
                    line = _json.dumps({{"name": name, "passed": error is None,
                                        "error": None if error is None else error[:500]}})
                    print({marker!r} + " " + line, flush=True)
                """
            ),
            "    ",
        )
    )
    parts.append(f"\n\n_taskloop_tests()\nprint({marker!r}, flush=True)\n")
    return "".join(parts)


def parse_test_report(stdout: str, marker: str | None = None) -> list[GeneratedTestOutcome]:
    """The per-test outcomes a :func:`build_test_program` program printed.

    Args:
        stdout: the program's output.
        marker: its marker: only lines that start with it count. Without it, any
            ``{...}`` line (bare, or after one word) with ``name`` and ``passed`` counts,
            which code under test could forge: pass the marker where you have it.

    Returns:
        One outcome per test that reported, in report order (a repeated name: its last
        report).
    """
    found: dict[str, GeneratedTestOutcome] = {}
    for line in stdout.splitlines():
        if marker is not None:
            if not line.startswith(marker + " "):
                continue
            payload = line[len(marker) + 1 :].strip()
        else:
            head, brace, tail = line.partition("{")
            if not brace or (head.strip() and " " in head.strip()):
                continue
            payload = brace + tail
        try:
            row = json.loads(payload)
        except ValueError:
            continue
        if not (
            isinstance(row, dict)
            and isinstance(row.get("name"), str)
            and isinstance(row.get("passed"), bool)
        ):
            continue
        error = row.get("error")
        found.pop(row["name"], None)
        found[row["name"]] = GeneratedTestOutcome(
            row["name"], row["passed"], error if isinstance(error, str) else None
        )
    return list(found.values())


def run_generated_tests(
    code: str,
    tests: Sequence[GeneratedTest],
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    per_test_timeout_s: float | None = None,
) -> GeneratedTestRun:
    """Run ``tests`` against ``code`` in one sandbox run; pass/fail per test.

    Returns:
        An outcome for every test, in order; tests that never reported (the run ended
        early) fail with an error that says how the run ended.
    """
    from taskloop.tasks.humaneval import new_marker

    marker = new_marker()
    program = build_test_program(code, tests, marker, per_test_timeout_s=per_test_timeout_s)
    result = run_python(program, limits=limits, require_marker=marker, module_name="tests")
    reported = {o.name: o for o in parse_test_report(result.stdout, marker)}
    complete = result.passed
    missing = f"did not run: the program ended early ({result.status.value}: {result.detail})"
    outcomes = [reported.get(t.name) or GeneratedTestOutcome(t.name, False, missing) for t in tests]
    return GeneratedTestRun(outcomes=outcomes, result=result, complete=complete)
