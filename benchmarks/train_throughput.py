"""Training throughput (target tokens/s) of taskloop's loop vs Hugging Face's
``Seq2SeqTrainer``, on the same tiny Marian model and the same Multi30k pairs, in one run.

Issue 4 asks for at least 1.0x of ``Seq2SeqTrainer``, and more with length-grouped batching::

    python benchmarks/train_throughput.py             # 4000 pairs, 200 steps, 2 repeats
    python benchmarks/train_throughput.py --smoke     # 200 pairs, 5 steps, tiny model (< 30 s)
    python benchmarks/train_throughput.py --device cuda   # bf16 on a GPU

What both sides share: the English→German pairs (the first ``--rows`` lines of
``multi30k_train.{en,de}.gz``, written as translate JSONL rows), one model folder built
once from scratch (``taskloop.train.scratch.build_from_scratch``; each run loads the same
initial weights from it), the tokenizer, AdamW (lr, betas, eps, weight decay), linear
warm-up and decay, gradient clipping at 1.0, the seed, the number of optimizer steps,
fp32 on the CPU and bf16 autocast on a GPU, no evaluation and no checkpoints while
training.

Batch size. taskloop batches by a token budget (``batch.tokens``: rows × the longest
source+target in the batch ≤ ``--tokens``, rows grouped by length); HF batches by rows.
The batches taskloop will train on are a pure function of the seed, so the script plans
them first (``taskloop.train.batching.TaskStream``, the same code the loop runs) and gives
HF ``per_device_train_batch_size = round(mean rows per taskloop step)``: both sides then
see about the same rows, and target tokens, per step. The measured target tokens per step
of each side are printed, and the plan is checked against the tokens the loop reports.

Throughput counts target tokens (labels that are not padding) of the batches each side
actually trained on, divided by the time of its training loop: taskloop's
``TrainResult.train_seconds`` (the loop alone) and HF's ``train_runtime`` (its inner
loop; ``trainer.train()`` as a whole is within a few ms of it). HF's tokens are counted
by a forward pre-hook on the model, so batches its data loader fetched ahead and never
used are not counted. "wall" adds each side's own setup (taskloop: the whole ``train()``
call: reading and tokenising the JSONL, loading the model, the final loss evaluation and
saving; HF: tokenising with ``datasets.map``, loading the model, building the Trainer).

HF runs twice per repeat: with its default random sampler, and with
``train_sampling_strategy="group_by_length"`` (``group_by_length=True`` before
transformers 5). The order of the three variants alternates between repeats; figures are
medians over ``--repeats``. torch uses one CPU thread by default (as in
``generation.py``: on a shared 2-core machine, torch's thread pool spinning against other
processes measures the neighbours, not the loop); ``--threads 0`` restores torch's choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine import (  # benchmarks/machine.py, beside this script
    describe,
    read_pairs,
    work_dir,
    write_jsonl,
)

# The benchmark never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # after the offline switches

from taskloop.data.pairs import Pair, to_pairs
from taskloop.data.records import TranslateExample, Where
from taskloop.models.loader import pick_device
from taskloop.train.batching import Encoded, TaskStream, encode
from taskloop.train.config import ModelInit, load_train_config
from taskloop.train.loop import train
from taskloop.train.scratch import build_from_scratch

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "translation"
SEED = 0
LR = 5e-4
WEIGHT_DECAY = 0.01
BETAS = (0.9, 0.98)
EPS = 1e-8
MAX_SOURCE = 256
MAX_TARGET = 128
EVAL_ROWS = 16  # the loss taskloop evaluates once after training (outside its timing)


def log(message: str = "") -> None:
    print(message, flush=True)


def machine(device: str) -> list[str]:
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"
    return describe(
        ("torch", "transformers", "accelerate", "datasets", "tokenizers"),
        extra=f"device {device} ({name}); torch threads {torch.get_num_threads()}",
    )


# --- data -----------------------------------------------------------------------------------


def as_pairs(pairs: list[tuple[str, str]]) -> list[Pair]:
    """The pairs taskloop's loop builds from the JSONL rows (Marian: no prefix)."""
    examples = [
        TranslateExample(
            id=f"t{i}",
            where=Where(file="train.jsonl", row=i + 1),
            source=en,
            target=de,
            source_lang="en",
            target_lang="de",
        )
        for i, (en, de) in enumerate(pairs)
    ]
    return to_pairs(examples, kind="seq2seq", model_type="marian")


