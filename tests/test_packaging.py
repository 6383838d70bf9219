"""The wheel carries what a non-editable install needs at run time (`pip install .`)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_samples(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("-q", "-w", str(tmp_path), str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("taskloop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "taskloop/evaluate/templates/report.html.j2",
        "taskloop/evaluate/templates/evaluation.html.j2",
        "taskloop/serve/ui/index.html",
        "taskloop/serve/ui/app.js",
        "taskloop/serve/ui/style.css",
        "taskloop/serve/storage/migrations/env.py",
        "taskloop/serve/storage/migrations/script.py.mako",
        "taskloop/serve/storage/migrations/versions/0001_initial.py",
        "taskloop/samples/tasks/manifest.json",
        "taskloop/samples/tasks/data/codegen.jsonl",
        "taskloop/py.typed",
    ):
        assert needed in names, needed
