"""Generation throughput (one at a time vs batched, length-sorted vs input order), cache-hit
latency, and sentence-encoder caching, all measured in the same run.

The model is a tiny-but-not-trivial T5 built from config (2 layers, width 128, random
weights, a word-level vocabulary from a few hundred generated sentences), so the run needs
no download and the figures show the cost of the pipeline around the model (padding,
batching, caching) rather than a particular checkpoint::

    python benchmarks/generation.py            # 256 inputs, 32 new tokens, 3 repeats
    python benchmarks/generation.py --quick    # 32 inputs, 8 new tokens, 1 repeat (< 20 s)
    python benchmarks/generation.py --threads 0 --width 512   # torch's threads, wider model

Every generation variant does the same work: ``min_new_tokens == max_new_tokens``, so each
input gets exactly that many decoder steps whatever the random weights emit. Timings are
medians over interleaved repeats; ratios are against one-at-a-time generation (and a cold
call, for the cache) measured in the same run. The encoder section embeds N distinct
sentences with the packaged all-MiniLM-L6-v2 into an empty cache, then again from it.

torch runs on one CPU thread by default: on a shared 2-core machine, torch's own thread
pool spins against other processes and one-at-a-time generation became 40x slower in a
run next to a test suite, which says nothing about taskloop. ``--threads 0`` restores
torch's choice. The model is so small that per-step overhead, not arithmetic, dominates;
``--width`` shows how padding starts to cost when the arithmetic grows.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from machine import describe, work_dir  # benchmarks/machine.py, beside this script

# The benchmark never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # after the offline switches

from taskloop.models.cache import LRUCache
from taskloop.models.encoder import load_encoder
from taskloop.models.generate import (
    GenerationSettings,
    _run_batch,
    count_tokens,
    generate,
)
from taskloop.models.loader import LoadedModel, load_model
from taskloop.models.tiny import build_tiny_model

BATCH_SIZES = (16, 32)


def log(message: str = "") -> None:
    print(message, flush=True)


def machine() -> list[str]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return describe(
        ("torch", "transformers", "tokenizers"),
        extra=f"{device}; torch threads {torch.get_num_threads()}",
    )


# --- deterministic text ---------------------------------------------------------------------


def _split(words: str) -> list[str]:
    return words.split()


ADJECTIVES = _split("old new green quiet busy small large bright dark early late local")
NOUNS = _split(
    "council river city model report dog child teacher market train bridge garden station "
    "museum engineer doctor farmer library school harbour festival forest village road"
)
VERBS = _split("opened closed visited crossed built described answered measured painted moved")
PLACES = _split("Vienna Berlin Lisbon Oslo Prague Madrid Dublin Warsaw Zurich Athens")
CONNECT = ["because", "after", "while", "before", "although"]


def sentences(n: int, seed: int) -> list[str]:
    """``n`` distinct simple sentences (word-level tokens: words and punctuation)."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        a, b = rng.sample(NOUNS, 2)
        s = f"The {rng.choice(ADJECTIVES)} {a} in {rng.choice(PLACES)} {rng.choice(VERBS)} the {b}"
        if rng.random() < 0.5:
            s += f" {rng.choice(CONNECT)} the {rng.choice(NOUNS)} {rng.choice(VERBS)} it"
        if rng.random() < 0.3:
            s += f" , {rng.randint(2, 99)} times"
        out[s + " ."] = None
    return list(out)


