"""The typed config of ``taskloop run``: YAML file + CLI overrides, unknown keys fail.

Turned into plain arguments at the edge (:func:`taskloop.pipeline.run` takes a
``RunConfig``; task modules take a ``TaskContext``). The resolved config is written
next to every report (``config.json`` in the output folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskloop.config import read_yaml
from taskloop.data.errors import DataError, validated
from taskloop.data.records import TASKS, TaskName
from taskloop.errors import ExitStatus
from taskloop.tasks.context import FileOptions


class ConfigError(DataError):
    """A run config (YAML or CLI override) is invalid."""

    code = "config.invalid"
    exit_status = ExitStatus.USAGE


class RunConfig(BaseModel):
    """Everything ``taskloop run`` can be told, with the offline defaults."""

    model_config = ConfigDict(extra="forbid")

    models: dict[TaskName, str] = Field(
        default_factory=dict, description="model per task (overrides manifest.json)"
    )
    task_defaults: dict[TaskName, FileOptions] = Field(
        default_factory=dict, description="options per task, below manifest.json's"
    )
    tasks: list[TaskName] | None = Field(None, description="run only these tasks")
    device: str = "auto"
    dtype: str = "auto"
    allow_download: bool = False
    encoder: str | None = Field(None, description="sentence encoder (default: packaged MiniLM)")
    cache_path: str | None = Field(None, description="SQLite file persisting the output cache")
    cache_items: int = Field(4096, ge=0)
    workers: int | None = Field(None, ge=1, le=256)
    max_items: int | None = Field(None, ge=1, description="at most this many rows per file")
    key_file: str | None = Field(None, description="key for an encrypted input blob")

    def options_for(self, task: TaskName, manifest: FileOptions) -> FileOptions:
        """Task defaults ← manifest options ← the ``models`` override."""
        base = self.task_defaults.get(task, FileOptions())
        merged = base.merged(**manifest.model_dump(exclude_unset=True))
        return merged.merged(model=self.models.get(task))


def parse_model_overrides(values: list[str]) -> dict[TaskName, str]:
    """``["qa=deepset/roberta", "translate=./opus"]`` → {task: model}."""
    out: dict[TaskName, str] = {}
    for value in values:
        task, sep, model = value.partition("=")
        if not sep or not model:
            raise ConfigError(
                f"--model {value!r}: expected TASK=MODEL",
                hint="e.g. --model translate=./opus-mt-en-de",
            )
        if task not in TASKS:
            raise ConfigError(
                f"--model {value!r}: unknown task {task!r}; one of {', '.join(TASKS)}"
            )
        out[task] = model
    return out


def load_config(path: str | Path | None, **overrides: Any) -> RunConfig:
    """The YAML file's config (or defaults) with non-None ``overrides`` on top."""
    data = read_yaml(path, ConfigError) if path is not None else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "models" and isinstance(value, dict):
            base = data.get("models") or {}  # `models:` with no value is YAML null
            # a non-mapping is left in place for validation to name
            data["models"] = {**base, **value} if isinstance(base, dict) else base
        else:
            data[key] = value
    return validated(
        RunConfig,
        data,
        error=ConfigError,
        where=f"config{' ' + str(path) if path else ''}: ",
        hint="see `taskloop run --help` and docs/task-format.md",
    )
