"""Error analysis: what kind of wrong each prediction is, grouped, and hard examples to train on.

Every scored item gets the error types that apply to it (:data:`ERROR_TYPES`, found by
:func:`find_errors` from the item's fields and its primary score). :func:`analyse` groups
the wrong or low-scoring items of each task by error type, by input length (quantile
buckets of the source's word count) and, for translation, by language pair, with the
worst items of each group. :func:`hard_examples` turns those items back into task rows
(the format ``taskloop run`` and ``taskloop train`` read) with a ``hardness`` in [0, 1]
that the training curriculum ranks by.

Error types (rules; "source" is the translate source, the summarize document, the QA
context plus question):

- ``failed_run``: status ``failed`` or ``skipped``: no output was produced. No other
  type but ``low_score`` is looked for: there is nothing to inspect.
- ``empty_output``: the output is empty or whitespace (not for QA, where "" is the
  no-answer answer: see ``no_answer_confusion``).
- ``no_answer_confusion`` (qa): an answer to an unanswerable question, or no answer
  ("" or a no-answer phrase such as "unanswerable") to an answerable one (answerable:
  ``answerable`` True, or unknown with references).
- ``hallucinated_number`` (qa, summarize, translate): a number of the output that the
  source does not have, compared as canonical strings (``tasks.text.numbers``; "one"
  is not counted, as in the fact check, since it is a pronoun too often). Translation
  reads each side with its language's decimal mark (``tasks.glossary.parse_numbers``:
  English 4.5 is German 4,5) and accepts an output that matches under either mark;
  numbers survive translation, so the source is the reference. Not for codegen (code
  has constants of its own).
- ``hallucinated_entity`` (qa, summarize): a name (``tasks.text.names``: capitalised
  runs not at a sentence start) that is not in the source, case-insensitively, whole or
  by any part that is not a title (the fact check's rule). Not for translation, where
  names may be transliterated or inflected ("Moskau", "Москва"), nor codegen.
- ``missed_glossary_term`` (translate): the failed check ``glossary_terms``.
- ``failed_test`` (codegen): samples were drawn and none passed the reference tests
  (``correct == 0``), or a failed check ``tests``, ``reference_tests`` or
  ``generated_tests``.
- ``wrong_language`` (translate): the failed check ``untranslated_copy`` (or
  ``language``), or the output is not in ``target_lang`` by the label cleaner's rule
  (``data.cleaning``): most of its letters in another script, or none of the target
  language's function words and at least two of another language's.
- ``low_score``: the primary per-item score is below the task's threshold
  (:data:`LOW_SCORE`, or ``low_score=``).

:func:`analyse` fills ``ItemScore.errors`` of the items it is given in place (the
records are mutable so that the report shows every item's errors without a copy).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taskloop.data.records import TASKS, TaskName
from taskloop.evaluate.errors import EvaluateError
from taskloop.evaluate.records import ErrorAnalysis, ErrorGroup, EvalItem, ItemScore, TaskEval
from taskloop.tasks.text import names, numbers

ERROR_TYPES: tuple[str, ...] = (
    "failed_run",
    "empty_output",
    "no_answer_confusion",
    "hallucinated_number",
    "hallucinated_entity",
    "missed_glossary_term",
    "failed_test",
    "wrong_language",
    "low_score",
)

# Primary per-item score (0-100) under which an item is low-scoring, per task.
LOW_SCORE: dict[TaskName, float] = {
    # sentence chrF++: adequate translations of WMT-style sentences mostly score 50-70;
    # under 40 a large part of the meaning is usually lost or garbled.
    "translate": 40.0,
    # per-summary ROUGE-L F: good abstractive summaries average 30-40 on news and
    # dialogue sets (XSum, DialogSum); under 20 little of the reference's content is there.
    "summarize": 20.0,
    # SQuAD token F1: under 50 less than half of the answer overlaps the gold span, i.e.
    # mostly a different span ("in 1990" vs "1990" still scores 67).
    "qa": 50.0,
    # pass@1 per problem (share of samples passing x 100): under 50 the problem is
    # failed more often than solved; with one sample it is simply "failed".
    "codegen": 50.0,
}

TEST_CHECKS = frozenset({"tests", "reference_tests", "generated_tests"})
LANGUAGE_CHECKS = frozenset({"untranslated_copy", "language"})
NOT_RUN = frozenset({"failed", "skipped"})
NO_LANGUAGE = "-"  # the language value of tasks that have no language pair
_WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- error types


def _is_no_answer(text: str) -> bool:
    from taskloop.evaluate.metrics import normalize_answer
    from taskloop.tasks.qa import NO_ANSWER_TEXTS

    return normalize_answer(text) in NO_ANSWER_TEXTS


def _no_answer_confusion(item: EvalItem) -> bool:
    answerable = item.answerable
    if answerable is None:
        if not item.references:
            return False  # nothing says whether an answer exists
        answerable = True
    return _is_no_answer(item.prediction) == answerable


def _qa_source(item: EvalItem) -> str:
    return f"{item.source}\n{item.question}" if item.question else item.source


def _hallucinated_number(item: EvalItem) -> bool:
    if item.task == "translate":
        from taskloop.tasks.glossary import parse_numbers

        source = set(parse_numbers(item.source, item.source_lang))
        readings = (None, ".", ",")  # the target language's mark, then either mark
        return all(
            set(parse_numbers(item.prediction, item.target_lang, decimal=d)) - source
            for d in readings
        )
    if item.task in ("qa", "summarize"):
        from taskloop.tasks.factcheck import sentence_numbers

        return bool(sentence_numbers(item.prediction) - set(numbers(_qa_source(item))))
    return False


def _hallucinated_entity(item: EvalItem) -> bool:
    if item.task not in ("qa", "summarize"):
        return False
    from taskloop.tasks.factcheck import name_supported

    source = _qa_source(item)
    source_lower = source.lower()
    source_words = {w.lower() for w in _WORD.findall(source)}
    return any(
        not name_supported(n, source_words, source_lower)
        for n in dict.fromkeys(names(item.prediction))
    )


def _wrong_language(item: EvalItem) -> bool:
    if item.task != "translate":
        return False
    if LANGUAGE_CHECKS & set(item.failed_checks):
        return True
    if not item.target_lang or not item.prediction.strip():
        return False
    from taskloop.data.cleaning import LANG_SCRIPTS, language_problem
    from taskloop.tasks.translate import iso

    lang = iso(item.target_lang)
    return language_problem(item.prediction, lang, LANG_SCRIPTS.get(lang or "")) is not None


def _failed_test(item: EvalItem) -> bool:
    if item.task != "codegen":
        return False
    none_passed = bool(item.samples) and item.correct == 0
    return none_passed or bool(TEST_CHECKS & set(item.failed_checks))


def find_errors(s: ItemScore, *, low_score: float | None = None) -> list[str]:
    """The error types of one scored item, in :data:`ERROR_TYPES` order (see module doc).

    Args:
        low_score: the primary score under which the item is ``low_score`` (default:
            :data:`LOW_SCORE` of its task).
    """
    item = s.item
    found: set[str] = set()
    if item.status in NOT_RUN:
        found.add("failed_run")
    else:
        text = item.prediction.strip()
        answered = bool(text)
        if item.task == "qa":
            answered = answered and not _is_no_answer(text)
            if _no_answer_confusion(item):
                found.add("no_answer_confusion")
        elif not text:
            found.add("empty_output")
        if answered and _hallucinated_number(item):
            found.add("hallucinated_number")
        if answered and _hallucinated_entity(item):
            found.add("hallucinated_entity")
        if item.task == "translate" and "glossary_terms" in item.failed_checks:
            found.add("missed_glossary_term")
        if _failed_test(item):
            found.add("failed_test")
        if _wrong_language(item):
            found.add("wrong_language")
    threshold = LOW_SCORE[item.task] if low_score is None else low_score
    if s.primary is not None and s.primary < threshold:
        found.add("low_score")
    return [e for e in ERROR_TYPES if e in found]


# --------------------------------------------------------------------------- thresholds


def thresholds(low_score: Mapping[str, float] | float | None = None) -> dict[TaskName, float]:
    """The low-score threshold of every task: :data:`LOW_SCORE` with ``low_score`` applied.

    A number applies to every task; a mapping replaces the tasks it names.

    Raises:
        EvaluateError: a task name that is not a task, or a value outside 0-100.
    """
    out = dict(LOW_SCORE)
    if low_score is None:
        return out
    given: Mapping[str, float] = (
        {t: low_score for t in TASKS} if isinstance(low_score, int | float) else low_score
    )
    unknown = sorted(set(given) - set(TASKS))
    if unknown:
        raise EvaluateError(
            f"low_score: unknown task(s) {unknown}",
            hint=f"use task names: {', '.join(TASKS)}",
        )
    for task, value in given.items():
        v = float(value)
        if not (math.isfinite(v) and 0.0 <= v <= 100.0):
            raise EvaluateError(
                f"low_score for {task} is {value}: scores are on 0-100",
                hint="give the primary score (0-100) under which an item counts as low-scoring",
            )
        out[task] = v  # type: ignore[index]
    return out


# --------------------------------------------------------------------------- grouping


def _worst_key(s: ItemScore) -> tuple[bool, float, str, str]:
    # Unscored items (no primary) cannot be ranked by score: they come after scored ones.
    return (s.primary is None, s.primary if s.primary is not None else 0.0, s.item.id, s.item.file)


def _group(
    task: TaskName, by: str, value: str, members: list[ItemScore], n: int, worst: int
) -> ErrorGroup:
    scored = [s.primary for s in members if s.primary is not None]
    return ErrorGroup(
        task=task,
        by=by,
        value=value,
        count=len(members),
        share=len(members) / n,
        mean_score=float(np.mean(scored)) if scored else None,
        worst=sorted(members, key=_worst_key)[:worst],
    )


def bucket_lengths(word_counts: Sequence[int], buckets: int = 4) -> tuple[list[int], list[str]]:
    """Quantile buckets of word counts: each count's bucket and each bucket's label.

    Cut points are the ``i/buckets`` quantiles (numpy's linear rule); a count goes into
    the first bucket whose cut point it does not exceed. Buckets no count falls into are
    dropped and the rest renumbered; a label gives the smallest and largest count in its
    bucket ("13-20 words", or "7 words" when they are equal).

    Returns:
        (bucket index per count, label per bucket).
    """
    counts = np.asarray(word_counts, dtype=float)
    if counts.size == 0:
        return [], []
    cuts = np.quantile(counts, np.arange(1, buckets) / buckets) if buckets > 1 else np.zeros(0)
    raw = np.searchsorted(cuts, counts, side="left")
    present = sorted(set(raw.tolist()))
    index = {b: i for i, b in enumerate(present)}
    labels = []
    for b in present:
        inside = counts[raw == b]
        lo, hi = int(inside.min()), int(inside.max())
        unit = "word" if hi == 1 else "words"
        labels.append(f"{lo} {unit}" if lo == hi else f"{lo}-{hi} {unit}")
    return [index[b] for b in raw.tolist()], labels


def language_pair(item: EvalItem) -> str:
    """ "en→de" for a translation (``?`` for an unknown side), "-" for other tasks."""
    if item.task != "translate":
        return NO_LANGUAGE
    from taskloop.tasks.translate import iso

    return f"{iso(item.source_lang) or '?'}→{iso(item.target_lang) or '?'}"


def _task_groups(t: TaskEval, wrong: set[int], worst: int, buckets: int) -> list[ErrorGroup]:
    n = len(t.items)
    bad = [s for i, s in enumerate(t.items) if i in wrong]
    groups = []
    for error in ERROR_TYPES:
        members = [s for s in bad if error in s.errors]
        if members:
            groups.append(_group(t.task, "error", error, members, n, worst))
    index, labels = bucket_lengths([len(s.item.source.split()) for s in t.items], buckets)
    if len(labels) > 1:  # one bucket says nothing about length
        for b, label in enumerate(labels):
            members = [s for i, s in enumerate(t.items) if i in wrong and index[i] == b]
            if members:
                groups.append(_group(t.task, "length", label, members, n, worst))
    by_pair: dict[str, list[ItemScore]] = {}
    for s in bad:
        by_pair.setdefault(language_pair(s.item), []).append(s)
    by_pair.pop(NO_LANGUAGE, None)  # tasks without a language pair
    for pair, members in sorted(by_pair.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        groups.append(_group(t.task, "language", pair, members, n, worst))
    return groups


def analyse(
    tasks: Sequence[TaskEval],
    *,
    low_score: Mapping[str, float] | float | None = None,
    worst: int = 5,
    length_buckets: int = 4,
) -> ErrorAnalysis:
    """Error types of every item, and the wrong or low-scoring items grouped per task.

    Fills ``errors`` of every ``ItemScore`` of ``tasks`` in place (an item with none gets
    ``[]``). Groups, per task: by error type (in :data:`ERROR_TYPES` order), by length
    bucket of the source's word count (quantiles over all of the task's items, see
    :func:`bucket_lengths`; left out when all fall into one bucket), and for translation
    by language pair (most items first). ``share`` is of all the task's items; ``worst``
    lists the lowest primary scores first (ties by id, unscored items last).

    Args:
        low_score: threshold(s) of ``low_score``, see :func:`thresholds`.
        worst: how many items each group shows.
        length_buckets: how many quantile buckets of input length.

    Returns:
        The groups and per-error-type item counts; ``low_score`` is the threshold when
        one applies to every task analysed, else the lowest of them (see
        :func:`thresholds` for each task's).

    Raises:
        EvaluateError: a bad ``low_score``, ``worst`` < 0 or ``length_buckets`` < 1.
    """
    if worst < 0 or length_buckets < 1:
        raise EvaluateError(
            f"error analysis: worst={worst}, length_buckets={length_buckets}",
            hint="worst must be >= 0 and length_buckets >= 1",
        )
    limits = thresholds(low_score)
    counts = dict.fromkeys(ERROR_TYPES, 0)
    groups: list[ErrorGroup] = []
    for t in tasks:
        wrong: set[int] = set()
        for i, s in enumerate(t.items):
            s.errors = find_errors(s, low_score=limits[t.task])
            for error in s.errors:
                counts[error] += 1
            if s.errors:
                wrong.add(i)
        if wrong:
            groups.extend(_task_groups(t, wrong, worst, length_buckets))
    return ErrorAnalysis(
        low_score={t.task: limits[t.task] for t in tasks}, groups=groups, counts=counts
    )


# --------------------------------------------------------------------------- hard examples


def item_hardness(primary: float | None, errors: Sequence[str]) -> float:
    """How hard an item was, in [0, 1]: ``1 - primary/100`` (1 without a primary), at least
    0.5 when it has an error type other than ``low_score`` (a hallucination with a fair
    overlap score is still a mistake worth training on)."""
    h = 1.0 if primary is None else 1.0 - primary / 100.0
    if any(e != "low_score" for e in errors):
        h = max(h, 0.5)
    return round(min(1.0, max(0.0, h)), 4)


def _row(item: EvalItem) -> tuple[dict[str, Any] | None, str]:
    """The task row of an item, or None and why not ("no_reference", "not_rebuildable")."""
    row: dict[str, Any] = {"task": item.task, "id": item.id}
    if item.task == "translate":
        if not item.references or not item.references[0].strip():
            return None, "no_reference"
        row |= {"source": item.source, "target": item.references[0]}
        row |= {k: v for k, v in (("source_lang", item.source_lang),
                                  ("target_lang", item.target_lang)) if v}  # fmt: skip
    elif item.task == "summarize":
        refs = [r for r in item.references if r.strip()]
        if not refs:
            return None, "no_reference"
        row |= {"document": item.source, "summaries": refs}
    elif item.task == "qa":
        if item.answerable is False:
            answers, impossible = [], True
        elif item.references:
            answers, impossible = list(item.references), False
        else:
            return None, "no_reference"
        row |= {"question": item.question, "context": item.source, "answers": answers,
                "is_impossible": impossible}  # fmt: skip
    else:  # codegen: the reference is the test; without it nothing can be checked
        test, entry = item.details.get("test"), item.details.get("entry_point")
        if not isinstance(test, str) or not test.strip() or not isinstance(entry, str):
            return None, "not_rebuildable"
        row |= {"prompt": item.source, "entry_point": entry, "test": test}
        solution = item.details.get("canonical_solution")
        if isinstance(solution, str) and solution.strip():
            row["completion"] = solution  # the training label
    return row, ""


def hard_example_rows(
    tasks: Sequence[TaskEval], *, low_score: Mapping[str, float] | float | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of :func:`hard_examples` and how many wrong items were left out, by reason.

    Reasons: ``no_reference`` (nothing to learn from), ``not_rebuildable`` (a codegen
    item without ``test``/``entry_point`` in its details, or a row the task loader would
    refuse, such as an empty source), ``not_run`` (status ``skipped``: no model was
    configured, which says nothing about how hard the item is).
    """
    from taskloop.data.loader import validate_row
    from taskloop.data.records import Where

    limits = thresholds(low_score)
    skipped = {"no_reference": 0, "not_rebuildable": 0, "not_run": 0}
    rows: list[dict[str, Any]] = []
    for t in tasks:
        found: list[dict[str, Any]] = []
        for s in t.items:
            errors = find_errors(s, low_score=limits[t.task])
            if not errors:
                continue
            if s.item.status == "skipped":
                skipped["not_run"] += 1
                continue
            row, why = _row(s.item)
            if row is not None:
                _, bad = validate_row(s.item.task, row, Where(file="hard-examples", row=0))
                row, why = (None, "not_rebuildable") if bad is not None else (row, "")
            if row is None:
                skipped[why] += 1
                continue
            row["hardness"] = item_hardness(s.primary, errors)
            found.append(row)
        found.sort(key=lambda r: (-r["hardness"], r["id"]))
        rows.extend(found)
    return rows, skipped


def hard_examples(
    tasks: Sequence[TaskEval], *, low_score: Mapping[str, float] | float | None = None
) -> list[dict[str, Any]]:
    """Every wrong or low-scoring item as a task row with a ``hardness`` (see module doc).

    Rows follow docs/task-format.md, so ``taskloop train`` and ``taskloop run`` read
    them: translate ``source/target/source_lang/target_lang``, summarize
    ``document/summaries``, qa ``question/context/answers/is_impossible``, codegen
    ``prompt/entry_point/test`` (from the item's details; ``completion`` from its
    ``canonical_solution`` when there, since ``taskloop train`` needs a label). Per task,
    hardest first. Items that cannot become a row are counted by
    :func:`hard_example_rows`. ``hardness`` is :func:`item_hardness`.
    """
    return hard_example_rows(tasks, low_score=low_score)[0]


def write_hard_examples(rows: Sequence[Mapping[str, Any]], path: str | Path) -> int:
    """Write rows as JSON Lines (UTF-8) at ``path``; returns the number written.

    Raises:
        EvaluateError: the name does not end in ``.jsonl`` (the loaders would not read
            it as JSON Lines) or the file cannot be written.
    """
    path = Path(path)
    if path.suffix != ".jsonl":
        raise EvaluateError(
            f"hard examples: {path} does not end in .jsonl",
            hint="name the file like hard.jsonl so taskloop train and run read it",
        )
    text = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise EvaluateError(
            f"hard examples: cannot write {path} ({exc.strerror or exc})",
            hint="choose a folder that exists and is writable",
        ) from exc
    return len(rows)
