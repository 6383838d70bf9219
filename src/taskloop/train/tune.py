"""Hyper-parameter search over a training config: ``taskloop tune CONFIG.yaml --trials N``.

The training config gains two top-level keys that :class:`TrainConfig` does not know:

```yaml
search:                       # dotted config key → how to sample it
  optim.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
  batch.tokens: {type: categorical, choices: [1024, 2048]}
  model.init.layers: {type: int, low: 1, high: 4}
tune:                         # optional; CLI options and KEY=VALUE overrides win
  trials: 20
  pruner: median              # median | hyperband | none
  sampler: tpe                # tpe | random
```

Every trial trains the base config with its sampled values into ``<out>/trial-<n>``
(tracking off), reports each evaluation's score to Optuna and stops early when the
pruner says so. The study lives in SQLite (``<TASKLOOP_HOME or ./.taskloop>/optuna.db``,
next to the registry's store), so running the command again with the same study name
adds trials to it. At the end ``<out>/best.yaml`` (the best trial's full config),
``<out>/tune.json`` (every trial) and ``<out>/tune.png`` are written and the best trial's
model is registered as the challenger.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.config import read_yaml, taskloop_home
from taskloop.errors import TaskloopError
from taskloop.train.cli import ConfigArg, Overrides, split_args
from taskloop.train.config import TrainConfig, merge, parse_overrides, validate
from taskloop.train.errors import TrainConfigError, TrainError

if TYPE_CHECKING:
    import optuna

    from taskloop.train.loop import EvalLog

logger = logging.getLogger("taskloop.train")

STUDY_FILE = "optuna.db"
# Folders of a trial that hold model weights: a trial is never resumed, so its
# checkpoints and from-scratch initial model go as soon as it ends; ``best`` goes unless
# the trial is the study's best (with ``tune.keep_models: best``).
_SCRATCH_FOLDERS = ("checkpoints", "init", "pretrained")
_TRIAL_DIR = re.compile(r"trial-\d+")


# ------------------------------------------------------------------ the search space


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    """A float in [low, high], optionally on a log scale or on a grid of ``step``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.step is not None)
        return self


class IntParam(_Strict):
    """An integer in [low, high] (both included), optionally on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.step != 1)
        return self


Choice = str | int | float | bool | None


class CategoricalParam(_Strict):
    """One of ``choices`` (numbers, strings, booleans or null)."""

    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1)


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool, stepped: bool) -> None:
    if low > high:
        raise ValueError(f"low {low} is above high {high}")
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0 (got {low})")
    if log and stepped:
        raise ValueError("log and step cannot be combined")


class TuneSection(_Strict):
    """How the search runs (the ``tune:`` key of the config file)."""

    trials: int = Field(20, ge=1, description="trials to run now (added to the study)")
    timeout_s: float | None = Field(None, gt=0, description="start no trial after this time")
    # The loop's score is higher-is-better everywhere (-loss for eval.metric: loss).
    direction: Literal["maximize"] = "maximize"
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_startup_trials: int = Field(5, ge=0, description="trials before median pruning")
    pruner_warmup_steps: int = Field(0, ge=0, description="steps before a trial can be pruned")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int | None = 0
    study_name: str | None = Field(None, description="default: the config's name")
    storage: str | None = Field(None, description="default: sqlite:///<home>/optuna.db")
    keep_models: Literal["best", "all"] = Field(
        "best", description="best: delete the model folders of every trial but the best"
    )


class _TuneFile(_Strict):
    search: dict[str, ParamSpec] = Field(min_length=1)
    tune: TuneSection = Field(default_factory=TuneSection)


@dataclass(frozen=True)
class TunePlan:
    """A tune config split into its parts: the base training config and the search."""

    base: dict[str, Any]  # the training config as read (overrides applied), no search/tune
    config: TrainConfig  # ``base`` validated
    space: dict[str, FloatParam | IntParam | CategoricalParam]
    settings: TuneSection
    source: str | None


def default_storage() -> str:
    """The study database: ``sqlite:///<home>/optuna.db`` (absolute; the folder is created)."""
    home = taskloop_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home.as_posix()}/{STUDY_FILE}"


