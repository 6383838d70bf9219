"""The model registry on an embedded MLflow store in tmp: runs, versions, aliases, loading.

One sqlite store per module (opening one costs 1-2 s); every test registers its own model
name, so tests do not see each other's versions and aliases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from taskloop.models.errors import ModelNotFoundError
from taskloop.models.loader import ModelSpec, load_model
from taskloop.models.registry import (
    HISTORY_TAG,
    ModelRef,
    artifact_location,
    client,
    flatten,
    list_models,
    log_run,
    parse_models_uri,
    promote,
    resolve_uri,
    rollback,
    show,
    tracking_uri,
)
from taskloop.models.tiny import build_tiny_model
from taskloop.train.errors import RegistryError


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("registry-store")
    uri = f"sqlite:///{root.as_posix()}/mlflow.db"
    client(uri)  # create the tables once, here
    return uri


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two tiny seq2seq folders with different weights (seeds 1 and 2)."""
    root = tmp_path_factory.mktemp("registry-models")
    return {seed: build_tiny_model(root / f"m{seed}", "seq2seq", seed=seed) for seed in (1, 2)}


def _register(store: str, name: str, folder: Path, alias: str | None = "challenger") -> int:
    record = log_run(
        experiment="tests",
        run_name=f"{name}-{folder.name}",
        config={"model": folder.name},
        metrics=[(0, {"loss": 1.0})],
        model_dir=folder,
        register_as=name,
        alias=alias,
        uri=store,
    )
    assert record.version is not None
    return record.version


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the store -----------------------------------------------------------------------------


def test_tracking_uri_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """explicit > TASKLOOP_TRACKING_URI > MLFLOW_TRACKING_URI > sqlite in TASKLOOP_HOME."""
    monkeypatch.setenv("TASKLOOP_TRACKING_URI", "http://team:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert tracking_uri() == "http://team:5000"
    monkeypatch.delenv("TASKLOOP_TRACKING_URI")
    assert tracking_uri() == "http://mlflow:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("TASKLOOP_HOME", str(tmp_path / "home"))
    expected = f"sqlite:///{(tmp_path / 'home').resolve().as_posix()}/mlflow.db"
    assert tracking_uri() == expected
    assert (tmp_path / "home").is_dir()
    assert tracking_uri(root=tmp_path / "other").endswith("/other/mlflow.db")


def test_artifacts_sit_next_to_an_embedded_store(tmp_path: Path) -> None:
    """sqlite:////abs/dir/mlflow.db keeps artifacts in /abs/dir/mlartifacts; a server picks."""
    uri = f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    assert artifact_location(uri) == (tmp_path / "mlartifacts").resolve().as_uri()
    assert artifact_location("http://mlflow:5000") is None


def test_flatten_config_into_params() -> None:
    """Nested keys join with dots, lists become JSON, a 7000-char value is cut to MLflow's
    6000 (5997 chars + '...'), and a ':' (refused by MLflow in keys) becomes '_'."""
    flat = flatten(
        {"train": {"lr": 0.001, "steps": 3}, "tasks": ["qa", "translate"], "s": "x" * 7000,
         "a:b": True, "empty": {}, "none": None}
    )  # fmt: skip
    assert flat["train.lr"] == "0.001"
    assert flat["train.steps"] == "3"
    assert flat["tasks"] == '["qa", "translate"]'
    assert flat["s"] == "x" * 5997 + "..." and len(flat["s"]) == 6000
    assert flat["a_b"] == "true"
    assert flat["empty"] == "{}" and flat["none"] == "null"


def test_log_run_records_params_metric_history_and_config(store: str, tmp_path: Path) -> None:
    """Params, each metric's history with its steps, config.json and a plot read back."""
    config = {"train": {"lr": 0.001, "steps": 3}, "tasks": ["qa"]}
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"\x89PNG fake")
    record = log_run(
        experiment="log-run",
        run_name="r1",
        config=config,
        metrics=[(0, {"loss": 2.5}), (1, {"loss": 1.5, "acc": 0.5}), (2, {"loss": 0.75})],
        params={"seed": 7, "train": {"lr": 0.002}},  # params win over config keys
        artifacts=[plot],
        tags={"taskloop.tasks": "qa"},
        uri=store,
    )
    assert record.version is None and record.model_name is None
    assert record.uri == f"runs:/{record.run_id}"
    mc = client(store)
    run = mc.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "train.lr": "0.002", "train.steps": "3", "tasks": '["qa"]', "seed": "7"
    }  # fmt: skip
    assert run.data.tags["taskloop.tasks"] == "qa"
    history = mc.get_metric_history(record.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 2.5), (1, 1.5), (2, 0.75)
    ]  # fmt: skip
    assert [(m.step, m.value) for m in mc.get_metric_history(record.run_id, "acc")] == [(1, 0.5)]
    files = {f.path for f in mc.list_artifacts(record.run_id)}
    assert files == {"config.json", "loss.png"}
    local = Path(mc.download_artifacts(record.run_id, "config.json", str(tmp_path)))
    assert json.loads(local.read_text()) == config
    # The artifacts went next to the tmp store, not into ./mlruns or ./.taskloop.
    assert run.info.artifact_uri.startswith(artifact_location(store) or "?")


