"""taskloop: multi-task text models that improve themselves from feedback.

The blob codec's entry points that existing scripts call are also reachable from here
(``taskloop.encode_zip_to_utf8_blob``, ``taskloop.decode_utf8_blob_to_zip``); they live
in :mod:`taskloop.blob` and are imported on first use. ``taskloop.run`` is the main
job (:func:`taskloop.pipeline.run`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_REEXPORTS = {
    "encode_zip_to_utf8_blob": "taskloop.blob",
    "decode_utf8_blob_to_zip": "taskloop.blob",
    "run": "taskloop.pipeline",
    "RunConfig": "taskloop.runconfig",
}

__all__ = ["__version__", *_REEXPORTS]


def __getattr__(name: str) -> Any:
    if name in _REEXPORTS:
        import importlib

        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'taskloop' has no attribute {name!r}")
