"""data_augmentation: each method on crafted rows, quotas, determinism and the report."""

from __future__ import annotations

import gzip
import importlib
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloop.data.augment import (
    METHODS,
    AugmentReport,
    data_augmentation,
    load_dictionary,
    origin_of,
    rename_identifiers,
    synonyms_from_bilingual,
    wordnet_synonyms,
)
from taskloop.data.records import (
    CodegenExample,
    Example,
    QAExample,
    SummarizeExample,
    TranslateExample,
    Where,
)
from taskloop.models.generate import Generated, GenerationSettings
from taskloop.models.loader import LoadedModel, load_model
from taskloop.models.tiny import build_tiny_model
from taskloop.train.errors import TrainConfigError

# --- rename_identifiers ----------------------------------------------------------------

PROMPT = '''import math

SCALE = 3


def score(values, limit, *extra, factor=2, **opts):
    """Score the values up to the limit (see factor)."""
'''
COMPLETION = """    total = 0
    seen = []
    get = opts.get
    for v in values:
        if v > limit:
            continue
        seen.append(v)
        total += v * SCALE

    def bump(w):
        return w + len(extra)

    default = 0
    best = max(seen, key=lambda q: -q, default=default)
    label = f"{total}"
    squares = [t * t for t in seen]
    try:
        ratio = total / len(seen)
    except ZeroDivisionError as err:
        ratio = 0.0 if err else 1.0
    return (
        bump(total) + best + int(label) + sum(squares) + math.floor(ratio)
        + get("k", 0) + factor
    )
"""
# Never renamed: in the docstring (values, limit, factor), a def (bump, score), an except
# name (err), a keyword-argument name (default, key), module names (SCALE, math), text in
# strings ("k"), and, on Python 3.11 where tokenize keeps an f-string whole, total.
BLOCKED = {"values", "limit", "factor", "bump", "score", "err", "default", "key", "SCALE"}
BLOCKED |= {"math", "k"} | ({"total"} if sys.version_info < (3, 12) else set())
RENAMEABLE = {"extra", "opts", "seen", "get", "v", "w", "q", "best", "label", "squares"}
RENAMEABLE |= {"t", "ratio"} | ({"total"} if sys.version_info >= (3, 12) else set())


def _run(
    code: str, name: str, calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
) -> list[Any]:
    namespace: dict[str, Any] = {}
    exec(compile(code, "<test>", "exec"), namespace)
    out = []
    for args, kwargs in calls:
        try:
            out.append(namespace[name](*args, **kwargs))
        except Exception as exc:  # the same error on both sides counts as the same behaviour
            out.append(type(exc).__name__)
    return out


def test_rename_keeps_behaviour_and_leaves_protected_names() -> None:
    calls = [(([1, 5, 2, 9], 6, 1, 2), {"factor": 3, "k": 4}), (([], 1), {})]
    expected = _run(PROMPT + COMPLETION, "score", calls)
    renamed_any: set[str] = set()
    for seed in range(25):
        done = rename_identifiers(PROMPT, COMPLETION, entry_point="score", rng=random.Random(seed))
        assert done is not None
        assert set(done.mapping) <= RENAMEABLE
        assert not set(done.mapping) & BLOCKED
        renamed_any |= set(done.mapping)
        assert _run(done.prompt + done.completion, "score", calls) == expected
        # Prompt and completion stay apart; attributes, keywords and strings are intact.
        assert done.prompt.startswith("import math\n") and '"""Score the values' in done.prompt
        assert done.prompt.endswith('(see factor)."""\n')
        for kept in (".append(", ".get", "key=lambda", "default=", '"k"', "def bump("):
            assert kept in done.completion
        if "extra" in done.mapping:  # an argument is renamed in the signature too
            assert f"*{done.mapping['extra']}," in done.prompt
    assert len(renamed_any) >= 8  # the seeds pick different subsets


def test_rename_returns_none_when_nothing_may_change() -> None:
    prompt = 'def add(a, b):\n    """Return a plus b."""\n'
    assert rename_identifiers(prompt, "    return a + b\n") is None  # both in the docstring
    assert rename_identifiers("def f(:\n", "    pass\n") is None  # does not parse
    assert rename_identifiers("x = 1\n", "y = 2\n") is None  # no function


