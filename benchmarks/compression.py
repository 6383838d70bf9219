"""Compression of a small Marian en→de model trained on Multi30k: int8 dynamic quantization
(latency ratio and BLEU change against fp32) and pruning (magnitude 30% and 50%, FFN
neurons 30%; without and with a short recovery fine-tune), all measured in one run.

Issue 4 asks for "int8 vs fp32: latency ratio and BLEU change; pruning at 30% and 50%:
metric change"::

    python benchmarks/compression.py                 # trains (or reuses) the model, 200 test rows
    python benchmarks/compression.py --model DIR     # an existing seq2seq model instead
    python benchmarks/compression.py --smoke         # tiny model, 20 rows (< 30 s)

The model is trained with taskloop's own loop (``taskloop.train.loop.train``, a Marian
Transformer built from scratch with a BPE vocabulary learned on the training pairs) on the
first ``--train-rows`` Multi30k training pairs for ``--train-steps`` steps; it is cached
under ``--work`` (keyed by its settings), so a rerun goes straight to the measurements.
It is small (1.5 M parameters by default) and briefly trained (about 2.5 epochs): what
matters here is the change each compression makes to it, not its absolute BLEU.

Every variant translates the same first ``--eval-rows`` sentences of Multi30k test2016
(flickr), greedy, ``--batch-size`` sentences per batch, at most ``--max-new-tokens`` new
tokens, with :func:`taskloop.models.compress.timed_generation` (one untimed warm-up batch
first); BLEU and chrF++ are sacrebleu's corpus scores.

- int8: :func:`quantize_model` (dynamic quantization of every Linear but the LM head, CPU).
  The latency ratio is fp32 / int8 milliseconds per batch, median over ``--repeats``
  passes that alternate between the models (and the FFN-pruned one). Greedy outputs of
  the two models can differ in length, so ms per generated token is shown too.
- magnitude pruning (:func:`model_pruning`, global unstructured over the Linear layers):
  zeros in dense tensors, so the same size and speed; the zlib column (the saved files
  deflated, level 6) shows what sparse or compressed storage would gain.
- FFN pruning removes 30% of each FFN block's neurons for real: fewer parameters, a
  smaller file, less arithmetic.
- "+ recovery": :func:`recover` fine-tunes the pruned model for ``--recover-steps`` steps
  on the training pairs (constant lr ``--recover-lr``) with its zeros held at zero. The
  same fine-tune can move an unpruned model too, so the "fp32 + the same fine-tune" row
  is the control a recovered model should also be read against.

torch runs on one CPU thread by default (see ``generation.py``); ``--threads 0`` restores
torch's choice. :func:`compression_report` (the library's own before/after table) is
printed for int8 vs fp32 at the end.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from machine import (  # benchmarks/machine.py, beside this script
    describe,
    read_pairs,
    write_jsonl,
)

# The benchmark never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # after the offline switches

from taskloop.data.pairs import Pair, to_pairs
from taskloop.data.records import TranslateExample, Where
from taskloop.evaluate.metrics import bleu_chrf
from taskloop.models.compress import compression_report, timed_generation
from taskloop.models.prune import count_params, model_pruning, recover, sparsity
from taskloop.models.quantize import disk_size, quantize_model, save_compressed
from taskloop.train.config import load_train_config
from taskloop.train.loop import train
from taskloop.train.prepare import load_for_training

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "translation"
WORK_DIR = Path(tempfile.gettempdir()) / "taskloop-bench-compression"
SEED = 0
SWEEP_TOKENS = 32  # new tokens per input in the int8-by-width section
SWEEP_ROWS = 64


def log(message: str = "") -> None:
    print(message, flush=True)


def machine() -> list[str]:
    return describe(
        ("torch", "transformers", "sacrebleu"),
        extra=f"CPU only (int8 dynamic quantization is a CPU path); "
        f"torch threads {torch.get_num_threads()}",
    )


# --- data -----------------------------------------------------------------------------------


def as_pairs(pairs: list[tuple[str, str]], file: str, model_type: str) -> list[Pair]:
    examples = [
        TranslateExample(
            id=f"{file}-{i}",
            where=Where(file=file, row=i + 1),
            source=en,
            target=de,
            source_lang="en",
            target_lang="de",
        )
        for i, (en, de) in enumerate(pairs)
    ]
    return to_pairs(examples, kind="seq2seq", model_type=model_type)


# --- the model ------------------------------------------------------------------------------


def trained_model(args: argparse.Namespace) -> Path:
    """The cached model folder for these settings, trained with taskloop's loop if absent."""
    key = (
        f"marian-d{args.d_model}-l{args.layers}-f{args.ffn}-v{args.vocab}-"
        f"r{args.train_rows}-s{args.train_steps}-t{args.train_tokens}"
    )
    run_dir: Path = args.work / key
    best = run_dir / "best"
    if (run_dir / "done.json").is_file() and (best / "config.json").is_file():
        log(f"model: reusing {best} (trained by an earlier run)")
        return best
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_jsonl(run_dir / "train.jsonl", read_pairs(args.data_dir, "multi30k_train",
                                                    args.train_rows), "t")  # fmt: skip
    write_jsonl(run_dir / "val.jsonl", read_pairs(args.data_dir, "multi30k_val", 64), "v")
    cfg = load_train_config(
        None,
        [
            f"out={run_dir}",
            "data.clean.enabled=false",
            f"run.max_steps={args.train_steps}",
            f"run.seed={SEED}",
            "run.device=cpu",
            "run.precision=fp32",
            "eval.every_steps=null",
            "eval.metric=loss",
            "checkpoint.every_steps=null",
            "tracking.enabled=false",
            f"batch.tokens={args.train_tokens}",
            f"optim.lr={args.train_lr}",
            f"optim.warmup_steps={max(1, args.train_steps // 10)}",
        ],
        model={
            "init": {
                "arch": "marian", "d_model": args.d_model, "layers": args.layers, "heads": 4,
                "ffn": args.ffn, "vocab_size": args.vocab, "max_positions": 256,
            }
        },
        data={"train": [str(run_dir / "train.jsonl")], "eval": [str(run_dir / "val.jsonl")]},
    )  # fmt: skip
    start = time.perf_counter()
    result = train(cfg)
    val_loss = f", validation loss {result.history[-1].loss:.3f}" if result.history else ""
    log(
        f"model: trained {result.steps} steps on {args.train_rows} Multi30k pairs in "
        f"{time.perf_counter() - start:.0f}s ({result.tokens_per_s:,.0f} target tokens/s)"
        + val_loss
    )
    (run_dir / "done.json").write_text(json.dumps({"steps": result.steps}), "utf-8")
    return Path(result.model_dir)