def test_log_run_refuses_bad_models(store: str, tmp_path: Path) -> None:
    """A folder without config.json, or register_as without a model, fail before logging."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match=r"has no config\.json"):
        log_run(
            experiment="bad", run_name="r", config={}, model_dir=tmp_path / "empty",
            register_as="bad", uri=store,
        )  # fmt: skip
    with pytest.raises(RegistryError, match="logged no model folder"):
        log_run(experiment="bad", run_name="r", config={}, register_as="bad", uri=store)
    assert client(store).get_experiment_by_name("bad") is None


# -- versions and aliases ------------------------------------------------------------------


def test_promote_and_rollback_round_trip(store: str, models: dict[int, Path]) -> None:
    """v1 → champion; v2 (the challenger) → champion; rollback → v1 again; then no more."""
    name = "roundtrip"
    assert _register(store, name, models[1]) == 1
    assert _register(store, name, models[2]) == 2  # the challenger alias moves to v2
    first = promote(name, 1, uri=store)
    assert (first.version, first.previous) == (1, None)
    second = promote(name, uri=store)  # from "challenger"
    assert (second.alias, second.version, second.previous) == ("champion", 2, 1)
    info = {m.name: m for m in list_models(store)}[name]
    assert info.latest_version == 2
    assert info.aliases == {"champion": 2, "challenger": 2}

    back = rollback(name, uri=store)
    assert (back.version, back.previous) == (1, 2)
    detail = show(name, store)
    assert detail.aliases == {"champion": 1, "challenger": 2}
    assert [v.version for v in detail.versions] == [2, 1]
    assert detail.versions[1].aliases == ["champion"]
    assert detail.versions[0].tags["taskloop.format_version"] == "1"
    assert detail.versions[0].metrics == {"loss": 1.0}
    assert detail.versions[0].source == f"runs:/{detail.versions[0].run_id}/model"
    # registering v2 moved challenger off v1: that move is in the history too
    assert detail.history == {"champion": [], "challenger": [1]}
    with pytest.raises(RegistryError, match="no earlier version") as err:
        rollback(name, uri=store)
    assert err.value.code == "registry.error"


def test_log_run_alias_move_can_be_rolled_back(store: str, models: dict[int, Path]) -> None:
    """promote v1 → champion; log_run v2 with alias="champion" moves it and records v1 in
    the champion history (as promote does), so rollback puts v1 back."""
    name = "logmove"
    _register(store, name, models[1], alias=None)
    promote(name, 1, uri=store)
    assert _register(store, name, models[2], alias="champion") == 2
    detail = show(name, store)
    assert detail.aliases == {"champion": 2}
    assert detail.history == {"champion": [1]}
    back = rollback(name, uri=store)
    assert (back.version, back.previous) == (1, 2)
    assert show(name, store).aliases == {"champion": 1}


def test_promoting_the_holder_again_changes_nothing(store: str, models: dict[int, Path]) -> None:
    """promote v1 twice: history stays [] so a rollback cannot land on v1 itself."""
    name = "noop"
    _register(store, name, models[1])
    promote(name, 1, uri=store)
    again = promote(name, 1, uri=store)
    assert (again.version, again.previous) == (1, 1)
    assert show(name, store).history == {}
    with pytest.raises(RegistryError):
        rollback(name, uri=store)


def test_rollback_skips_deleted_versions(store: str, models: dict[int, Path]) -> None:
    """champion history [1, 2] with v2 deleted: rollback from v3 lands on v1."""
    name = "deleted"
    for seed in (1, 2, 1):
        _register(store, name, models[seed])
    for version in (1, 2, 3):
        promote(name, version, uri=store)
    client(store).delete_model_version(name, "2")
    back = rollback(name, uri=store)
    assert (back.version, back.previous) == (1, 3)
    assert client(store).get_registered_model(name).tags[HISTORY_TAG + "champion"] == "[]"


def test_promote_errors_name_what_is_missing(store: str, models: dict[int, Path]) -> None:
    name = "errors"
    _register(store, name, models[1], alias=None)
    with pytest.raises(RegistryError, match="no registered model named 'nope'") as err:
        promote("nope", 1, uri=store)
    assert err.value.hint and "taskloop models list" in err.value.hint
    with pytest.raises(RegistryError, match="'errors' has no version 9") as err:
        promote(name, 9, uri=store)
    assert err.value.hint and f"taskloop models show {name}" in err.value.hint
    with pytest.raises(RegistryError, match="no alias 'challenger'"):
        promote(name, uri=store)
    with pytest.raises(RegistryError, match="give a version"):
        promote(name, from_alias=None, uri=store)
    with pytest.raises(RegistryError, match="no registered model"):
        show("nope", store)


# -- models:/ names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("models:/m@champion", ModelRef("m", alias="champion")),
        ("models:/m/3", ModelRef("m", version=3)),
        ("models:/m", ModelRef("m")),
        ("models:/m/latest", ModelRef("m")),
        ("models:/team.m@challenger", ModelRef("team.m", alias="challenger")),
    ],
)
def test_parse_models_uri(text: str, ref: ModelRef) -> None:
    assert parse_models_uri(text) == ref


@pytest.mark.parametrize("text", ["models:/", "models:/m/Production", "runs:/x/model"])
def test_parse_models_uri_refuses(text: str) -> None:
    with pytest.raises(RegistryError):
        parse_models_uri(text)


def test_resolve_uri_downloads_the_version_once(
    store: str, models: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@champion (v1), /2 and latest (v2) resolve to folders holding exactly the registered
    weights; a second resolve reuses the cached folder without downloading."""
    name = "resolve"
    _register(store, name, models[1])
    _register(store, name, models[2])
    promote(name, 1, uri=store)
    cache = tmp_path / "cache"
    champion = resolve_uri(f"models:/{name}@champion", uri=store, cache_dir=cache)
    assert champion == cache / name / "1"
    assert (champion / "config.json").is_file()
    assert _same_weights(_weights(champion), _weights(models[1]))
    assert not _same_weights(_weights(champion), _weights(models[2]))
    assert resolve_uri(f"models:/{name}/2", uri=store, cache_dir=cache) == cache / name / "2"
    assert resolve_uri(f"models:/{name}", uri=store, cache_dir=cache) == cache / name / "2"
    assert _same_weights(_weights(cache / name / "2"), _weights(models[2]))
    assert sorted(p.name for p in (cache / name).iterdir()) == ["1", "2"]  # no temp left

    import mlflow.artifacts

    def no_download(**_: object) -> str:
        raise AssertionError("downloaded again")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    assert resolve_uri(f"models:/{name}@champion", uri=store, cache_dir=cache) == champion
    loaded = load_model(str(champion))
    assert loaded.kind == "seq2seq"


