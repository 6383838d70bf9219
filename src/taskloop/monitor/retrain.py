"""The retraining job and the champion/challenger gate.

Reads top to bottom:

1. Records: what a job gets (:class:`JobContext`) and gives (:class:`JobOutput`), what
   the registry then holds (:class:`JobResult`), the gate's verdict (:class:`GateResult`)
   and the whole round's (:class:`RetrainResult`).
2. New training data: positively rated stored predictions turned into task rows
   (:func:`positive_rows`).
3. The jobs: :func:`run_sft_job` fine-tunes the champion on those rows (plus extra data
   files) with taskloop's training stack; :data:`JOBS` maps a job name to its function
   and :func:`run_job` runs one and registers the result as ``challenger``.
4. The gate: :func:`decide` and :func:`gate_scores` on plain per-item scores (the
   decision logic, testable without models), :func:`gate` on registered versions
   (both run on the same probe data, scored by taskloop's evaluation, compared with a
   paired bootstrap on the task's primary metric), promotion only when the challenger
   is significantly better.
5. :func:`run_retraining`: triggers → job → gate → retraining state.

A job is ``Callable[[JobContext], JobOutput | Path]``: it trains from
``ctx.champion`` into ``ctx.out`` and returns the trained folder (with metrics, or the
bare folder); registering, gating and the state are the same for every job. Adding a
job is one function and one entry in :data:`JOBS`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from taskloop.data.records import TASKS, TaskName
from taskloop.log import logger, step
from taskloop.models.registry import CHALLENGER, CHAMPION
from taskloop.monitor.triggers import (
    RetrainState,
    StatsOptions,
    TriggerResult,
    TriggerRules,
    collect_stats,
    fired,
    load_state,
    retraining_triggers,
    save_state,
    state_path,
)
from taskloop.rlhf.errors import RetrainError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from taskloop.evaluate.items import Loaded
    from taskloop.train.config import TrainConfig

GATE_TAG = "taskloop.gate"  # the gate's verdict, as JSON, on the challenger version
NEGATIVE_SCORE = 2  # a 1-5 score at or below this is a complaint
# Fields of a stored input that are labels: replaced by the rated output.
LABEL_FIELDS: dict[TaskName, tuple[str, ...]] = {
    "translate": ("target",),
    "summarize": ("summaries", "summary"),
    "qa": ("answers", "is_impossible", "answer"),
    "codegen": ("completion",),
}
Decision = Literal["promoted", "kept"]


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class JobContext:
    """What a retraining job gets.

    Attributes:
        name: the registered model name the challenger is registered under.
        task: the task the model serves.
        champion: the folder of the model to start from (the champion's, or a base model).
        out: the job's own folder (data, checkpoints, the trained model).
        sessions: the feedback store (None: no stored ratings; extra data only).
        data: extra task data files (archives, folders, JSONL) to train on too.
        champion_version: the champion's registered version (None: started from a base).
        options: job-specific settings (see each job; unknown keys are refused).
        uri: the registry's tracking URI (None: the default).
    """

    name: str
    task: TaskName
    champion: Path
    out: Path
    sessions: sessionmaker[Session] | None = None
    data: tuple[Path, ...] = ()
    champion_version: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    uri: str | None = None


@dataclass(frozen=True)
class JobOutput:
    """What a job trained: the model folder, its metrics and the config it ran with."""

    model_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    rows: int = 0  # training rows from the store
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobResult:
    """A job's model, registered as a new version with the ``challenger`` alias."""

    job: str
    name: str
    version: int
    run_id: str
    model_dir: Path
    metrics: dict[str, float]
    rows: int
    notes: list[str] = field(default_factory=list)


class GateResult(BaseModel):
    """The champion/challenger verdict and the numbers behind it.

    ``delta`` is challenger - champion on ``metric`` (0-100 points); ``low``/``high``
    its paired-bootstrap interval; ``p_value`` the share of resamples in which the
    challenger was not better (one-sided). ``decision`` is "promoted" (the challenger
    is now champion) or "kept" (it stays challenger, for inspection).
    """

    decision: Decision
    reason: str
    metric: str
    champion_value: float | None = None
    challenger_value: float | None = None
    delta: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    n: int = 0
    alpha: float = 0.05
    min_delta: float = 0.0
    confidence: float = 0.95
    resamples: int = 0
    higher_is_better: bool = True
    name: str | None = None
    task: str | None = None
    champion_version: int | None = None
    challenger_version: int | None = None
    report: str | None = None  # the evaluation's report.json
    created: str = ""

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def champion_after(self) -> tuple[int | None, float | None]:
        """(version, probe value) of whatever is champion once the gate is done."""
        if self.promoted:
            return self.challenger_version, self.challenger_value
        return self.champion_version, self.champion_value


@dataclass(frozen=True)
class ProbeScore:
    """A model's primary metric on the probe set."""

    metric: str
    value: float
    n: int


@dataclass
class RetrainResult:
    """One round of :func:`run_retraining`."""

    name: str
    triggers: list[TriggerResult]
    fired: list[str]
    forced: bool
    ran: bool  # False: nothing fired and not forced
    job: JobResult | None = None
    gate: GateResult | None = None
    state_file: Path | None = None
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "name": self.name,
            "ran": self.ran,
            "forced": self.forced,
            "fired": self.fired,
            "triggers": [asdict(t) for t in self.triggers],
            "job": asdict(self.job) if self.job else None,
            "gate": self.gate.model_dump() if self.gate else None,
            "state_file": str(self.state_file) if self.state_file else None,
            "out": str(self.out) if self.out else None,
        }


