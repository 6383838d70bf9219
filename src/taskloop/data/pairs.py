"""Training pairs: the exact model input and the label text, built from task examples.

A model is trained on the same input it will see at inference, so the prompt of each
task is built the way the task module builds it (QA's ``question: … context: …``, T5's
``summarize:`` and ``translate English to German:`` prefixes, a multi-target Marian
model's ``>>de<<`` when its vocabulary has that token). Models that pick the language
through tokenizer settings instead (mBART, NLLB, M2M-100 language codes) get no prefix.
Examples without a label (a QA row with no answer and no ``is_impossible``, a
translation without a target, a code prompt without a completion) give no pair.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from taskloop.data.records import (
    CodegenExample,
    Example,
    QAExample,
    SummarizeExample,
    TaskName,
    TranslateExample,
)

NO_ANSWER = "unanswerable"  # the label of a SQuAD v2 question with no answer
T5_FAMILY = frozenset({"t5", "mt5", "umt5"})
_T5_LANGS = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian"}


@dataclass(frozen=True)
class Pair:
    """One supervised example: ``source`` is the model input, ``target`` the label.

    ``where`` is ``file:row`` of the example it came from; ``origin`` says how it was
    made ("data", or the augmentation that added it, such as "synonym"). Training uses
    ``target``; evaluation accepts ``alternatives`` too. ``hardness`` (0-1) is the
    example's, when its row carries one (hard examples from ``taskloop evaluate``).
    """

    task: TaskName
    source: str
    target: str
    id: str
    where: str
    origin: str = "data"
    alternatives: tuple[str, ...] = ()  # other correct targets (QA's further gold answers)
    hardness: float | None = None  # the row's hardness, for the curriculum


def origin_of(example_id: str) -> str:
    """The augmentation method that made a row (``"data"`` for an original row)."""
    m = re.search(r"#aug-([a-z_]+)-\d+$", example_id)
    return m.group(1) if m else "data"


def prompt_prefix(example: Example, model_type: str, vocab: Collection[str] = ()) -> str:
    """The task prefix a model family was trained with ("" for most).

    ``vocab`` (the tokenizer's tokens) tells a multi-target Marian model, which has
    ``>>de<<``-style tokens, from a single-pair one.
    """
    if model_type == "marian" and isinstance(example, TranslateExample) and vocab:
        from taskloop.tasks.translate import iso

        code = f">>{iso(example.target_lang)}<<"
        return f"{code} " if example.target_lang and code in vocab else ""
    if model_type not in T5_FAMILY:
        return ""
    if isinstance(example, SummarizeExample):
        return "summarize: "
    if isinstance(example, TranslateExample):
        src = (example.source_lang or "").split("_")[0].split("-")[0].lower()
        tgt = (example.target_lang or "").split("_")[0].split("-")[0].lower()
        if src in _T5_LANGS and tgt in _T5_LANGS:
            return f"translate {_T5_LANGS[src]} to {_T5_LANGS[tgt]}: "
    return ""


def model_input(
    example: Example, *, kind: str = "seq2seq", model_type: str = "", vocab: Collection[str] = ()
) -> str:
    """The text a model reads for ``example`` (labelled or not): the task's prompt with
    the model family's prefix, exactly the ``source`` of :func:`example_to_pairs`."""
    from taskloop.tasks.qa import prompt_for

    prefix = prompt_prefix(example, model_type, vocab)
    if isinstance(example, TranslateExample):
        return prefix + example.source
    if isinstance(example, SummarizeExample):
        return prefix + example.document
    if isinstance(example, QAExample):
        return prefix + prompt_for(example.question, example.context, kind)
    if isinstance(example, CodegenExample):
        return prefix + example.prompt
    raise TypeError(f"not a task example: {type(example).__name__}")  # pragma: no cover


def example_to_pairs(
    example: Example, *, kind: str = "seq2seq", model_type: str = "", vocab: Collection[str] = ()
) -> list[Pair]:
    """The pairs one example gives: one per reference (summaries), none without a label.

    Args:
        kind: "seq2seq" or "causal" (a causal QA prompt ends with an ``answer:`` cue).
        model_type: the model config's ``model_type`` (``t5`` adds task prefixes).
        vocab: the tokenizer's tokens (a multi-target Marian model's ``>>de<<``).
    """
    source = model_input(example, kind=kind, model_type=model_type, vocab=vocab)
    alternatives: tuple[str, ...] = ()
    targets: list[str]
    if isinstance(example, TranslateExample):
        targets = [example.target] if example.target else []
    elif isinstance(example, SummarizeExample):
        targets = list(example.summaries)
    elif isinstance(example, QAExample):
        if example.answers:
            first = example.answers[0]
            targets = [first]
            alternatives = tuple(dict.fromkeys(a for a in example.answers[1:] if a and a != first))
        else:
            targets = [NO_ANSWER] if example.is_impossible else []
    else:
        targets = [example.completion] if example.completion else []
    return [
        Pair(
            example.task,
            source,
            target,
            example.id,
            str(example.where),
            origin_of(example.id),
            alternatives,
            example.hardness,
        )
        for target in targets
    ]


def to_pairs(
    examples: Iterable[Example],
    *,
    kind: str = "seq2seq",
    model_type: str = "",
    vocab: Collection[str] = (),
) -> list[Pair]:
    """Every labelled example as training pairs (see :func:`example_to_pairs`)."""
    return [
        p
        for ex in examples
        for p in example_to_pairs(ex, kind=kind, model_type=model_type, vocab=vocab)
    ]


def by_task(pairs: Sequence[Pair]) -> dict[TaskName, list[Pair]]:
    """Pairs grouped by task, in first-seen task order."""
    out: dict[TaskName, list[Pair]] = {}
    for pair in pairs:
        out.setdefault(pair.task, []).append(pair)
    return out