def test_rename_avoids_the_names_of_the_test() -> None:
    prompt = "def area(width, height):\n    '''Rectangle area.'''\n"
    completion = "    result = width * height\n    return result\n"
    for seed in range(10):
        done = rename_identifiers(
            prompt, completion, rng=random.Random(seed), avoid={"width", "check", "candidate"}
        )
        assert done is not None and "width" not in done.mapping
        assert not set(done.mapping.values()) & {"check", "candidate", "area"}


def test_rename_on_humaneval_keeps_the_tests_passing() -> None:
    """The canonical solutions of the first 12 HumanEval problems, renamed, still pass
    their own tests (run in this process: trusted reference code)."""
    from taskloop.tasks.humaneval import load_humaneval

    renamed = 0
    for problem in load_humaneval()[:12]:
        done = rename_identifiers(
            problem.prompt,
            problem.canonical_solution,
            entry_point=problem.entry_point,
            avoid=set(re.findall(r"\w+", problem.test)),
        )
        if done is None:
            continue
        renamed += 1
        namespace: dict[str, Any] = {}
        exec(done.prompt + done.completion + "\n" + problem.test, namespace)
        namespace["check"](namespace[problem.entry_point])
    assert renamed >= 9


_POOL = ["a", "b", "n", "x", "acc", "items", "value", "result", "key", "i", "total"]


@st.composite
def simple_functions(draw: st.DrawFn) -> tuple[str, str]:
    """A function of 1–3 int arguments: assignments, loops, branches, comprehensions,
    lambdas with keyword arguments, f-strings, a nested helper; every name it reads is
    defined before. Returns (prompt, completion)."""
    args = draw(st.lists(st.sampled_from(_POOL), min_size=1, max_size=3, unique=True))
    defined = list(args)
    body: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        e1 = draw(st.sampled_from([*defined, "1", "2", "7"]))
        e2 = draw(st.sampled_from([*defined, "3"]))
        v = draw(st.sampled_from(_POOL))
        w = draw(st.sampled_from(_POOL))
        kind = draw(st.integers(0, 7))
        if kind == 0:
            body.append(f"{v} = {e1} + {e2}")
        elif kind == 1:
            body += [f"{v} = 0", f"for {w} in range(abs({e1}) % 5):", f"    {v} = {v} + {w}"]
        elif kind == 2:
            body += [f"if {e1} > {e2}:", f"    {v} = {e1}", "else:", f"    {v} = {e2}"]
        elif kind == 3:
            body.append(f"{v} = sum([{w} * 2 for {w} in range(abs({e1}) % 4)])")
        elif kind == 4:
            body.append(f"{v} = sorted([{e1}, {e2}], key=lambda {w}: -{w})[0]")
        elif kind == 5:
            body.append(f"{v} = len(f'{{{e1}}}-{{{e2}!r}}')")
        elif kind == 6:
            body += [f"def helper({w}):", f"    return {w} * 3", f"{v} = helper({e1})"]
        else:
            body.append(f"{v} = dict({w}={e1}).get('{w}', {e2})")
        defined.append(v)
    body.append(f"return {draw(st.sampled_from(defined))}")
    prompt = f'def fn({", ".join(args)}):\n    """Compute something."""\n'
    return prompt, "".join(f"    {line}\n" for line in body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(simple_functions(), st.integers(0, 10_000))
def test_rename_output_always_parses_and_behaves_the_same(fn: tuple[str, str], seed: int) -> None:
    prompt, completion = fn
    done = rename_identifiers(prompt, completion, rng=random.Random(seed))
    if done is None:
        return
    compile(done.prompt + done.completion, "<renamed>", "exec")  # parses
    assert done.prompt.startswith("def fn(")
    n_args = prompt.split("(")[1].split(")")[0].count(",") + 1
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((i,) * n_args, {}) for i in (-3, 0, 4)]
    assert _run(done.prompt + done.completion, "fn", calls) == _run(
        prompt + completion, "fn", calls
    )


# --- data_augmentation: codegen, quotas, ids, determinism ------------------------------


def code_rows(n: int) -> list[CodegenExample]:
    return [
        CodegenExample(
            id=f"c{i}",
            where=Where(file="code.jsonl", row=i + 1),
            prompt=f"def f{i}(x, y):\n    '''Combine two numbers.'''\n",
            completion=f"    s = x + y * {i}\n    d = s - x\n    return s * d\n",
            entry_point=f"f{i}",
            test=f"def check(candidate):\n    assert candidate(1, 2) == f{i}(1, 2)\n",
        )
        for i in range(n)
    ]


