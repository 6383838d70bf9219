"""The run config: YAML + CLI overrides, unknown keys fail by name, option precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloop.runconfig import ConfigError, RunConfig, load_config, parse_model_overrides
from taskloop.tasks.context import FileOptions

EXAMPLE = """\
models: {translate: ./opus-mt-en-de, summarize: ./bart-small}
task_defaults:                 # below manifest.json's
  summarize: {mode: hybrid, max_sentences: 2}
tasks: [qa, summarize]
device: cpu
dtype: bfloat16
cache_path: .taskloop-cache.sqlite
max_items: 100
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_example_loads(tmp_path: Path) -> None:
    """The YAML of docs/task-format.md, key by key."""
    cfg = load_config(write(tmp_path, EXAMPLE))
    assert cfg.models == {"translate": "./opus-mt-en-de", "summarize": "./bart-small"}
    assert cfg.task_defaults["summarize"].mode == "hybrid"
    assert cfg.task_defaults["summarize"].max_sentences == 2
    assert cfg.tasks == ["qa", "summarize"]
    assert (cfg.device, cfg.dtype, cfg.max_items) == ("cpu", "bfloat16", 100)
    assert cfg.cache_path == ".taskloop-cache.sqlite"


def test_no_file_gives_the_offline_defaults() -> None:
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert (cfg.device, cfg.allow_download, cfg.models, cfg.cache_items) == (
        "auto",
        False,
        {},
        4096,
    )


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing set\n")) == RunConfig()


def test_cli_overrides_win_and_none_means_unset(tmp_path: Path) -> None:
    """--model merges into the YAML's models per task; other options replace; a None
    override (an option not given) leaves the YAML's value."""
    cfg = load_config(
        write(tmp_path, EXAMPLE),
        models={"translate": "./other", "qa": "./qa-model"},
        device="cuda",
        dtype=None,
    )
    assert cfg.models == {"translate": "./other", "summarize": "./bart-small", "qa": "./qa-model"}
    assert cfg.device == "cuda"
    assert cfg.dtype == "bfloat16"


def test_model_override_with_an_empty_models_key(tmp_path: Path) -> None:
    """Regression: ``models:`` with no value is YAML null; merging --model into it raised
    a raw TypeError."""
    cfg = load_config(write(tmp_path, "models:\n"), models={"qa": "./qa"})
    assert cfg.models == {"qa": "./qa"}
    with pytest.raises(ConfigError, match="models"):
        load_config(write(tmp_path, "models: [a, b]\n"), models={"qa": "./qa"})


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("devise: cpu\n", "devise: Extra inputs are not permitted"),
        ("task_defaults: {summarize: {modle: x}}\n", "task_defaults.summarize.modle: Extra"),
        ("tasks: [poem]\n", "tasks.0: Input should be"),
        ("models: {poem: ./x}\n", "models.poem.[key]: Input should be"),
        ("cache_items: -1\n", "cache_items: Input should be greater than or equal to 0"),
    ],
)
def test_invalid_keys_fail_by_name(tmp_path: Path, text: str, place: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"config {path}: ")
    assert place in str(err.value)
    assert err.value.code == "config.invalid"
    assert err.value.hint and "--help" in err.value.hint


def test_override_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^config: workers: Input should be less than"):
        load_config(None, workers=1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must be a mapping"), ("a: [\n", "not valid YAML")],
)
def test_not_a_mapping_or_not_yaml(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.yaml")


def test_parse_model_overrides() -> None:
    """TASK=MODEL; everything after the first "=" is the model (paths may hold "=")."""
    got = parse_model_overrides(["qa=deepset/roberta", "translate=./dir=with=equals"])
    assert got == {"qa": "deepset/roberta", "translate": "./dir=with=equals"}
    assert parse_model_overrides([]) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("qa", "expected TASK=MODEL"),
        ("qa=", "expected TASK=MODEL"),
        ("poem=./x", "unknown task 'poem'"),
        ("=./x", "unknown task ''"),
    ],
)
def test_parse_model_override_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_model_overrides([value])
    assert repr(value) in str(err.value) and message in str(err.value)


def test_precedence_task_defaults_then_manifest_then_models() -> None:
    """task_defaults < manifest.json < the ``models`` override:

    mode: default hybrid, manifest extractive → extractive
    max_sentences: default 2, manifest silent → 2
    model: manifest ./m, models override ./cli → ./cli
    num_beams: only the manifest sets it → 4
    """
    cfg = RunConfig(
        models={"summarize": "./cli"},
        task_defaults={"summarize": FileOptions(mode="hybrid", max_sentences=2, model="./d")},
    )
    manifest = FileOptions.model_validate({"mode": "extractive", "model": "./m", "num_beams": 4})
    opts = cfg.options_for("summarize", manifest)
    assert (opts.mode, opts.max_sentences, opts.model, opts.num_beams) == (
        "extractive",
        2,
        "./cli",
        4,
    )


def test_precedence_without_override_or_manifest() -> None:
    """No models entry: the manifest's model stays; no manifest value: the default's."""
    cfg = RunConfig(task_defaults={"qa": FileOptions(model="./d", no_answer_threshold=0.3)})
    assert cfg.options_for("qa", FileOptions.model_validate({"model": "./m"})).model == "./m"
    opts = cfg.options_for("qa", FileOptions())
    assert (opts.model, opts.no_answer_threshold) == ("./d", 0.3)
    # A task without defaults or override keeps FileOptions' own defaults.
    assert cfg.options_for("translate", FileOptions()) == FileOptions()


def test_a_manifest_default_value_still_overrides_task_defaults() -> None:
    """The manifest set long_input to its default value ("split") explicitly: that is
    still the manifest speaking, and it wins over a task default of "truncate"."""
    cfg = RunConfig(task_defaults={"qa": FileOptions(long_input="truncate")})
    explicit = FileOptions.model_validate({"long_input": "split"})
    assert cfg.options_for("qa", explicit).long_input == "split"
    assert cfg.options_for("qa", FileOptions()).long_input == "truncate"


def test_the_documented_run_config_and_manifest_parse(tmp_path):
    """docs/task-format.md's YAML run config and manifest.json example stay valid."""
    import json
    import re

    from taskloop.data.loader import read_manifest

    doc = (Path(__file__).resolve().parents[1] / "docs" / "task-format.md").read_text()
    (yaml_block,) = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    (tmp_path / "run.yaml").write_text(yaml_block)
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.models["translate"] == "./opus-mt-en-de"
    assert cfg.task_defaults["summarize"].max_sentences == 2
    manifest = next(b for b in re.findall(r"```json\n(.*?)```", doc, re.S) if '"files"' in b)
    (tmp_path / "manifest.json").write_text(manifest)
    for name in json.loads(manifest)["files"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    _, options = read_manifest(tmp_path)
    assert options["data/code.jsonl"].samples == 10
    assert options["data/qa.jsonl"].max_new_tokens == 96  # from "defaults"