def _now() -> datetime:
    return datetime.now(UTC)


def default_out(name: str, what: str) -> Path:
    """``$TASKLOOP_HOME/retrain/<name>/<what>-<UTC time>``: where a round writes by default."""
    from taskloop.config import taskloop_home

    stamp = _now().strftime("%Y%m%dT%H%M%S%fZ")
    return taskloop_home() / "retrain" / re.sub(r"[^\w.\-]", "_", name) / f"{what}-{stamp}"


def _check_task(task: str) -> TaskName:
    if task not in TASKS:
        raise RetrainError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    return task


# ------------------------------------------------------------------- the registry side


def aliases(name: str, uri: str | None = None) -> dict[str, int]:
    """``{alias: version}`` of a registered model ({} when the model does not exist)."""
    from taskloop.models.registry import client

    mc = client(uri)
    try:
        model = mc.get_registered_model(name)
    except Exception as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return {}
        raise RetrainError(
            f"cannot read registered model {name!r}: {type(exc).__name__}: {exc}",
            hint="check --tracking-uri / TASKLOOP_TRACKING_URI and that the store is up",
        ) from exc
    return {str(k): int(v) for k, v in (getattr(model, "aliases", None) or {}).items()}


def version_folder(name: str, version: int, uri: str | None = None) -> Path:
    """The local folder of a registered version (downloaded once)."""
    from taskloop.models.registry import resolve_uri

    return resolve_uri(f"models:/{name}/{version}", uri=uri)


def tag_version(name: str, version: int, key: str, value: str, uri: str | None = None) -> None:
    """Set a tag on a registered version."""
    from taskloop.models.registry import client

    client(uri).set_model_version_tag(name, str(version), key, value)


# ------------------------------------------------------------------- new training data


def to_task_row(task: TaskName, row: Mapping[str, Any], output: str, row_id: str) -> dict[str, Any]:
    """A stored input with its rated output as the label: translate ``target``,
    summarize ``summaries``, qa ``answers``, codegen ``completion``."""
    out = {k: v for k, v in row.items() if k not in LABEL_FIELDS[task] and k != "id"}
    labels: dict[str, dict[str, Any]] = {
        "translate": {"target": output},
        "summarize": {"summaries": [output]},
        "qa": {"answers": [output]},
        "codegen": {"completion": output},
    }
    label = labels[task]
    return {"id": row_id, "task": task, **out, **label}


