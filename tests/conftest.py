"""Shared fixtures: small archives built in memory, and the path to ../shared/data."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

# Tests never reach a model hub: every model is built from config or packaged.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP archive of ``files`` (name -> content), in insertion order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


@pytest.fixture(autouse=True)
def _own_taskloop_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Every test gets its own TASKLOOP_HOME: state a developer left in ./.taskloop (tuned
    thresholds, a registry) must not change what a test sees."""
    monkeypatch.setenv("TASKLOOP_HOME", str(tmp_path_factory.mktemp("taskloop-home")))


@pytest.fixture
def small_files() -> dict[str, bytes]:
    return {
        "manifest.json": b'{"name": "t"}',
        "data/qa.jsonl": b'{"question": "q", "context": "c"}\n' * 40,
        "data/bin.dat": bytes(range(256)) * 8,
        "data/empty.txt": b"",
        "data/unicode-\u00fcml\u00e4ut.txt": (
            "\u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u2713".encode()
        ),
    }


@pytest.fixture
def small_zip(small_files: dict[str, bytes]) -> bytes:
    return make_zip(small_files)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not present at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA
