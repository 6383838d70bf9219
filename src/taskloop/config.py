"""Settings from the environment (``TASKLOOP_*``); per-command options come from the CLI."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskloop.errors import TaskloopError


class Settings(BaseSettings):
    """Process-wide settings. Unknown ``TASKLOOP_*`` variables are ignored, bad values fail."""

    model_config = SettingsConfigDict(env_prefix="TASKLOOP_", extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: int = logging.INFO

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: object) -> object:
        if isinstance(value, str) and not value.isdigit():
            level = logging.getLevelName(value.upper())
            if not isinstance(level, int):
                raise ValueError(f"unknown log level {value!r}")
            return level
        return value


def taskloop_home() -> Path:
    """taskloop's own folder (registry, study database, model cache): ``$TASKLOOP_HOME``
    or ``./.taskloop``."""
    return Path(os.environ.get("TASKLOOP_HOME") or ".taskloop").expanduser()


def read_yaml(path: str | Path, error: type[TaskloopError]) -> dict[str, Any]:
    """A YAML config file's mapping ({} when empty); ``error`` says what is wrong with it."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"config {path}: not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise error(f"config {path}: must be a mapping of keys to values")
    return loaded
