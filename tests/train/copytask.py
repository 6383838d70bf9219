"""The toy copy task the training tests share: rows whose target is their source."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WORDS = "the a dog cat runs sleeps big small red blue green house tree car".split()  # noqa: SIM905


def copy_rows(
    n: int,
    words: Sequence[str] = WORDS,
    *,
    seed: int = 0,
    rng: random.Random | None = None,
    prefix: str = "c",
) -> list[dict[str, Any]]:
    """``n`` translate rows of 2–6 random ``words`` each, target == source.

    Pass ``rng`` to keep drawing from it afterwards; else a fresh one seeded with ``seed``.
    """
    rng = rng or random.Random(seed)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        rows.append({"id": f"{prefix}{i}", "task": "translate", "source": text, "target": text})
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