def redact(storage: str) -> str:
    """``storage`` with any password hidden (for logs, tune.json and the table)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return storage


def plan_tune(config: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TunePlan:
    """Read a tune config: the base training config, the search space, the settings.

    Every search key is tried with its bounds (and each categorical choice) on the base
    config before any trial runs, so a typo or an impossible range fails here.

    Raises:
        TrainConfigError: the file, the base config, ``search:`` or ``tune:`` is invalid.
    """
    if isinstance(config, Mapping):
        data, source = dict(config), None
    else:
        data, source = read_yaml(config, TrainConfigError), str(config)
    data = merge(data, parse_overrides(list(overrides)))
    where = f"config{' ' + source if source else ''}"
    if "search" not in data:
        raise TrainConfigError(
            f"{where}: no search: section (what to tune)",
            hint="add e.g. search: {optim.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}}",
        )
    extra = {"search": data.pop("search"), "tune": data.pop("tune", None) or {}}
    try:
        parsed = _TuneFile.model_validate(extra)
    except ValidationError as exc:
        raise TrainConfigError(
            f"{where}: {_where_error(exc)}",
            hint="a search entry is {type: float|int, low, high[, log, step]} "
            "or {type: categorical, choices: [...]}; see docs/training.md",
        ) from None
    cfg = validate(data, source)
    for key, spec in parsed.search.items():
        check_param(data, key, spec, where)
    return TunePlan(data, cfg, dict(parsed.search), parsed.tune, source)


def _where_error(exc: ValidationError) -> str:
    """Up to three of pydantic's problems, each at its place (``search.[optim.lr].high``)."""
    parts = []
    for err in exc.errors()[:3]:
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "search" and loc[2] in ("float", "int", "categorical"):
            del loc[2]  # the union's tag: the entry's own type key says it already
        # Search keys contain dots themselves; brackets keep the place readable.
        place = ".".join(f"[{p}]" if isinstance(p, str) and "." in p else str(p) for p in loc)
        parts.append(f"{place}: {err['msg']}")
    return "; ".join(parts)