def mixed_inputs(pool: list[str], n: int, seed: int) -> list[str]:
    """``n`` inputs of 1 to 8 sentences each: about 10 to 130 tokens, shuffled."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(pool, rng.randint(1, 8))) for _ in range(n)]


# --- timing ---------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def padding(lengths: list[int], batch: int) -> float:
    """Padded tokens over real tokens when ``lengths`` are batched in this order."""
    padded = sum(
        max(lengths[i : i + batch]) * len(lengths[i : i + batch])
        for i in range(0, len(lengths), batch)
    )
    return padded / sum(lengths) - 1


def in_input_order(lm: LoadedModel, prompts: list[str], settings: GenerationSettings) -> list[str]:
    """generate() without the length sort: batches in the caller's order (same token
    counting, no cache), to show what sorting saves."""
    count_tokens(lm, prompts)
    out: list[str] = []
    for start in range(0, len(prompts), settings.batch_size):
        out.extend(_run_batch(lm, prompts[start : start + settings.batch_size], settings))
    return out


@dataclasses.dataclass
class Variant:
    name: str
    batch: int
    run: Callable[[], list[str]]
    pad: float
    times: list[float] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)


# --- sections -------------------------------------------------------------------------------


def bench_generation(lm: LoadedModel, inputs: list[str], new_tokens: int, repeats: int) -> None:
    base = GenerationSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    lengths = count_tokens(lm, inputs)
    by_length = sorted(lengths, reverse=True)
    log(
        f"inputs: {len(inputs)}, tokens per input {min(lengths)}–{max(lengths)} "
        f"(median {median([float(n) for n in lengths]):.0f}), window {lm.window}, "
        f"{new_tokens} new tokens each"
    )

    def sorted_run(batch: int) -> Callable[[], list[str]]:
        settings = dataclasses.replace(base, batch_size=batch)
        return lambda: [g.text for g in generate(lm, inputs, settings)]

    def unsorted_run(batch: int) -> Callable[[], list[str]]:
        settings = dataclasses.replace(base, batch_size=batch)
        return lambda: in_input_order(lm, inputs, settings)

    variants = [Variant("one at a time", 1, sorted_run(1), 0.0)]
    for b in BATCH_SIZES:
        variants.append(Variant("batched, length-sorted", b, sorted_run(b), padding(by_length, b)))
    for b in BATCH_SIZES:
        variants.append(Variant("batched, input order", b, unsorted_run(b), padding(lengths, b)))

    warm = inputs[: max(BATCH_SIZES)]
    generate(lm, warm, dataclasses.replace(base, batch_size=max(BATCH_SIZES)))  # first-call costs
    for r in range(repeats):
        for v in variants:
            start = time.perf_counter()
            v.outputs = v.run()
            v.times.append(time.perf_counter() - start)
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{v.times[-1]:.2f}s" for v in variants))

    one = median(variants[0].times)
    log("")
    log("| variant | batch | items/s | ms/item | padding | vs one at a time |")
    log("|---|---:|---:|---:|---:|---:|")
    for v in variants:
        t = median(v.times)
        log(
            f"| {v.name} | {v.batch} | {len(inputs) / t:,.1f} | {1000 * t / len(inputs):.1f} | "
            f"{v.pad:.0%} | {one / t:.2f}x |"
        )
    same = all(v.outputs == variants[0].outputs for v in variants)
    log(f"greedy outputs identical across all variants: {'yes' if same else 'NO'}")
    for b in BATCH_SIZES:
        s = next(v for v in variants if v.batch == b and "sorted" in v.name)
        u = next(v for v in variants if v.batch == b and "input order" in v.name)
        log(f"length sorting at batch {b}: {median(u.times) / median(s.times):.2f}x faster")


def bench_cache(lm: LoadedModel, text: str, new_tokens: int, cold_runs: int) -> None:
    settings = GenerationSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    cold = [
        timed(lambda: generate(lm, [text], settings, cache=LRUCache())) for _ in range(cold_runs)
    ]
    warm_cache = LRUCache()
    generate(lm, [text], settings, cache=warm_cache)
    hits = [
        timed(lambda: generate(lm, [text], settings, cache=warm_cache))
        for _ in range(cold_runs * 20)
    ]
    assert warm_cache.stats.hits == len(hits)
    c, h = median(cold), median(hits)
    log(f"one input of {count_tokens(lm, [text])[0]} tokens, {new_tokens} new tokens")
    log("")
    log("| single input | runs | median ms | ratio |")
    log("|---|---:|---:|---:|")
    log(f"| cold call (model runs) | {len(cold)} | {1000 * c:.2f} | 1.00x |")
    log(f"| cache hit | {len(hits)} | {1000 * h:.3f} | {c / h:,.0f}x faster |")


def bench_encoder(texts: list[str], repeats: int) -> None:
    load_s = timed(load_encoder)
    enc = load_encoder()
    log(f"all-MiniLM-L6-v2 loaded in {load_s:.2f}s; {len(texts)} distinct sentences")
    enc.encode(texts[:8])  # first-call costs
    cold, cached = [], []
    for _ in range(repeats):
        fresh = dataclasses.replace(enc, cache=LRUCache(max_items=len(texts) * 2))
        cold.append(timed(partial(fresh.encode, texts)))
        cached.append(timed(partial(fresh.encode, texts)))
        assert fresh.cache.stats.hits == len(texts)
    c, h = median(cold), median(cached)
    log("")
    log(f"| embed {len(texts)} sentences | seconds | sentences/s | ratio |")
    log("|---|---:|---:|---:|")
    log(f"| cold (empty cache) | {c:.3f} | {len(texts) / c:,.0f} | 1.00x |")
    log(f"| cached | {h:.4f} | {len(texts) / h:,.0f} | {c / h:,.0f}x faster |")


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Batched vs one-at-a-time generation, length sorting, cache hits and "
        "sentence-encoder caching on a tiny T5 built from config, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small run for smoke tests (< 20 s)")
    parser.add_argument("--items", type=int, help="inputs to generate for (default 256)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per input (default 32)")
    parser.add_argument("--repeats", type=int, help="timed runs of each variant (default 3)")
    parser.add_argument("--sentences", type=int, help="sentences to embed (default 500)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the tiny model is written (default: a temporary directory, removed)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="data and weight seed")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 0: torch's choice (default 1)"
    )
    parser.add_argument("--width", type=int, default=128, help="model width (default 128)")
    parser.add_argument("--layers", type=int, default=2, help="encoder/decoder layers (default 2)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.items = args.items or (32 if quick else 256)
    args.new_tokens = args.new_tokens or (8 if quick else 32)
    args.repeats = args.repeats or (1 if quick else 3)
    args.sentences = args.sentences or (64 if quick else 500)
    if min(args.items, args.new_tokens, args.repeats, args.sentences, args.layers) < 1:
        parser.error("--items, --new-tokens, --repeats, --sentences, --layers must be >= 1")
    if args.width < 4 or args.width % 4 or args.threads < 0:
        parser.error("--width must be a multiple of 4 (4 heads); --threads must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    for line in machine():
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    pool = sentences(400, args.seed)
    with work_dir(args.work_dir) as work:
        start = time.perf_counter()
        folder = build_tiny_model(
            work / "tiny-t5",
            "seq2seq",
            texts=pool,
            layers=args.layers,
            width=args.width,
            max_length=256,
            seed=args.seed,
        )
        lm = load_model(str(folder))
        params = sum(p.numel() for p in lm.model.parameters())
        log(
            f"model: T5, {args.layers}+{args.layers} layers, width {args.width}, "
            f"{params / 1e6:.2f} M parameters, "
            f"vocabulary {len(lm.tokenizer)}; built and loaded in "
            f"{time.perf_counter() - start:.2f}s on {lm.device}"
        )
        inputs = mixed_inputs(pool, args.items, args.seed + 1)

        log(f"\n== generation: median of {args.repeats}, same work per variant")
        bench_generation(lm, inputs, args.new_tokens, args.repeats)

        log("\n== generation cache: one input, cold call vs cache hit")
        bench_cache(lm, inputs[0], args.new_tokens, cold_runs=5 if args.quick else 30)

        log(f"\n== sentence encoder: median of {args.repeats}")
        bench_encoder(sentences(args.sentences, args.seed + 2), args.repeats)
    if hasattr(os, "getloadavg"):
        log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
