"""The main job: a blob (or zip, or folder) of task files in, a verified result blob out.

decode → load and validate → route by task → (per task file) prepare → generate →
verify → score → write ``results.jsonl`` + ``report.json`` + ``report.html`` +
``config.json`` → encode ``result.blob``. Each stage takes and returns typed records;
each logs one record with its duration, sizes and memory.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from taskloop import __version__, progress
from taskloop.blob import Report, encode_zip_to_utf8_blob, extract_blob, load_key_file
from taskloop.data.errors import NoTasksError
from taskloop.data.loader import (
    MANIFEST,
    TASK_FILE_SUFFIXES,
    FileGroup,
    LoadResult,
    load_tasks,
    task_suffix,
)
from taskloop.data.records import Prediction, RowError, TaskSummary
from taskloop.errors import InputFileError
from taskloop.log import step
from taskloop.models.cache import LRUCache
from taskloop.runconfig import RunConfig
from taskloop.tasks import task_module
from taskloop.tasks.context import Resources, TaskContext


class InputInfo(BaseModel):
    path: str
    kind: str  # "folder", "file", "zip", "blob"
    blob_outcome: str | None = None
    blob_problems: list[str] = Field(default_factory=list)
    blob_notes: list[str] = Field(default_factory=list)


class RunReport(BaseModel):
    """Everything ``report.json`` holds about one run."""

    taskloop_version: str = __version__
    started: str
    duration_s: float = 0.0
    input: InputInfo
    files: dict[str, int] = Field(default_factory=dict)  # rows read per file
    examples: int = 0
    row_errors: list[RowError] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    tasks: list[TaskSummary] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)  # predictions by status
    cache: dict[str, float] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)


@dataclass
class RunResult:
    """What :func:`run` returns: the report, every prediction, and where files went."""

    report: RunReport
    predictions: list[Prediction] = field(default_factory=list)
    out_dir: Path | None = None


@contextmanager
def open_input(path: Path, cfg: RunConfig) -> Iterator[tuple[Path, InputInfo]]:
    """The input as a folder: used as is, a single task file (.jsonl/.json/.csv, also
    gzipped) in a folder of its own, or a zip/blob extracted (repaired if damaged)."""
    if path.is_dir():
        yield path, InputInfo(path=str(path), kind="folder")
        return
    if not path.is_file():
        raise InputFileError(
            f"input {str(path)!r} does not exist",
            hint="pass a blob, a .zip, a folder or a task file (.jsonl, .json, .csv)",
        )
    if task_suffix(path) in TASK_FILE_SUFFIXES and path.name != MANIFEST:
        with tempfile.TemporaryDirectory(prefix="taskloop-run-") as tmp:
            shutil.copyfile(path, Path(tmp) / path.name)
            yield Path(tmp), InputInfo(path=str(path), kind="file")
        return
    key = load_key_file(cfg.key_file) if cfg.key_file else None
    with tempfile.TemporaryDirectory(prefix="taskloop-run-") as tmp:
        report: Report = extract_blob(path, Path(tmp) / "archive", key=key, repair=True)
        info = InputInfo(
            path=str(path),
            kind="zip" if report.format == "zip" else "blob",
            blob_outcome=report.outcome.value,
            blob_problems=[
                f"{m.name}: {m.status.value}, {m.action.value}"
                + (f" ({m.detail})" if m.detail else "")
                for m in report.members
                if not m.verified
            ]
            + list(report.problems),
            blob_notes=list(report.notes),
        )
        yield Path(tmp) / "archive", info


def _resources(cfg: RunConfig) -> Resources:
    return Resources(
        cache=LRUCache(max_items=cfg.cache_items, path=cfg.cache_path),
        device=cfg.device,
        dtype=cfg.dtype,
        allow_download=cfg.allow_download,
        encoder_name=cfg.encoder,
        workers=cfg.workers or max(1, os.cpu_count() or 1),
    )


def _context(group: FileGroup, root: Path, cfg: RunConfig, res: Resources) -> TaskContext:
    options = cfg.options_for(group.task, group.options)
    ctx = TaskContext(file=group.file, options=options, resources=res)
    if group.task == "translate" and (options.glossary or options.dictionary):
        from taskloop.tasks.glossary import load_dictionary, load_glossary

        if options.glossary:
            path = _archive_file(root, options.glossary, group.file)
            ctx.glossary = load_glossary(path, name=options.glossary)
        if options.dictionary:
            path = _archive_file(root, options.dictionary, group.file)
            ctx.dictionary = load_dictionary(path, name=options.dictionary)
    return ctx


def _archive_file(root: Path, rel: str, owner: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise InputFileError(f"{owner}: file {rel!r} named in manifest.json is not in the archive")
    return path


def run_group(group: FileGroup, ctx: TaskContext) -> tuple[list[Prediction], TaskSummary]:
    """Run one task file's examples through its task module and score them."""
    module = task_module(group.task)
    start = time.perf_counter()
    with step(f"task.{group.task}", file=group.file, items=len(group.examples)) as info:
        predictions = module.run(group.examples, ctx)
        if len(predictions) != len(group.examples):
            raise RuntimeError(
                f"task {group.task} returned {len(predictions)} predictions "
                f"for {len(group.examples)} examples"
            )
        with step(f"{group.task}.score", items=len(predictions)):
            metrics = module.score(group.examples, predictions)
        counts = Counter(p.status for p in predictions)
        info.update(counts=dict(counts))
    models = sorted({p.model for p in predictions if p.model})
    modes = Counter(p.mode for p in predictions if p.mode and p.status != "skipped")
    summary = TaskSummary(
        task=group.task,
        file=group.file,
        model=", ".join(models) or None,
        mode=modes.most_common(1)[0][0] if modes else ("skipped" if counts["skipped"] else ""),
        counts={s: counts.get(s, 0) for s in ("ok", "flagged", "failed", "skipped")},
        metrics={k: round(v, 4) for k, v in metrics.items()},
        warnings=sorted({p.reason for p in predictions if p.status == "skipped" and p.reason})
        + ctx.warnings,
        duration_s=round(time.perf_counter() - start, 3),
        options=ctx.options.model_dump(exclude_defaults=True),
    )
    return predictions, summary


