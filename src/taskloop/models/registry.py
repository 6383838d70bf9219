"""The model registry: MLflow runs, registered versions, aliases, promotion and rollback.

The store is embedded by default (``sqlite:///<home>/mlflow.db`` with artifacts in
``<home>/mlartifacts``, home = ``$TASKLOOP_HOME`` or ``./.taskloop``); a team points
``TASKLOOP_TRACKING_URI`` (or ``MLFLOW_TRACKING_URI``) at a tracking server instead.
Versions are named by aliases (``champion`` serves, ``challenger`` waits to be compared),
never by stages. Every move of an alias (by :func:`promote`, or :func:`log_run` with an
alias) is remembered in a registered model tag, so :func:`rollback` can put the previous
holder back.

A model is named ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME``
(latest version) wherever a model folder or hub id is accepted: the loader calls
:func:`resolve_uri`, which downloads the version's files once into a cache folder per
name and version. The loader resolves a ``models:/`` name on every load, before its
cache lookup (which is keyed by the resolved version's folder), so a moved alias is seen
by the next load, in a running process too; the new version's folder differs, so its
``content_version`` and every output cache key differ.

MLflow is imported inside the functions: it takes about a second to import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from taskloop.log import step
from taskloop.train.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger("taskloop.models")

# Written on every model version: the layout of the files under ``model/`` (a folder
# written by save_pretrained, with config.json at its top). Bump when that changes.
FORMAT_VERSION = "1"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "taskloop.alias_history."
# Older holders beyond this are forgotten; a tag value must stay under MLflow's limit.
_HISTORY_LIMIT = 100
# MLflow's limits (mlflow.utils.validation): checked there, mirrored here to truncate.
_MAX_PARAM_VALUE = 6000
_MAX_KEY = 250
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_PARAM_KEY_BAD = re.compile(r"[^\w\-. /]")


@dataclass(frozen=True)
class RunRecord:
    """What :func:`log_run` wrote.

    ``uri`` names the model for :func:`resolve_uri` and the loader
    (``models:/NAME/VERSION`` when registered, else ``runs:/RUN_ID/model``; ``runs:/RUN_ID``
    when the run logged no model).
    """

    run_id: str
    experiment: str
    model_name: str | None
    version: int | None
    uri: str
    tracking_uri: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """One registered model in :func:`list_models`."""

    name: str
    latest_version: int | None
    aliases: dict[str, int]
    description: str


@dataclass(frozen=True)
class VersionInfo:
    """One version of a registered model, with its run's last metric values."""

    version: int
    run_id: str | None
    created: datetime
    source: str
    aliases: list[str]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class ModelDetail:
    """A registered model with every version (newest first) and its alias history."""

    name: str
    description: str
    aliases: dict[str, int]
    versions: list[VersionInfo]
    history: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class PromoteResult:
    """An alias move: ``alias`` of ``name`` now points at ``version`` (was ``previous``)."""

    name: str
    alias: str
    version: int
    previous: int | None


# -- the store ----------------------------------------------------------------------------


def _home(root: Path | None = None) -> Path:
    from taskloop.config import taskloop_home

    return Path(root).expanduser() if root else taskloop_home()


def tracking_uri(uri: str | None = None, *, root: Path | None = None) -> str:
    """The tracking and registry URI to use.

    Order: ``uri``, then ``$TASKLOOP_TRACKING_URI``, then ``$MLFLOW_TRACKING_URI``, then the
    embedded ``sqlite:///<root>/mlflow.db`` (root = ``root``, ``$TASKLOOP_HOME`` or
    ``./.taskloop``; created).
    """
    chosen = uri or os.environ.get("TASKLOOP_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    if chosen:
        return chosen
    home = _home(root).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home.as_posix()}/mlflow.db"


