"""Load task files from an archive folder into validated, routed examples.

The layout is documented in ``docs/task-format.md``: JSONL, JSON (a list of rows, an
object holding one, or SQuAD's nested format) and CSV files whose rows carry a ``task``
field or whose file name implies the task, plus an optional ``manifest.json`` with
per-file options. Rows that fail validation become :class:`RowError` records naming
file, row and field; every good row is kept.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taskloop.data.errors import ManifestError, first_error, validated
from taskloop.data.records import EXAMPLE_TYPES, TASKS, Example, RowError, TaskName, Where
from taskloop.tasks.context import FileOptions

TASK_FILE_SUFFIXES = (".jsonl", ".json", ".csv")
GZIP_SUFFIX = ".gz"  # data.jsonl.gz: public data sets often ship gzipped
MANIFEST = "manifest.json"
MAX_FILE_BYTES = 512 * 1024 * 1024

# File-name words that imply a task when rows carry no ``task`` field.
_NAME_HINTS: list[tuple[re.Pattern[str], TaskName]] = [
    (re.compile(r"codegen|humaneval|mbpp|code"), "codegen"),
    (re.compile(r"(^|[^a-z])qa([^a-z]|$)|squad|question"), "qa"),
    (re.compile(r"summar|dialogsum|xsum|cnn|samsum"), "summarize"),
    (re.compile(r"translat|multi30k|wmt|opus"), "translate"),
]
_TASK_ALIASES: dict[str, TaskName] = {
    "codegen": "codegen", "code": "codegen", "code-generation": "codegen",
    "qa": "qa", "question-answering": "qa", "question_answering": "qa",
    "summarize": "summarize", "summarization": "summarize", "summary": "summarize",
    "translate": "translate", "translation": "translate",
}  # fmt: skip


@dataclass
class FileGroup:
    """The examples of one task from one file, with that file's options."""

    file: str
    task: TaskName
    options: FileOptions
    examples: list[Example] = field(default_factory=list)


@dataclass
class LoadResult:
    """Everything the loader found: routed examples, bad rows, and counts per file."""

    groups: list[FileGroup] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows: Counter[str] = field(default_factory=Counter)  # rows read per file
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def examples(self) -> int:
        return sum(len(g.examples) for g in self.groups)


def task_from_name(path: str) -> TaskName | None:
    """The task a file name implies (``data/squad_dev.json`` → qa), or None."""
    stem = Path(path).name.lower()
    for pattern, task in _NAME_HINTS:
        if pattern.search(stem):
            return task
    return None


def read_manifest(root: Path) -> tuple[dict[str, Any], dict[str, FileOptions]]:
    """``manifest.json`` and its validated per-file options (empty when absent)."""
    path = root / MANIFEST
    if not path.is_file():
        return {}, {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{MANIFEST}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST}: must be a JSON object, not {type(data).__name__}")
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise ManifestError(f"{MANIFEST}: 'files' must map file paths to option objects")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ManifestError(f"{MANIFEST}: 'defaults' must be an object")
    _file_options("defaults", defaults)
    options: dict[str, FileOptions] = {}
    for name, opts in files.items():
        if not isinstance(opts, dict):
            raise ManifestError(f"{MANIFEST}: files.{name}: options must be an object")
        options[name] = _file_options(f"files.{name}", {**defaults, **opts})
    return data, options


def _file_options(place: str, values: dict[str, Any]) -> FileOptions:
    """Validated options; an error names ``place`` and the bad option."""
    return validated(
        FileOptions,
        values,
        error=ManifestError,
        where=f"{MANIFEST}: {place}.",
        hint="see docs/task-format.md for the options a file may set",
    )


def discover(root: Path, options: dict[str, FileOptions]) -> list[str]:
    """Task files under ``root`` as archive paths: the manifest's, else every data file."""
    if options:
        return sorted(options)
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and task_suffix(path) in TASK_FILE_SUFFIXES and rel != MANIFEST:
            if any(part.startswith(".") or part == "__MACOSX" for part in Path(rel).parts):
                continue
            found.append(rel)
    return found