def test_codegen_rows_get_renamed_variants_with_new_ids() -> None:
    rows = code_rows(30)
    report = data_augmentation(rows, ratio=0.2)
    assert report.counts == {"synonym": 0, "rename_identifiers": 6}  # round(0.2 * 30)
    assert report.wanted == {"codegen": 6}
    originals = {r.id: r for r in rows}
    for new in report.added:
        assert isinstance(new, CodegenExample)
        base, _, suffix = new.id.partition("#")
        assert suffix == "aug-rename_identifiers-1"
        old = originals[base]
        assert new.where == old.where and new.test == old.test
        assert new.entry_point == old.entry_point and f"def {old.entry_point}(" in new.prompt
        assert (new.prompt, new.completion) != (old.prompt, old.completion)
        assert _run(
            new.prompt + (new.completion or ""), base.replace("c", "f"), [((3, 4), {})]
        ) == (_run(old.prompt + (old.completion or ""), base.replace("c", "f"), [((3, 4), {})]))
    assert "synonym" in report.skipped  # no synonyms here, or no rows of its tasks


def test_ratio_above_one_takes_several_variants_per_row() -> None:
    report = data_augmentation(code_rows(5), ratio=2.0, methods=["rename_identifiers"])
    assert len(report.added) == 10
    assert len({ex.id for ex in report.added}) == 10
    texts = {(ex.prompt, ex.completion) for ex in report.added}  # type: ignore[union-attr]
    assert len(texts) == 10  # distinct variants, not copies


def test_zero_ratio_adds_nothing() -> None:
    report = data_augmentation(code_rows(5), ratio=0.0)
    assert report.added == [] and report.wanted == {"codegen": 0}
    assert report.skipped["rename_identifiers"] == "the ratio asks for no rows"


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    rows = code_rows(20)

    def dump(report: AugmentReport) -> list[dict[str, Any]]:
        return [ex.model_dump() for ex in report.added]

    first = data_augmentation(rows, ratio=0.5, seed=7)
    assert dump(first) == dump(data_augmentation(rows, ratio=0.5, seed=7))
    assert dump(first) != dump(data_augmentation(rows, ratio=0.5, seed=8))


def test_unknown_method_and_bad_ratio_raise() -> None:
    with pytest.raises(TrainConfigError) as err:
        data_augmentation([], methods=["synonym", "mixup"])
    assert "'mixup'" in str(err.value) and all(m in str(err.value) for m in METHODS)
    with pytest.raises(TrainConfigError, match="ratio"):
        data_augmentation([], ratio=-0.1)


def test_origin_of() -> None:
    assert origin_of("row-7#aug-back_translation-2") == "back_translation"
    assert origin_of("row-7") == "data"


# --- synonyms ---------------------------------------------------------------------------


def tr(i: int, source: str, target: str) -> TranslateExample:
    return TranslateExample(
        id=f"t{i}", where=Where(file="t.tsv", row=i + 1), source=source, target=target
    )


BILINGUAL = {
    "big": ["groß"],
    "large": ["groß", "weit"],
    "dog": ["Hund"],
    "hound": ["Hund", "Jagdhund"],
    "sleeps": ["schläft"],
    "real": ["echt"],
    "realistic": ["echt"],
}


def test_synonyms_from_bilingual_dictionary() -> None:
    """big and large share "groß", dog and hound "Hund"; real/realistic share "echt" but
    one starts with the other (a derivation), so they are not synonyms."""
    assert synonyms_from_bilingual(BILINGUAL) == {
        "big": ["large"],
        "dog": ["hound"],
        "hound": ["dog"],
        "large": ["big"],
    }
    crowded = {f"w{c}": ["viel"] for c in "abcdefg"}  # seven words share one translation
    assert synonyms_from_bilingual(crowded, max_sources=6) == {}