def _sqlite_dir(uri: str) -> Path | None:
    """The folder of a ``sqlite:///`` store's file, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    # sqlite:///rel/path.db is relative, sqlite:////abs/path.db absolute (SQLAlchemy's rule).
    path = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    return Path(path).parent if path not in ("", ":memory:") else None


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<store dir>/mlartifacts`` for an embedded
    sqlite store; None (the server's choice) otherwise."""
    folder = _sqlite_dir(uri)
    return (folder / "mlartifacts").resolve().as_uri() if folder else None


def _quiet_mlflow() -> None:
    """Import MLflow with its INFO records (table creation, migrations) and progress bars off."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import mlflow  # noqa: F401 - its import configures the "mlflow" logger; override after

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


_clients: dict[str, MlflowClient] = {}
_clients_lock = threading.Lock()


def client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` for ``tracking_uri(uri)`` (tracking and registry), one per URI."""
    resolved = tracking_uri(uri)
    with _clients_lock:
        if resolved in _clients:
            return _clients[resolved]
    _quiet_mlflow()
    from mlflow import MlflowClient

    folder = _sqlite_dir(resolved)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with _mlflow_errors(f"cannot open the MLflow store {resolved!r}"), warnings.catch_warnings():
        # MLflow's SQLAlchemy mappings use options SQLAlchemy deprecates; not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        made = MlflowClient(tracking_uri=resolved, registry_uri=resolved)
        # Opening is lazy: touch the store now so that a bad URI fails here, clearly.
        made.search_experiments(max_results=1)
    with _clients_lock:
        return _clients.setdefault(resolved, made)


