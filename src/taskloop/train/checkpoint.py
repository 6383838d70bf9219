"""Checkpoints: the model folder plus everything needed to resume exactly.

Layout of ``OUT/checkpoints/step-000120/``::

    checkpoint.json    format_version, step, config, metrics, stream/pacing state
    model/             save_pretrained model + tokenizer (loadable by any HF tool)
    trainer.pt         optimizer, grad scaler, torch (and CUDA) RNG states, loop counters,
                       curriculum difficulties

``checkpoint.json`` carries ``format_version``. Reading an older version applies the
registered migrations in order (``MIGRATIONS[v]`` turns version v into v+1), so a
checkpoint written by an earlier taskloop keeps loading; a newer version than this code
knows is refused with a clear message. ``tests/fixtures/checkpoint_v1`` is a saved
checkpoint of the first format that the tests load on every change.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskloop.train.errors import CheckpointError

FORMAT_VERSION = 1
# MIGRATIONS[v] turns a version-v checkpoint.json into version v+1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def migrate(meta: dict[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """``meta`` brought to FORMAT_VERSION by the registered migrations."""
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{where}: no valid format_version (found {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: format {version} is newer than this taskloop reads ({FORMAT_VERSION})",
            hint="upgrade taskloop to resume from or load this checkpoint",
        )
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise CheckpointError(f"{where}: no migration from format {version}")
        meta = MIGRATIONS[version](dict(meta))
        version += 1
        meta["format_version"] = version
    return meta


def save(
    out: Path,
    step: int,
    *,
    model: Any,
    tokenizer: Any,
    meta: dict[str, Any],
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``out/checkpoints/step-N`` atomically (a temp folder renamed), prune old ones."""
    import torch

    root = out / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "model").mkdir(parents=True)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    torch.save(trainer_state, tmp / "trainer.pt")
    body = {"format_version": FORMAT_VERSION, "step": step, **meta}
    (tmp / "checkpoint.json").write_text(json.dumps(body, indent=2, default=str), "utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def read(path: Path) -> Checkpoint:
    """A checkpoint folder's metadata, migrated to the current format."""
    meta_file = path / "checkpoint.json"
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
    except OSError:
        raise CheckpointError(
            f"{path} is not a checkpoint (no checkpoint.json)",
            hint="pass a folder like runs/NAME/checkpoints/step-0000100",
        ) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_file}: not valid JSON: {exc}") from None
    if not (path / "model" / "config.json").is_file():
        raise CheckpointError(f"{path}: the model folder is missing or incomplete")
    return Checkpoint(path, migrate(meta, str(meta_file)))


def list_checkpoints(out: Path) -> list[Checkpoint]:
    """Complete checkpoints under ``out/checkpoints``, oldest first."""
    root = out / "checkpoints"
    found = []
    for path in sorted(root.glob("step-*")) if root.is_dir() else []:
        try:
            found.append(read(path))
        except CheckpointError:
            continue  # an interrupted or foreign folder is not a resume point
    return sorted(found, key=lambda c: c.step)


def latest(out: Path) -> Checkpoint | None:
    found = list_checkpoints(out)
    return found[-1] if found else None


def load_trainer_state(ckpt: Checkpoint) -> dict[str, Any]:
    import pickle

    import torch

    try:
        state: dict[str, Any] = torch.load(ckpt.path / "trainer.pt", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{ckpt.path}/trainer.pt unreadable: {exc}") from None
    return state