# --- measuring one variant ------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    name: str
    bleu: float
    chrf: float
    size: int  # bytes on disk (save_compressed, no tokenizer)
    zlib: int  # the same files, deflated (zlib level 6)
    params: int
    nonzero: int
    sparsity: float
    times: list[float] = dataclasses.field(default_factory=list)  # ms per batch, per pass
    per_token: list[float] = dataclasses.field(default_factory=list)  # ms per new token


def sizes(model: Any) -> tuple[int, int]:
    with tempfile.TemporaryDirectory(prefix="taskloop-size-") as tmp:
        folder = save_compressed(model, tmp)
        packed = sum(
            len(zlib.compress(f.read_bytes(), 6)) for f in Path(folder).rglob("*") if f.is_file()
        )
        return disk_size(folder), packed


def generate(
    model: Any, tokenizer: Any, sources: list[str], args: argparse.Namespace
) -> tuple[list[str], float, float]:
    """(outputs, mean ms per batch, ms per generated token) of one greedy pass."""
    outputs, times = timed_generation(
        model, tokenizer, sources, kind="seq2seq", batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    new_tokens = sum(len(ids) for ids in tokenizer(outputs)["input_ids"])
    return outputs, statistics.fmean(times), sum(times) / max(new_tokens, 1)


def measure(
    name: str, model: Any, tokenizer: Any, test: list[Pair], args: argparse.Namespace
) -> Row:
    outputs, ms, per_token = generate(model, tokenizer, [p.source for p in test], args)
    scores = bleu_chrf(outputs, [p.target for p in test])
    size, packed = sizes(model)
    params, nonzero = count_params(model)
    row = Row(
        name, scores["bleu"], scores["chrf++"], size, packed, params, nonzero,
        sparsity(model), [ms], [per_token],
    )  # fmt: skip
    log(f"  {name}: BLEU {row.bleu:.2f}, chrF++ {row.chrf:.2f}, {ms:.1f} ms/batch")
    return row


def int8_by_width(
    model_dir: Path, sources: list[str], widths: list[int], args: argparse.Namespace
) -> None:
    """fp32 vs int8 latency on random-weight models of each width (same tokenizer and
    depth), every batch generating exactly ``SWEEP_TOKENS`` new tokens (same work)."""
    from taskloop.train.config import ModelInit
    from taskloop.train.scratch import build_from_scratch

    log("")
    log("| d_model | FFN | parameters | fp32 ms/batch | int8 ms/batch | fp32 / int8 |")
    log("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="taskloop-int8-width-") as tmp:
        for width in widths:
            heads = 8 if width % 8 == 0 else 4
            init = ModelInit(
                arch="marian", d_model=width, layers=args.layers, heads=heads, ffn=4 * width,
                tokenizer=str(model_dir), max_positions=256,
            )  # fmt: skip
            folder = build_from_scratch(init, [], Path(tmp) / f"d{width}")
            fp32, tokenizer, _ = load_for_training(str(folder), "seq2seq")
            fp32.eval()
            fp32.generation_config.min_new_tokens = SWEEP_TOKENS
            int8 = quantize_model(fp32, mode="int8", device="cpu")
            times: dict[str, list[float]] = {"fp32": [], "int8": []}
            models = [("fp32", fp32), ("int8", int8)]
            for r in range(args.repeats):
                for name, model in models if r % 2 == 0 else models[::-1]:
                    _, ms = timed_generation(
                        model, tokenizer, sources, kind="seq2seq", batch_size=args.batch_size,
                        max_new_tokens=SWEEP_TOKENS,
                    )  # fmt: skip
                    times[name].append(statistics.fmean(ms))
            a, b = statistics.median(times["fp32"]), statistics.median(times["int8"])
            log(
                f"| {width} | {4 * width} | {count_params(fp32)[0]:,} | {a:.1f} | {b:.1f} | "
                f"{a / b:.2f}x |"
            )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="int8 quantization and pruning of a small Marian en→de model trained on "
        "Multi30k: latency, BLEU/chrF++, size and parameter changes against fp32, in one run.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for smoke tests (< 30 s)")
    parser.add_argument("--model", type=Path, help="an existing seq2seq model folder (no training)")
    parser.add_argument(
        "--work", type=Path, default=WORK_DIR,
        help=f"where the trained model is cached (default {WORK_DIR})",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path, default=DATA_DIR, help=f"Multi30k folder (default {DATA_DIR})"
    )
    parser.add_argument("--train-rows", type=int, help="training pairs (default 29000; smoke 300)")
    parser.add_argument("--train-steps", type=int, help="training steps (default 1200; smoke 10)")
    parser.add_argument(
        "--train-tokens", type=int, help="padded tokens per training batch (default 2048)"
    )
    parser.add_argument("--train-lr", type=float, default=1e-3, help="peak lr (default 1e-3)")
    parser.add_argument("--d-model", type=int, help="model width (default 128; smoke 32)")
    parser.add_argument(
        "--layers", type=int, help="encoder and decoder layers (default 2; smoke 1)"
    )
    parser.add_argument("--ffn", type=int, help="FFN width (default 512; smoke 64)")
    parser.add_argument("--vocab", type=int, help="BPE vocabulary (default 4000; smoke 300)")
    parser.add_argument("--eval-rows", type=int, help="test2016 sentences (default 200; smoke 20)")
    parser.add_argument("--batch-size", type=int, default=16, help="sentences per batch (16)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens at most (default 64)")
    parser.add_argument(
        "--recover-steps", type=int, help="recovery fine-tune steps (default 50; smoke 3)"
    )
    parser.add_argument("--recover-lr", type=float, default=1e-4, help="recovery lr (1e-4)")
    parser.add_argument(
        "--int8-widths",
        help="d_model of the random-weight models for int8 latency by width, comma-separated; "
        "'' skips the section (default 512,1024; smoke 64)",
    )
    parser.add_argument("--repeats", type=int, help="latency passes per model (default 3; smoke 1)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 0: torch's choice (default 1)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "train_rows": (300, 29000), "train_steps": (10, 1200), "train_tokens": (512, 2048),
        "d_model": (32, 128), "layers": (1, 2), "ffn": (64, 512), "vocab": (300, 4000),
        "eval_rows": (20, 200), "max_new_tokens": (16, 64), "recover_steps": (3, 50),
        "repeats": (1, 3), "int8_widths": ("64", "512,1024"),
    }  # fmt: skip
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    numbers = ("train_rows", "train_steps", "layers", "eval_rows", "batch_size", "max_new_tokens",
               "recover_steps", "repeats")  # fmt: skip
    if min(getattr(args, n) for n in numbers) < 1:
        parser.error("sizes, steps and counts must be >= 1")
    try:
        args.int8_widths = [int(w) for w in args.int8_widths.split(",") if w.strip()]
    except ValueError:
        parser.error("--int8-widths takes comma-separated integers, e.g. 512,1024")
    if args.d_model % 4 or args.threads < 0 or any(w < 8 or w % 4 for w in args.int8_widths):
        parser.error(
            "--d-model and --int8-widths must be multiples of 4 (heads); --threads must be >= 0"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for line in machine():
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if not (args.data_dir / "multi30k_test_2016_flickr.en.gz").is_file():
        log(f"skipped: Multi30k not found at {args.data_dir} (see ../shared/data/README.md)")
        return 0

    started = time.perf_counter()
    if args.model is None:
        args.work.mkdir(parents=True, exist_ok=True)
        model_dir = trained_model(args)
    else:
        model_dir = args.model
    base, tokenizer, _ = load_for_training(str(model_dir), "seq2seq")
    base.eval()
    model_type = str(getattr(base.config, "model_type", ""))
    test = as_pairs(
        read_pairs(args.data_dir, "multi30k_test_2016_flickr", args.eval_rows), "test2016",
        model_type,
    )  # fmt: skip
    # Recovery fine-tunes on the pairs the model was trained on, never on test data: a
    # small subset at a higher lr lowered even the unpruned model's BLEU by ~2.
    tune = as_pairs(
        read_pairs(args.data_dir, "multi30k_train", args.train_rows), "train", model_type
    )
    log(
        f"model: {model_dir} ({model_type}, {count_params(base)[0] / 1e6:.2f} M parameters); "
        f"{len(test)} test2016 sentences, batch {args.batch_size}, greedy, at most "
        f"{args.max_new_tokens} new tokens; recovery: {args.recover_steps} steps at lr "
        f"{args.recover_lr} on {len(tune)} training pairs"
    )

    log("\n== translating the test sentences with each variant")
    fp32 = measure("fp32 (baseline)", base, tokenizer, test, args)
    rows = [fp32]

    def tuned(model: Any) -> Any:
        recover(model, tokenizer, tune, kind="seq2seq", steps=args.recover_steps,
                lr=args.recover_lr, batch_size=16, device="cpu", seed=SEED)  # fmt: skip
        model.eval()
        return model

    control = tuned(copy.deepcopy(base))
    rows.append(measure(f"fp32 + the same {args.recover_steps}-step fine-tune (control)",
                        control, tokenizer, test, args))  # fmt: skip
    int8 = quantize_model(base, mode="int8", device="cpu")
    int8_row = measure("int8 dynamic", int8, tokenizer, test, args)
    rows.append(int8_row)
    pruned: dict[str, Any] = {}
    for method, amount in (("magnitude", 0.3), ("magnitude", 0.5), ("ffn", 0.3)):
        model = copy.deepcopy(base)
        report = model_pruning(model, amount=amount, method=method)  # type: ignore[arg-type]
        label = f"{method} pruning {amount:.0%}"
        model.eval()
        rows.append(measure(label, model, tokenizer, test, args))
        pruned[label] = model
        log(f"    sparsity {report.sparsity:.1%}, parameters {report.params_after:,}")
        rows.append(measure(f"{label} + recovery", tuned(copy.deepcopy(model)), tokenizer,
                            test, args))  # fmt: skip

    timed = [rows[0], int8_row, next(r for r in rows if r.name == "ffn pruning 30%")]
    timed_models = [base, int8, pruned["ffn pruning 30%"]]
    log(f"\n== latency: {args.repeats} more passes, alternating fp32, int8, FFN-pruned")
    sources = [p.source for p in test]
    for r in range(args.repeats):
        order = range(len(timed)) if r % 2 == 0 else reversed(range(len(timed)))
        for k in order:
            _, ms, per_token = generate(timed_models[k], tokenizer, sources, args)
            timed[k].times.append(ms)
            timed[k].per_token.append(per_token)
        log(f"  pass {r + 1}: " + ", ".join(f"{row.times[-1]:.1f}" for row in timed) + " ms/batch")

    base_ms = statistics.median(fp32.times)
    base_tok = statistics.median(fp32.per_token)
    log("")
    log(
        "| variant | BLEU | Δ BLEU | chrF++ | Δ chrF++ | size MiB | zlib MiB | parameters "
        "| non-zero | ms/batch | ms/token | fp32 / this: batch, token |"
    )
    log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if row in timed:
            ms, tok = statistics.median(row.times), statistics.median(row.per_token)
            latency = f"{ms:.1f} | {tok:.2f} | {base_ms / ms:.2f}x, {base_tok / tok:.2f}x"
        else:
            latency = "– | – | –"
        log(
            f"| {row.name} | {row.bleu:.2f} | {row.bleu - fp32.bleu:+.2f} | {row.chrf:.2f} | "
            f"{row.chrf - fp32.chrf:+.2f} | {row.size / 2**20:.2f} | {row.zlib / 2**20:.2f} | "
            f"{row.params:,} | {row.nonzero:,} | {latency} |"
        )
    log(
        f"latency: median of {len(fp32.times)} passes (the first pass, which also scored, "
        f"included); ms/token = batch time over generated tokens ({base_tok:.2f} for fp32); "
        "magnitude-pruned models have fp32's shapes and dense kernels, so their latency is "
        "fp32's and is not re-measured"
    )

    log("\n== compression_report(fp32, int8), the library's before/after table (BLEU)")
    int8_report = compression_report(
        base, int8, tokenizer, test, kind="seq2seq", metric="bleu",
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    log(int8_report.table())
    if args.int8_widths:
        sweep = [p.source for p in test[:SWEEP_ROWS]]
        log(
            f"\n== int8 latency by width: random-weight Marian models ({args.layers}+"
            f"{args.layers} layers, FFN 4 × d_model, the same tokenizer), the first "
            f"{len(sweep)} test sentences, exactly {SWEEP_TOKENS} new tokens each, median of "
            f"{args.repeats} alternating pass(es)"
        )
        int8_by_width(model_dir, sweep, args.int8_widths, args)
    log(f"\ntotal {time.perf_counter() - started:.0f}s")
    if hasattr(os, "getloadavg"):
        log(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
