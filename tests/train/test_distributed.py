"""Several processes through Accelerate: two CPU processes (gloo) started by torchrun.

`accelerate launch --multi_gpu` starts the same loop the same way (WORLD_SIZE set, each
process takes its share of every batch, DDP averages the gradients); CPU processes are
what CI can run. The main process builds the model from scratch first, saves, and
reports; the other only trains.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.copytask import copy_rows, write_jsonl

pytestmark = pytest.mark.slow


def test_two_processes_train_one_model(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    write_jsonl(tmp_path / "copy.jsonl", copy_rows(120, prefix="r"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TASKLOOP_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [
            torchrun, "--standalone", "--nproc_per_node", "2",
            str(Path(sys.executable).parent / "taskloop"), "train",
            "data.train=[copy.jsonl]", "out=run", "run.device=cpu", "run.max_steps=6",
            "model.init={arch: marian, d_model: 16, layers: 1, heads: 2, ffn: 32, vocab_size: 80}",
            "eval.every_steps=3", "tracking.enabled=false", "data.clean.enabled=false",
            "run.log_every=1", "--no-progress", "--json",
        ],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # so a hang can be ended with every worker
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun hung; its output:\n{stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)  # only the main process prints its result
    assert result["steps"] == 6
    assert (tmp_path / "run" / "best" / "config.json").is_file()
    # each process trained on its own half of every batch
    firsts = [line for line in stderr.splitlines() if line.startswith("step 1/6 ")]
    assert len(firsts) == 2 and firsts[0] != firsts[1]
