"""Time to evaluate 1,000 translation pairs with every metric, against sacrebleu alone, in
one run; and the sample evaluation report in ``docs/samples/evaluation/``.

Issue 5 asks for "time to evaluate 1,000 translation pairs with every metric, vs
sacrebleu alone in the same run"::

    python benchmarks/evaluation.py                      # 1,000 Multi30k test2016 pairs
    python benchmarks/evaluation.py --report docs/samples/evaluation   # + the sample report
    python benchmarks/evaluation.py --smoke              # 50 pairs, 10-step model (< 60 s)

The translations are real model outputs: the small Marian en→de model that
``benchmarks/compression.py`` trains on Multi30k with taskloop's own loop (cached under
its work folder; trained first when absent, about 10 minutes on 2 CPU cores). Version A
decodes greedily, version B with beam search (4 beams), so the sample report's A-vs-B
section compares two real decoders of one model. ``--hypotheses FILE`` (one line per
test sentence) skips the model.

Timed, each the median of ``--repeats`` passes over the same 1,000 pairs:

- baseline: sacrebleu's corpus BLEU alone (``sacrebleu.corpus_bleu``);
- sacrebleu's three corpus metrics (BLEU, chrF++, TER);
- :func:`taskloop.evaluate.scoring.score_task` with reference metrics only (BLEU,
  chrF++, TER with signatures, METEOR, ROUGE-1/2/L, corpus and per sentence) and no
  intervals;
- the same with 1,000-resample bootstrap intervals on every metric;
- everything: + the reference-free signals (diversity, number factuality; loads MiniLM).

Ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from machine import describe, read_pairs  # benchmarks/machine.py, beside this script

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "translation"


def log(message: str = "") -> None:
    print(message, flush=True)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def translations(sources: list[str], args: argparse.Namespace) -> tuple[list[str], list[str], str]:
    """(greedy outputs, beam-4 outputs, model description) of the cached Multi30k model."""
    import torch

    from compression import parse_args as compression_args
    from compression import trained_model
    from taskloop.models.loader import load_model
    from taskloop.train.evaluation import generate_texts

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    smoke = ["--smoke"] if args.smoke else []  # a 10-step model: the code path, not quality
    folder = args.model or trained_model(
        compression_args(["--work", str(args.work), "--data-dir", str(args.data_dir), *smoke])
    )
    lm = load_model(str(folder))
    out = []
    for beams in (1, 4):
        start = time.perf_counter()
        out.append(
            generate_texts(
                lm.model,
                lm.tokenizer,
                sources,
                kind=lm.kind,
                device=lm.device,
                num_beams=beams,
                max_new_tokens=64,
                batch_size=64,
            )
        )
        log(f"translated {len(sources)} sentences, {beams} beam(s), "
            f"in {time.perf_counter() - start:.1f}s")  # fmt: skip
    n_params = sum(p.numel() for p in lm.model.parameters())
    return out[0], out[1], f"{folder} ({n_params / 1e6:.1f}M parameters)"


def items_of(pairs: list[tuple[str, str]], outputs: list[str], label: str) -> list:
    from taskloop.evaluate.records import EvalItem

    return [
        EvalItem(task="translate", id=str(i), file="test2016", source=en, references=(de,),
                 prediction=out, source_lang="en", target_lang="de", model=label)
        for i, ((en, de), out) in enumerate(zip(pairs, outputs, strict=True))
    ]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluate 1,000 translation pairs with every taskloop metric vs sacrebleu "
        "alone (same run), and optionally write the sample evaluation report."
    )
    parser.add_argument("--smoke", action="store_true", help="50 pairs, 50 resamples, 1 repeat")
    parser.add_argument("--rows", type=int, help="test2016 pairs (default 1000; smoke 50)")
    parser.add_argument("--resamples", type=int, help="bootstrap resamples (1000; smoke 50)")
    parser.add_argument("--repeats", type=int, help="timed passes per variant (3; smoke 1)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="Multi30k folder")
    parser.add_argument("--model", type=Path, help="a seq2seq model folder (no training)")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/taskloop-bench-compression"),
        help="where compression.py caches its trained model",
    )  # fmt: skip
    parser.add_argument("--hypotheses", type=Path, help="outputs, one line per sentence (no model)")
    parser.add_argument("--report", type=Path, help="write the sample evaluation report here")
    args = parser.parse_args(argv)
    for name, (small, full) in {"rows": (50, 1000), "resamples": (50, 1000),
                                "repeats": (1, 3)}.items():  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, small if args.smoke else full)
    if min(args.rows, args.repeats) < 1 or args.resamples < 0:
        parser.error("--rows and --repeats must be >= 1, --resamples >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import sacrebleu

    from taskloop.evaluate.scoring import score_task

    pairs = read_pairs(args.data_dir, "multi30k_test_2016_flickr", args.rows)
    sources = [en for en, _ in pairs]
    refs = [de for _, de in pairs]
    if args.hypotheses:
        greedy = args.hypotheses.read_text(encoding="utf-8").splitlines()[: len(pairs)]
        beam, model = None, str(args.hypotheses)
    else:
        greedy, beam, model = translations(sources, args)
    items = items_of(pairs, greedy, "greedy")
    log()
    for line in describe(("sacrebleu", "rouge-score", "nltk", "torch")):
        log(line)
    log(f"data: Multi30k test2016, first {len(pairs)} pairs; outputs of {model}, greedy")
    log()

    def baseline() -> None:
        sacrebleu.corpus_bleu(greedy, [refs])

    def three() -> None:
        sacrebleu.corpus_bleu(greedy, [refs])
        sacrebleu.corpus_chrf(greedy, [refs], word_order=2)
        sacrebleu.corpus_ter(greedy, [refs])

    from taskloop.models.encoder import load_encoder

    encoder = load_encoder()
    variants: list[tuple[str, Callable[[], object]]] = [
        ("sacrebleu corpus BLEU alone (baseline)", baseline),
        ("sacrebleu BLEU + chrF++ + TER", three),
        ("taskloop: reference metrics, corpus + per sentence, no intervals",
         lambda: score_task(items, quality=False, resamples=0)),
        (f"taskloop: + {args.resamples}-resample bootstrap intervals",
         lambda: score_task(items, quality=False, resamples=args.resamples)),
        ("taskloop: every metric (+ diversity, factuality)",
         lambda: score_task(items, quality=True, encoder=encoder, resamples=args.resamples)),
    ]  # fmt: skip
    times = {}
    for name, fn in variants:
        fn()  # warm-up: imports, tokeniser caches, encoder weights
        times[name] = timed(fn, args.repeats)
    base = times[variants[0][0]]
    log(f"| evaluation of {len(pairs)} pairs | seconds | ms per pair | × sacrebleu BLEU alone |")
    log("|---|---:|---:|---:|")
    for name, seconds in times.items():
        log(
            f"| {name} | {seconds:.3f} | {1000 * seconds / len(pairs):.2f} | {seconds / base:.1f} |"
        )
    result = score_task(items, quality=True, encoder=encoder, resamples=args.resamples)
    log()
    log("| metric | value | 95% interval | how |")
    log("|---|---:|---|---|")
    for name, m in result.metrics.items():
        interval = (
            f"[{m.low:.2f}, {m.high:.2f}]" if m.low is not None and m.high is not None else "–"
        )
        how = m.signature or m.note
        log(f"| {name} | {m.value:.2f} | {interval} | {how} |")
    if args.report:
        write_report(args, items, items_of(pairs, beam, "beam4") if beam else None, model)
    return 0


def write_report(args: argparse.Namespace, a: list, b: list | None, model: str) -> None:
    """The sample report: greedy (A) vs beam search (B), every metric and plot."""
    from taskloop.evaluate.items import Loaded
    from taskloop.evaluate.runner import EvalOptions, evaluate

    start = time.perf_counter()
    result = evaluate(
        Loaded(items=a, label="greedy", inputs={"data": "Multi30k test2016", "model": model}),
        b=Loaded(items=b, label="beam 4", inputs={"data": "Multi30k test2016"}) if b else None,
        options=EvalOptions(resamples=args.resamples),
        out_dir=args.report,
    )
    # report.json keeps every item (for the sample, several MB): the page and plots are
    # what a reader opens, so the JSON is written without the per-item lists.
    slim = result.report.model_copy(deep=True)
    for t in [*slim.tasks, *slim.compare_tasks]:
        t.items = []
    (args.report / "report.json").write_text(slim.model_dump_json(indent=2), encoding="utf-8")
    log()
    log(f"sample report written to {args.report} in {time.perf_counter() - start:.1f}s")
    for c in result.report.comparisons:
        log(f"  {c.metric}: greedy {c.a:.2f} vs beam 4 {c.b:.2f}, p={c.p_value:.3f}")
    log(json.dumps({k: v for k, v in result.report.outputs.items()}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