def _environment(res: Resources) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch
        import transformers

        env.update(torch=torch.__version__, transformers=transformers.__version__)
        env["cuda"] = str(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    env["device"] = res.device
    return env


def run(
    input_path: str | Path,
    out_dir: str | Path | None = None,
    config: RunConfig | None = None,
) -> RunResult:
    """Run every task file of ``input_path`` and write the results to ``out_dir``.

    Args:
        input_path: a blob, a ZIP archive or a folder of task files.
        out_dir: folder for results.jsonl, report.json, report.html, config.json and
            result.blob (None: nothing written; the result is returned only).
        config: the run's config (None: offline defaults).

    Returns:
        The report and every prediction (bad rows are in ``report.row_errors``).

    Raises:
        InputFileError: the input is missing or unreadable.
        BlobError: the blob is damaged beyond repair, unsafe or needs a key.
        ManifestError: manifest.json is invalid.
        NoTasksError: no usable task rows at all.
    """
    cfg = config or RunConfig()
    started = time.perf_counter()
    report_started = datetime.now(UTC).isoformat(timespec="seconds")
    res = _resources(cfg)
    with open_input(Path(input_path), cfg) as (root, info):
        with step("load", input=str(input_path)) as linfo:
            loaded = load_tasks(root, tasks=set(cfg.tasks) if cfg.tasks else None)
            _limit(loaded, cfg.max_items)
            linfo.update(examples=loaded.examples, row_errors=len(loaded.errors))
        report = RunReport(
            started=report_started,
            input=info,
            files=dict(loaded.rows),
            examples=loaded.examples,
            row_errors=loaded.errors,
            warnings=list(loaded.warnings),
            environment=_environment(res),
        )
        if not loaded.groups:
            raise NoTasksError(
                f"no usable task rows in {input_path}"
                + (
                    f" ({len(loaded.errors)} bad rows; first: {loaded.errors[0]})"
                    if loaded.errors
                    else ""
                ),
                hint="see docs/task-format.md for the files and fields taskloop reads",
            )
        predictions: list[Prediction] = []
        progress.start("tasks", len(loaded.groups), unit="items")
        for group in loaded.groups:
            ctx = _context(group, root, cfg, res)
            preds, summary = run_group(group, ctx)
            predictions.extend(preds)
            report.tasks.append(summary)
            progress.advance(1)
    report.counts = dict(Counter(p.status for p in predictions))
    stats = res.cache.stats
    report.cache = {
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": round(stats.hit_rate, 4),
    }
    report.duration_s = round(time.perf_counter() - started, 3)
    result = RunResult(report=report, predictions=predictions)
    if out_dir is not None:
        write_outputs(result, Path(out_dir), cfg)
    res.cache.close()
    return result


def _limit(loaded: LoadResult, max_items: int | None) -> None:
    if max_items is None:
        return
    for group in loaded.groups:
        if len(group.examples) > max_items:
            loaded.warnings.append(
                f"{group.file}: {group.task}: ran the first {max_items} of "
                f"{len(group.examples)} rows (max_items)"
            )
            group.examples = group.examples[:max_items]


def write_outputs(result: RunResult, out: Path, cfg: RunConfig) -> None:
    """results.jsonl, report.json, report.html, config.json, and result.blob of all four."""
    from taskloop.evaluate.report import render_html

    out.mkdir(parents=True, exist_ok=True)
    with step("write", out=str(out)) as info:
        files: dict[str, bytes] = {
            "results.jsonl": "".join(
                p.model_dump_json() + "\n" for p in result.predictions
            ).encode(),
            "config.json": cfg.model_dump_json(indent=2).encode(),
        }
        result.report.outputs = {
            name: str(out / name)
            for name in (
                "results.jsonl",
                "report.json",
                "report.html",
                "config.json",
                "result.blob",
            )
        }
        files["report.json"] = result.report.model_dump_json(indent=2).encode()
        files["report.html"] = render_html(result.report, result.predictions).encode()
        for name, data in files.items():
            (out / name).write_bytes(data)
        info["out_bytes"] = sum(map(len, files.values()))
    with step("encode_result") as info:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        blob = encode_zip_to_utf8_blob(buf.getvalue())
        (out / "result.blob").write_text(blob, encoding="ascii")
        info.update(in_bytes=len(buf.getvalue()), out_bytes=len(blob))
    result.out_dir = out
