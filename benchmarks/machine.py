"""What every benchmark shares (imported by the scripts here): the machine it ran on, its
work folder, and Multi30k read from ``../shared/data/translation``."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe(dists: Sequence[str], extra: str = "") -> list[str]:
    """Two lines: CPU, cores, load (and ``extra``, e.g. the device); Python and versions."""
    versions = []
    for dist in ("taskloop", *dists):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}; load average {load}" + (f"; {extra}" if extra else ""),
        f"python {platform.python_version()} ({platform.python_implementation()}); "
        + ", ".join(versions),
    ]


@contextlib.contextmanager
def work_dir(path: Path | None, prefix: str = "taskloop-bench-") -> Iterator[Path]:
    """``path`` (created, kept), or a temporary folder removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_lines(path: Path, n: int | None = None, skip: int = 0) -> list[str]:
    """Lines of a gzipped text file, stripped: ``n`` of them after the first ``skip``."""
    out: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            if n is not None and len(out) >= n:
                break
            out.append(line.strip())
    return out


def read_pairs(
    data_dir: Path, stem: str = "multi30k_train", n: int | None = None, skip: int = 0
) -> list[tuple[str, str]]:
    """(en, de) pairs of a Multi30k split (``stem.en.gz`` / ``stem.de.gz``), blank ones dropped."""
    en = read_lines(data_dir / f"{stem}.en.gz", n, skip)
    de = read_lines(data_dir / f"{stem}.de.gz", n, skip)
    if len(en) != len(de):
        raise SystemExit(f"{stem}: {len(en)} English lines but {len(de)} German lines")
    return [(e, d) for e, d in zip(en, de, strict=True) if e and d]


def write_jsonl(path: Path, pairs: Sequence[tuple[str, str]], prefix: str) -> None:
    """Pairs as taskloop translate rows (en→de), ids ``prefix0``, ``prefix1`` …"""
    with path.open("w", encoding="utf-8") as fh:
        for i, (en, de) in enumerate(pairs):
            row = {
                "task": "translate", "id": f"{prefix}{i}", "source": en, "target": de,
                "source_lang": "en", "target_lang": "de",
            }  # fmt: skip
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