def test_load_dictionary_reads_gzip_tsv(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv.gz"
    path.write_bytes(gzip.compress(b"english\tgerman\nfree\tfrei\nfree\tgratis\ndog\tHund\n"))
    assert load_dictionary(path) == {"free": ["frei", "gratis"], "dog": ["Hund"]}


def test_wordnet_data_is_absent_in_this_environment() -> None:
    """nltk raises LookupError for a corpus that is not installed; the lookup says None."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")
    except LookupError:
        assert wordnet_synonyms() is None
    else:  # pragma: no cover - a machine with WordNet data
        assert wordnet_synonyms() is not None


def _wordnet_flag() -> bool:
    """Use WordNet only where it is absent anyway, so every test takes the fallback path."""
    return wordnet_synonyms() is None


def test_translation_synonyms_keep_the_target_a_correct_translation() -> None:
    """The target holds "große" (groß) and "Hund": big → large (shares groß) and
    dog → hound (shares Hund) keep it right. In a target without either translation
    nothing may change."""
    rows = [tr(0, "The big dog sleeps.", "Der große Hund schläft.")]
    seen = set()
    for seed in range(12):
        report = data_augmentation(
            rows,
            ratio=1.0,
            methods=["synonym"],
            dictionary=BILINGUAL,
            use_wordnet=_wordnet_flag(),
            seed=seed,
        )
        assert report.skipped["synonym"].endswith("used the dictionary")
        (new,) = report.added
        assert isinstance(new, TranslateExample)
        assert new.target == "Der große Hund schläft." and new.id == "t0#aug-synonym-1"
        seen.add(new.source)
    assert seen <= {"The large dog sleeps.", "The big hound sleeps.", "The large hound sleeps."}
    assert len(seen) >= 2
    other = data_augmentation(
        [tr(1, "The big dog sleeps.", "Das Tier schläft.")],
        ratio=1.0,
        methods=["synonym"],
        dictionary=BILINGUAL,
        use_wordnet=_wordnet_flag(),
    )
    assert other.added == []
    assert other.skipped["synonym"].endswith("used the dictionary; no row gave a usable variant")


def test_translation_synonyms_need_the_dictionary() -> None:
    report = data_augmentation(
        [tr(0, "The big dog sleeps.", "Der große Hund schläft.")],
        ratio=1.0,
        methods=["synonym"],
        synonyms={"big": ["large"]},
    )
    assert report.added == []


SYNONYMS = {
    "enormous": ["huge"],
    "dog": ["hound"],
    "barked": ["yelped"],
    "loudly": ["noisily"],
    "mailman": ["postman"],
    "animal": ["creature"],
    "mike": ["michael"],
}


def test_summary_and_question_synonyms_leave_label_words_alone() -> None:
    doc = "Enormous dogs barked loudly at the mailman Mike. The dog was enormous."
    rows: list[Example] = [
        SummarizeExample(
            id="s0",
            where=Where(file="s.jsonl", row=1),
            document=doc,
            summaries=["A dog barked at the mailman."],
        ),
        QAExample(
            id="q0",
            where=Where(file="q.jsonl", row=1),
            question="Which enormous animal barked loudly?",
            context="Yesterday the dog barked loudly.",
            answers=["the dog"],
        ),
    ]
    docs, questions = set(), set()
    for seed in range(15):
        report = data_augmentation(
            rows, ratio=1.0, methods=["synonym"], synonyms=SYNONYMS, seed=seed
        )
        assert "synonym" not in report.skipped
        for new in report.added:
            if isinstance(new, SummarizeExample):
                assert new.summaries == ["A dog barked at the mailman."]
                docs.add(new.document)
            else:
                assert isinstance(new, QAExample)
                assert new.context == "Yesterday the dog barked loudly." and new.answers == [
                    "the dog"
                ]
                questions.add(new.question)
    # dog/dogs, barked and mailman are in the summary, Mike is a name inside a sentence:
    # only enormous/loudly may change, with the capital kept at the start of a sentence.
    for text in docs:
        assert re.fullmatch(
            r"(Enormous|Huge) dogs barked (loudly|noisily) at the mailman Mike\. "
            r"The dog was (enormous|huge)\.",
            text,
        ), text
    assert any(t.startswith("Huge") for t in docs)
    # The answer holds "dog"; barked is not in it, so it may change in the question.
    for text in questions:
        assert re.fullmatch(
            r"Which (enormous|huge) (animal|creature) (barked|yelped) (loudly|noisily)\?", text
        )
    assert len(questions) >= 3


def test_synonym_falls_back_to_the_dictionary_for_documents() -> None:
    """No synonyms table and no WordNet: big/large come from the bilingual dictionary."""
    rows = [
        SummarizeExample(
            id="s1",
            where=Where(file="s.jsonl", row=1),
            document="A big dog sleeps here.",
            summaries=["A dog sleeps."],
        )
    ]
    report = data_augmentation(
        rows, ratio=1.0, methods=["synonym"], dictionary=BILINGUAL, use_wordnet=_wordnet_flag()
    )
    assert [ex.document for ex in report.added] == ["A large dog sleeps here."]  # type: ignore[union-attr]


# --- model methods ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = build_tiny_model(tmp_path_factory.mktemp("aug") / "m", "seq2seq")
    return load_model(str(path))


SHORT = GenerationSettings(max_new_tokens=8)


def test_back_translation_with_a_tiny_model(tiny_lm: LoadedModel) -> None:
    """The tiny model's output is noise: the test checks the plumbing (ids, where, the
    target kept, a new source) and that the report counts what was added."""
    rows = [
        tr(
            i,
            f"A dog is running across the green meadow {i}.",
            f"Ein Hund rennt über die Wiese {i}.",
        )
        for i in range(4)
    ]
    report = data_augmentation(
        rows,
        ratio=1.0,
        methods=["back_translation"],
        back_translation_model=tiny_lm,
        back_translation_settings=SHORT,
    )
    assert 1 <= len(report.added) <= 4 and report.counts == {"back_translation": len(report.added)}
    originals = {r.id: r for r in rows}
    for new in report.added:
        assert isinstance(new, TranslateExample)
        old = originals[new.id.split("#")[0]]
        assert new.id == f"{old.id}#aug-back_translation-1" and new.where == old.where
        assert new.target == old.target and new.source.strip() and new.source != old.source


# The module, not the package attribute of the same name (taskloop.models.generate is
# also the function re-exported by the package).
GENERATE_MODULE = importlib.import_module("taskloop.models.generate")


def fake_generate(outputs: dict[str, Generated]) -> Any:
    def generate(lm: Any, texts: Sequence[str], settings: Any = None, **_: Any) -> list[Generated]:
        return [outputs[t] for t in texts]

    return generate


def gen(text: str, truncated: bool = False) -> Generated:
    return Generated(texts=[text], input_tokens=3, truncated=truncated, cached=False)


def test_back_translation_drops_empty_copied_cut_and_degenerate_outputs(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six rows, one output each: empty; the source again (other case); the target
    copied; cut at the window; 5 times longer than the source; a real alternative. Only
    the last one becomes a row."""
    source = "A dog runs in the park."
    rows = [tr(i, source, f"Ein Hund rennt im Park {i}.") for i in range(6)]
    outputs = {
        rows[0].target or "": gen(""),
        rows[1].target or "": gen(source.upper()),
        rows[2].target or "": gen(rows[2].target or ""),
        rows[3].target or "": gen("A dog is running in the park.", truncated=True),
        rows[4].target or "": gen(source * 5),
        rows[5].target or "": gen("A dog is running in a park."),
    }
    monkeypatch.setattr(GENERATE_MODULE, "generate", fake_generate(outputs))
    report = data_augmentation(
        rows, ratio=1.0, methods=["back_translation"], back_translation_model=tiny_lm
    )
    assert [(ex.id, ex.source) for ex in report.added] == [  # type: ignore[union-attr]
        ("t5#aug-back_translation-1", "A dog is running in a park.")
    ]
    assert report.added[0].target == rows[5].target  # type: ignore[union-attr]


