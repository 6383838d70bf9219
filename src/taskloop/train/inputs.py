"""Training inputs as typed examples: task archives, blobs, folders, JSONL, HF datasets.

Every input is read through the same loader the task pipelines use, so a training row
is validated like a ``taskloop run`` row and a bad row is reported with its file and
row rather than stopping the run. A folder written by ``datasets.Dataset.save_to_disk``
is read with ``datasets.load_from_disk``; its rows route by their ``task`` field or by
the folder's name (``squad_train`` → qa), like files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from taskloop.data.loader import (
    LoadResult,
    _row_task,
    load_file,
    load_tasks,
    task_from_name,
    validate_row,
)
from taskloop.data.records import TASKS, Example, RowError, TaskName, Where
from taskloop.train.errors import TrainDataError

logger = logging.getLogger("taskloop.train")

_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".jsonl.gz", ".json.gz", ".csv.gz")


@dataclass
class Inputs:
    """Examples read from every input, with the rows that could not be used."""

    examples: list[Example] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)  # input → examples read


def _is_hf_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_info.json").is_file()
        or (path / "dataset_dict.json").is_file()
        or (path / "state.json").is_file()
    )


def _from_hf_dataset(path: Path, task: TaskName | None) -> LoadResult:
    try:
        import datasets
    except ImportError:  # pragma: no cover - a declared dependency
        raise TrainDataError(
            f"{path}: looks like a saved Hugging Face dataset, but `datasets` is not installed",
            hint="pip install datasets",
        ) from None
    loaded = datasets.load_from_disk(str(path))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    result = LoadResult()
    default = task or task_from_name(path.name)
    for split, ds in splits:
        name = f"{path.name}/{split}" if split else path.name
        for i, row in enumerate(ds, start=1):
            row_task = _row_task(row, default)  # aliases ("translation") as in files
            where = Where(file=name, row=i)
            if row_task is None:
                result.errors.append(
                    RowError(file=name, row=i, field="task",
                             message="no task: add a task column or set data.tasks")
                )  # fmt: skip
                continue
            if row_task not in TASKS:
                result.errors.append(
                    RowError(file=name, row=i, field="task",
                             message=f"unknown task {row_task!r}; expected one of "
                             + ", ".join(TASKS))
                )  # fmt: skip
                continue
            example, error = validate_row(row_task, dict(row), where)
            if error is not None:
                result.errors.append(error)
            elif example is not None:
                from taskloop.data.loader import FileGroup
                from taskloop.tasks.context import FileOptions

                if not result.groups or result.groups[-1].task != example.task:
                    result.groups.append(FileGroup(name, example.task, FileOptions()))
                result.groups[-1].examples.append(example)
        result.rows[name] = len(ds)
    return result


def _read_one(path: Path, task: TaskName | None, key_file: str | None) -> LoadResult:
    if not path.exists():
        raise TrainDataError(
            f"training input {str(path)!r} does not exist",
            hint="data.train takes task archives (.zip), blobs, folders, JSONL/JSON/CSV "
            "files or folders saved with datasets' save_to_disk",
        )
    if _is_hf_dataset(path):
        return _from_hf_dataset(path, task)
    if path.is_dir():
        return load_tasks(path)
    if path.name.lower().endswith(_FILE_SUFFIXES):
        return load_file(path, task=task)
    # A zip or a blob: extract (repairing if damaged) as `taskloop run` does.
    from taskloop.pipeline import open_input
    from taskloop.runconfig import RunConfig

    with open_input(path, RunConfig(key_file=key_file)) as (root, info):
        result = load_tasks(root)
        if info.blob_problems:
            result.warnings.extend(f"{path.name}: {p}" for p in info.blob_problems)
        return result


def read_inputs(
    paths: Iterable[str],
    *,
    tasks: Iterable[TaskName] | None = None,
    key_file: str | None = None,
) -> Inputs:
    """Examples of every path, keeping only ``tasks`` when given.

    A single-task list also names the task of files and datasets whose rows and names
    do not say it.

    Raises:
        TrainDataError: a path does not exist.
    """
    wanted = set(tasks) if tasks else None
    only: TaskName | None = next(iter(wanted)) if wanted and len(wanted) == 1 else None
    out = Inputs()
    for raw in paths:
        path = Path(raw).expanduser()
        result = _read_one(path, only, key_file)
        found = [
            ex for g in result.groups for ex in g.examples if wanted is None or ex.task in wanted
        ]
        out.examples.extend(found)
        out.errors.extend(result.errors)
        out.warnings.extend(result.warnings)
        out.sources[str(raw)] = len(found)
        logger.info("read %d examples from %s (%d bad rows)", len(found), raw, len(result.errors))
    return out
