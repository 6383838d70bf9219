"""Compression before and after: :func:`compression_report` compares two models on the
same pairs — size on disk, parameters (non-zero too), generation latency and a task
metric (0–100). Pruning lives in :mod:`taskloop.models.prune`, quantization in
:mod:`taskloop.models.quantize`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from taskloop.data.pairs import Pair
from taskloop.models.prune import count_params, model_device
from taskloop.models.quantize import (
    disk_size,
    is_quantized,
    save_compressed,
)
from taskloop.train.errors import CompressError

# Models and layers are typed Any: Hugging Face modules are reached through attributes
# (config, generate, wi, c_fc ...) that nn.Module's stubs cannot describe.
Module = Any

Metric = Literal["chrf", "bleu", "rougeL", "exact", "f1"]
GenKind = Literal["seq2seq", "causal"]

# --- before/after report -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelStats:
    """One model's side of a :class:`CompressionReport`."""

    size_bytes: int
    params: int
    nonzero_params: int
    dtype: str
    device: str
    latency_mean_ms: float | None = None  # per batch of greedy generation
    latency_p50_ms: float | None = None
    metric: float | None = None


@dataclass(frozen=True)
class CompressionReport:
    """A model before and after compression, on the same inputs."""

    metric_name: str
    pairs: int
    batch_size: int
    max_new_tokens: int
    before: ModelStats
    after: ModelStats

    @property
    def size_ratio(self) -> float:
        return self.after.size_bytes / self.before.size_bytes if self.before.size_bytes else 0.0

    @property
    def speedup(self) -> float | None:
        b, a = self.before.latency_mean_ms, self.after.latency_mean_ms
        return b / a if b is not None and a else None

    @property
    def metric_delta(self) -> float | None:
        b, a = self.before.metric, self.after.metric
        return a - b if a is not None and b is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(size_ratio=self.size_ratio, speedup=self.speedup, metric_delta=self.metric_delta)
        return out

    def table(self) -> str:
        """A markdown table: one row per measure, before / after / change."""

        def num(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)

        def mib(n: int) -> str:
            return f"{n / 2**20:.2f} MiB"

        b, a = self.before, self.after
        rows = [
            ("size on disk", mib(b.size_bytes), mib(a.size_bytes), f"×{self.size_ratio:.3f}"),
            ("parameters", f"{b.params:,}", f"{a.params:,}", f"×{_ratio(a.params, b.params)}"),
            (
                "non-zero parameters",
                f"{b.nonzero_params:,}",
                f"{a.nonzero_params:,}",
                f"×{_ratio(a.nonzero_params, b.nonzero_params)}",
            ),
            ("dtype / device", f"{b.dtype} / {b.device}", f"{a.dtype} / {a.device}", ""),
            (
                f"latency mean (ms / batch of {self.batch_size})",
                num(b.latency_mean_ms, ".1f"),
                num(a.latency_mean_ms, ".1f"),
                "n/a" if self.speedup is None else f"{self.speedup:.2f}× faster",
            ),
            (
                "latency p50 (ms / batch)",
                num(b.latency_p50_ms, ".1f"),
                num(a.latency_p50_ms, ".1f"),
                "",
            ),
            (
                f"{self.metric_name} ({self.pairs} pairs)",
                num(b.metric, ".4g"),
                num(a.metric, ".4g"),
                num(self.metric_delta, "+.4g"),
            ),
        ]
        lines = ["| measure | before | after | change |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
        return "\n".join(lines)


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def _dtype_name(model: Module) -> str:
    if is_quantized(model):
        return "int8"
    for p in model.parameters():
        return str(p.dtype).removeprefix("torch.")
    return "none"


def score(predictions: Sequence[str], references: Sequence[str], metric: Metric) -> float | None:
    """One corpus-level task metric by :mod:`taskloop.evaluate.metrics` (None: no pairs).

    Every metric is on 0–100, as training and ``taskloop run`` report them: chrF++ and BLEU
    as sacrebleu gives them, ROUGE-L F, exact match and token F1 times 100.
    """
    from taskloop.evaluate import metrics

    if not predictions:
        return None
    if metric in ("chrf", "bleu"):
        return metrics.bleu_chrf(predictions, references)["chrf++" if metric == "chrf" else "bleu"]
    if metric == "rougeL":
        value = metrics.rouge(predictions, [[r] for r in references]).get("rougeL")
        return None if value is None else 100 * value
    if metric in ("exact", "f1"):
        fn = metrics.exact_match if metric == "exact" else metrics.token_f1
        pairs = zip(predictions, references, strict=True)
        return 100 * sum(fn(p, [r]) for p, r in pairs) / len(predictions)
    raise CompressError(f"unknown metric {metric!r}", hint="use chrf, bleu, rougeL, exact or f1")


@contextmanager
def _generation_tokenizer(tokenizer: Any, kind: GenKind) -> Iterator[Any]:
    """The tokenizer set up for batched generation (a causal LM pads on the left)."""
    saved = (tokenizer.padding_side, tokenizer.truncation_side, tokenizer.pad_token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "causal":
        tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = saved[0], saved[1]
        if saved[2] is None:
            tokenizer.pad_token = None


def _input_limit(model: Module, tokenizer: Any, kind: GenKind, max_new_tokens: int) -> int:
    config = getattr(model, "config", None)
    limits = [
        v
        for v in (
            getattr(tokenizer, "model_max_length", None),
            getattr(config, "n_positions", None),
            getattr(config, "max_position_embeddings", None),
        )
        if isinstance(v, int) and 0 < v < 1_000_000
    ]
    limit = min(limits) if limits else 512
    return max(1, limit - max_new_tokens) if kind == "causal" else limit


def timed_generation(
    model: Module,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    kind: GenKind,
    batch_size: int = 8,
    max_new_tokens: int = 32,
) -> tuple[list[str], list[float]]:
    """Greedy outputs for ``sources`` and the milliseconds each batch took.

    The first batch runs once untimed first (warm-up: lazy init, allocator, caches).
    """
    import torch

    if not sources:
        return [], []
    device = model_device(model)
    outputs: list[str] = []
    times: list[float] = []
    with _generation_tokenizer(tokenizer, kind) as tok, torch.inference_mode():
        limit = _input_limit(model, tok, kind, max_new_tokens)
        batches = [list(sources[i : i + batch_size]) for i in range(0, len(sources), batch_size)]

        def run(texts: list[str]) -> list[str]:
            enc = tok(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=limit
            ).to(device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tok.pad_token_id,
            )
            if kind == "causal":
                out = out[:, enc["input_ids"].shape[1] :]
            return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

        run(batches[0])  # warm-up
        for texts in batches:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            outputs.extend(run(texts))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1000)
    return outputs, times


def _stats(
    model: Module,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    metric: Metric,
    batch_size: int,
    max_new_tokens: int,
) -> ModelStats:
    with tempfile.TemporaryDirectory(prefix="taskloop-size-") as tmp:
        size = disk_size(save_compressed(model, tmp))
    params, nonzero = count_params(model)
    outputs, times = timed_generation(
        model,
        tokenizer,
        [p.source for p in pairs],
        kind=kind,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    return ModelStats(
        size_bytes=size,
        params=params,
        nonzero_params=nonzero,
        dtype=_dtype_name(model),
        device=str(model_device(model)),
        latency_mean_ms=statistics.fmean(times) if times else None,
        latency_p50_ms=statistics.median(times) if times else None,
        metric=score(outputs, [p.target for p in pairs], metric),
    )


def compression_report(
    before_model: Module,
    after_model: Module,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    metric: Metric = "chrf",
    batch_size: int = 8,
    max_new_tokens: int = 32,
) -> CompressionReport:
    """Compare two models on the same pairs: size on disk, parameters, latency, metric.

    Size is what :func:`save_compressed` writes (no tokenizer). Latency is per batch of
    greedy generation after a warm-up batch; the metric scores the outputs against the
    pairs' targets. Without pairs, latency and metric are None.
    """
    import transformers

    from taskloop.log import step

    if metric not in ("chrf", "bleu", "rougeL", "exact", "f1"):
        raise CompressError(
            f"unknown metric {metric!r}", hint="use chrf, bleu, rougeL, exact or f1"
        )
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    args = dict(kind=kind, metric=metric, batch_size=batch_size, max_new_tokens=max_new_tokens)
    with step("compression_report", pairs=len(pairs)):
        before = _stats(before_model, tokenizer, pairs, **args)  # type: ignore[arg-type]
        after = _stats(after_model, tokenizer, pairs, **args)  # type: ignore[arg-type]
    return CompressionReport(
        metric_name=metric,
        pairs=len(pairs),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        before=before,
        after=after,
    )