@contextmanager
def _mlflow_errors(what: str, hint: str | None = None) -> Iterator[None]:
    """Turn MLflow's and the network's errors into RegistryError saying ``what`` failed."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        detail = getattr(exc, "message", None) or str(exc)
        raise RegistryError(
            f"{what}: {type(exc).__name__}: {str(detail).splitlines()[0] if detail else ''}",
            hint=hint or "check --tracking-uri / TASKLOOP_TRACKING_URI and that the store is up",
        ) from exc


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


# -- logging runs -------------------------------------------------------------------------


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings to dotted keys with string values, as MLflow params.

    Lists and other values become JSON (or ``str``); values longer than MLflow's limit end
    with ``...`` and keys are cleaned of characters MLflow refuses.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
            continue
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, default=str, ensure_ascii=False)
            except (TypeError, ValueError):
                text = str(value)
        if len(text) > _MAX_PARAM_VALUE:
            text = text[: _MAX_PARAM_VALUE - 3] + "..."
        out[_PARAM_KEY_BAD.sub("_", name)[:_MAX_KEY]] = text
    return out


def _experiment_id(mc: MlflowClient, name: str, uri: str) -> str:
    found = mc.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return mc.create_experiment(name, artifact_location=artifact_location(uri))
    except Exception:
        # Another process created it between the two calls.
        again = mc.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _ensure_registered(mc: MlflowClient, name: str) -> None:
    try:
        mc.get_registered_model(name)
        return
    except Exception as exc:
        if not _not_found(exc):
            raise
    try:
        mc.create_registered_model(name)
    except Exception as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise


def _check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise RegistryError(
            f"model folder {str(model_dir)!r} has no config.json",
            hint="pass a folder written by save_pretrained (config.json, weights, tokenizer)",
        )


def log_run(
    *,
    experiment: str,
    run_name: str,
    config: Mapping[str, Any],
    metrics: Sequence[tuple[int, Mapping[str, float]]] = (),
    params: Mapping[str, Any] | None = None,
    artifacts: Sequence[Path] = (),
    model_dir: Path | None = None,
    register_as: str | None = None,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
) -> RunRecord:
    """Log one run (config, metric histories, artifacts, model) and optionally register it.

    Args:
        experiment: experiment name (created with the store's artifact folder if missing).
        run_name: shown in the MLflow UI.
        config: the resolved config; flattened into params and saved whole as config.json.
        metrics: ``(step, {name: value})`` in step order: each name's history.
        params: extra params; they win over config keys of the same name.
        artifacts: files or folders (plots, reports) copied into the run.
        model_dir: a save_pretrained folder, logged under ``model/``.
        register_as: register ``runs:/<run>/model`` as a new version of this model.
        alias: point this alias (typically ``challenger``) at the new version; its
            previous holder goes onto the alias history, as with :func:`promote`.
        tags: run tags, also put on the model version (e.g. ``taskloop.tasks``).
        uri: tracking URI (see :func:`tracking_uri`).

    Raises:
        RegistryError: the model folder lacks config.json, ``register_as`` has no model,
            or the store refuses a write.
    """
    if register_as and model_dir is None:
        raise RegistryError(
            f"cannot register {register_as!r}: the run logged no model folder",
            hint="pass model_dir (a folder written by save_pretrained)",
        )
    if alias and not register_as:
        raise RegistryError(f"alias {alias!r} needs register_as (a registered model name)")
    if model_dir is not None:
        _check_model_dir(model_dir)
    for path in artifacts:
        if not path.exists():
            raise RegistryError(f"artifact {str(path)!r} does not exist")
    resolved = tracking_uri(uri)
    mc = client(resolved)
    from mlflow.entities import Metric, Param

    run_tags = {k: str(v) for k, v in (tags or {}).items()}
    with (
        step("registry_log_run", experiment=experiment, run=run_name) as info,
        _mlflow_errors(f"logging run {run_name!r} to experiment {experiment!r}"),
    ):
        exp_id = _experiment_id(mc, experiment, resolved)
        run_id = mc.create_run(exp_id, run_name=run_name, tags=run_tags).info.run_id
        try:
            all_params = flatten(config)
            all_params.update(flatten(params or {}))
            items = [Param(k, v) for k, v in all_params.items()]
            for i in range(0, len(items), _PARAMS_PER_BATCH):
                mc.log_batch(run_id, params=items[i : i + _PARAMS_PER_BATCH])
            now = int(time.time() * 1000)
            points = [
                Metric(name, float(value), now, int(at))
                for at, values in metrics
                for name, value in values.items()
            ]
            for i in range(0, len(points), _METRICS_PER_BATCH):
                mc.log_batch(run_id, metrics=points[i : i + _METRICS_PER_BATCH])
            with tempfile.TemporaryDirectory(prefix="taskloop-run-") as tmp:
                config_file = Path(tmp) / "config.json"
                config_file.write_text(
                    json.dumps(dict(config), indent=2, default=str, ensure_ascii=False),
                    encoding="utf-8",
                )
                mc.log_artifact(run_id, str(config_file))
            for path in artifacts:
                if path.is_dir():
                    mc.log_artifacts(run_id, str(path), artifact_path=path.name)
                else:
                    mc.log_artifact(run_id, str(path))
            if model_dir is not None:
                mc.log_artifacts(run_id, str(model_dir), artifact_path="model")
        except BaseException:
            mc.set_terminated(run_id, status="FAILED")
            raise
        mc.set_terminated(run_id)
        info.update(run_id=run_id, params=len(items), metric_points=len(points))
        version: int | None = None
        if register_as:
            _ensure_registered(mc, register_as)
            mv = mc.create_model_version(
                register_as,
                source=f"runs:/{run_id}/model",
                run_id=run_id,
                tags={"taskloop.format_version": FORMAT_VERSION, **run_tags},
            )
            version = int(mv.version)
            previous = _move_alias(mc, register_as, alias, version) if alias else None
            info.update(model=register_as, version=version, alias=alias, previous=previous)
    if register_as:
        named = f"models:/{register_as}/{version}"
    else:
        named = f"runs:/{run_id}/model" if model_dir is not None else f"runs:/{run_id}"
    return RunRecord(run_id, experiment, register_as, version, named, resolved)


# -- reading the registry -----------------------------------------------------------------


def _aliases(model: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (getattr(model, "aliases", None) or {}).items()}


def _registered(mc: MlflowClient, name: str) -> Any:
    try:
        return mc.get_registered_model(name)
    except Exception as exc:
        if _not_found(exc):
            raise RegistryError(
                f"no registered model named {name!r}",
                hint="list the registered models with `taskloop models list`",
            ) from None
        raise


def _latest(model: Any) -> int | None:
    versions = [int(v.version) for v in (model.latest_versions or [])]
    return max(versions) if versions else None


def list_models(uri: str | None = None) -> list[ModelInfo]:
    """Every registered model with its latest version and aliases, sorted by name."""
    mc = client(uri)
    out: list[ModelInfo] = []
    with _mlflow_errors("listing registered models"):
        token: str | None = None
        while True:
            page = mc.search_registered_models(max_results=100, page_token=token)
            for m in page:
                out.append(ModelInfo(m.name, _latest(m), _aliases(m), m.description or ""))
            token = page.token
            if not token:
                break
    return sorted(out, key=lambda m: m.name)


def _history(model: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, value in (model.tags or {}).items():
        if key.startswith(HISTORY_TAG):
            try:
                out[key[len(HISTORY_TAG) :]] = [int(v) for v in json.loads(value)]
            except (ValueError, TypeError):
                logger.warning("registry: unreadable alias history tag %s=%r", key, value)
    return out


def _versions(mc: MlflowClient, name: str) -> list[ModelVersion]:
    quote = '"' if "'" in name else "'"
    found: list[ModelVersion] = []
    token: str | None = None
    while True:
        page = mc.search_model_versions(
            f"name={quote}{name}{quote}", max_results=1000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def show(name: str, uri: str | None = None) -> ModelDetail:
    """A registered model: its versions (newest first) with run, time, metrics and aliases.

    Raises:
        RegistryError: no model of that name.
    """
    mc = client(uri)
    with _mlflow_errors(f"reading registered model {name!r}"):
        model = _registered(mc, name)
        aliases = _aliases(model)
        by_version: dict[int, list[str]] = {}
        for alias, number in aliases.items():
            by_version.setdefault(number, []).append(alias)
        versions = []
        for mv in _versions(mc, name):
            metrics: dict[str, float] = {}
            if mv.run_id:
                try:
                    metrics = dict(mc.get_run(mv.run_id).data.metrics)
                except Exception as exc:  # the run was deleted: the version stays usable
                    logger.debug("registry: run %s of %s unreadable: %s", mv.run_id, name, exc)
            number = int(mv.version)
            versions.append(
                VersionInfo(
                    version=number,
                    run_id=mv.run_id,
                    created=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC),
                    source=mv.source or "",
                    aliases=sorted(by_version.get(number, [])),
                    metrics=metrics,
                    tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
                )
            )
    versions.sort(key=lambda v: v.version, reverse=True)
    return ModelDetail(name, model.description or "", aliases, versions, _history(model))


def _version(mc: MlflowClient, name: str, version: int) -> ModelVersion:
    try:
        return mc.get_model_version(name, str(version))
    except Exception as exc:
        if _not_found(exc):
            raise RegistryError(
                f"model {name!r} has no version {version}",
                hint=f"list its versions with `taskloop models show {name}`",
            ) from None
        raise


def _by_alias(mc: MlflowClient, name: str, alias: str) -> ModelVersion:
    try:
        return mc.get_model_version_by_alias(name, alias)
    except Exception as exc:
        if _not_found(exc):
            raise RegistryError(
                f"model {name!r} has no alias {alias!r}",
                hint=f"list its versions and aliases with `taskloop models show {name}`",
            ) from None
        raise


# -- moving aliases -----------------------------------------------------------------------


def _move_alias(mc: MlflowClient, name: str, alias: str, target: int) -> int | None:
    """Point ``alias`` of ``name`` at ``target``, pushing the previous holder onto the alias
    history (so :func:`rollback` can undo it); returns that previous holder.

    Every alias move (:func:`promote`, :func:`log_run`, ``taskloop models register``) goes
    through here. Moving an alias to the version it already points at changes nothing.
    """
    model = _registered(mc, name)
    previous = _aliases(model).get(alias)
    if previous == target:
        return previous
    if previous is not None:
        history = [*_history(model).get(alias, []), previous][-_HISTORY_LIMIT:]
        mc.set_registered_model_tag(name, HISTORY_TAG + alias, json.dumps(history))
    mc.set_registered_model_alias(name, alias, str(target))
    logger.info(
        "registry: %s@%s -> version %s (was %s)", name, alias, target, previous,
        extra={"model": name, "alias": alias, "version": target, "previous": previous},
    )  # fmt: skip
    return previous


def promote(
    name: str,
    version: int | None = None,
    *,
    alias: str = CHAMPION,
    from_alias: str | None = CHALLENGER,
    uri: str | None = None,
) -> PromoteResult:
    """Point ``alias`` at ``version`` (default: the version ``from_alias`` points to).

    The previous holder of ``alias`` is pushed onto the model's alias history, so
    :func:`rollback` can restore it. Promoting the version that already holds the alias
    changes nothing.

    Raises:
        RegistryError: the model, version or ``from_alias`` does not exist, or neither a
            version nor ``from_alias`` was given.
    """
    mc = client(uri)
    with _mlflow_errors(f"promoting {name!r} to {alias!r}"):
        _registered(mc, name)  # an unknown model is named before its alias or version
        if version is None:
            if not from_alias:
                raise RegistryError(
                    f"promote {name!r}: give a version or an alias to promote from",
                    hint=f"e.g. `taskloop models promote {name} --version 3`",
                )
            target = int(_by_alias(mc, name, from_alias).version)
        else:
            target = int(_version(mc, name, version).version)
        previous = _move_alias(mc, name, alias, target)
    return PromoteResult(name, alias, target, previous)


def rollback(name: str, *, alias: str = CHAMPION, uri: str | None = None) -> PromoteResult:
    """Point ``alias`` back at the version that held it before its last move.

    Versions deleted since are skipped.

    Raises:
        RegistryError: the model does not exist or ``alias`` has no earlier version.
    """
    mc = client(uri)
    with _mlflow_errors(f"rolling back {name!r}@{alias}"):
        model = _registered(mc, name)
        history = _history(model).get(alias, [])
        current = _aliases(model).get(alias)
        while history:
            candidate = history.pop()
            try:
                _version(mc, name, candidate)
            except RegistryError:
                logger.warning("registry: %s version %s was deleted; skipped", name, candidate)
                continue
            mc.set_registered_model_tag(name, HISTORY_TAG + alias, json.dumps(history))
            mc.set_registered_model_alias(name, alias, str(candidate))
            logger.info(
                "registry: rolled back %s@%s -> version %s (was %s)", name, alias, candidate,
                current, extra={"model": name, "alias": alias, "version": candidate},
            )  # fmt: skip
            return PromoteResult(name, alias, candidate, current)
    raise RegistryError(
        f"model {name!r}: alias {alias!r} has no earlier version to roll back to"
        + (f" (it points at version {current})" if current is not None else ""),
        hint=f"promote a version instead: `taskloop models promote {name} --version N`",
    )


# -- resolving models:/ names -------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` name: exactly one of alias and version, or neither (latest)."""

    name: str
    alias: str | None = None
    version: int | None = None


def parse_models_uri(text: str) -> ModelRef:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME[/latest]``.

    Raises:
        RegistryError: not a models:/ name, or a stage name instead of an alias.
    """
    if not text.startswith("models:/"):
        raise RegistryError(f"{text!r} is not a models:/ name")
    rest = text[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        if name and alias:
            return ModelRef(name, alias=alias)
    elif "/" in rest:
        name, tail = rest.rsplit("/", 1)
        if tail.isdigit():
            return ModelRef(name, version=int(tail))
        if tail == "latest":
            return ModelRef(name)
        raise RegistryError(
            f"{text!r}: {tail!r} is not a version number; taskloop names versions by "
            "alias, not stage",
            hint=f"use models:/{name}@champion, models:/{name}/3 or models:/{name}",
        )
    elif rest:
        return ModelRef(rest)
    raise RegistryError(
        f"{text!r} is not a model name",
        hint="use models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (latest)",
    )


def _safe(part: str) -> str:
    clean = re.sub(r"[^\w.\-]", "_", part)
    if clean != part or clean in (".", ".."):
        clean += "-" + hashlib.sha256(part.encode()).hexdigest()[:8]
    return clean


def cache_root(uri: str, cache_dir: Path | None = None) -> Path:
    """Where downloaded versions live: ``cache_dir``, else next to an embedded store,
    else ``<home>/model-cache/<hash of the server URI>``."""
    if cache_dir is not None:
        return cache_dir
    folder = _sqlite_dir(uri)
    if folder is not None:
        return folder / "model-cache"
    return _home() / "model-cache" / hashlib.sha256(uri.encode()).hexdigest()[:12]


def _find_config(folder: Path) -> Path | None:
    if (folder / "config.json").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if len(subs) == 1 and (subs[0] / "config.json").is_file():
        return subs[0]
    return None


def resolve_uri(name_or_uri: str, *, uri: str | None = None, cache_dir: Path | None = None) -> Path:
    """The local folder (with config.json) of the registered version a ``models:/`` name means.

    An alias is looked up in the registry on every call, so after a promotion or rollback
    the same name resolves to the new version. The version's artifacts are downloaded once
    into ``<cache>/NAME/VERSION`` (renamed into place when complete, so a folder there is
    always whole) and reused after.

    Raises:
        RegistryError: unknown model, version or alias; the version holds no config.json;
            the store cannot be reached.
    """
    ref = parse_models_uri(name_or_uri)
    resolved = tracking_uri(uri)
    mc = client(resolved)
    with _mlflow_errors(f"resolving {name_or_uri!r}"):
        if ref.alias is not None:
            mv = _by_alias(mc, ref.name, ref.alias)
        elif ref.version is not None:
            mv = _version(mc, ref.name, ref.version)
        else:
            latest = _latest(_registered(mc, ref.name))
            if latest is None:
                raise RegistryError(
                    f"model {ref.name!r} has no versions yet",
                    hint="register one with `taskloop models register MODEL_DIR --name "
                    f"{ref.name}`",
                )
            mv = _version(mc, ref.name, latest)
        target = cache_root(resolved, cache_dir) / _safe(ref.name) / str(int(mv.version))
        found = _find_config(target) if target.is_dir() else None
        if found is not None:
            return found
        target.parent.mkdir(parents=True, exist_ok=True)
        _quiet_mlflow()
        import mlflow.artifacts

        with step("registry_download", model=ref.name, version=int(mv.version)):
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                got = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=mv.source,
                        dst_path=str(tmp),
                        tracking_uri=resolved,
                        registry_uri=resolved,
                    )
                )
                folder = _find_config(got)
                if folder is None:
                    raise RegistryError(
                        f"model {ref.name!r} version {mv.version} ({mv.source}) holds no "
                        "config.json",
                        hint="register a folder written by save_pretrained",
                    )
                if target.exists() and _find_config(target) is None:
                    shutil.rmtree(target)  # left by an older, interrupted layout
                # The whole download moves in one rename: a crash leaves no half folder.
                try:
                    folder.replace(target)
                except OSError:
                    if _find_config(target) is None:  # not a concurrent download that won
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        found = _find_config(target)
        if found is None:
            raise RegistryError(f"downloaded model {name_or_uri!r} has no config.json")
        return found
