"""One loader for any Hugging Face model, by hub id or local path.

``load_model`` resolves the name offline first (a local folder, then the hub cache) and
only downloads when the hub is not switched off (``HF_HUB_OFFLINE``) and
``allow_download`` is true. It picks the model class from the config (encoder-decoder
→ seq2seq LM, decoder → causal LM, or a question-answering head when asked), moves it to
the chosen device and dtype, and reads the context window from the tokenizer and config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from taskloop.log import step
from taskloop.models.errors import DeviceError, ModelKindError, ModelNotFoundError

logger = logging.getLogger("taskloop.models")

Kind = Literal["auto", "seq2seq", "causal", "qa", "encoder", "classify"]
LoadedKind = Literal["seq2seq", "causal", "qa", "encoder", "classify"]

# Longest window we believe a tokenizer's model_max_length when the config has none;
# tokenizers without a limit report 1e30.
_FALLBACK_WINDOW = 512


@dataclass(frozen=True)
class ModelSpec:
    """What to load.

    Args:
        name: a hub id (``Helsinki-NLP/opus-mt-en-de``) or a local folder.
        kind: "auto" reads the config; or force "seq2seq", "causal", "qa", "encoder".
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
        dtype: "auto" (float16 on CUDA/MPS when ``half`` is set, else float32),
            "float32", "float16", "bfloat16".
        revision: a hub revision (branch, tag or commit).
        allow_download: fetch from the hub when not cached (ignored if HF_HUB_OFFLINE=1).
    """

    name: str
    kind: Kind = "auto"
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    allow_download: bool = False


@dataclass
class LoadedModel:
    """A model ready to run, with what callers need to know about it."""

    spec: ModelSpec
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers tokenizer
    kind: LoadedKind
    device: str
    window: int  # the most input tokens the model reads
    version: str  # commit hash or content hash: part of every cache key
    path: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        """``name@version12 (kind, device)`` for reports."""
        return f"{self.spec.name}@{self.version[:12]} ({self.kind}, {self.device})"


def pick_device(device: str = "auto") -> str:
    """Resolve "auto" to cuda, mps or cpu; refuse a device this machine lacks."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r} asked for, but CUDA is not available here",
            hint="pass --device cpu, or install a CUDA build of torch on a machine with a GPU",
        )
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' asked for, but MPS is not available here")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise DeviceError(f"unknown device {device!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    import torch

    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        return torch.float32
    if dtype not in names:
        raise DeviceError(f"unknown dtype {dtype!r}", hint="use auto, float32, float16 or bfloat16")
    if dtype == "float16" and device == "cpu":
        raise DeviceError(
            "float16 on the CPU is slow and unsupported by many kernels",
            hint="use --dtype float32 or bfloat16 on the CPU",
        )
    return names[dtype]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve(spec: ModelSpec) -> Path:
    """The local folder holding ``spec``'s files, or raise ModelNotFoundError.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` and ``models:/NAME`` come from the
    model registry (downloaded once per version). The registry is asked on every call, and
    ``load_model`` calls this before its cache lookup (keyed by the resolved version's
    folder), so an alias moved by a promotion or rollback is seen by the next load, in a
    running process too.
    """
    if spec.name.startswith("models:/"):
        from taskloop.models.registry import resolve_uri
        from taskloop.train.errors import RegistryError

        try:
            return resolve_uri(spec.name)
        except RegistryError as exc:
            # Callers treat a missing model alike, wherever it was to come from.
            raise ModelNotFoundError(exc.message, hint=exc.hint) from exc
    local = Path(spec.name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(
                f"model folder {str(local)!r} has no config.json",
                hint="pass a folder written by save_pretrained (config.json, weights, tokenizer)",
            )
        return local
    if spec.name.startswith((".", "/", "~")) or os.sep + os.sep in spec.name:
        raise ModelNotFoundError(
            f"model folder {spec.name!r} does not exist",
            hint="pass an existing folder saved with save_pretrained, or a hub id "
            "already in the local Hugging Face cache",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(spec.name, revision=spec.revision, local_files_only=True))
    except HFValidationError as exc:
        raise ModelNotFoundError(
            f"{spec.name!r} is neither a folder nor a valid hub id: {exc}",
            hint="pass a folder saved with save_pretrained, or a hub id like owner/name",
        ) from None
    except Exception as exc:
        cached_error = exc
    if spec.allow_download and not offline():
        try:
            return Path(snapshot_download(spec.name, revision=spec.revision))
        except Exception as exc:
            raise ModelNotFoundError(
                f"model {spec.name!r} could not be downloaded: {type(exc).__name__}: {exc}",
                hint="check the id and the network, or pass a local folder",
            ) from None
    raise ModelNotFoundError(
        f"model {spec.name!r} is not a local folder and is not in the Hugging Face cache "
        f"({type(cached_error).__name__})",
        hint=(
            "pass a local folder saved with save_pretrained, or fetch it once with "
            f"`huggingface-cli download {spec.name}` on a machine with network, "
            "or allow downloads (--allow-download) when the hub is reachable"
        ),
    )


def content_version(path: Path) -> str:
    """A stable version id: the hub snapshot's commit, else a hash of config and weights."""
    if path.parent.name == "snapshots" and len(path.name) == 40:
        return path.name
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        name = file.name
        if not file.is_file():
            continue
        digest.update(name.encode())
        if name.endswith(".json") or file.stat().st_size < 1 << 20:
            digest.update(file.read_bytes())
        else:
            stat = file.stat()
            digest.update(f"{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()


def _kind_from_config(config: Any) -> LoadedKind:
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "QuestionAnswering" in archs:
        return "qa"
    if "SequenceClassification" in archs:  # classifiers, reward models, NLI cross-encoders
        return "classify"
    if "CausalLM" in archs or "LMHead" in archs or getattr(config, "is_decoder", False):
        return "causal"
    if any(s in archs for s in ("ForMaskedLM", "Model")) and "LM" not in archs.replace(
        "MaskedLM", ""
    ):
        return "encoder"
    return "causal"


def context_window(tokenizer: Any, config: Any) -> int:
    """The most tokens a model reads: its position table, else the tokenizer's limit."""
    candidates = [
        getattr(config, name, None)
        for name in ("max_position_embeddings", "n_positions", "max_encoder_position_embeddings")
    ]
    from_config = [c for c in candidates if isinstance(c, int) and c > 0]
    from_tok = getattr(tokenizer, "model_max_length", None)
    if isinstance(from_tok, int) and 0 < from_tok < 1_000_000:
        return min([from_tok, *from_config]) if from_config else from_tok
    if from_config:
        return min(from_config)
    # T5 uses relative positions: no hard limit, but quality falls after its training length.
    return _FALLBACK_WINDOW


# Any one of these marks a folder that holds a tokenizer (fast, sentencepiece, BPE, WordPiece).
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model",
    "sentencepiece.bpe.model", "source.spm", "vocab.json", "vocab.txt", "merges.txt",
)  # fmt: skip

_cache: dict[ModelSpec, tuple[LoadedModel, tuple[tuple[str, int, int], ...]]] = {}
_cache_lock = threading.Lock()


def folder_stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime) of each file in a model folder: a cheap check (a few stats)
    that the folder still holds what was loaded from it."""
    try:
        return tuple(
            sorted((f.name, st.st_size, st.st_mtime_ns) for f in path.iterdir() if f.is_file()
                   for st in [f.stat()])
        )  # fmt: skip
    except OSError:
        return ()


def load_model(spec: ModelSpec | str) -> LoadedModel:
    """Load (once per process) the model and tokenizer that ``spec`` names.

    Raises:
        ModelNotFoundError: the name is not a folder and not cached (offline).
        ModelKindError: the model cannot do what ``spec.kind`` asks.
        DeviceError: the device or dtype is not available.
    """
    if isinstance(spec, str):
        spec = ModelSpec(spec)
    key = spec
    path: Path | None = None
    if spec.name.startswith("models:/"):
        # A registry alias can move between loads: cache by the version it points at now.
        path = resolve(spec)
        key = dataclasses.replace(spec, name=str(path))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        # A folder rewritten since (a retraining into the same folder) is loaded again.
        if folder_stamp(Path(hit[0].path)) == hit[1]:
            return hit[0]
        logger.info("model %s changed on disk since it was loaded: loading it again", spec.name)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    path = path or resolve(spec)
    stamp = folder_stamp(path)  # before reading: a write during the load makes it stale
    import transformers
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForQuestionAnswering,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    with step("load_model", model=spec.name, device=device) as info:
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise ModelNotFoundError(
                f"model {spec.name!r}: unreadable config: {exc}",
                hint="re-save the model with save_pretrained; config.json must be valid JSON",
            ) from None
        kind: LoadedKind = _kind_from_config(config) if spec.kind == "auto" else spec.kind
        classes = {
            "seq2seq": AutoModelForSeq2SeqLM,
            "causal": AutoModelForCausalLM,
            "qa": AutoModelForQuestionAnswering,
            "encoder": AutoModel,
            "classify": AutoModelForSequenceClassification,
        }
        try:
            if (path / "quantization.json").is_file():
                # dynamic int8 (``taskloop compress quantize``) runs on the CPU only
                from taskloop.models.quantize import load_quantized

                model, device = load_quantized(path), "cpu"
            else:
                model = classes[kind].from_pretrained(path, dtype=dtype)
        except ValueError as exc:
            raise ModelKindError(
                # transformers appends every supported config class: keep the first line
                f"model {spec.name!r} ({config.model_type}) cannot be loaded as {kind}: "
                f"{str(exc).splitlines()[0]}",
                hint="pick a model of the right kind for the task, or set kind explicitly",
            ) from None
        try:
            # transformers 5 builds an empty tokenizer for a folder without tokenizer
            # files; its output would be garbage, so refuse it here.
            if not any((path / name).is_file() for name in _TOKENIZER_FILES):
                raise OSError("no tokenizer files in the model folder")
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"model {spec.name!r} has no usable tokenizer: {exc}",
                hint="save the tokenizer next to the model (tokenizer.save_pretrained)",
            ) from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if kind == "causal":
            # Generation continues from the right end: pad and cut on the left.
            tokenizer.padding_side = "left"
            tokenizer.truncation_side = "left"
        model.to(device)
        model.eval()
        loaded = LoadedModel(
            spec=spec,
            model=model,
            tokenizer=tokenizer,
            kind=kind,
            device=device,
            window=context_window(tokenizer, config),
            version=content_version(path),
            path=str(path),
        )
        info.update(
            kind=kind, window=loaded.window, params=sum(p.numel() for p in model.parameters())
        )
    with _cache_lock:
        _cache[key] = (loaded, stamp)
    return loaded