# --- the batch plan -------------------------------------------------------------------------


@dataclasses.dataclass
class Plan:
    rows_per_step: float
    target_tokens: int  # over all planned steps
    padded_tokens: int  # source+target positions in the padded batches
    real_tokens: int  # source+target tokens that are not padding

    @property
    def padding(self) -> float:
        return self.padded_tokens / max(self.real_tokens, 1) - 1


def plan_taskloop(enc: Encoded, steps: int, tokens: int) -> Plan:
    """The batches taskloop's loop will take (one task, no curriculum): a pure function of
    the seed, built by the same TaskStream the loop builds."""
    stream = TaskStream(enc, 0, SEED, tokens, 16, True)
    rows = tgt = padded = real = 0
    for _ in range(steps):
        batch = stream.next()
        src_lens = [len(enc.source[i]) for i in batch]
        tgt_lens = [len(enc.target[i]) for i in batch]
        rows += len(batch)
        tgt += sum(tgt_lens)
        padded += len(batch) * (max(src_lens) + max(tgt_lens))
        real += sum(src_lens) + sum(tgt_lens)
    return Plan(rows / steps, tgt, padded, real)


# --- one run of each side -------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    tokens: int  # target tokens trained on
    loop_s: float
    wall_s: float
    steps: int
    padded: int = 0  # source+target positions fed to the model (HF, measured)
    real: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.loop_s, 1e-9)


@dataclasses.dataclass
class Side:
    name: str
    batching: str
    runs: list[Run] = dataclasses.field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.runs)


def precision(device: str) -> str:
    return "bf16" if device.startswith("cuda") else "fp32"


def run_taskloop(args: argparse.Namespace, work: Path, model_dir: Path, warmup: int, i: int) -> Run:
    out = work / f"taskloop-{i}"
    cfg = load_train_config(
        None,
        [
            f"out={out}",
            "data.clean.enabled=false",
            f"data.max_source_tokens={MAX_SOURCE}",
            f"data.max_target_tokens={MAX_TARGET}",
            f"run.max_steps={args.steps}",
            f"run.seed={SEED}",
            f"run.device={args.device}",
            f"run.precision={precision(args.device)}",
            "run.log_every=1000000",
            "eval.every_steps=null",
            "eval.metric=loss",  # the one final evaluation is a loss, no generation
            "checkpoint.every_steps=null",
            "tracking.enabled=false",
            f"batch.tokens={args.tokens}",
            f"optim.lr={LR}",
            f"optim.weight_decay={WEIGHT_DECAY}",
            f"optim.warmup_steps={warmup}",
            "optim.schedule=linear",
            "optim.max_grad_norm=1.0",
        ],
        model={"name": str(model_dir)},
        data={"train": [str(work / "train.jsonl")], "eval": [str(work / "eval.jsonl")]},
        optim={"betas": list(BETAS), "eps": EPS},
    )
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    return Run(result.train_tokens, result.train_seconds, wall, result.steps)


