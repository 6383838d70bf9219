"""What ``taskloop evaluate`` scores, as :class:`EvalItem` records, from any of three sources.

1. A ``taskloop run`` output (its folder, ``results.jsonl`` or ``result.blob``) joined
   with the task data that holds the references (the run's input, or ``--data``).
2. A plain JSONL file of scored outputs from anywhere: one row per prediction with
   ``task``, ``prediction`` and ``references`` (aliases below), so numbers from other
   tools can be evaluated and compared the same way.
3. A model (or one per task) and a data set: the predictions are made here by the same
   pipeline as ``taskloop run``.

Predictions are matched to examples by (file, id); when the file names differ (the run
read a blob, the references come from a folder) by id within the task, if ids are
unique. Anything that cannot be matched is counted and reported, never silently lost.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taskloop.data.records import (
    TASKS,
    CodegenExample,
    Example,
    Prediction,
    QAExample,
    SummarizeExample,
    TaskName,
    TranslateExample,
)
from taskloop.evaluate.errors import EvalInputError
from taskloop.evaluate.records import EvalItem

# Plain-JSONL field aliases: first present wins.
PREDICTION_KEYS = ("prediction", "output", "hypothesis", "generated", "answer_pred")
REFERENCE_KEYS = ("references", "reference", "target", "answers", "summaries", "summary")
SOURCE_KEYS = ("source", "document", "context", "prompt", "input", "text")
TASK_ALIASES: dict[str, TaskName] = {
    "code": "codegen",
    "question-answering": "qa",
    "summarization": "summarize",
    "translation": "translate",
}


@dataclass
class Loaded:
    """Items ready to score, with what could not be used and where it came from."""

    items: list[EvalItem] = field(default_factory=list)
    label: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unmatched: int = 0  # predictions with no example (or examples with no prediction)


# --------------------------------------------------------------------------- joining


def item_from(example: Example, prediction: Prediction | None) -> EvalItem:
    """One example and its prediction (None: nothing was produced) as an EvalItem."""
    out = "" if prediction is None or prediction.output is None else prediction.output
    common: dict[str, Any] = {
        "task": example.task,
        "id": example.id,
        "file": example.where.file,
        "prediction": out,
        "status": "failed" if prediction is None else prediction.status,
        "model": None if prediction is None else prediction.model,
        "failed_checks": ()
        if prediction is None
        else tuple(c.name for c in prediction.failed_checks()),
        "details": {} if prediction is None else dict(prediction.details),
    }
    if isinstance(example, TranslateExample):
        return EvalItem(
            **common,
            source=example.source,
            references=(example.target,) if example.target else (),
            source_lang=example.source_lang,
            target_lang=example.target_lang,
        )
    if isinstance(example, SummarizeExample):
        return EvalItem(
            **common, source=example.document, references=tuple(s for s in example.summaries if s)
        )
    if isinstance(example, QAExample):
        from taskloop.tasks.qa import gold_answers

        golds = gold_answers(example)
        return EvalItem(
            **common,
            source=example.context,
            question=example.question,
            references=tuple(golds or ()),
            answerable=None if golds is None else bool(golds),
        )
    assert isinstance(example, CodegenExample)
    samples, correct = _code_samples(prediction)
    # What a hard-example row needs to rebuild the problem (analysis.hard_examples). Not
    # the row's `completion`: that is a candidate under test, not a known-good solution,
    # and a failed candidate must not become a training label.
    common["details"] |= {"test": example.test, "entry_point": example.entry_point}
    if prediction is not None and prediction.output is not None and not example.completion:
        out = _strip_generated_tests(prediction.output)
    return EvalItem(
        **{**common, "prediction": out},
        source=example.prompt,
        samples=samples,
        correct=correct,
    )


def _code_samples(prediction: Prediction | None) -> tuple[int | None, int | None]:
    """(samples drawn, samples passing the reference tests) from a codegen prediction."""
    if prediction is None:
        return None, None
    samples = prediction.details.get("samples")
    passed = prediction.details.get("reference_passed")
    if isinstance(samples, list) and samples and isinstance(passed, int):
        return len(samples), passed
    return None, None


def _strip_generated_tests(output: str) -> str:
    """The code without the unit tests ``taskloop run`` appends after a marker line."""
    marker = "\n\n# --- unit tests generated by taskloop ---\n"
    return output.split(marker, 1)[0]


def join(
    examples: Sequence[Example], predictions: Sequence[Prediction]
) -> tuple[list[EvalItem], list[str]]:
    """Pair every prediction with its example; returns the items and warnings.

    Matching is by (file, id); a prediction whose file is not among the examples' files
    is matched by (task, id) when that id is unique in its task. Examples with no
    prediction are left out (a warning counts them): scoring them as wrong would blame
    the model for rows it never saw.
    """
    by_key = {(e.where.file, e.id): e for e in examples}
    by_id: dict[tuple[str, str], list[Example]] = {}
    for e in examples:
        by_id.setdefault((e.task, e.id), []).append(e)
    items: list[EvalItem] = []
    used: set[tuple[str, str]] = set()
    orphans: list[str] = []
    for p in predictions:
        ex = by_key.get((p.where.file, p.id))
        if ex is None:
            same = by_id.get((p.task, p.id), [])
            ex = same[0] if len(same) == 1 else None
        if ex is None or ex.task != p.task:
            orphans.append(f"{p.where}: {p.task} {p.id!r}")
            continue
        key = (ex.where.file, ex.id)
        if key in used:
            orphans.append(f"{p.where}: {p.task} {p.id!r} (a second prediction for it)")
            continue
        used.add(key)
        items.append(item_from(ex, p))
    warnings: list[str] = []
    if orphans:
        warnings.append(
            f"{len(orphans)} prediction(s) have no example in the data and were not scored "
            f"(first: {orphans[0]})"
        )
    missing = len(examples) - len(used)
    if missing:
        warnings.append(f"{missing} example(s) in the data have no prediction and were not scored")
    return items, warnings


# --------------------------------------------------------------------------- readers


def read_predictions(path: Path) -> tuple[list[Prediction], dict[str, Any]]:
    """The Prediction rows of a run output (folder, results.jsonl or result.blob) and
    its report.json (empty when not there)."""
    if path.is_dir():
        results = path / "results.jsonl"
        if not results.is_file():
            raise EvalInputError(
                f"{path}: no results.jsonl in this folder",
                hint="pass a `taskloop run` output folder, its results.jsonl or result.blob",
            )
        report = path / "report.json"
        meta = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
        return _prediction_rows(results.read_text(encoding="utf-8"), str(results)), meta
    if path.name.endswith(".blob"):
        files = _blob_files(path)
        if "results.jsonl" not in files:
            raise EvalInputError(f"{path}: the blob holds no results.jsonl")
        meta = json.loads(files["report.json"]) if "report.json" in files else {}
        return _prediction_rows(files["results.jsonl"].decode(), f"{path}!results.jsonl"), meta
    return _prediction_rows(_read_text(path), str(path)), {}


def _blob_files(path: Path) -> dict[str, bytes]:
    from taskloop.blob import decode_utf8_blob_to_zip

    try:
        data = decode_utf8_blob_to_zip(path.read_text(encoding="ascii"))
    except Exception as exc:
        raise EvalInputError(
            f"{path}: not a readable taskloop blob ({exc})",
            hint="check it with `taskloop blob verify`",
        ) from exc
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n in ("results.jsonl", "report.json")}


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise EvalInputError(f"{path} does not exist", hint="pass a results file or run folder")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{path}: not UTF-8 text at byte {exc.start}") from exc


def _rows(text: str, where: str) -> Iterable[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{where}:{n}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise EvalInputError(f"{where}:{n}: a row must be a JSON object")
        yield n, row


def _prediction_rows(text: str, where: str) -> list[Prediction]:
    out = []
    for n, row in _rows(text, where):
        try:
            out.append(Prediction.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise EvalInputError(
                f"{where}:{n}: {loc}: {first['msg']}",
                hint="results.jsonl rows are written by `taskloop run`; for outputs from "
                "elsewhere use rows with task, prediction and references",
            ) from exc
    return out


def is_prediction_file(path: Path) -> bool:
    """Whether a JSONL file holds ``taskloop run`` Prediction rows (vs plain rows)."""
    for _, row in _rows(_read_text(path), str(path)):
        return "where" in row and "status" in row
    return False


def _first(row: dict[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in row and row[k] is not None:
            return k, row[k]
    return None, None


def _refs(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, dict) and "text" in value:  # SQuAD's {"text": [...]}
        value = value["text"]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v.strip())
    raise EvalInputError(f"{where}: references must be a string or a list of strings")


def read_plain(path: Path, *, task: TaskName | None = None) -> list[EvalItem]:
    """Plain JSONL rows: task, prediction and references (aliases accepted).

    Fields: ``task`` (else ``task`` argument), ``id`` (else the line number),
    prediction (``prediction``/``output``/``hypothesis``), references
    (``references``/``reference``/``target``/``answers``/``summaries``: a string or a
    list), source (``source``/``document``/``context``/``prompt``), ``question``,
    ``source_lang``, ``target_lang``, ``answerable`` (QA; default: False for an empty
    answer list or ``is_impossible``, True with answers, unknown without an answers
    field),
    ``samples`` and ``correct`` (codegen pass@k).
    """
    items: list[EvalItem] = []
    seen: set[str] = set()
    for n, row in _rows(_read_text(path), str(path)):
        where = f"{path}:{n}"
        raw_task = row.get("task", task)
        name = TASK_ALIASES.get(str(raw_task), raw_task)
        if name not in TASKS:
            raise EvalInputError(
                f"{where}: task {raw_task!r} is not one of {', '.join(TASKS)}",
                hint="add a task field to every row, or pass --task",
            )
        pkey, pred = _first(row, PREDICTION_KEYS)
        if pkey is None:
            raise EvalInputError(
                f"{where}: no prediction (one of {', '.join(PREDICTION_KEYS)})",
            )
        if not isinstance(pred, str):
            raise EvalInputError(f"{where}: {pkey}: must be a string")
        rkey, rvalue = _first(row, REFERENCE_KEYS)
        refs = _refs(rvalue, where)
        ident = str(row.get("id", n))
        if ident in seen:
            raise EvalInputError(f"{where}: id {ident!r} appears twice")
        seen.add(ident)
        answerable = row.get("answerable")
        if name == "qa" and answerable is None:
            # SQuAD v2: an empty answer list (or is_impossible) means "no answer is right";
            # a row with no answers field at all cannot be scored against references.
            if row.get("is_impossible"):
                answerable = False
            elif rkey is not None:
                answerable = bool(refs)
        try:
            items.append(
                EvalItem(
                    task=name,
                    id=ident,
                    file=path.name,
                    prediction=pred,
                    references=refs,
                    source=str(_first(row, SOURCE_KEYS)[1] or ""),
                    question=str(row.get("question") or ""),
                    source_lang=row.get("source_lang"),
                    target_lang=row.get("target_lang"),
                    answerable=answerable if name == "qa" else None,
                    samples=row.get("samples"),
                    correct=row.get("correct"),
                    model=row.get("model"),
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise EvalInputError(f"{where}: {loc}: {first['msg']}") from exc
    if not items:
        raise EvalInputError(f"{path}: no rows")
    return items


def read_examples(data: str | Path, key_file: str | None = None) -> list[Example]:
    """Every example (with references) of a task archive, blob, folder or task file."""
    from taskloop.train.errors import TrainDataError
    from taskloop.train.inputs import read_inputs

    try:
        inputs = read_inputs([str(data)], key_file=key_file)
    except TrainDataError as exc:
        raise EvalInputError(exc.message, hint=exc.hint) from exc
    if not inputs.examples:
        raise EvalInputError(
            f"{data}: no usable task rows"
            + (
                f" ({len(inputs.errors)} bad rows; first: {inputs.errors[0]})"
                if inputs.errors
                else ""
            ),
            hint="see docs/task-format.md",
        )
    return list(inputs.examples)


def load_results(
    path: str | Path, *, data: str | Path | None = None, key_file: str | None = None
) -> Loaded:
    """Items of a ``taskloop run`` output or a plain JSONL file.

    Args:
        path: run output folder, results.jsonl, result.blob, or a plain JSONL file.
        data: the task data with the references (default for run outputs: the input
            path recorded in report.json, when it still exists).

    Raises:
        EvalInputError: unreadable files, rows that are not predictions, no data.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".jsonl" and not is_prediction_file(path):
        items = read_plain(path)
        return Loaded(items=items, label=path.stem, inputs={"results": str(path)})
    predictions, meta = read_predictions(path)
    if not predictions:
        raise EvalInputError(f"{path}: holds no predictions")
    source = data or (meta.get("input") or {}).get("path")
    if not source or not Path(source).exists():
        raise EvalInputError(
            f"{path}: the references are not in the results; the data the run read "
            + (f"({source}) is gone" if source else "is not recorded"),
            hint="pass the task data with --data (archive, blob, folder or task file)",
        )
    examples = read_examples(source, key_file)
    items, warnings = join(examples, predictions)
    if not items:
        raise EvalInputError(
            f"no prediction of {path} matches an example of {source} (by file and id)",
            hint="pass the same task data the run read",
        )
    label = path.name if path.is_dir() else path.parent.name or path.stem
    return Loaded(
        items=items,
        label=label,
        inputs={"results": str(path), "data": str(source)},
        warnings=warnings,
        unmatched=len(predictions) - len(items),
    )


def run_model(
    data: str | Path,
    models: dict[TaskName, str],
    *,
    config_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    max_items: int | None = None,
) -> Loaded:
    """Predictions made now: ``taskloop run`` on ``data`` with ``models``, then joined.

    Args:
        models: task → model (folder, hub id in the cache, or ``models:/NAME@ALIAS``);
            tasks without one use the offline defaults.
        config_path: a run config YAML (as ``taskloop run --config``).
        out_dir: where the run's own outputs go (None: not written).
    """
    from taskloop.pipeline import run
    from taskloop.runconfig import load_config

    overrides: dict[str, Any] = {"models": models}
    if max_items is not None:
        overrides["max_items"] = max_items
    cfg = load_config(config_path, **overrides)
    result = run(data, out_dir, cfg)
    examples = read_examples(data, cfg.key_file)
    items, warnings = join(examples, result.predictions)
    label = ", ".join(sorted(set(models.values()))) or "defaults"
    return Loaded(
        items=items,
        label=label,
        inputs={"data": str(data), **{f"model.{t}": m for t, m in models.items()}},
        warnings=[*warnings, *result.report.warnings],
        unmatched=len(result.predictions) - len(items),
    )
