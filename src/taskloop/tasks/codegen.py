"""Code generation: write the function, write unit tests for it, run both in the sandbox.

prepare: find the entry point and turn the docstring's examples into unit tests.
generate: ``samples`` completions per problem from a causal LM (or a seq2seq code model),
    cut at the usual stop sequences; the model is also asked for tests of its own code.
    A row that carries a ``completion`` is verified as given (no model needed).
verify: every sample runs twice in the sandbox (:mod:`taskloop.tasks.sandbox`): once with
    the generated tests, one report line per test, and once with the row's reference
    ``test`` (HumanEval's ``check(candidate)``), which decides pass/fail for pass@k.
score: unbiased pass@k over the problems with reference tests.

The output of each item is the code and the tests generated for it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloop.data.records import Check, CodegenExample, Prediction, status_from_checks
from taskloop.evaluate.metrics import pass_at_k
from taskloop.log import step
from taskloop.models.errors import ModelError
from taskloop.models.generate import generate
from taskloop.tasks.context import TaskContext
from taskloop.tasks.humaneval import PROGRAM_MODULE_NAME, build_program, new_marker
from taskloop.tasks.sandbox import (
    SandboxJob,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailableError,
    run_many,
)
from taskloop.tasks.testgen import (
    GeneratedTest,
    build_test_program,
    parse_test_report,
    tests_from_docstring,
    tests_from_model_output,
)

# Where a completion of a function body ends (HumanEval's stop sequences).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
NO_MODEL = (
    "no code model is configured: pass a causal LM with `--model codegen=PATH_OR_ID` "
    "(a folder saved with save_pretrained, or a hub id in the local cache, e.g. "
    "Salesforce/codegen-350M-mono or bigcode/starcoderbase-1b), or give the row a "
    "`completion` to verify"
)
_DEF = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


@dataclass
class Sample:
    """One candidate body and how it fared."""

    completion: str
    syntax_error: str | None = None
    tests: list[dict[str, Any]] = field(default_factory=list)  # name, origin, passed, error
    reference: SandboxResult | None = None

    @property
    def reference_passed(self) -> bool:
        return self.reference is not None and self.reference.passed

    @property
    def tests_passed(self) -> int:
        return sum(1 for t in self.tests if t["passed"])


def entry_point_of(example: CodegenExample) -> str | None:
    """The function to test: the row's ``entry_point``, else the prompt's last ``def``."""
    if example.entry_point:
        return example.entry_point
    names = _DEF.findall(example.prompt)
    return names[-1] if names else None


def truncate_completion(text: str) -> str:
    """Cut a generated body at the first stop sequence (a new top-level statement)."""
    cut = len(text)
    for stop in STOP_SEQUENCES:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut].rstrip() + "\n"


def syntax_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    return None


def _limits(ctx: TaskContext) -> SandboxLimits:
    opts = ctx.options
    wall = opts.timeout_s or 10.0
    memory = (opts.memory_mb or 1024) * 2**20
    return SandboxLimits(
        wall_time_s=wall, cpu_time_s=max(1, int(wall + 0.999)), memory_bytes=memory
    )


def _generate_samples(
    examples: Sequence[CodegenExample], ctx: TaskContext, cut_notes: dict[int, list[str]]
) -> tuple[dict[int, list[str]], str | None, dict[int, list[GeneratedTest]]]:
    """Completions (and model-written tests) for examples without a supplied completion.

    Prompts cut to the model's window are noted in ``cut_notes`` (by example index).
    """
    todo = [i for i, ex in enumerate(examples) if ex.completion is None]
    if not todo or not ctx.options.model:
        return {}, None, {}
    lm = ctx.resources.model(ctx.options.model)
    n = ctx.options.samples
    settings = ctx.generation(
        max_new_tokens=256,
        do_sample=n > 1,
        temperature=ctx.options.temperature,
        top_p=0.95,
        num_return_sequences=n,
        batch_size=4,
    )
    outs = generate(lm, [examples[i].prompt for i in todo], settings, cache=ctx.resources.cache)
    completions = {
        i: [truncate_completion(t) for t in out.texts] for i, out in zip(todo, outs, strict=True)
    }
    for i, out in zip(todo, outs, strict=True):
        if out.truncated:
            cut_notes[i] = [
                f"the prompt has {out.input_tokens} tokens, over the model's window: the model "
                "saw only its end"
            ]
    # Ask the model for tests of its first completion: start an assert and let it go on.
    heads: list[str] = []
    for i in todo:
        entry = entry_point_of(examples[i]) or "solution"
        heads.append(
            f"{examples[i].prompt}{completions[i][0]}\n\ndef test_{entry}():\n    assert {entry}("
        )
    test_settings = ctx.generation(max_new_tokens=128, batch_size=4)
    written = generate(lm, heads, test_settings, cache=ctx.resources.cache)
    model_tests: dict[int, list[GeneratedTest]] = {}
    for i, out in zip(todo, written, strict=True):
        entry = entry_point_of(examples[i]) or "solution"
        text = f"def test_{entry}():\n    assert {entry}(" + out.text
        model_tests[i] = tests_from_model_output(text, entry)
    return completions, lm.describe(), model_tests


def run(examples: Sequence[CodegenExample], ctx: TaskContext) -> list[Prediction]:
    """Generate (or take) code for each problem, generate tests, run everything sandboxed."""
    with step("codegen.prepare", items=len(examples)) as info:
        entries = [entry_point_of(ex) for ex in examples]
        doc_tests = [
            tests_from_docstring(ex.prompt, entry) if entry else []
            for ex, entry in zip(examples, entries, strict=True)
        ]
        info["docstring_tests"] = sum(map(len, doc_tests))
    model_name: str | None = None
    skipped_reason = ""
    cut_notes: dict[int, list[str]] = {}
    with step("codegen.generate", items=len(examples)) as info:
        try:
            completions, model_name, model_tests = _generate_samples(examples, ctx, cut_notes)
        except ModelError as exc:
            completions, model_tests = {}, {}
            skipped_reason = f"{exc.message}. {exc.hint or ''}".strip()
        info["generated"] = len(completions)
    samples: dict[int, list[Sample]] = {}
    for i, ex in enumerate(examples):
        if ex.completion is not None:
            samples[i] = [Sample(ex.completion)]
        elif i in completions:
            samples[i] = [Sample(c) for c in completions[i]]
    with step("codegen.verify", items=len(samples)) as info:
        failure = _verify(examples, entries, doc_tests, model_tests, samples, ctx)
        info["programs"] = 2 * sum(map(len, samples.values()))
    out = []
    for i, ex in enumerate(examples):
        if i not in samples:
            reason = skipped_reason or (
                NO_MODEL if not ctx.options.model else "no completion was generated"
            )
            out.append(_skipped(ex, reason))
        elif failure:
            out.append(_failed(ex, failure))
        else:
            supplied = ex.completion is not None
            pred = _prediction(
                ex,
                entries[i],
                samples[i],
                doc_tests[i] + model_tests.get(i, []),
                mode="verify supplied completion"
                if supplied
                else f"generate ({ctx.options.samples} samples)",
                model=None if supplied else model_name,
            )
            pred.truncation.extend(cut_notes.get(i, []))
            out.append(pred)
    return out


def _verify(
    examples: Sequence[CodegenExample],
    entries: list[str | None],
    doc_tests: list[list[GeneratedTest]],
    model_tests: dict[int, list[GeneratedTest]],
    samples: dict[int, list[Sample]],
    ctx: TaskContext,
) -> str:
    """Run every sample's generated tests and reference test; '' or why it could not run."""
    limits = _limits(ctx)
    jobs: list[SandboxJob] = []
    slots: list[tuple[Sample, str, str]] = []  # sample, "tests"|"reference", marker
    tests_of: dict[int, list[GeneratedTest]] = {}
    for i, sample_list in samples.items():
        ex = examples[i]
        entry = entries[i]
        tests = doc_tests[i] + model_tests.get(i, [])
        for sample in sample_list:
            tests_of[id(sample)] = tests
            code = ex.prompt + sample.completion
            sample.syntax_error = syntax_error(code)
            if sample.syntax_error:
                continue
            if tests:
                marker = new_marker()
                jobs.append(
                    SandboxJob(build_test_program(code, tests, marker), require_marker=marker)
                )
                slots.append((sample, "tests", marker))
            if ex.test and entry:
                marker = new_marker()
                program = build_program(ex.prompt, sample.completion, ex.test, entry, marker)
                jobs.append(
                    SandboxJob(program, require_marker=marker, module_name=PROGRAM_MODULE_NAME)
                )
                slots.append((sample, "reference", marker))
    try:
        results = run_many(jobs, limits, workers=ctx.resources.workers)
    except SandboxUnavailableError as exc:
        return f"the sandbox could not start: {exc.message}"
    for (sample, kind, _marker), result in zip(slots, results, strict=True):
        if kind == "reference":
            sample.reference = result
        else:
            sample.tests = _test_outcomes(result)
    return ""


