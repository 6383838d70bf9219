"""Errors of evaluation, thresholds, explanations and ensembles, with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class EvaluateError(TaskloopError):
    """Base of evaluation errors."""

    code = "evaluate.error"
    exit_status = ExitStatus.USAGE


class EvalInputError(EvaluateError):
    """A results file, data set or comparison cannot be read or does not match."""

    code = "evaluate.input"
    exit_status = ExitStatus.CORRUPT


class MetricError(EvaluateError):
    """A metric cannot be computed on what it was given (unknown name, wrong shapes)."""

    code = "evaluate.metric"


class ThresholdError(EvaluateError):
    """Thresholds cannot be tuned (one class only, unknown rule) or read."""

    code = "evaluate.threshold"


class ExplainError(EvaluateError):
    """A model cannot be explained (kind not supported, nothing to attribute)."""

    code = "evaluate.explain"


class EnsembleError(EvaluateError):
    """Ensemble members or the combination rule are unusable."""

    code = "evaluate.ensemble"
