"""``taskloop models`` (mounted on a test app): register, list, show, promote, rollback.

One tmp sqlite store per module; each test registers its own model name, so the tests
hold under any order and under xdist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from taskloop.models.registry import client
from taskloop.models.registry_cli import app as models_app
from taskloop.models.tiny import build_tiny_model

root = typer.Typer()
root.add_typer(models_app, name="models")
runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("registry-cli-store")
    uri = f"sqlite:///{folder.as_posix()}/mlflow.db"
    client(uri)
    return uri


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("registry-cli-model") / "m", "causal")


def models(store: str, *args: str) -> Result:
    return runner.invoke(root, ["models", *args, "--tracking-uri", store])


def register_two(store: str, model_dir: Path, name: str) -> None:
    """v1 and v2 of ``name``, the challenger alias on v2; checks both outputs."""
    first = models(store, "register", str(model_dir), "--name", name)
    assert first.exit_code == 0, first.output
    assert f"models:/{name}/1 as {name}@challenger" in first.stdout
    second = models(store, "register", str(model_dir), "--name", name, "--json")
    assert second.exit_code == 0, second.output
    record = json.loads(second.stdout)
    assert (record["model_name"], record["version"]) == (name, 2)
    assert record["uri"] == f"models:/{name}/2"


def test_register_twice_then_list(store: str, model_dir: Path) -> None:
    register_two(store, model_dir, "listed")
    listed = models(store, "list", "--json")
    assert listed.exit_code == 0, listed.output
    entry = {m["name"]: m for m in json.loads(listed.stdout)}["listed"]
    assert entry == {
        "name": "listed", "latest_version": 2, "aliases": {"challenger": 2}, "description": ""
    }  # fmt: skip
    table = models(store, "list")
    assert table.exit_code == 0
    assert "registered models" in table.stdout
    assert "listed" in table.stdout and "challenger→v2" in table.stdout


def test_promote_show_rollback(store: str, model_dir: Path) -> None:
    register_two(store, model_dir, "cli")
    promoted = models(store, "promote", "cli", "--version", "1")
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.strip() == "promoted cli@champion -> v1 (was nothing)"
    promoted = models(store, "promote", "cli")  # the challenger, v2
    assert promoted.stdout.strip() == "promoted cli@champion -> v2 (was v1)"
    again = models(store, "promote", "cli", "--from-alias", "challenger")
    assert again.stdout.strip() == "cli@champion already points at v2"

    shown = models(store, "show", "cli")
    assert shown.exit_code == 0, shown.output
    assert "champion→v2" in shown.stdout and "challenger→v2" in shown.stdout
    assert "champion history (oldest first): v1" in shown.stdout
    assert "challenger history (oldest first): v1" in shown.stdout
    detail = json.loads(models(store, "show", "cli", "--json").stdout)
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert detail["versions"][0]["aliases"] == ["challenger", "champion"]
    assert detail["history"] == {"champion": [1], "challenger": [1]}  # v2's register moved it

    back = models(store, "rollback", "cli", "--json")
    assert back.exit_code == 0, back.output
    assert json.loads(back.stdout) == {
        "name": "cli", "alias": "champion", "version": 1, "previous": 2
    }  # fmt: skip


def test_register_with_an_alias_can_be_rolled_back(store: str, model_dir: Path) -> None:
    """register v1 --alias champion, then v2 --alias champion: the second move records v1,
    so rollback puts champion back on v1."""
    for expected in (1, 2):
        done = models(store, "register", str(model_dir), "--name", "regmove", "--alias",
                      "champion", "--json")  # fmt: skip
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["version"] == expected
    detail = json.loads(models(store, "show", "regmove", "--json").stdout)
    assert detail["aliases"] == {"champion": 2}
    assert detail["history"] == {"champion": [1]}
    back = models(store, "rollback", "regmove")
    assert back.exit_code == 0, back.output
    assert back.stdout.strip() == "rolled back regmove@champion -> v1 (was v2)"


def test_errors_exit_2_with_a_hint(store: str, model_dir: Path, tmp_path: Path) -> None:
    """Expected errors print error[registry.error] and a hint on stderr, exit status 2."""
    assert models(store, "register", str(model_dir), "--name", "errs").exit_code == 0
    assert models(store, "promote", "errs").exit_code == 0  # champion: v1, no history
    again = models(store, "rollback", "errs")
    assert again.exit_code == 2
    assert "error[registry.error]" in again.stderr
    assert "no earlier version" in again.stderr and "hint:" in again.stderr
    missing = models(store, "show", "nope")
    assert missing.exit_code == 2
    assert "no registered model named 'nope'" in missing.stderr
    assert "taskloop models list" in missing.stderr
    version = models(store, "promote", "errs", "--version", "9")
    assert version.exit_code == 2 and "has no version 9" in version.stderr
    (tmp_path / "empty").mkdir()
    bad = models(store, "register", str(tmp_path / "empty"), "--name", "errs")
    assert bad.exit_code == 2 and "has no config.json" in bad.stderr
    assert "Traceback" not in bad.output


def test_default_store_is_embedded_in_taskloop_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --tracking-uri or env URIs, the store is $TASKLOOP_HOME/mlflow.db."""
    monkeypatch.delenv("TASKLOOP_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TASKLOOP_HOME", str(tmp_path / "home"))
    result = runner.invoke(root, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "no registered models" in result.stdout
    assert (tmp_path / "home" / "mlflow.db").is_file()