def test_resolve_uri_unknown_alias_says_how_to_list(store: str, models: dict[int, Path]) -> None:
    _register(store, "unknown", models[1], alias=None)
    with pytest.raises(RegistryError, match="'unknown' has no alias 'champion'") as err:
        resolve_uri("models:/unknown@champion", uri=store)
    assert err.value.hint and "taskloop models show unknown" in err.value.hint
    with pytest.raises(RegistryError, match="no registered model named 'absent'"):
        resolve_uri("models:/absent", uri=store)


def test_load_model_by_alias(
    store: str, models: dict[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader resolves models:/ names through the registry named by the environment;
    a missing alias is a ModelNotFoundError (what tasks already handle) with the hint."""
    name = "loadable"
    _register(store, name, models[2])
    promote(name, 1, uri=store)
    monkeypatch.setenv("TASKLOOP_TRACKING_URI", store)
    loaded = load_model(ModelSpec(f"models:/{name}@champion"))
    assert loaded.kind == "seq2seq"
    store_dir = Path(store.removeprefix("sqlite:///")).parent
    assert Path(loaded.path) == store_dir / "model-cache" / name / "1"  # next to the store
    state = {k: v.cpu() for k, v in loaded.model.state_dict().items()}
    expected = _weights(models[2])
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    with pytest.raises(ModelNotFoundError, match="no alias 'gone'") as err:
        load_model(ModelSpec(f"models:/{name}@gone"))
    assert err.value.hint and f"taskloop models show {name}" in err.value.hint
