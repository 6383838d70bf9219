"""``taskloop compress ...``: prune or quantize a model and report what it cost and saved.

Each command loads the model on the CPU, compresses a copy, measures both on the same
pairs (size on disk, parameters, latency of greedy generation, a task metric), prints
the comparison and writes the compressed model plus ``compression.json`` to ``--out``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import EPILOG, handle_errors

if TYPE_CHECKING:
    from taskloop.data.pairs import Pair
    from taskloop.models.compress import CompressionReport, Metric
    from taskloop.models.loader import LoadedModel
    from taskloop.models.prune import GenKind

app = typer.Typer(
    help="Compress a model: prune weights, FFN neurons or attention heads, or quantize it "
    "(int8 for the CPU, bf16/fp16), and compare size, speed and quality before and after.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

REPORT_FILE = "compression.json"
# The metric each task is usually reported with, when --metric is not given.
_TASK_METRIC: dict[str, Metric] = {
    "translate": "chrf",
    "summarize": "rougeL",
    "qa": "exact",
    "codegen": "chrf",
}

ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="A folder saved with save_pretrained, a hub id in the cache, or a registered "
        "model: models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (latest).",
    ),
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        "-d",
        metavar="FILE_OR_ARCHIVE",
        help="Labelled task data (a .jsonl/.json/.csv file, a folder, a .zip, a blob or a saved "
        "dataset) for calibration, recovery and the before/after metric.",
    ),
]
OutOpt = Annotated[
    Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the model and report.")
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        metavar="METRIC",
        help="chrf, bleu, rougeL, exact or f1, all on 0-100 (default: the usual one for the "
        "data's task).",
    ),
]
MaxPairs = Annotated[int, typer.Option(metavar="N", help="Measure on at most this many pairs.")]
BatchSize = Annotated[int, typer.Option(metavar="N", help="Pairs per generation batch.")]
MaxNew = Annotated[int, typer.Option(metavar="N", help="Most tokens generated per pair.")]


def read_pairs(path: Path, *, kind: GenKind, model_type: str) -> list[Pair]:
    """Every labelled example of a task file, folder, ZIP, blob or saved dataset as pairs.

    Raises:
        TrainDataError: the path does not exist or holds no labelled examples.
    """
    from taskloop.data.pairs import to_pairs
    from taskloop.train.errors import TrainDataError
    from taskloop.train.inputs import read_inputs

    inputs = read_inputs([str(path)])
    pairs = to_pairs(inputs.examples, kind=kind, model_type=model_type)
    if not pairs:
        first = f"; first problem: {inputs.errors[0]}" if inputs.errors else ""
        raise TrainDataError(
            f"{path}: no labelled examples ({len(inputs.examples)} usable rows){first}",
            hint="compression is measured against references: rows need targets, answers, "
            "summaries or completions",
        )
    return pairs


def _load(name: str) -> LoadedModel:
    from taskloop.models.errors import ModelKindError
    from taskloop.models.loader import ModelSpec, load_model

    lm = load_model(ModelSpec(name, device="cpu"))
    if lm.kind not in ("seq2seq", "causal"):
        raise ModelKindError(
            f"model {name!r} is a {lm.kind} model; compression here measures generation",
            hint="pass a seq2seq or causal language model",
        )
    return lm


def _kind(lm: LoadedModel) -> GenKind:
    return "causal" if lm.kind == "causal" else "seq2seq"


def _pick_metric(metric: str | None, pairs: list[Pair]) -> Metric:
    from taskloop.train.errors import CompressError

    if metric is None:
        tasks = {p.task for p in pairs}
        return _TASK_METRIC[next(iter(tasks))] if len(tasks) == 1 else "chrf"
    if metric not in ("chrf", "bleu", "rougeL", "exact", "f1"):
        raise CompressError(
            f"unknown metric {metric!r}", hint="use chrf, bleu, rougeL, exact or f1"
        )
    return metric  # type: ignore[return-value]


def _finish(
    lm: LoadedModel,
    after: Any,
    pairs: list[Pair],
    out: Path,
    *,
    metric: Metric,
    batch_size: int,
    max_new_tokens: int,
    extra: dict[str, Any],
) -> CompressionReport:
    from taskloop.models.compress import compression_report
    from taskloop.models.quantize import save_compressed

    kind = _kind(lm)
    report = compression_report(
        lm.model,
        after,
        lm.tokenizer,
        pairs,
        kind=kind,
        metric=metric,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    save_compressed(after, out, lm.tokenizer)
    payload = {"model": lm.name, "version": lm.version, **extra, "compression": report.to_dict()}
    (out / REPORT_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    typer.echo(report.table())
    typer.echo(f"model and {REPORT_FILE} written to {out}")
    return report


@app.command("prune", epilog=EPILOG)
@handle_errors
def prune_command(
    model: ModelArg,
    out: OutOpt = Path("taskloop-pruned"),
    amount: Annotated[
        float, typer.Option(metavar="SHARE", help="Share to remove, in [0, 1).")
    ] = 0.3,
    method: Annotated[
        str,
        typer.Option(
            metavar="METHOD",
            help="magnitude (zero single weights), ffn (remove FFN neurons: smaller and "
            "faster), heads (zero attention heads).",
        ),
    ] = "magnitude",
    importance: Annotated[
        str,
        typer.Option(
            metavar="SCORE",
            help="magnitude, gradient (Taylor; needs --data) or activation (Wanda; needs --data).",
        ),
    ] = "magnitude",
    data: DataOpt = None,
    recover_steps: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Fine-tune this many steps on --data after pruning (pruned weights stay 0).",
        ),
    ] = 0,
    lr: Annotated[float, typer.Option(metavar="LR", help="Recovery learning rate.")] = 5e-4,
    calibration_batches: Annotated[
        int, typer.Option(metavar="N", help="Batches of --data that score importance.")
    ] = 8,
    metric: MetricOpt = None,
    max_pairs: MaxPairs = 64,
    batch_size: BatchSize = 8,
    max_new_tokens: MaxNew = 32,
) -> None:
    """Prune MODEL and compare it with the original on --data.

    Writes the pruned model (loadable with from_pretrained) and compression.json (the
    pruning report, recovery losses and the before/after comparison) to --out.
    """
    from taskloop.models.prune import encode_pairs, model_pruning, recover
    from taskloop.train.errors import CompressError

    lm = _load(model)
    kind = _kind(lm)
    pairs = read_pairs(data, kind=kind, model_type=lm.model.config.model_type) if data else []
    if importance != "magnitude" and not pairs:
        raise CompressError(
            f"--importance {importance} scores weights on data", hint="pass --data FILE"
        )
    if recover_steps and not pairs:
        raise CompressError("--recover-steps fine-tunes on data", hint="pass --data FILE")
    after = copy.deepcopy(lm.model)  # the loaded model is shared (cached): keep it intact
    calibration = (
        encode_pairs(lm.tokenizer, pairs, kind=kind, batch_size=batch_size)[:calibration_batches]
        if importance != "magnitude"
        else None
    )
    report = model_pruning(
        after,
        amount=amount,
        method=method,  # type: ignore[arg-type]
        importance=importance,  # type: ignore[arg-type]
        calibration=calibration,
    )
    losses = (
        recover(after, lm.tokenizer, pairs, kind=kind, steps=recover_steps, lr=lr)
        if recover_steps
        else []
    )
    after.eval()
    measured = pairs[:max_pairs]
    if losses:
        typer.echo(
            f"note: recovery trained on the same {len(pairs)} pairs the metric is measured on",
            err=True,
        )
    typer.echo(
        f"pruned {method} ({importance}) amount {amount}: sparsity {report.sparsity:.3f}, "
        f"parameters {report.params_before:,} → {report.params_after:,}"
    )
    _finish(
        lm,
        after,
        measured,
        out,
        metric=_pick_metric(metric, measured),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        extra={"prune": report.to_dict(), "recovery_losses": losses},
    )


@app.command("quantize", epilog=EPILOG)
@handle_errors
def quantize_command(
    model: ModelArg,
    mode: Annotated[
        str,
        typer.Option(
            metavar="MODE", help="int8 (dynamic, CPU), bf16 (CPU or GPU) or fp16 (GPU only)."
        ),
    ] = "int8",
    out: OutOpt = Path("taskloop-quantized"),
    data: DataOpt = None,
    device: Annotated[
        str, typer.Option(metavar="DEVICE", help="Where the quantized model runs: cpu, cuda.")
    ] = "cpu",
    metric: MetricOpt = None,
    max_pairs: MaxPairs = 64,
    batch_size: BatchSize = 8,
    max_new_tokens: MaxNew = 32,
) -> None:
    """Quantize MODEL and compare it with the original on --data.

    An int8 model is saved as quantized.pt + config + quantization.json (load it with
    taskloop.models.quantize.load_quantized); bf16/fp16 models with save_pretrained.
    """
    from taskloop.models.quantize import quantize_model

    lm = _load(model)
    kind = _kind(lm)
    pairs = read_pairs(data, kind=kind, model_type=lm.model.config.model_type) if data else []
    measured = pairs[:max_pairs]
    after = quantize_model(copy.deepcopy(lm.model), mode=mode, device=device)  # type: ignore[arg-type]
    after.eval()
    _finish(
        lm,
        after,
        measured,
        out,
        metric=_pick_metric(metric, measured),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        extra={"quantize": {"mode": mode, "device": device}},
    )