def set_dotted(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optim.lr": 1e-3}`` → ``{"optim": {"lr": 1e-3}}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def apply(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The base config with ``values`` (dotted keys) set."""
    return merge(dict(base), set_dotted(values))


def config_keys(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the training config (sections and values), for suggestions."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        for arg in (info.annotation, *get_args(info.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                keys.extend(config_keys(arg, f"{dotted}."))
    return keys


def _candidates(spec: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    return [spec.low] if spec.low == spec.high else [spec.low, spec.high]


def is_config_key(key: str, model: type[BaseModel] = TrainConfig) -> bool:
    """Whether dotted ``key`` names a place in the config (a mapping's entry counts)."""
    name, _, rest = key.partition(".")
    info = model.model_fields.get(name)
    if info is None:
        return False
    if not rest:
        return True
    for arg in (info.annotation, *get_args(info.annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return is_config_key(rest, arg)
        if get_origin(arg) is dict and "." not in rest:  # e.g. curriculum.weights.length
            return True
    return False


def check_param(
    base: Mapping[str, Any], key: str, spec: FloatParam | IntParam | CategoricalParam, where: str
) -> None:
    """Fail unless ``key`` is a config key that the values of ``spec`` can take.

    Each bound of a numeric range (and each categorical choice) is set on the base config
    and the config validated. Both bounds must be valid; a categorical entry fails only
    when no choice is (a choice that clashes with other keys makes trials that fail,
    and is logged now).

    Raises:
        TrainConfigError: unknown key, or values the config refuses.
    """
    if not is_config_key(key):
        close = difflib.get_close_matches(key, config_keys(), n=1, cutoff=0.7)
        raise TrainConfigError(
            f"{where}: search key {key!r} is not a training config key",
            hint=f"did you mean {close[0]!r}?" if close else "see docs/training.md for every key",
        )
    problems: list[tuple[Any, str]] = []
    for value in _candidates(spec):
        try:
            TrainConfig.model_validate(apply(base, {key: value}))
        except ValidationError as exc:
            first = exc.errors()[0]
            problems.append((value, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"))
    if not problems:
        return
    if isinstance(spec, CategoricalParam) and len(problems) < len(spec.choices):
        for value, msg in problems:
            logger.warning(
                "search %s: choice %r is refused with the base config (%s); trials that "
                "pick it will fail", key, value, msg,
            )  # fmt: skip
        return
    value, msg = problems[0]
    raise TrainConfigError(
        f"{where}: search {key}: value {value!r} is not valid: {msg}",
        hint="narrow the range (low/high) or the choices to values the config accepts",
    )


def suggest(trial: optuna.Trial, key: str, spec: FloatParam | IntParam | CategoricalParam) -> Any:
    """The trial's value for ``key``, sampled as ``spec`` says."""
    if isinstance(spec, FloatParam):
        return trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, IntParam):
        return trial.suggest_int(key, spec.low, spec.high, log=spec.log, step=spec.step)
    return trial.suggest_categorical(key, spec.choices)


def trial_config(plan: TunePlan, values: Mapping[str, Any], out: Path) -> TrainConfig:
    """A trial's config: the base with ``values``, its own ``out``, no tracking or checkpoints.

    Raises:
        TrainConfigError: the values make the config invalid.
    """
    data = apply(plan.base, values)
    data = merge(
        data,
        {"out": str(out), "tracking": {"enabled": False}, "checkpoint": {"every_steps": None}},
    )
    return validate(data, f"{plan.source or 'config'} (trial values {dict(values)})")


def best_config(plan: TunePlan, values: Mapping[str, Any]) -> TrainConfig:
    """The base config with the best trial's values: what ``best.yaml`` holds."""
    return validate(apply(plan.base, values), plan.source)


# ------------------------------------------------------------------------- the study


@dataclass
class TrialRow:
    """One trial of the study, as tune.json and the table show it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None  # a pruned trial: its last reported score
    params: dict[str, Any]
    duration_s: float | None
    error: str | None = None
    pruned_at: int | None = None
    out_dir: str | None = None


@dataclass
class TuneResult:
    """What :func:`tune` found and wrote."""

    study_name: str
    storage: str  # password hidden
    out_dir: Path
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: Path
    summary: Path  # tune.json
    plot: Path | None
    trials: list[TrialRow]
    new_trials: int  # trials run by this call
    interrupted: bool = False
    registered_model: str | None = None
    registered_version: int | None = None
    run_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("out_dir", "best_config", "summary", "plot"):
            out[key] = None if out[key] is None else str(out[key])
        return out


def trial_row(trial: optuna.trial.FrozenTrial) -> TrialRow:
    attrs = trial.user_attrs
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRow(
        number=trial.number, state=trial.state.name, value=trial.value,
        params=dict(trial.params), duration_s=None if duration is None else round(duration, 3),
        error=attrs.get("error"), pruned_at=attrs.get("pruned_at"), out_dir=attrs.get("out_dir"),
    )  # fmt: skip


def make_sampler(settings: TuneSection, done: int) -> optuna.samplers.BaseSampler:
    """The sampler; its seed moves on by the trials already done, so a continued study does
    not draw the first session's random start-up points again."""
    import optuna

    seed = None if settings.seed is None else settings.seed + done
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(settings: TuneSection, cfg: TrainConfig) -> optuna.pruners.BasePruner:
    import optuna

    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        # Resources are training steps: the first report comes after eval.every_steps.
        return optuna.pruners.HyperbandPruner(
            min_resource=cfg.eval.every_steps or 1, max_resource=cfg.run.max_steps or "auto"
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings.pruner_startup_trials,
        n_warmup_steps=settings.pruner_warmup_steps,
    )


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING, and without its own "trial failed" records: taskloop logs one
    line per trial, and an expected error must not show as a traceback."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize_logger = logging.getLogger("optuna.study._optimize")

    def drop_failed(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trial ")

    optimize_logger.addFilter(drop_failed)
    try:
        yield
    finally:
        optimize_logger.removeFilter(drop_failed)


def open_study(plan: TunePlan, storage: str, name: str) -> optuna.Study:
    """Create the study, or load it when one of that name is in ``storage``.

    Raises:
        TrainConfigError: the storage cannot be opened.
    """
    import optuna

    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        rdb = optuna.storages.RDBStorage(storage)
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(rdb)}
        done = summaries[name].n_trials if name in summaries else 0
        return optuna.create_study(
            study_name=name, storage=rdb, load_if_exists=True, direction="maximize",
            sampler=make_sampler(plan.settings, done),
            pruner=make_pruner(plan.settings, plan.config),
        )  # fmt: skip
    except Exception as exc:
        raise TrainConfigError(
            f"cannot open the study storage {redact(storage)!r}: {type(exc).__name__}: {exc}",
            hint="pass --storage sqlite:///path/optuna.db (or a database URL that is up)",
        ) from None


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError,)


def make_objective(plan: TunePlan, out: Path) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: train with the trial's values, return the score."""
    import optuna

    from taskloop.train.loop import train

    oom = _oom_errors()

    def objective(trial: optuna.Trial) -> float:
        values = {key: suggest(trial, key, spec) for key, spec in plan.space.items()}
        trial_out = out / f"trial-{trial.number}"
        trial.set_user_attr("out_dir", str(trial_out))

        def report(log: EvalLog) -> None:
            trial.report(log.score, log.step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at", log.step)
                raise optuna.TrialPruned(f"pruned at step {log.step} (score {log.score:.4g})")

        try:
            cfg = trial_config(plan, values, trial_out)
            if trial_out.exists():  # a trial number is new: this is left from another study
                shutil.rmtree(trial_out)
            result = train(cfg, on_eval=report)
        except TaskloopError as exc:
            trial.set_user_attr("error", exc.message)
            trial.set_user_attr("error_code", exc.code)
            raise
        except oom as exc:
            trial.set_user_attr("error", f"out of memory: {str(exc).splitlines()[0]}")
            trial.set_user_attr("error_code", "train.out_of_memory")
            _free_gpu()
            raise TrainError(f"trial {trial.number} ran out of memory") from exc
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted")
            raise
        if result.best_score is None:
            trial.set_user_attr("error", "the run made no evaluation")
            raise TrainError(f"trial {trial.number}: the run made no evaluation to score")
        trial.set_user_attr("model_dir", str(result.model_dir))
        trial.set_user_attr("best_step", result.best_step)
        trial.set_user_attr("steps", result.steps)
        return float(result.best_score)

    return objective


def _free_gpu() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _value(trial: optuna.trial.FrozenTrial) -> float:
    if trial.value is None:
        raise TrainError(f"trial {trial.number} has no value")
    return float(trial.value)


def _best_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def _log_trial(trial: optuna.trial.FrozenTrial, best: optuna.trial.FrozenTrial | None) -> None:
    row = trial_row(trial)
    took = f" in {row.duration_s:.1f} s" if row.duration_s is not None else ""
    params = " ".join(f"{k}={_short(v)}" for k, v in row.params.items())
    if row.state == "COMPLETE":
        assert row.value is not None
        lead = f"best {best.value:.4g} at trial {best.number}" if best is not None else ""
        logger.info(
            "trial %d: score %.4g (%s)%s; %s", row.number, row.value, lead, took, params,
            extra={"trial": row.number, "state": row.state, "value": row.value},
        )  # fmt: skip
    elif row.state == "PRUNED":
        logger.info(
            "trial %d: pruned at step %s%s; %s", row.number, row.pruned_at, took, params,
            extra={"trial": row.number, "state": row.state},
        )  # fmt: skip
    else:
        logger.info(
            "trial %d: %s: %s%s; %s", row.number, row.state.lower(), row.error, took, params,
            extra={"trial": row.number, "state": row.state},
        )  # fmt: skip


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _clean_trials(study: optuna.Study, keep_models: str) -> None:
    """Remove what no one will use: every trial's checkpoints and initial model, and (keep
    best) the model of every trial but the study's best."""
    best = _best_or_none(study)
    for trial in study.get_trials(deepcopy=False):
        where = trial.user_attrs.get("out_dir")
        if not where or trial.state.name in ("RUNNING", "WAITING"):
            continue
        folder = Path(where)
        if not _TRIAL_DIR.fullmatch(folder.name) or not folder.is_dir():
            continue
        doomed = list(_SCRATCH_FOLDERS)
        if keep_models == "best" and (best is None or trial.number != best.number):
            doomed.append("best")
        for name in doomed:
            if (folder / name).is_dir():
                shutil.rmtree(folder / name, ignore_errors=True)


# ---------------------------------------------------------------------------- outputs


def write_summary(
    path: Path, study_name: str, storage: str, rows: Sequence[TrialRow], best: TrialRow | None
) -> Path:
    body = {
        "study": study_name,
        "storage": storage,
        "best": asdict(best) if best is not None else None,
        "trials": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(body, indent=2, default=str), "utf-8")
    return path


def plot_trials(rows: Sequence[TrialRow], path: Path) -> Path | None:
    """``tune.png``: each trial's score in order, pruned trials marked, the running best."""
    done = [r for r in rows if r.state == "COMPLETE" and r.value is not None]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.5))
    values = [float(r.value or 0.0) for r in done]
    ax.scatter([r.number for r in done], values, label="complete", zorder=3)
    # A pruned trial's value is its last reported score, at the step it was stopped.
    pruned = [r for r in rows if r.state == "PRUNED" and r.value is not None]
    if pruned:
        ax.scatter([r.number for r in pruned], [float(r.value or 0.0) for r in pruned],
                   marker="x", color="grey", label="pruned (last score)")  # fmt: skip
    failed = [r.number for r in rows if r.state == "FAIL"]
    if failed:
        floor = min([*values, *(float(r.value or 0.0) for r in pruned)])
        ax.scatter(failed, [floor] * len(failed), marker="v", color="tab:red", label="failed")
    best: list[float] = []
    for v in values:
        best.append(v if not best else max(best[-1], v))
    last = max(r.number for r in rows)
    ax.step([*(r.number for r in done), last], [*best, best[-1]], where="post",
            color="tab:green", label="best so far")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel="score (higher is better)", title="hyper-parameter search")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_best_yaml(cfg: TrainConfig, path: Path) -> Path:
    import yaml

    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    path.write_text(text, "utf-8")
    return path


def register_best(
    study: optuna.Study,
    best: optuna.trial.FrozenTrial,
    cfg: TrainConfig,
    artifacts: Sequence[Path],
) -> tuple[str | None, int | None, str | None, str | None]:
    """Log the best trial's model and register it (once per best trial and model name).

    Returns:
        (model name, version, run id, a warning when nothing could be registered).
    """
    name = cfg.tracking.register_as or cfg.name
    model_dir = Path(best.user_attrs.get("model_dir", ""))
    if not (model_dir / "config.json").is_file():
        return (
            None,
            None,
            None,
            (f"trial {best.number}'s model is gone ({model_dir}); nothing registered"),
        )
    done = study.user_attrs.get("registered") or {}
    uri = cfg.tracking.uri
    if done.get("trial") == best.number and done.get("model") == name and done.get("uri") == uri:
        return name, done.get("version"), done.get("run_id"), None
    from taskloop.models.registry import log_run

    record = log_run(
        experiment=cfg.tracking.experiment, run_name=f"{cfg.name}-best",
        config=cfg.model_dump(mode="json"), metrics=[(best.number, {"score": _value(best)})],
        params={"tune.study": study.study_name, "tune.trial": best.number},
        artifacts=list(artifacts), model_dir=model_dir, register_as=name,
        alias=cfg.tracking.alias, uri=uri,
        tags={"taskloop.tune.study": study.study_name, "taskloop.tune.trial": str(best.number)},
    )  # fmt: skip
    study.set_user_attr(
        "registered",
        {"trial": best.number, "model": name, "uri": uri, "version": record.version,
         "run_id": record.run_id},
    )  # fmt: skip
    return name, record.version, record.run_id, None


# ---------------------------------------------------------------------------- the API


def tune(
    config_path_or_dict: str | Path | Mapping[str, Any],
    *,
    trials: int | None = None,
    overrides: Sequence[str] = (),
    storage: str | None = None,
    timeout_s: float | None = None,
    progress: Callable[[TrialRow], None] | None = None,
) -> TuneResult:
    """Search hyper-parameters of a training config with Optuna; see the module docstring.

    Args:
        config_path_or_dict: a YAML file (or its dict) with ``search:`` and optional ``tune:``.
        trials: trials to run now (default: ``tune.trials``); a continued study keeps its
            earlier trials.
        overrides: ``KEY=VALUE`` on the config, ``tune.*`` included.
        storage: Optuna storage URL (default: ``tune.storage``, else :func:`default_storage`).
        timeout_s: start no new trial after this many seconds (default: ``tune.timeout_s``).
        progress: called with each finished trial.

    Returns:
        The best trial, the written files and every trial of the study. After Ctrl-C the
        files are written for what was found and ``interrupted`` is set.

    Raises:
        TrainConfigError: invalid config, search space or storage.
        TrainError: no trial of the study completed.
        RegistryError: registering the best model failed.
    """
    plan = plan_tune(config_path_or_dict, overrides)
    settings = plan.settings
    n_trials = trials if trials is not None else settings.trials
    if n_trials < 1:
        raise TrainConfigError(f"--trials must be at least 1 (got {n_trials})")
    url = storage or settings.storage or default_storage()
    name = settings.study_name or plan.config.name
    out = Path(plan.config.out)
    out.mkdir(parents=True, exist_ok=True)
    interrupted = False
    began = time.perf_counter()
    with _quiet_optuna():
        study = open_study(plan, url, name)
        before = len(study.get_trials(deepcopy=False))
        logger.info(
            "tune: study %r in %s (%d trials so far); %d more", name, redact(url), before, n_trials
        )

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            _clean_trials(study, settings.keep_models)
            _log_trial(trial, _best_or_none(study))
            if progress is not None:
                progress(trial_row(trial))

        try:
            study.optimize(
                make_objective(plan, out), n_trials=n_trials,
                timeout=timeout_s if timeout_s is not None else settings.timeout_s,
                catch=(TaskloopError,), callbacks=[after_trial], gc_after_trial=True,
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("tune: interrupted; writing what the study found so far")
    frozen = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in frozen]
    best = _best_or_none(study)
    summary = write_summary(
        out / "tune.json", name, redact(url), rows,
        trial_row(best) if best is not None else None,
    )  # fmt: skip
    plot = plot_trials(rows, out / "tune.png")
    new = len(frozen) - before
    if best is None:
        failed = [r for r in rows if r.state == "FAIL"]
        pruned = sum(r.state == "PRUNED" for r in rows)
        if interrupted:
            raise KeyboardInterrupt
        raise TrainError(
            f"study {name!r}: no trial completed ({len(failed)} failed, {pruned} pruned)"
            + (f"; first error: {failed[0].error}" if failed and failed[0].error else ""),
            hint=f"see {summary} for every trial; fix the config or widen the search",
        )
    cfg = best_config(plan, best.params)
    best_yaml = write_best_yaml(cfg, out / "best.yaml")
    result = TuneResult(
        study_name=name, storage=redact(url), out_dir=out, best_trial=best.number,
        best_value=_value(best), best_params=dict(best.params), best_config=best_yaml,
        summary=summary, plot=plot, trials=rows, new_trials=new, interrupted=interrupted,
    )  # fmt: skip
    if plan.config.tracking.enabled:
        artifacts = [p for p in (best_yaml, summary, plot) if p is not None]
        model, version, run_id, warning = register_best(study, best, cfg, artifacts)
        result.registered_model, result.registered_version, result.run_id = model, version, run_id
        if warning:
            logger.warning("tune: %s", warning)
            result.warnings.append(warning)
    logger.info(
        "tune: %d trials in %.0f s; best trial %d score %.4g; config %s",
        new, time.perf_counter() - began, best.number, best.value, best_yaml,
    )  # fmt: skip
    return result


# ---------------------------------------------------------------------------- the CLI


@contextmanager
def trial_bar(enabled: bool, total: int | None) -> Iterator[Callable[[TrialRow], None] | None]:
    """A progress bar over trials (best score so far); None when stderr is not a terminal
    (the log has a line per trial there)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("tune"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} trials"),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bars:
        task = bars.add_task("tune", total=total, best="-")
        best: list[float] = []

        def update(row: TrialRow) -> None:
            if row.state == "COMPLETE" and row.value is not None:
                best[:] = [max([*best, row.value])]
            bars.update(task, advance=1, best=f"{best[0]:.4g}" if best else "-")

        yield update


def print_tune(result: TuneResult) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console() if sys.stdout.isatty() else Console(width=140)
    keys = sorted({k for r in result.trials for k in r.params})
    table = Table(title=f"study {result.study_name} ({len(result.trials)} trials)")
    for col in ("trial", "state", "score", *keys, "s", "note"):
        table.add_column(col, justify="right" if col in ("trial", "score", "s") else "left")
    for r in result.trials:
        note = r.error or (f"at step {r.pruned_at}" if r.pruned_at is not None else "")
        if r.number == result.best_trial:
            note = "best"
        table.add_row(
            str(r.number), r.state.lower(), "" if r.value is None else f"{r.value:.4g}",
            *(_short(r.params[k]) if k in r.params else "" for k in keys),
            "" if r.duration_s is None else f"{r.duration_s:.0f}", note,
            style="bold" if r.number == result.best_trial else None,
        )  # fmt: skip
    con.print(table)
    con.print(
        f"best trial {result.best_trial}: score {result.best_value:.4g}; "
        f"config {result.best_config}",
        highlight=False,
    )
    if result.registered_version is not None:
        con.print(
            f"registered as {result.registered_model} version {result.registered_version} "
            f"(run {result.run_id})",
            highlight=False,
        )
    for w in result.warnings:
        con.print(f"warning: {w}", style="yellow", markup=False, highlight=False)
    con.print(f"trials: {result.summary}  plot: {result.plot}", highlight=False)
    if result.interrupted:
        con.print("interrupted: the study keeps every finished trial; rerun to continue")


def tune_command(
    config: ConfigArg = None,
    overrides: Overrides = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", min=1, help="Trials to run now (default: tune.trials)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", help="Start no new trial after this."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default: tune.storage, else "
            "sqlite:///$TASKLOOP_HOME/optuna.db, ./.taskloop).",
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the config's name).")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="median | hyperband | none (default: tune.pruner).")
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help="tpe | random (default: tune.sampler).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (default: tune.seed).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search hyper-parameters with Optuna: the config's search: keys, one training per trial.

    Bad trials are pruned at their evaluations; the study is kept in SQLite, so running
    again with the same study name adds trials. Writes OUT/best.yaml (train it with
    `taskloop train OUT/best.yaml`), OUT/tune.json and OUT/tune.png, and registers the
    best trial's model as the challenger.
    """
    path, items = split_args(config, overrides)
    for key, value in (("study_name", study), ("pruner", pruner), ("sampler", sampler),
                       ("seed", seed)):  # fmt: skip
        if value is not None:
            items.append(f"tune.{key}={json.dumps(value)}")
    if path is None:
        raise TrainConfigError(
            "tune needs CONFIG.yaml (a training config with a search: section)",
            hint="e.g. taskloop tune tune.yaml --trials 20",
        )
    # Without --trials the count is the file's tune.trials: the bar fills without a total.
    with trial_bar(progress and not as_json, trials) as on_trial:
        result = tune(
            path, trials=trials, overrides=items, storage=storage, timeout_s=timeout,
            progress=on_trial,
        )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_tune(result)
    if result.interrupted:
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command("tune", epilog=EPILOG)(handle_errors(tune_command))