def _test_outcomes(result: SandboxResult) -> list[dict[str, Any]]:
    outcomes = [
        {"name": t.name, "passed": t.passed, "error": t.error}
        for t in parse_test_report(result.stdout)
    ]
    if not result.passed and not outcomes:
        # The program died before any test reported (a syntax error, a hang, a blocked call).
        outcomes = [
            {"name": "(all)", "passed": False, "error": f"{result.status}: {result.detail}"}
        ]
    return outcomes


def _best(samples: list[Sample]) -> Sample:
    """The sample to show: the first that passes its reference test, else the most tests."""
    for s in samples:
        if s.reference_passed:
            return s
    return max(samples, key=lambda s: (s.syntax_error is None, s.tests_passed))


def _prediction(
    ex: CodegenExample,
    entry: str | None,
    samples: list[Sample],
    tests: list[GeneratedTest],
    *,
    mode: str,
    model: str | None,
) -> Prediction:
    best = _best(samples)
    code = ex.prompt + best.completion
    checks = [
        Check(
            name="syntax",
            passed=best.syntax_error is None,
            detail=best.syntax_error or "parses",
        )
    ]
    if tests:
        total = len(best.tests) if best.tests else len(tests)
        failed = [t for t in best.tests if not t["passed"]]
        checks.append(
            Check(
                name="generated_tests",
                passed=best.syntax_error is None and bool(best.tests) and not failed,
                detail=f"{best.tests_passed}/{total} passed"
                + (f"; first failure {failed[0]['name']}: {failed[0]['error']}" if failed else ""),
            )
        )
    else:
        checks.append(
            Check(
                name="generated_tests",
                passed=False,
                severity="warning",
                detail="no tests could be generated (no docstring examples"
                + (", no model tests)" if model else ")"),
            )
        )
    if ex.test and entry:
        ref = best.reference
        checks.append(
            Check(
                name="reference_tests",
                passed=best.reference_passed,
                detail="passed"
                if best.reference_passed
                else (f"{ref.status}: {ref.detail}" if ref else f"not run: {best.syntax_error}"),
            )
        )
    test_source = "\n\n".join(as_pytest(t) for t in tests)
    output = (
        code
        if not test_source
        else f"{code}\n\n# --- unit tests generated by taskloop ---\n{test_source}\n"
    )
    n_ref = sum(1 for s in samples if s.reference_passed)
    scores: dict[str, float] = {}
    if ex.test and entry:
        scores["pass@1"] = n_ref / len(samples)
    return Prediction(
        id=ex.id,
        task="codegen",
        where=ex.where,
        output=output,
        status=status_from_checks(checks),
        mode=mode,
        model=model,
        checks=checks,
        scores=scores,
        details={
            "entry_point": entry,
            "tests": [
                {**o, "origin": _origin(o["name"], tests), "source": _source(o["name"], tests)}
                for o in best.tests
            ],
            "samples": [
                {
                    "completion": s.completion,
                    "syntax_error": s.syntax_error,
                    "reference": None if s.reference is None else str(s.reference.status),
                    "reference_detail": None if s.reference is None else s.reference.detail,
                    "tests_passed": s.tests_passed,
                    "tests_total": len(s.tests),
                }
                for s in samples
            ],
            "reference_passed": n_ref,
        },
    )