def positive_rows(
    sessions: sessionmaker[Session],
    *,
    task: TaskName,
    since: datetime | None = None,
    include_simulated: bool = False,
    min_score: int = 4,
) -> tuple[list[dict[str, Any]], int]:
    """Task rows from the store: each prediction of ``task`` rated thumbs up or with a
    score of at least ``min_score`` (by a person; by the simulator too with
    ``include_simulated``), its output as the label.

    A prediction that also got a thumbs down or a score of 2 or less is left out (raters
    disagree: not a clean example), as are rows that no longer validate.

    Returns:
        (rows oldest rating first, rows left out as invalid).
    """
    from sqlalchemy import select

    from taskloop.data.loader import validate_row
    from taskloop.data.records import Where
    from taskloop.serve.storage.db import session_scope
    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    sources = ("human", "simulated") if include_simulated else ("human",)
    q = (
        select(FeedbackRow.thumbs, FeedbackRow.score, PredictionRow)
        .join(PredictionRow, FeedbackRow.prediction_id == PredictionRow.id)
        .where(
            PredictionRow.task == task,
            PredictionRow.output.is_not(None),
            FeedbackRow.kind.in_(("thumbs", "score")),
            FeedbackRow.source.in_(sources),
        )
        .order_by(FeedbackRow.id)
    )
    if since is not None:
        q = q.where(FeedbackRow.created > since)
    good: dict[str, tuple[dict[str, Any], str]] = {}
    bad: set[str] = set()
    with session_scope(sessions, readonly=True) as s:
        for thumbs, score, pred in s.execute(q):
            if thumbs == "down" or (score is not None and score <= NEGATIVE_SCORE):
                bad.add(pred.id)
            elif thumbs == "up" or (score is not None and score >= min_score):
                good.setdefault(pred.id, (dict(pred.input), pred.output or ""))
    rows: list[dict[str, Any]] = []
    invalid = 0
    for i, (pid, (value, output)) in enumerate(good.items(), 1):
        if pid in bad or not output.strip():
            continue
        row = to_task_row(task, value, output, pid)
        example, _ = validate_row(task, dict(row), Where(file="store", row=i))
        if example is None:
            invalid += 1
            continue
        rows.append(row)
    return rows, invalid


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Rows as JSON Lines (one task row per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class SftOptions:
    """The ``sft`` job's options (``JobContext.options``).

    Attributes:
        config: a training config YAML (docs/training.md); its model and data.train
            are replaced by the champion and the new rows (+ its data.train appended).
        overrides: ``KEY=VALUE`` overrides of training keys (``run.max_steps=200``).
        include_simulated: also train on outputs the simulator rated well.
        min_score: the smallest 1-5 score that counts as a good rating.
        new_only: only ratings since the last retraining (``since``).
        since: set by :func:`run_retraining` from the state when ``new_only``.
        device: auto, cpu, cuda, mps.
    """

    config: Path | None = None
    overrides: tuple[str, ...] = ()
    include_simulated: bool = False
    min_score: int = 4
    new_only: bool = False
    since: datetime | None = None
    device: str = "auto"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SftOptions:
        """Options from a job's options dict.

        Raises:
            RetrainError: an unknown key.
        """
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise RetrainError(
                f"sft job: unknown option(s) {', '.join(unknown)}",
                hint=f"the sft job takes {', '.join(sorted(known))}",
            )
        data = dict(values)
        if data.get("config") is not None:
            data["config"] = Path(data["config"])
        data["overrides"] = tuple(data.get("overrides") or ())
        return cls(**data)


# Training defaults of a retraining: short, no periodic evaluation or checkpoints, and
# no registry logging by the loop (the job registers the challenger itself).
SFT_DEFAULTS: dict[str, Any] = {
    "run": {"epochs": 3.0},
    "eval": {"every_steps": None},
    "checkpoint": {"every_steps": None},
}


def sft_config(ctx: JobContext, opts: SftOptions, rows_file: Path | None) -> TrainConfig:
    """The resolved TrainConfig of an sft job: defaults < config file < overrides <
    what the job fixes (model = the champion, data = new rows + extra data, the task,
    the output folder, tracking off)."""
    from taskloop.config import read_yaml
    from taskloop.train.config import TUNE_KEYS, merge, parse_overrides, validate
    from taskloop.train.errors import TrainConfigError

    data = merge({}, SFT_DEFAULTS)
    data = merge(data, {"run": {"device": opts.device}})
    extra_train: list[str] = []
    if opts.config is not None:
        loaded = read_yaml(opts.config, TrainConfigError)
        for key in TUNE_KEYS:
            loaded.pop(key, None)
        extra_train = list((loaded.get("data") or {}).get("train") or [])
        loaded.pop("model", None)
        data = merge(data, loaded)
    data = merge(data, parse_overrides(list(opts.overrides)))
    train_files = [str(p) for p in ([rows_file] if rows_file else [])]
    train_files += [str(p) for p in ctx.data] + extra_train
    fixed = {
        "name": f"retrain-{ctx.name}",
        "out": str(ctx.out / "train"),
        "model": {"name": str(ctx.champion)},
        "data": {"train": train_files, "tasks": [ctx.task]},
        "tracking": {"enabled": False},
    }
    return validate(merge(data, fixed), str(opts.config) if opts.config else None)


def run_sft_job(ctx: JobContext) -> JobOutput:
    """Supervised fine-tuning of the champion on well-rated stored outputs.

    New data: every stored prediction of ``ctx.task`` rated thumbs up or >= 4 (see
    :func:`positive_rows`) as a task row whose label is the rated output, written to
    ``ctx.out/data/feedback-<task>.jsonl``, plus ``ctx.data``. Training:
    :func:`taskloop.train.loop.train` from ``ctx.champion`` (options: :class:`SftOptions`);
    the best model lands in ``ctx.out/train/best``.

    Raises:
        RetrainError: no training rows at all, or bad options.
        TrainConfigError, TrainDataError: from the training stack.
    """
    from taskloop.train.loop import train

    opts = SftOptions.from_mapping(ctx.options)
    rows: list[dict[str, Any]] = []
    invalid = 0
    if ctx.sessions is not None:
        rows, invalid = positive_rows(
            ctx.sessions, task=ctx.task, since=opts.since if opts.new_only else None,
            include_simulated=opts.include_simulated, min_score=opts.min_score,
        )  # fmt: skip
    if not rows and not ctx.data and opts.config is None:
        raise RetrainError(
            f"sft job for {ctx.name!r}: no {ctx.task} predictions rated thumbs up or "
            f">= {opts.min_score} in the store, and no extra data",
            hint="collect ratings first, or pass task data with --data FILE",
        )
    rows_file = write_rows(rows, ctx.out / "data" / f"feedback-{ctx.task}.jsonl") if rows else None
    cfg = sft_config(ctx, opts, rows_file)
    notes = [f"{invalid} rated prediction(s) left out: no longer valid {ctx.task} rows"]
    with step("retrain.sft", model=ctx.name, task=ctx.task, rows=len(rows)) as info:
        result = train(cfg)
        info.update(steps=result.steps, stopped=result.stopped)
    metrics: dict[str, float] = {
        f"{task}_{k}": float(v) for task, m in result.final.items() for k, v in m.items()
    }
    metrics.update({"train_rows": float(len(rows)), "steps": float(result.steps)})
    return JobOutput(
        model_dir=result.model_dir,
        metrics=metrics,
        config=cfg.model_dump(mode="json"),
        steps=result.steps,
        rows=len(rows),
        notes=(notes if invalid else []) + list(result.data.warnings),
    )


JobFn = Callable[[JobContext], "JobOutput | Path"]


def run_rlhf(ctx: JobContext) -> JobOutput:
    """Reward model (given, or trained on the store) + PPO from the champion
    (:func:`taskloop.rlhf.job.run_rlhf_job`; options :class:`taskloop.rlhf.job.RlhfOptions`)."""
    from taskloop.rlhf.job import run_rlhf_job

    return run_rlhf_job(ctx)


# name -> job. A job trains from ctx.champion into ctx.out and returns its folder.
JOBS: dict[str, JobFn] = {"sft": run_sft_job, "rlhf": run_rlhf}


def _metric_name(name: str) -> str:
    # MLflow metric names: letters, digits and _-./ and spaces ("chrf++" is not one).
    return re.sub(r"[^\w\-./ ]", "p", name)


def run_job(ctx: JobContext, job: str = "sft") -> JobResult:
    """Run the job ``job`` of :data:`JOBS` and register its model as a new version of
    ``ctx.name`` with the ``challenger`` alias (experiment ``retrain``).

    Tags on the version: ``taskloop.retrain.job``, ``taskloop.tasks``,
    ``taskloop.retrain.parent`` (the champion version it started from) and
    ``taskloop.retrain.rows``.

    Raises:
        RetrainError: an unknown job, or the job's own errors.
        RegistryError: the registry refused the run.
    """
    from taskloop.models.registry import log_run

    if job not in JOBS:
        raise RetrainError(
            f"unknown retraining job {job!r}", hint=f"use one of {', '.join(sorted(JOBS))}"
        )
    ctx.out.mkdir(parents=True, exist_ok=True)
    with step("retrain.job", job=job, model=ctx.name, task=ctx.task) as info:
        made = JOBS[job](ctx)
        output = made if isinstance(made, JobOutput) else JobOutput(model_dir=Path(made))
        tags = {
            "taskloop.retrain.job": job,
            "taskloop.tasks": ctx.task,
            "taskloop.retrain.parent": str(ctx.champion_version or ""),
            "taskloop.retrain.rows": str(output.rows),
        }
        metrics = {_metric_name(k): v for k, v in output.metrics.items()}
        record = log_run(
            experiment="retrain", run_name=f"{ctx.name}-{job}",
            config=output.config or {"job": job, "champion": str(ctx.champion)},
            metrics=[(output.steps, metrics)] if metrics else [], model_dir=output.model_dir,
            register_as=ctx.name, alias=CHALLENGER, tags=tags, uri=ctx.uri,
            params={"retrain.job": job, "retrain.options": dict(ctx.options)},
        )  # fmt: skip
        assert record.version is not None  # registered: log_run gave a version
        info.update(version=record.version, rows=output.rows)
    return JobResult(
        job=job, name=ctx.name, version=record.version, run_id=record.run_id,
        model_dir=output.model_dir, metrics=metrics, rows=output.rows, notes=output.notes,
    )  # fmt: skip


# ------------------------------------------------------------------------------ the gate


def decide(
    delta: float,
    p_value: float,
    *,
    alpha: float = 0.05,
    min_delta: float = 0.0,
    higher_is_better: bool = True,
    metric: str = "score",
) -> tuple[Decision, str]:
    """Promote only a significantly better challenger.

    Promoted when the gain (``delta`` = challenger - champion, negated when lower is
    better) is positive, at least ``min_delta``, and the one-sided paired-bootstrap
    p-value is below ``alpha``; kept otherwise. Returns (decision, reason in words).
    """
    gain = delta if higher_is_better else -delta
    if gain <= 0:
        return "kept", (
            f"challenger is not better: {metric} {delta:+.3g} points"
            + (" (equal)" if gain == 0 else "")
        )
    if p_value >= alpha:
        return "kept", (
            f"challenger better by {gain:.3g} {metric} points but not significantly "
            f"(p = {p_value:.3g} >= alpha {alpha:g})"
        )
    if gain < min_delta:
        return "kept", (
            f"challenger significantly better (p = {p_value:.3g}) but by {gain:.3g} {metric} "
            f"points, less than the minimum {min_delta:g}"
        )
    return "promoted", (
        f"challenger significantly better: {metric} {delta:+.3g} points "
        f"(p = {p_value:.3g} < alpha {alpha:g})"
    )


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise RetrainError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")


def gate_scores(
    champion: Sequence[float],
    challenger: Sequence[float],
    *,
    metric: str = "score",
    alpha: float = 0.05,
    min_delta: float = 0.0,
    higher_is_better: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> GateResult:
    """The gate's decision on per-item scores of the same items (champion[i] and
    challenger[i] score item i): a paired bootstrap of the mean, then :func:`decide`.

    Raises:
        RetrainError: different lengths, fewer than 2 items, or a bad alpha.
    """
    from taskloop.evaluate.errors import MetricError
    from taskloop.evaluate.stats import paired_bootstrap

    _check_alpha(alpha)
    if len(champion) != len(challenger) or len(champion) < 2:
        raise RetrainError(
            f"the gate needs the same >= 2 items scored for both models; got "
            f"{len(champion)} and {len(challenger)}",
            hint="score champion and challenger on the same probe items",
        )
    try:
        res = paired_bootstrap(
            champion, challenger, higher_is_better=higher_is_better, resamples=resamples,
            confidence=confidence, seed=seed,
        )  # fmt: skip
    except MetricError as exc:
        raise RetrainError(exc.message, hint=exc.hint) from exc
    decision, reason = decide(
        res.delta, res.p_value, alpha=alpha, min_delta=min_delta,
        higher_is_better=higher_is_better, metric=metric,
    )  # fmt: skip
    return GateResult(
        decision=decision, reason=reason, metric=metric, champion_value=res.a,
        challenger_value=res.b, delta=res.delta, low=res.low, high=res.high,
        p_value=res.p_value, n=res.n, alpha=alpha, min_delta=min_delta, confidence=confidence,
        resamples=res.resamples, higher_is_better=higher_is_better,
        created=_now().isoformat(timespec="seconds"),
    )  # fmt: skip


@contextmanager
def probe_input(probe: str | Path, task: TaskName) -> Iterator[Path]:
    """The probe set as something ``taskloop run`` reads: a folder, archive or blob as
    is; a single task file (.jsonl/.json/.csv) copied into a temporary folder (named so
    that its task is implied when its rows do not say it).

    Raises:
        RetrainError: the probe set does not exist.
    """
    from taskloop.data.loader import TASK_FILE_SUFFIXES, task_from_name, task_suffix

    p = Path(probe).expanduser()
    if not p.exists():
        raise RetrainError(
            f"probe set {p}: no such file or folder",
            hint="give task data with references (a task file, folder or archive)",
        )
    if p.is_dir() or task_suffix(p) not in TASK_FILE_SUFFIXES:
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="taskloop-probe-") as tmp:
        name = p.name if task_from_name(p.name) is not None else f"{task}-{p.name}"
        shutil.copyfile(p, Path(tmp) / name)
        yield Path(tmp)


def _predictions(
    probe: Path, task: TaskName, model: Path, label: str, max_items: int | None
) -> Loaded:
    from taskloop.evaluate.items import run_model

    loaded = run_model(probe, {task: str(model)}, max_items=max_items)
    return replace(loaded, label=label)


def measure_probe(
    model: str | Path, *, task: str, probe: str | Path, max_items: int | None = None
) -> ProbeScore:
    """``model``'s primary metric (0-100) on the probe set, as the gate measures it.

    Args:
        model: a folder, hub id in the cache, or ``models:/NAME@champion``.
        probe: task data with references (a task file, folder or archive).

    Raises:
        RetrainError: the primary metric could not be computed.
        EvalInputError: nothing to score (no usable model, no rows).
    """
    from taskloop.evaluate.items import run_model
    from taskloop.evaluate.runner import EvalOptions, evaluate

    name = _check_task(task)
    with (
        step("retrain.measure_probe", model=str(model), task=name) as info,
        probe_input(probe, name) as folder,
    ):
        loaded = run_model(folder, {name: str(model)}, max_items=max_items)
        report = evaluate(
            loaded, options=EvalOptions(quality=False, plots=False, resamples=0)
        ).report
        te = next((t for t in report.tasks if t.task == name), None)
        if te is None or te.primary not in te.metrics:
            raise RetrainError(
                f"{probe}: the {name} primary metric of {model} could not be computed",
                hint=f"the probe set needs {name} rows with references",
            )
        value = te.metrics[te.primary].value
        info.update(metric=te.primary, value=round(value, 3), items=te.n)
    return ProbeScore(te.primary, value, te.n)


def record_gate(
    result: GateResult, out: Path | None, uri: str | None = None, *, tag: bool = True
) -> GateResult:
    """Write ``gate.json`` under ``out`` and (``tag``) put the verdict on the challenger
    version as the ``taskloop.gate`` tag."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gate.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    if tag and result.name and result.challenger_version is not None:
        keep = (
            "decision", "reason", "metric", "champion_value", "challenger_value", "delta",
            "low", "high", "p_value", "alpha", "n", "champion_version", "created",
        )  # fmt: skip
        value = json.dumps(result.model_dump(include=set(keep)), separators=(",", ":"))
        tag_version(result.name, result.challenger_version, GATE_TAG, value[:4900], uri)
    return result


def gate(
    name: str,
    *,
    task: str,
    probe: str | Path,
    alpha: float = 0.05,
    min_delta: float = 0.0,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_items: int | None = None,
    out: str | Path | None = None,
    uri: str | None = None,
) -> GateResult:
    """Compare ``name@challenger`` with ``name@champion`` on the probe set and promote
    the challenger only if it is significantly better.

    Both versions answer the same probe items (taskloop's task pipeline); the answers
    are scored by taskloop's evaluation and compared with a paired bootstrap on the
    task's primary metric (translate BLEU, summarize ROUGE-L, qa F1, codegen pass@1).
    Promoted (``champion`` moves, the old champion goes onto the alias history so
    ``taskloop models rollback`` restores it) when :func:`decide` says so; otherwise the
    version stays ``challenger`` for inspection. The verdict is written to
    ``out/gate.json`` (with the evaluation report under ``out/evaluation``) and tagged
    on the challenger version as ``taskloop.gate``.

    Without a champion the challenger is promoted ("no champion yet": nothing to
    compare against), after measuring it on the probe. When challenger and champion
    are the same version nothing changes.

    Raises:
        RetrainError: no such model, no challenger, a bad alpha, or the primary metric
            could not be compared.
    """
    from taskloop.evaluate.runner import EvalOptions, evaluate
    from taskloop.models.registry import promote

    _check_alpha(alpha)
    tname = _check_task(task)
    where = Path(out) if out is not None else default_out(name, "gate")
    held = aliases(name, uri)
    if CHALLENGER not in held:
        raise RetrainError(
            f"model {name!r} has no {CHALLENGER!r} version to gate"
            + ("" if held else " (no such registered model)"),
            hint=f"run a job (`taskloop retrain run {name} ...`) or register one with "
            "`taskloop models register DIR --name NAME --alias challenger`",
        )
    new, old = held[CHALLENGER], held.get(CHAMPION)
    base: dict[str, Any] = {
        "name": name, "task": tname, "alpha": alpha, "min_delta": min_delta,
        "confidence": confidence, "champion_version": old, "challenger_version": new,
        "created": _now().isoformat(timespec="seconds"),
    }  # fmt: skip
    with (
        step("retrain.gate", model=name, champion=old, challenger=new) as info,
        probe_input(probe, tname) as folder,
    ):
        if old == new:
            same = f"the challenger v{new} is the champion already"
            result = GateResult(decision="kept", metric="-", reason=same, **base)
            info.update(decision=result.decision)
            # Only the file: the version's tag keeps the verdict that made it champion.
            return record_gate(result, where, uri, tag=False)
        if old is None:
            score = measure_probe(
                version_folder(name, new, uri), task=tname, probe=folder, max_items=max_items
            )
            promote(name, new, uri=uri)
            first = f"no champion yet: the first challenger v{new} becomes champion"
            result = GateResult(
                decision="promoted", metric=score.metric, challenger_value=score.value,
                n=score.n, reason=first, **base,
            )  # fmt: skip
            info.update(decision=result.decision)
            return record_gate(result, where, uri)
        a = _predictions(folder, tname, version_folder(name, old, uri), f"{name} v{old}", max_items)
        b = _predictions(folder, tname, version_folder(name, new, uri), f"{name} v{new}", max_items)
        opts = EvalOptions(
            resamples=resamples, confidence=confidence, alpha=alpha, seed=seed, quality=False,
            plots=False,
        )  # fmt: skip
        evaluation = evaluate(a, b=b, options=opts, out_dir=where / "evaluation")
        report = evaluation.report
        te = next((t for t in report.tasks if t.task == tname), None)
        metric = te.primary if te is not None else "-"
        comp = next((c for c in report.comparisons if c.task == tname and c.metric == metric), None)
        if comp is None:
            raise RetrainError(
                f"gate {name}: the {tname} primary metric ({metric}) of v{old} and v{new} "
                f"could not be compared on {probe}",
                hint=f"the probe set needs at least 2 {tname} rows with references",
            )
        decision, reason = decide(
            comp.delta, comp.p_value, alpha=alpha, min_delta=min_delta,
            higher_is_better=comp.higher_is_better, metric=metric,
        )  # fmt: skip
        result = GateResult(
            decision=decision, reason=reason, metric=metric, champion_value=comp.a,
            challenger_value=comp.b, delta=comp.delta, low=comp.low, high=comp.high,
            p_value=comp.p_value, n=comp.n, resamples=resamples,
            higher_is_better=comp.higher_is_better,
            report=str(where / "evaluation" / "report.json"), **base,
        )  # fmt: skip
        if result.promoted:
            promote(name, new, uri=uri)
        info.update(decision=decision, delta=round(comp.delta, 3), p=comp.p_value)
    logger.info("gate %s: %s (%s)", name, decision, reason)
    return record_gate(result, where, uri)


# ------------------------------------------------------------------------ the round


def starting_point(
    name: str, base: str | None = None, uri: str | None = None
) -> tuple[Path, int | None]:
    """(folder, version) a job starts from: the champion, else ``base``.

    Raises:
        RetrainError: no champion and no base model.
        ModelNotFoundError: ``base`` does not resolve to a model folder.
    """
    champion = aliases(name, uri).get(CHAMPION)
    if champion is not None:
        return version_folder(name, champion, uri), champion
    if base is None:
        raise RetrainError(
            f"model {name!r} has no champion to retrain from",
            hint="pass --base MODEL (a folder, hub id or models:/ name) for the first "
            f"round, or promote a version: `taskloop models promote {name} --version N`",
        )
    from taskloop.models.loader import ModelSpec, resolve

    return resolve(ModelSpec(base)), None


def run_retraining(
    name: str,
    *,
    task: str,
    probe: str | Path,
    sessions: sessionmaker[Session] | None,
    rules: TriggerRules | None = None,
    job: str = "sft",
    data: Sequence[str | Path] = (),
    force: bool = False,
    alpha: float = 0.05,
    min_delta: float = 0.0,
    resamples: int = 1000,
    seed: int = 0,
    max_items: int | None = None,
    options: Mapping[str, Any] | None = None,
    base: str | None = None,
    out: str | Path | None = None,
    state_file: str | Path | None = None,
    drift: StatsOptions | None = None,
    uri: str | None = None,
) -> RetrainResult:
    """One round of the loop: check the triggers; when one fired (or ``force``), run the
    job, register its model as ``challenger``, gate it against ``champion`` and record
    the round in the retraining state.

    The state (``state_file``, default ``$TASKLOOP_HOME/retrain/<name>.json``) gets the
    round's time (later rules count ratings and predictions after it), the probe
    metric of whatever is champion after the gate (the baseline of ``metric_decay``,
    also appended to the series of ``metric_series``) and the decision.

    Args:
        sessions: the feedback store (None: triggers on store data never fire, and the
            job trains on ``data`` only).
        options: the job's options (for sft: :class:`SftOptions` fields).
        base: the model to start from when ``name`` has no champion yet.
        out: the round's folder (job/ and gate/ under it).

    Raises:
        RetrainError, TrainError, RegistryError, EvalInputError: from the stages.
    """
    tname = _check_task(task)
    _check_alpha(alpha)
    if job not in JOBS:
        raise RetrainError(
            f"unknown retraining job {job!r}", hint=f"use one of {', '.join(sorted(JOBS))}"
        )
    rules = rules or TriggerRules()
    state_at = Path(state_file) if state_file is not None else state_path(name)
    state = load_state(state_at)
    if sessions is not None:
        stats = collect_stats(sessions, window=rules.window(), task=tname, state=state, drift=drift)
    else:
        from taskloop.monitor.triggers import LoopStats

        series = tuple(p.value for p in state.history)
        stats = LoopStats(
            probe_metric=series[-1] if series else None, baseline_metric=state.baseline,
            metric_series=series, metric=state.metric, since=state.last_run,
        )  # fmt: skip
    results = retraining_triggers(stats, rules)
    names = fired(results)
    outcome = RetrainResult(name, results, names, force, ran=False, state_file=state_at)
    if not names and not force:
        logger.info("retrain %s: no trigger fired; nothing to do", name)
        return outcome
    where = Path(out) if out is not None else default_out(name, "round")
    opts = dict(options or {})
    if job == "sft" and opts.get("new_only") and state.last_run is not None:
        opts["since"] = state.last_run
    folder, version = starting_point(name, base, uri)
    ctx = JobContext(
        name=name, task=tname, champion=folder, out=where / "job", sessions=sessions,
        data=tuple(Path(p) for p in data), champion_version=version, options=opts, uri=uri,
    )  # fmt: skip
    job_result = run_job(ctx, job)
    verdict = gate(
        name, task=tname, probe=probe, alpha=alpha, min_delta=min_delta, resamples=resamples,
        seed=seed, max_items=max_items, out=where / "gate", uri=uri,
    )  # fmt: skip
    outcome.ran, outcome.job, outcome.gate, outcome.out = True, job_result, verdict, where
    save_state(updated_state(state, name, verdict), state_at)
    (where / "retrain.json").write_text(
        json.dumps(outcome.to_dict(), indent=2, default=str), encoding="utf-8"
    )
    return outcome


def updated_state(state: RetrainState, name: str, verdict: GateResult) -> RetrainState:
    """The state after a round: its time, the decision, and the probe metric of the
    champion after the gate as the new baseline (and the newest point of the series)."""
    from taskloop.monitor.triggers import ProbePoint

    now = _now()
    version, value = verdict.champion_after()
    update: dict[str, Any] = {
        "name": name, "last_run": now, "last_decision": verdict.decision,
    }  # fmt: skip
    if value is not None:
        point = ProbePoint(
            time=now, value=value, metric=verdict.metric, version=version, source="retrain"
        )
        update.update(baseline=value, metric=verdict.metric, history=[*state.history, point])
    return state.model_copy(update=update)