def run_hf(
    args: argparse.Namespace,
    work: Path,
    model_dir: Path,
    pairs: list[Pair],
    batch_size: int,
    warmup: int,
    grouped: bool,
) -> Run:
    import datasets
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
    )

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = datasets.Dataset.from_dict(
        {"source": [p.source for p in pairs], "target": [p.target for p in pairs]}
    )

    def tokenize(batch: dict[str, list[str]]) -> Any:
        return tokenizer(
            batch["source"], text_target=batch["target"], truncation=True, max_length=MAX_SOURCE
        )

    data = raw.map(tokenize, batched=True, remove_columns=["source", "target"])
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    counted = {"tokens": 0, "padded": 0, "real": 0, "forwards": 0}

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        labels = kwargs.get("labels")
        if labels is None or not torch.is_grad_enabled():
            return
        mask = kwargs["attention_mask"]
        n_target = int((labels != -100).sum())
        counted["tokens"] += n_target
        counted["padded"] += int(mask.numel() + labels.numel())
        counted["real"] += int(mask.sum()) + n_target
        counted["forwards"] += 1

    model.register_forward_pre_hook(count, with_kwargs=True)
    cuda = args.device.startswith("cuda")
    targs = Seq2SeqTrainingArguments(
        output_dir=str(work / "hf"),
        max_steps=args.steps,
        per_device_train_batch_size=batch_size,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        adam_beta1=BETAS[0],
        adam_beta2=BETAS[1],
        adam_epsilon=EPS,
        max_grad_norm=1.0,
        warmup_steps=warmup,
        lr_scheduler_type="linear",
        optim="adamw_torch_fused" if cuda else "adamw_torch",  # as taskloop: fused on CUDA
        bf16=cuda,
        tf32=True if cuda else None,
        use_cpu=not cuda,
        seed=SEED,
        train_sampling_strategy="group_by_length" if grouped else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = DataCollatorForSeq2Seq(
        tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=8 if cuda else None
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=targs,
        train_dataset=data,
        data_collator=collator,
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
    output = trainer.train()
    wall = time.perf_counter() - start
    return Run(
        counted["tokens"],
        float(output.metrics["train_runtime"]),
        wall,
        output.global_step,
        counted["padded"],
        counted["real"],
    )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training throughput (target tokens/s) of taskloop's loop vs Hugging Face "
        "Seq2SeqTrainer on the same tiny Marian model and Multi30k pairs, in one run.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for smoke tests (< 30 s)")
    parser.add_argument("--rows", type=int, help="training pairs (default 4000; smoke 200)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 200; smoke 5)")
    parser.add_argument(
        "--tokens", type=int, help="taskloop's padded tokens per batch (default 1024; smoke 256)"
    )
    parser.add_argument("--repeats", type=int, help="runs of each side (default 2; smoke 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument(
        "--data-dir", type=Path, default=DATA_DIR, help=f"Multi30k folder (default {DATA_DIR})"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where data, model and runs are written (default: a temporary directory, removed)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 0: torch's choice (default 1)"
    )
    parser.add_argument("--d-model", type=int, help="model width (default 128; smoke 32)")
    parser.add_argument(
        "--layers", type=int, help="encoder and decoder layers (default 2; smoke 1)"
    )
    parser.add_argument("--ffn", type=int, help="FFN width (default 512; smoke 64)")
    parser.add_argument("--vocab", type=int, help="BPE vocabulary (default 4000; smoke 500)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    defaults = {
        "rows": (200, 4000), "steps": (5, 200), "tokens": (256, 1024), "repeats": (1, 2),
        "d_model": (32, 128), "layers": (1, 2), "ffn": (64, 512), "vocab": (500, 4000),
    }  # fmt: skip
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    if min(args.rows, args.steps, args.repeats, args.layers) < 1:
        parser.error("--rows, --steps, --repeats and --layers must be >= 1")
    if args.tokens < 16 or args.d_model % 4 or args.threads < 0:
        parser.error("--tokens must be >= 16, --d-model a multiple of 4, --threads >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = pick_device(args.device)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    import datasets

    datasets.disable_progress_bars()
    for line in machine(args.device):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if not (args.data_dir / "multi30k_train.en.gz").is_file():
        log(f"skipped: Multi30k not found at {args.data_dir} (see ../shared/data/README.md)")
        return 0

    with work_dir(args.work_dir) as work:
        raw = read_pairs(args.data_dir, n=args.rows)
        write_jsonl(work / "train.jsonl", raw, "t")
        write_jsonl(work / "eval.jsonl", read_pairs(args.data_dir, n=EVAL_ROWS, skip=25000), "e")
        pairs = as_pairs(raw)

        init = ModelInit(
            arch="marian", d_model=args.d_model, layers=args.layers, heads=4, ffn=args.ffn,
            vocab_size=args.vocab, max_positions=256,
        )  # fmt: skip
        model_dir = work / "init"
        start = time.perf_counter()
        if not (model_dir / "config.json").is_file():
            build_from_scratch(init, [t for p in pairs for t in (p.source, p.target)], model_dir)
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        n_params = sum(
            p.numel() for p in AutoModelForSeq2SeqLM.from_pretrained(model_dir).parameters()
        )
        log(
            f"model: Marian from scratch, {args.layers}+{args.layers} layers, d_model "
            f"{args.d_model}, FFN {args.ffn}, 4 heads, vocabulary {len(tokenizer)}, "
            f"{n_params / 1e6:.2f} M parameters (built in {time.perf_counter() - start:.1f}s)"
        )

        src, tgt, _ = encode(
            pairs, tokenizer, kind="seq2seq", max_source=MAX_SOURCE, max_target=MAX_TARGET
        )
        enc = Encoded("translate", src, tgt)
        hf_ids = tokenizer(
            [p.source for p in pairs], text_target=[p.target for p in pairs],
            truncation=True, max_length=MAX_SOURCE,
        )  # fmt: skip
        same_ids = hf_ids["input_ids"] == src and hf_ids["labels"] == tgt
        plan = plan_taskloop(enc, args.steps, args.tokens)
        batch_size = max(1, round(plan.rows_per_step))
        warmup = args.steps // 10
        src_len = statistics.mean(len(s) for s in src)
        tgt_len = statistics.mean(len(t) for t in tgt)
        log(
            f"data: {len(pairs)} Multi30k en→de pairs, {src_len:.1f} source and {tgt_len:.1f} "
            f"target tokens per pair (mean); HF tokenisation gives the same ids: "
            f"{'yes' if same_ids else 'NO'}"
        )
        log(
            f"batches: taskloop {args.tokens} padded tokens per batch, length-grouped → "
            f"{plan.rows_per_step:.1f} rows per step over {args.steps} steps; HF batch size "
            f"{batch_size} (the rounded mean); {args.steps} steps, warm-up {warmup}, lr {LR}, "
            f"{precision(args.device)} on {args.device}"
        )

        sides = [
            Side("taskloop train", f"{args.tokens} tokens, length-grouped"),
            Side("HF Seq2SeqTrainer", f"{batch_size} rows, random"),
            Side("HF Seq2SeqTrainer", f"{batch_size} rows, group_by_length"),
        ]
        runners = [
            lambda i: run_taskloop(args, work, model_dir, warmup, i),
            lambda i: run_hf(args, work, model_dir, pairs, batch_size, warmup, grouped=False),
            lambda i: run_hf(args, work, model_dir, pairs, batch_size, warmup, grouped=True),
        ]
        for r in range(args.repeats):
            order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
            for k in order:
                sides[k].runs.append(runners[k](r))
            log(
                f"repeat {r + 1}/{args.repeats} (order {', '.join(str(k + 1) for k in order)}): "
                + ", ".join(
                    f"{s.runs[-1].tokens_per_s:,.0f} tok/s in {s.runs[-1].loop_s:.1f}s"
                    for s in sides
                )
            )

        loop_tokens = sides[0].runs[0].tokens
        log(
            f"taskloop's loop trained on the planned batches: "
            f"{'yes' if loop_tokens == plan.target_tokens else 'NO'} "
            f"({loop_tokens:,} target tokens, plan {plan.target_tokens:,})"
        )
        ours = sides[0].median("tokens_per_s")
        log("")
        log(
            "| side | batching | target tokens/step | padding | loop s | wall s "
            "| target tokens/s | taskloop vs this | per repeat |"
        )
        log("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for k, s in enumerate(sides):
            run = s.runs[0]
            pad = plan.padding if k == 0 else run.padded / max(run.real, 1) - 1
            rate = s.median("tokens_per_s")
            paired = ", ".join(
                f"{a.tokens_per_s / b.tokens_per_s:.2f}x"
                for a, b in zip(sides[0].runs, s.runs, strict=True)
            )
            log(
                f"| {s.name} | {s.batching} | {s.median('tokens') / args.steps:,.0f} | "
                f"{pad:.0%} | {s.median('loop_s'):.2f} | {s.median('wall_s'):.2f} | "
                f"{rate:,.0f} | {ours / rate:.2f}x | {paired} |"
            )
        log(
            "padding: padded source+target positions over real tokens, minus 1; "
            f"medians of {args.repeats} run(s) per side; per repeat: taskloop's rate over "
            "this side's in the same repeat"
        )
    if hasattr(os, "getloadavg"):
        log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
