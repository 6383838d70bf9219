"""GPU paths of the training loop (skipped without CUDA; CI has none).

bf16 autocast and fp16 with a gradient scaler must train a tiny model on CUDA: the loss
falls on a copy task and the saved model loads back on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from taskloop.models.tiny import build_tiny_model  # noqa: E402
from taskloop.train.config import load_train_config  # noqa: E402
from taskloop.train.loop import train  # noqa: E402
from taskloop.train.prepare import load_for_training  # noqa: E402
from tests.train.copytask import WORDS, copy_rows, write_jsonl  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def copy_task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gpu-train")
    data = write_jsonl(root / "copy.jsonl", copy_rows(300, prefix="r"))
    model = build_tiny_model(root / "tiny", "seq2seq", texts=WORDS, layers=1, width=64)
    return data, model


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda(
    copy_task: tuple[Path, Path], tmp_path: Path, precision: str
) -> None:
    data, model = copy_task
    losses: list[float] = []
    cfg = load_train_config(None, [
        f"model.name={model}", f"data.train=[{data}]", f"out={tmp_path / 'run'}",
        "run.device=cuda", f"run.precision={precision}", "run.max_steps=60", "run.log_every=1",
        "eval.every_steps=null", "optim.lr=3e-3", "optim.warmup_steps=5", "batch.tokens=1024",
        "checkpoint.every_steps=null", "tracking.enabled=false", "data.clean.enabled=false",
    ])  # fmt: skip
    result = train(cfg, on_step=lambda log: losses.append(log.loss))
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    reloaded, _, kind = load_for_training(str(result.model_dir), "seq2seq")
    assert kind == "seq2seq"
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in reloaded.parameters())
