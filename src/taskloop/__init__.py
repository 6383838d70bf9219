"""taskloop: multi-task text models that improve themselves from feedback."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
