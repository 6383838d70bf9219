"""Where and how training runs: device, precision, Accelerate, seeds, optimizer, schedule.

One process on a CPU or a GPU runs plain PyTorch (autocast, a gradient scaler for fp16);
under ``accelerate launch`` (several GPUs, DeepSpeed) the same calls go through
``accelerate.Accelerator``.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from taskloop.train.config import TrainConfig
from taskloop.train.errors import TrainConfigError

logger = logging.getLogger("taskloop.train")


# ---------------------------------------------------------------------------- runtime


@dataclass
class Runtime:
    """Device, precision and (optionally) the Accelerator everything runs through."""

    device: Any
    autocast_dtype: Any  # None: full precision
    accelerator: Any = None
    scaler: Any = None

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def world(self) -> tuple[int, int]:
        if self.accelerator is None:
            return 0, 1
        return self.accelerator.process_index, self.accelerator.num_processes

    def autocast(self) -> Any:
        import contextlib

        import torch

        if self.accelerator is not None:
            return self.accelerator.autocast()
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def main_first(self) -> Any:
        """A block the main process runs before the others (no-op in one process)."""
        import contextlib

        if self.accelerator is None:
            return contextlib.nullcontext()
        return self.accelerator.main_process_first()

    def backward(self, loss: Any) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        elif self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()


def make_runtime(cfg: TrainConfig) -> Runtime:
    import torch

    from taskloop.models.loader import pick_device

    device = torch.device(pick_device(cfg.run.device))
    precision = cfg.run.precision
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if cuda_bf16 else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise TrainConfigError("run.precision fp16 needs a GPU", hint="use bf16 or fp32 on the CPU")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    launched = (
        int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_MIXED_PRECISION" in os.environ
    )
    use_acc = cfg.run.accelerate == "on" or (cfg.run.accelerate == "auto" and launched)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if use_acc:
        from accelerate import Accelerator

        acc = Accelerator(
            mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(precision, "no"),
            cpu=device.type == "cpu",
        )
        plugin = getattr(acc.state, "deepspeed_plugin", None)
        if plugin is not None:
            # No dataloader goes through prepare(): DeepSpeed must be told a micro-batch size
            # (batches here are token-budgeted; the value only sizes DeepSpeed's bookkeeping).
            ds = plugin.deepspeed_config
            if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
                ds["train_micro_batch_size_per_gpu"] = cfg.batch.size
        return Runtime(acc.device, dtype, accelerator=acc)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return Runtime(device, dtype, scaler=scaler)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, progress: float, *, warmup: int, schedule: str) -> float:
    """Multiplier of the base learning rate: linear warm-up, then the schedule.

    ``progress`` in [0, 1] is the share of the run done (steps or time budget, whichever
    is further along), so a time-budgeted run still decays to zero at its end.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warmup, 1) / max(step, 1))
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def make_optimizer(model: Any, cfg: TrainConfig, device: Any, lr: float | None = None) -> Any:
    """AdamW with no weight decay on biases and norms (fused kernels on CUDA)."""
    import torch

    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=lr or cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
        fused=device.type == "cuda",
    )  # fmt: skip