def test_paraphrase_filters_per_task(tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A document rewritten to under half its length lost content and is dropped; one of
    similar length is kept. A QA question is rewritten, never the context; a row whose
    answer is not in its context gets no variant. Summaries and answers never change."""
    doc_a = "The council met on Monday and voted to build new cycling lanes."
    doc_b = "The museum opened a new wing for modern art on Friday evening."
    rows: list[Example] = [
        SummarizeExample(id="s0", where=Where(file="s", row=1), document=doc_a,
                         summaries=["Lanes."]),
        SummarizeExample(id="s1", where=Where(file="s", row=2), document=doc_b,
                         summaries=["Art."]),
        QAExample(id="q0", where=Where(file="q", row=1), question="Who voted?",
                  context="The council voted.", answers=["The council"]),
        QAExample(id="q1", where=Where(file="q", row=2), question="Who sang?",
                  context="Nobody sang.", answers=["a choir"]),
    ]  # fmt: skip
    outputs = {
        doc_a: gen("On Monday the council voted for new cycling lanes in town."),
        doc_b: gen("A museum opened."),  # 16 of 62 characters: under half
        "Who voted?": gen("Which body voted?"),
        "Who sang?": gen("Who was singing?"),
    }
    monkeypatch.setattr(GENERATE_MODULE, "generate", fake_generate(outputs))
    report = data_augmentation(rows, ratio=1.0, methods=["paraphrase"], paraphrase_model=tiny_lm)
    got = {ex.id: ex for ex in report.added}
    assert sorted(got) == ["q0#aug-paraphrase-1", "s0#aug-paraphrase-1"]
    s0, q0 = got["s0#aug-paraphrase-1"], got["q0#aug-paraphrase-1"]
    assert isinstance(s0, SummarizeExample) and isinstance(q0, QAExample)
    assert s0.document.startswith("On Monday") and s0.summaries == ["Lanes."]
    assert q0.question == "Which body voted?" and q0.context == "The council voted."
    assert q0.answers == ["The council"]


def test_paraphrase_of_questions_with_a_tiny_model(tiny_lm: LoadedModel) -> None:
    rows = [
        QAExample(
            id=f"q{i}",
            where=Where(file="q", row=i + 1),
            question=f"Where does the dog run across the green meadow {i}?",
            context="A dog is running across the green meadow.",
            answers=["the green meadow"],
        )
        for i in range(3)
    ]
    report = data_augmentation(
        rows, ratio=1.0, methods=["paraphrase"], paraphrase_model=tiny_lm, paraphrase_settings=SHORT
    )
    for new in report.added:
        assert isinstance(new, QAExample)
        assert new.context == rows[0].context and new.answers == ["the green meadow"]
        assert new.id.endswith("#aug-paraphrase-1")
    assert report.counts["paraphrase"] == len(report.added)


def test_missing_models_are_reported_as_skipped() -> None:
    rows = [tr(0, "A dog runs.", "Ein Hund rennt.")]
    report = data_augmentation(rows, ratio=1.0, methods=["back_translation", "paraphrase"])
    assert report.added == []
    assert report.skipped == {
        "back_translation": "no model configured (pass back_translation_model)",
        "paraphrase": "no model configured (pass paraphrase_model)",
    }


def test_a_short_method_leaves_its_quota_to_the_next(
    tiny_lm: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four rows, ratio 1: synonym's share is ceil(4 / 2) = 2, but only one row has a
    word to replace, with one synonym: one variant. Back-translation then has 4 - 1 = 3
    to make, and every row gives one."""
    rows = [tr(0, "The big cat sleeps.", "Die große Katze schläft.")]
    rows += [
        tr(i, f"A cat number {i} sleeps.", f"Eine Katze Nummer {i} schläft.") for i in range(1, 4)
    ]
    outputs = {r.target or "": gen(f"Some cat {r.id} is sleeping.") for r in rows}
    monkeypatch.setattr(GENERATE_MODULE, "generate", fake_generate(outputs))
    report = data_augmentation(
        rows,
        ratio=1.0,
        methods=["synonym", "back_translation"],
        dictionary=BILINGUAL,
        use_wordnet=_wordnet_flag(),
        back_translation_model=tiny_lm,
    )
    assert report.counts == {"synonym": 1, "back_translation": 3}
    assert report.to_dict()["by_task"] == {"translate": 4}


def test_quotas_are_per_task_and_the_report_says_so() -> None:
    questions = [
        QAExample(
            id=f"q{i}",
            where=Where(file="q", row=i + 1),
            question=f"Which enormous animal barked {i} times?",
            context="The dog barked.",
            answers=["dog"],
        )
        for i in range(20)
    ]
    report = data_augmentation([*code_rows(10), *questions], ratio=0.2, synonyms=SYNONYMS)
    assert report.wanted == {"codegen": 2, "qa": 4}
    assert report.counts == {"synonym": 4, "rename_identifiers": 2}
    d = report.to_dict()
    assert d["added"] == 6 and d["by_task"] == {"codegen": 2, "qa": 4}
    assert len(d["ids"]) == 6 and all("#aug-" in i for i in d["ids"])
    assert report.summary() == "added 6 rows (synonym 4, rename_identifiers 2)"
