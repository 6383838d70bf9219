"""The training config: YAML + key=value overrides, unknown keys refused with their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskloop.config import read_yaml
from taskloop.train.config import (
    TrainConfig,
    load_train_config,
    merge,
    parse_overrides,
    validate,
)
from taskloop.train.errors import TrainConfigError

REPO = Path(__file__).resolve().parents[2]
MODEL = "model.name=some/model"


def test_overrides_nest_by_dots_and_values_are_yaml() -> None:
    got = parse_overrides([
        "optim.lr=0.5", "data.tasks=[qa, translate]", "run.max_steps=200",
        "eval.every_steps=null", "tracking.enabled=false", "name=my run",
        "data.clean.length_ratio=[0.5, 2]", "distill.teachers={qa: t5-small}", "out=",
    ])  # fmt: skip
    assert got == {
        "optim": {"lr": 0.5},
        "data": {"tasks": ["qa", "translate"], "clean": {"length_ratio": [0.5, 2]}},
        "run": {"max_steps": 200},
        "eval": {"every_steps": None},
        "tracking": {"enabled": False},
        "name": "my run",
        "distill": {"teachers": {"qa": "t5-small"}},
        "out": None,
    }


def test_exponent_floats_reach_the_config_as_floats() -> None:
    """PyYAML (YAML 1.1) reads ``3e-4`` as a string; the typed field still gets 0.0003."""
    cfg = load_train_config(None, [MODEL, "optim.lr=3e-4", "optim.eps=1.0e-9"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.optim.eps == pytest.approx(1e-9)


@pytest.mark.parametrize("bad", ["no-equals", "=3", "data.tasks=[qa", "a=1 b"])
def test_malformed_overrides_fail_with_the_item(bad: str) -> None:
    if bad == "a=1 b":  # a plain YAML string: valid
        assert parse_overrides([bad]) == {"a": "1 b"}
        return
    with pytest.raises(TrainConfigError) as info:
        parse_overrides([bad])
    assert repr(bad) in str(info.value)


def test_override_under_a_value_fails() -> None:
    with pytest.raises(TrainConfigError, match="'run' is set to a value already"):
        parse_overrides(["run=1", "run.seed=2"])


def test_merge_is_recursive_and_does_not_touch_inputs() -> None:
    base = {"optim": {"lr": 1.0, "eps": 2.0}, "name": "a"}
    extra = {"optim": {"lr": 3.0}, "run": {"seed": 1}}
    assert merge(base, extra) == {
        "optim": {"lr": 3.0, "eps": 2.0},
        "name": "a",
        "run": {"seed": 1},
    }
    assert base == {"optim": {"lr": 1.0, "eps": 2.0}, "name": "a"}


def test_overrides_win_over_the_file_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: a/b\noptim:\n  lr: 0.1\n  warmup_steps: 7\n")
    cfg = load_train_config(path, ["optim.lr=0.2", "data.tasks=[qa]"])
    assert cfg.model.name == "a/b"
    assert cfg.optim.lr == 0.2
    assert cfg.optim.warmup_steps == 7
    assert cfg.data.tasks == ["qa"]
    assert cfg.batch.tokens == 4096  # default
    assert cfg.tracking.enabled is True


@pytest.mark.parametrize(
    ("overrides", "place"),
    [
        (["optim.lrr=1"], "optim.lrr"),
        (["data.clean.rulez=[a]"], "data.clean.rulez"),
        (["nonsense=1"], "nonsense"),
        (["model.init.arch=t5", "model.init.colour=red", "model.name=null"], "model.init.colour"),
    ],
)
def test_unknown_keys_fail_with_their_dotted_place(overrides: list[str], place: str) -> None:
    with pytest.raises(TrainConfigError) as info:
        load_train_config(None, [MODEL, *overrides])
    message = str(info.value)
    assert place in message
    assert info.value.code == "train.config"


def test_bad_values_name_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\noptim: {lr: -1}\n")
    with pytest.raises(TrainConfigError) as info:
        load_train_config(path)
    assert "optim.lr" in str(info.value)
    assert str(path) in str(info.value)
    with pytest.raises(TrainConfigError, match=r"data\.tasks"):
        load_train_config(None, [MODEL, "data.tasks=[poetry]"])
    with pytest.raises(TrainConfigError, match="multiple of heads"):
        load_train_config(None, ["model.init.d_model=30", "model.init.heads=4"])


def test_model_name_and_init_exactly_one() -> None:
    with pytest.raises(TrainConfigError, match=r"model: Field required"):
        load_train_config(None, [])  # no model section
    with pytest.raises(TrainConfigError, match=r"model\.name.*model\.init"):
        load_train_config(None, ["model.kind=causal"])  # a section, but neither
    with pytest.raises(TrainConfigError, match=r"exactly one"):
        load_train_config(None, [MODEL, "model.init.arch=marian"])  # both
    assert load_train_config(None, [MODEL]).model.init is None
    init = load_train_config(None, ["model.init.arch=gpt2"]).model.init
    assert init is not None
    assert init.arch == "gpt2"


def test_extra_dicts_merge_last() -> None:
    cfg = load_train_config(None, [MODEL, "optim.lr=0.1"], optim={"lr": 0.3})
    assert cfg.optim.lr == 0.3


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainConfigError, match=r"missing\.yaml"):
        read_yaml(tmp_path / "missing.yaml", TrainConfigError)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        read_yaml(bad, TrainConfigError)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(TrainConfigError, match="mapping"):
        read_yaml(listed, TrainConfigError)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml(empty, TrainConfigError) == {}


def test_config_round_trips_through_its_json_dump() -> None:
    cfg = load_train_config(None, [MODEL, "data.tasks=[qa]", "data.clean.length_ratio=[0.5,2]"])
    again = validate(cfg.model_dump(mode="json"))
    assert again == cfg
    assert isinstance(again, TrainConfig)


SHIPPED = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_folder_ships_configs() -> None:
    assert SHIPPED, f"no training configs found in {REPO / 'configs'}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_parses(path: Path) -> None:
    cfg = load_train_config(path)
    assert isinstance(cfg, TrainConfig)


@pytest.mark.parametrize(("raw", "value"), [("on", "on"), ("off", "off"), ("auto", "auto")])
def test_accelerate_on_off_survive_yaml_booleans(raw: str, value: str, tmp_path: Path) -> None:
    """YAML 1.1 reads bare on/off as booleans; the config still means the words."""
    assert load_train_config(None, [MODEL, f"run.accelerate={raw}"]).run.accelerate == value
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{name: x}}\nrun:\n  accelerate: {raw}\n")
    assert load_train_config(path).run.accelerate == value
