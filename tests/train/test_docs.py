"""docs/training.md: its YAML examples stay valid and its reference lists every config key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from taskloop.train.config import merge, validate
from taskloop.train.tune import TuneSection, config_keys, plan_tune

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "training.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text("utf-8")


@pytest.fixture(scope="module")
def base() -> dict[str, object]:
    tiny = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text("utf-8"))
    return {k: v for k, v in tiny.items() if k not in ("search", "tune")}


def test_yaml_examples_validate(doc: str, base: dict[str, object]) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert blocks, "docs/training.md has no yaml examples"
    for block in blocks:
        data = yaml.safe_load(block)
        if "search" in data:
            plan_tune(merge(base, data))
        else:
            validate(data if "model" in data else merge(base, data))


def test_reference_lists_every_key(doc: str) -> None:
    documented = set(re.findall(r"^\| `([a-z_.]+)` \| `", doc, re.M))
    keys = set(config_keys())
    # leaves: keys that no other key extends (sections are documented by their keys)
    leaves = {k for k in keys if not any(o.startswith(k + ".") for o in keys)}
    leaves = {k for k in leaves if not k.startswith("curriculum.weights.")}
    wanted = leaves | {"model.init"} | {f"tune.{k}" for k in TuneSection.model_fields}
    assert wanted <= documented, sorted(wanted - documented)
    assert documented <= wanted | keys, sorted(documented - wanted - keys)  # nothing stale
