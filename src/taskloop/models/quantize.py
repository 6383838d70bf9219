"""Quantization: dynamic int8 for CPU inference, bf16/fp16 casts, and int8 folders.

``int8`` is dynamic quantization of Linear layers for CPU inference
(:func:`torch.ao.quantization.quantize_dynamic`); ``bf16``/``fp16`` cast the weights.
:func:`save_compressed` writes an int8 model as ``quantized.pt`` + config +
``quantization.json`` (``save_pretrained`` cannot store quantized modules);
:func:`load_quantized` rebuilds it, and ``taskloop run`` loads such folders on the CPU.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from taskloop.models.prune import is_conv1d, is_dynamic_quantized, prunable_layers
from taskloop.train.errors import CompressError

# Models and layers are typed Any: Hugging Face modules are reached through attributes
# (config, generate, wi, c_fc ...) that nn.Module's stubs cannot describe.
Module = Any

QuantMode = Literal["int8", "bf16", "fp16"]
GenKind = Literal["seq2seq", "causal"]
QUANT_MARKER = "quantization.json"
QUANT_WEIGHTS = "quantized.pt"
QUANT_FORMAT = "taskloop.dynamic-int8"

# --- quantization ------------------------------------------------------------------------


def is_quantized(model: Module) -> bool:
    """Whether ``model`` holds int8 dynamic-quantized Linear layers."""
    return any(is_dynamic_quantized(m) for m in model.modules())


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao.quantization warns on every call that it is deprecated in favour of torchao
    # (not installed, and a GPU-first library); the eager API still works in torch 2.13,
    # so only those two warnings are silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning
        )
        yield


def _linear_from_conv1d(conv: Module) -> Module:
    """GPT-2's Conv1D as the nn.Linear it is (weight transposed), so it can be quantized."""
    import torch
    from torch import nn

    linear = nn.Linear(conv.weight.shape[0], conv.weight.shape[1], bias=conv.bias is not None)
    linear.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.t())
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


def _replace(model: Module, name: str, new: Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _quantize_int8(model: Module, names: Sequence[str]) -> Module:
    """Dynamic int8 quantization of the named Linear/Conv1D layers (a new model)."""
    import copy

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model)
    for name in names:
        module = model.get_submodule(name)
        if is_conv1d(module):
            _replace(model, name, _linear_from_conv1d(module))
    with _quiet_quantization():
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            model, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8
        )


def quantize_model(model: Module, *, mode: QuantMode, device: str = "cpu") -> Module:
    """The model quantized for inference.

    Args:
        mode: "int8": dynamic quantization of the Linear layers (GPT-2's Conv1D too; not
            the LM head) for CPU inference, as a new model (the original is untouched);
            "bf16" / "fp16": the model cast in place and moved to ``device``.
        device: where the model runs: int8 needs "cpu"; fp16 needs a GPU.

    Raises:
        CompressError: int8 off the CPU, fp16 on the CPU, an unknown mode.
        DeviceError: the device is not available here.
    """
    import torch

    from taskloop.log import step
    from taskloop.models.loader import pick_device

    if mode not in ("int8", "bf16", "fp16"):
        raise CompressError(f"unknown quantization mode {mode!r}", hint="use int8, bf16 or fp16")
    device = pick_device(device)
    with step("quantize", mode=mode, device=device):
        if mode == "int8":
            if device != "cpu":
                raise CompressError(
                    "int8 dynamic quantization runs on the CPU only",
                    hint="use --device cpu, or bf16/fp16 on a GPU",
                )
            model = model.to("cpu", dtype=torch.float32)
            return _quantize_int8(model, [name for name, _ in prunable_layers(model)])
        if mode == "fp16" and device == "cpu":
            raise CompressError(
                "fp16 on the CPU is slow and many CPU kernels lack it",
                hint="use --mode bf16 or int8 on the CPU, or --device cuda for fp16",
            )
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        return model.to(device=device, dtype=dtype)


def _model_kind(config: Any) -> GenKind:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def save_compressed(model: Module, out_dir: str | Path, tokenizer: Any = None) -> Path:
    """Save a (pruned or quantized) model so that it can be loaded again.

    A float model goes through ``save_pretrained``. An int8 model cannot (its layers hold
    packed int8 weights): its ``state_dict`` goes to ``quantized.pt`` next to the config,
    and ``quantization.json`` says how to rebuild it (see :func:`load_quantized`).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if not is_quantized(model):
        model.save_pretrained(out)
        return out
    config = model.config
    config.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(out)
    torch.save(model.state_dict(), out / QUANT_WEIGHTS)
    marker = {
        "format": QUANT_FORMAT,
        "mode": "int8",
        "weights": QUANT_WEIGHTS,
        "kind": _model_kind(config),
        "modules": [name for name, m in model.named_modules() if is_dynamic_quantized(m)],
        "torch": torch.__version__,
    }
    (out / QUANT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return out


def load_quantized(path: str | Path) -> Module:
    """Rebuild an int8 model written by :func:`save_compressed` (eval mode, CPU).

    Raises:
        CompressError: the folder has no ``quantization.json`` or it is of another format.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        GenerationConfig,
    )

    folder = Path(path)
    marker_path = folder / QUANT_MARKER
    if not marker_path.is_file():
        raise CompressError(
            f"{str(folder)!r} holds no {QUANT_MARKER}: not an int8 model saved by taskloop",
            hint="load float models with taskloop.models.loader.load_model",
        )
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompressError(f"{marker_path}: not valid JSON: {exc}") from None
    if not isinstance(marker, dict) or marker.get("format") != QUANT_FORMAT:
        raise CompressError(f"{marker_path}: unknown quantization format")
    config = AutoConfig.from_pretrained(folder)
    auto = AutoModelForSeq2SeqLM if marker.get("kind") == "seq2seq" else AutoModelForCausalLM
    model = auto.from_config(config)  # type: ignore[no-untyped-call]
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    quantized = _quantize_int8(model, marker["modules"])
    with warnings.catch_warnings():
        # Loading packed int8 weights goes through torch's legacy TypedStorage path.
        warnings.filterwarnings(
            "ignore", message="TypedStorage is deprecated", category=UserWarning
        )
        state = torch.load(folder / marker["weights"], map_location="cpu", weights_only=True)
    quantized.load_state_dict(state)
    quantized.eval()
    return quantized


def disk_size(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
