"""taskloop: multi-task text models that improve themselves from feedback.

The blob codec's entry points that existing scripts call are also reachable from here
(``taskloop.encode_zip_to_utf8_blob``, ``taskloop.decode_utf8_blob_to_zip``); they live
in :mod:`taskloop.blob` and are imported on first use. ``taskloop.run`` is the main
job (:func:`taskloop.pipeline.run`); :func:`taskloop.train.loop.train` fine-tunes.
The legacy names of older scripts (training's ``clean_labels``, ``data_augmentation``,
``curriculum_learning``, ``knowledge_distillation``, ``model_pruning``,
``quantize_model``; evaluation's ``threshold_tuning``, ``feature_selection``;
monitoring's ``inference_monitoring``, ``retraining_triggers``) live where their concern lives
(:mod:`taskloop.data`, :mod:`taskloop.models`, :mod:`taskloop.evaluate`,
:mod:`taskloop.monitor`) and are reachable here too.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_REEXPORTS = {
    "encode_zip_to_utf8_blob": "taskloop.blob",
    "decode_utf8_blob_to_zip": "taskloop.blob",
    "run": "taskloop.pipeline",
    "RunConfig": "taskloop.runconfig",
    "TrainConfig": "taskloop.train.config",
    "clean_labels": "taskloop.data.cleaning",
    "data_augmentation": "taskloop.data.augment",
    "curriculum_learning": "taskloop.data.curriculum",
    "knowledge_distillation": "taskloop.models.distill",
    "model_pruning": "taskloop.models.prune",
    "quantize_model": "taskloop.models.quantize",
    "threshold_tuning": "taskloop.evaluate.thresholds",
    "feature_selection": "taskloop.evaluate.features",
    "inference_monitoring": "taskloop.monitor.metrics",
    "retraining_triggers": "taskloop.monitor.triggers",
}

__all__ = ["__version__", *_REEXPORTS]


def __getattr__(name: str) -> Any:
    if name in _REEXPORTS:
        import importlib

        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'taskloop' has no attribute {name!r}")