def as_pytest(test: GeneratedTest) -> str:
    """A generated test as a pytest function, so the output runs with ``pytest`` as is."""
    if test.source.lstrip().startswith("def test"):
        return test.source.rstrip()
    name = re.sub(r"\W", "_", test.name)
    body = "\n".join(
        "    " + line if line.strip() else "" for line in test.source.rstrip().splitlines()
    )
    return f"def test_{name}():  # from the {test.origin}\n{body}"


def _origin(name: str, tests: list[GeneratedTest]) -> str:
    return next((t.origin for t in tests if t.name == name), "")


def _source(name: str, tests: list[GeneratedTest]) -> str:
    return next((t.source for t in tests if t.name == name), "")


def _skipped(ex: CodegenExample, reason: str) -> Prediction:
    return Prediction(
        id=ex.id, task="codegen", where=ex.where, output=None, status="skipped", reason=reason
    )


def _failed(ex: CodegenExample, reason: str) -> Prediction:
    return Prediction(
        id=ex.id, task="codegen", where=ex.where, output=None, status="failed", reason=reason
    )


def score(
    examples: Sequence[CodegenExample], predictions: Sequence[Prediction]
) -> dict[str, float]:
    """pass@k (unbiased, k ≤ samples) over problems with reference tests; generated-test rate."""
    n: list[int] = []
    c: list[int] = []
    tests_total = tests_passed = 0
    for ex, pred in zip(examples, predictions, strict=True):
        if pred.status in ("skipped", "failed"):
            continue
        samples = pred.details.get("samples", [])
        tests = pred.details.get("tests", [])
        tests_total += len(tests)
        tests_passed += sum(1 for t in tests if t["passed"])
        if ex.test and samples:
            n.append(len(samples))
            c.append(int(pred.details.get("reference_passed", 0)))
    out: dict[str, float] = {}
    if n:
        out["problems"] = float(len(n))
        for k in (1, 10, 100):
            if min(n) >= k:
                out[f"pass@{k}"] = pass_at_k(n, c, k)
    if tests_total:
        out["generated_tests_passed"] = tests_passed / tests_total
        out["generated_tests"] = float(tests_total)
    return out
