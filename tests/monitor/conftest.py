"""Fixtures of the retraining tests: an MLflow store per module and tiny models.

A module opts in with ``pytestmark = pytest.mark.usefixtures("registry")``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taskloop.models.registry import client
from taskloop.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (opening one costs seconds); tests use own names."""
    root = tmp_path_factory.mktemp("retrain-store")
    uri = f"sqlite:///{root.as_posix()}/mlflow.db"
    client(uri)
    return uri


@pytest.fixture
def registry(store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's store as the tracking URI of this test, torch on one thread."""
    monkeypatch.setenv("TASKLOOP_TRACKING_URI", store)
    torch.set_num_threads(1)
    return store


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Tiny seq2seq models with different random weights (seeds 1, 2)."""
    root = tmp_path_factory.mktemp("retrain-models")
    return {seed: build_tiny_model(root / f"m{seed}", "seq2seq", seed=seed) for seed in (1, 2)}
