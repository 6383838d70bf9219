"""Errors of training, tuning, compression and the registry, with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class TrainError(TaskloopError):
    """Base of training errors."""

    code = "train.error"
    exit_status = ExitStatus.USAGE


class TrainConfigError(TrainError):
    """A training config (YAML or ``key=value`` override) is invalid."""

    code = "train.config"


class TrainDataError(TrainError):
    """The training data is missing, empty after cleaning, or unreadable."""

    code = "train.data"


class CheckpointError(TrainError):
    """A checkpoint cannot be read, is of an unknown format, or does not match the run."""

    code = "train.checkpoint"
    exit_status = ExitStatus.CORRUPT


class DistillError(TrainError):
    """Teacher and student cannot be distilled (tokenizers differ, kinds differ)."""

    code = "train.distill"


class CompressError(TrainError):
    """Pruning or quantization cannot be applied to this model or device."""

    code = "train.compress"


class RegistryError(TrainError):
    """The model registry cannot find a model, version or alias, or cannot be reached."""

    code = "registry.error"