def task_suffix(path: Path) -> str:
    """The format suffix, looking through a ``.gz``: ``qa.jsonl.gz`` → ``.jsonl``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == GZIP_SUFFIX:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _read(path: Path) -> bytes | None:
    """The file's bytes (gunzipped for ``.gz``), or None when over MAX_FILE_BYTES."""
    if path.suffix.lower() != GZIP_SUFFIX:
        return path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
    with gzip.open(path, "rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)  # bounded: a gzip bomb stops at the limit
    return data if len(data) <= MAX_FILE_BYTES else None


def _rows(path: Path, rel: str, errors: list[RowError]) -> list[tuple[int, dict[str, Any]]]:
    """(row number, object) pairs of one file; unreadable rows go to ``errors``."""
    try:
        raw = _read(path)
    except (OSError, EOFError, zlib.error) as exc:
        errors.append(
            RowError(file=rel, row=None, field=None, message=f"not a readable gzip file: {exc}")
        )
        return []
    if raw is None:
        errors.append(RowError(file=rel, row=None, field=None, message="file over 512 MiB"))
        return []
    suffix = task_suffix(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if suffix == ".jsonl":  # one bad line must not cost the file's other rows
            return _jsonl_rows(_decode_lines(raw, rel, errors), rel, errors)
        bom = 3 if raw.startswith(codecs.BOM_UTF8) else 0  # utf-8-sig counts after the BOM
        offset = exc.start + bom
        line = raw.count(b"\n", 0, offset) + 1
        errors.append(
            RowError(
                file=rel,
                row=None,
                field=None,
                message=f"not UTF-8 (byte offset {offset}, line {line})",
                code="data.encoding",
            )
        )
        return []
    if suffix == ".jsonl":
        return _jsonl_rows(text, rel, errors)
    if suffix == ".csv":
        return _csv_rows(text, rel, errors)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines named .json (Hugging Face datasets reads it)
            return _jsonl_rows(text, rel, errors)
        errors.append(
            RowError(
                file=rel,
                row=exc.lineno,
                field=None,
                message=f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                code="data.json",
            )
        )
        return []
    return _json_rows(data, rel, errors)


def _jsonl_rows(text: str, rel: str, errors: list[RowError]) -> list[tuple[int, dict[str, Any]]]:
    out = []
    # Only \n ends a row: splitlines() would also split at U+2028 or U+0085, which
    # json.dumps(ensure_ascii=False) leaves raw inside strings.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(
                RowError(
                    file=rel,
                    row=lineno,
                    field=None,
                    message=f"invalid JSON at column {exc.colno}: {exc.msg}",
                    code="data.json",
                )
            )
            continue
        if not isinstance(obj, dict):
            errors.append(
                RowError(file=rel, row=lineno, field=None, message="a row must be a JSON object")
            )
            continue
        out.append((lineno, obj))
    return out


def _decode_lines(raw: bytes, rel: str, errors: list[RowError]) -> str:
    """``raw`` as text with each undecodable line reported and left blank (numbering kept)."""
    lines = []
    offset = 0
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        try:
            lines.append(line.decode("utf-8-sig" if lineno == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            bom = 3 if lineno == 1 and line.startswith(codecs.BOM_UTF8) else 0
            errors.append(
                RowError(
                    file=rel,
                    row=lineno,
                    field=None,
                    message=f"not UTF-8 (byte offset {offset + exc.start + bom})",
                    code="data.encoding",
                )
            )
            lines.append("")
        offset += len(line) + 1
    return "\n".join(lines)


def _csv_rows(text: str, rel: str, errors: list[RowError]) -> list[tuple[int, dict[str, Any]]]:
    """CSV rows numbered by the line they start on (quoted fields may span lines)."""
    out = []
    reader = csv.DictReader(io.StringIO(text), restkey=_EXTRA_VALUES)
    try:
        for row in reader:
            lineno = reader.line_num - sum(
                v.count("\n") for v in row.values() if isinstance(v, str)
            )
            if _EXTRA_VALUES in row:
                errors.append(
                    RowError(
                        file=rel,
                        row=lineno,
                        field=None,
                        message=f"{len(row) - 1 + len(row[_EXTRA_VALUES])} values but the "
                        f"header names {len(row) - 1} columns (an unquoted comma?)",
                        code="data.csv",
                    )
                )
                continue
            out.append((lineno, dict(row)))
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit(): the rest is unreadable
        errors.append(
            RowError(
                file=rel, row=reader.line_num, field=None, message=f"CSV: {exc}", code="data.csv"
            )
        )
    return out


_EXTRA_VALUES = "\x00extra"  # DictReader's key for values beyond the header


def _json_rows(data: Any, rel: str, errors: list[RowError]) -> list[tuple[int, dict[str, Any]]]:
    if isinstance(data, dict) and isinstance(data.get("data"), list) and _is_squad(data["data"]):
        return _squad_rows(data["data"])
    if isinstance(data, dict):
        for key in ("rows", "examples", "data", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    if not isinstance(data, list):
        errors.append(RowError(file=rel, row=None, field=None, message="expected a list of rows"))
        return []
    out = []
    for i, obj in enumerate(data, 1):
        if isinstance(obj, dict):
            out.append((i, obj))
        else:
            errors.append(RowError(file=rel, row=i, field=None, message="a row must be an object"))
    return out


def _is_squad(items: list[Any]) -> bool:
    return bool(items) and isinstance(items[0], dict) and "paragraphs" in items[0]


def _squad_rows(articles: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    """SQuAD's nested articles → one QA row per question (row = question number)."""
    out = []
    n = 0
    for article in articles:
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                n += 1
                answers = [a.get("text", "") for a in qa.get("answers", []) if isinstance(a, dict)]
                out.append(
                    (
                        n,
                        {
                            "task": "qa",
                            "id": qa.get("id"),
                            "question": qa.get("question"),
                            "context": para.get("context"),
                            "answers": answers,
                            "is_impossible": qa.get("is_impossible"),
                        },
                    )
                )
    return out


def normalise_row(task: TaskName, row: dict[str, Any]) -> dict[str, Any]:
    """Map common field spellings of public data sets onto taskloop's field names."""
    row = dict(row)
    if "id" not in row:
        for key in ("task_id", "qid", "example_id", "fname", "uid"):
            if key in row:
                row["id"] = str(row[key])
                break
    elif row["id"] is not None and not isinstance(row["id"], str):
        row["id"] = str(row["id"])
    if task == "qa":
        answers = row.get("answers", row.get("answer"))
        if isinstance(answers, dict):  # HF squad: {"text": [...], "answer_start": [...]}
            answers = answers.get("text", [])
        if isinstance(answers, str):
            answers = _maybe_json_list(answers)
        if isinstance(answers, list):
            answers = [a.get("text", "") if isinstance(a, dict) else a for a in answers]
        row["answers"] = answers if answers is not None else []
        if isinstance(row.get("is_impossible"), str):
            row["is_impossible"] = row["is_impossible"].strip().lower() in ("1", "true", "yes")
    elif task == "summarize":
        refs: list[Any] = []
        value = row.get("summaries")
        if isinstance(value, str):
            value = _maybe_json_list(value)
        if isinstance(value, list):
            refs.extend(value)
        for key in ("summary", "reference", "highlights", *(f"summary{i}" for i in range(1, 10))):
            if isinstance(row.get(key), str) and row[key].strip():
                refs.append(row[key])
        row["summaries"] = refs
    elif task == "translate":
        for alias in ("src", "text"):
            if "source" not in row and alias in row:
                row["source"] = row[alias]
        for alias in ("reference", "tgt", "translation"):
            if "target" not in row and alias in row:
                row["target"] = row[alias]
    return row


def _maybe_json_list(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return [text]
    return [text] if stripped else []


def _row_task(row: dict[str, Any], default: TaskName | None) -> TaskName | str | None:
    value = row.get("task")
    if value is None or value == "":
        return default
    return _TASK_ALIASES.get(str(value).strip().lower(), str(value))


def validate_row(
    task: TaskName, row: dict[str, Any], where: Where
) -> tuple[Example | None, RowError | None]:
    """One example, or the error naming the first bad field."""
    data = normalise_row(task, row)
    data["task"] = task
    if not data.get("id"):
        data["id"] = f"{where.file}#{where.row}"
    data["where"] = where
    try:
        return EXAMPLE_TYPES[task].model_validate(data), None  # type: ignore[return-value]
    except ValidationError as exc:
        loc, msg, kind = first_error(exc)
        fld = loc or None
        if kind == "missing":
            msg = f"required field missing for a {task} row"
        return None, RowError(file=where.file, row=where.row, field=fld, message=msg)


def load_tasks(root: str | Path, *, tasks: set[TaskName] | None = None) -> LoadResult:
    """Read, validate and group every task row under ``root`` (an extracted archive).

    Args:
        root: folder holding the archive's files.
        tasks: keep only these tasks (None: all).

    Raises:
        ManifestError: ``manifest.json`` is present but invalid (nothing else is read).
    """
    root = Path(root)
    result = LoadResult()
    result.manifest, options = read_manifest(root)
    files = discover(root, options)
    if not files:
        result.warnings.append(
            f"no task files (*.jsonl, *.json, *.csv) found in {root.name or root}"
        )
    base = FileOptions.model_validate(result.manifest.get("defaults") or {})
    return _load(root, files, options, base, tasks, result)


def load_file(path: str | Path, *, task: TaskName | None = None) -> LoadResult:
    """One task file read as an archive member named by its file name (no manifest).

    Args:
        task: the task of rows that name none (else the file name decides).
    """
    path = Path(path)
    return _load(path.parent, [path.name], {}, FileOptions(task=task), None, LoadResult())


def _load(
    root: Path,
    files: list[str],
    options: dict[str, FileOptions],
    base: FileOptions,
    tasks: set[TaskName] | None,
    result: LoadResult,
) -> LoadResult:
    groups: dict[tuple[str, TaskName], FileGroup] = {}
    for rel in files:
        if not (root / rel).is_file():
            # Lost in a repair, or never added: the other files still run.
            result.errors.append(
                RowError(
                    file=rel,
                    row=None,
                    field=None,
                    message=f"listed in {MANIFEST} but not in the archive",
                    code="data.missing_file",
                )
            )
            continue
        opts = options.get(rel, base)
        default = opts.task or task_from_name(rel)
        unknown_fields: Counter[str] = Counter()
        for rowno, row in _rows(root / rel, rel, result.errors):
            result.rows[rel] += 1
            task = _row_task(row, default)
            where = Where(file=rel, row=rowno)
            if task is None:
                result.errors.append(
                    RowError(
                        file=rel,
                        row=rowno,
                        field="task",
                        message="no task field and the file name implies none; set task to "
                        "one of " + ", ".join(TASKS) + " (or in manifest.json)",
                        code="data.no_task",
                    )
                )
                continue
            if task not in TASKS:
                result.errors.append(
                    RowError(
                        file=rel,
                        row=rowno,
                        field="task",
                        message=f"unknown task {task!r}; expected one of " + ", ".join(TASKS),
                        code="data.unknown_task",
                    )
                )
                continue
            if tasks is not None and task not in tasks:
                continue
            example, error = validate_row(task, row, where)
            if error is not None:
                result.errors.append(error)
                continue
            assert example is not None
            known = set(EXAMPLE_TYPES[task].model_fields) | _KNOWN_EXTRA
            unknown_fields.update(k for k in row if k not in known)
            key = (rel, example.task)
            if key not in groups:
                groups[key] = FileGroup(file=rel, task=example.task, options=opts)
            groups[key].examples.append(example)
        if unknown_fields:
            result.warnings.append(f"{rel}: fields ignored: " + ", ".join(sorted(unknown_fields)))
    result.groups = list(groups.values())
    _check_ids(result)
    return result


_KNOWN_EXTRA = {
    "task", "task_id", "qid", "example_id", "fname", "uid", "answer", "summary", "reference",
    "highlights", "src", "text", "dialogue", "tgt", "translation", "canonical_solution", "topic",
    *(f"summary{i}" for i in range(1, 10)),
}  # fmt: skip


def _check_ids(result: LoadResult) -> None:
    """Duplicate ids within one task: later rows get a ``#row`` suffix and a warning."""
    seen: dict[tuple[str, str], Where] = {}
    for group in result.groups:
        for i, ex in enumerate(group.examples):
            key = (ex.task, ex.id)
            if key in seen:
                new_id = f"{ex.id}#{ex.where.row}"
                if (ex.task, new_id) in seen:  # the same row number in another file
                    new_id = f"{ex.id}#{ex.where}"
                result.warnings.append(
                    f"{ex.where}: id {ex.id!r} already used at {seen[key]}; renamed {new_id!r}"
                )
                group.examples[i] = ex.model_copy(update={"id": new_id})
                seen[(ex.task, new_id)] = ex.where
            else:
                seen[key] = ex.where
