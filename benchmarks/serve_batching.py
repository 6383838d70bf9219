"""Dynamic batching in the service: throughput and latency with batching on and off, same run.

Clients are asyncio tasks that each send ``--requests-per-client`` requests one after
another (the next one when the previous answer arrives) straight to
:class:`taskloop.serve.batching.DynamicBatcher`, the object the service's task routes
call, so the figures show the batcher and the model without HTTP around them. Each
client count (1, 8, 32) runs with batching off (every request its own model call, through
the same code path) and on, back to back. Two real model calls:

- ``minilm``: the packaged all-MiniLM-L6-v2 sentence encoder (a real pretrained model),
  ``Encoder.encode`` on the batch; its cache is emptied before every run so each request
  costs a forward pass.
- ``t5``: a tiny T5 built from config (random weights, no download) through
  ``taskloop.models.generate.generate``, greedy, exactly ``--new-tokens`` tokens per input.

::

    python benchmarks/serve_batching.py                      # both models, 32 requests/client
    python benchmarks/serve_batching.py --models minilm --max-batch 32 --max-wait-ms 5
    python benchmarks/serve_batching.py --smoke              # seconds; for the smoke test

torch runs on one CPU thread by default (``--threads 0``: torch's choice), as in
``benchmarks/generation.py``: on a shared machine torch's thread pool fights other
processes, and the service gives each model a single worker thread anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from machine import describe, work_dir  # benchmarks/machine.py, beside this script

# The benchmark never reaches a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # after the offline switches

from taskloop.models.cache import LRUCache
from taskloop.models.encoder import load_encoder
from taskloop.models.generate import GenerationSettings, generate
from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model
from taskloop.serve.batching import DynamicBatcher

CLIENTS = (1, 8, 32)
SMOKE_CLIENTS = (1, 8)

RunBatch = Callable[[str, list[str]], list[object]]


def log(message: str = "") -> None:
    print(message, flush=True)


# --- inputs ---------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


ADJECTIVES = _words("old new green quiet busy small large bright dark early late local")
NOUNS = _words(
    "council river city model report dog child teacher market train bridge garden station "
    "museum engineer doctor farmer library school harbour festival forest village road"
)
VERBS = _words("opened closed visited crossed built described answered measured painted moved")
PLACES = _words("Vienna Berlin Lisbon Oslo Prague Madrid Dublin Warsaw Zurich Athens")


def requests(n: int, seed: int) -> list[str]:
    """``n`` request texts of one to three simple sentences (about 10 to 40 tokens)."""
    rng = random.Random(seed)

    def sentence() -> str:
        a, b = rng.sample(NOUNS, 2)
        return (
            f"The {rng.choice(ADJECTIVES)} {a} in {rng.choice(PLACES)} "
            f"{rng.choice(VERBS)} the {b} ."
        )

    return [" ".join(sentence() for _ in range(rng.randint(1, 3))) for _ in range(n)]


# --- models ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Model:
    name: str
    description: str
    run_batch: RunBatch
    reset: Callable[[], None]  # before every run: no cache carries over


def minilm() -> Model:
    start = time.perf_counter()
    enc = load_encoder()
    load_s = time.perf_counter() - start

    def run_batch(key: str, texts: list[str]) -> list[object]:
        return list(enc.encode(texts))

    def reset() -> None:
        enc.cache = LRUCache(max_items=100_000)

    return Model(
        "minilm",
        f"all-MiniLM-L6-v2 (packaged, pretrained) Encoder.encode on {enc.device}, "
        f"loaded in {load_s:.2f}s",
        run_batch,
        reset,
    )


def tiny_t5(work: Path, *, width: int, layers: int, new_tokens: int, seed: int) -> Model:
    start = time.perf_counter()
    folder = build_tiny_model(
        work / "tiny-t5",
        "seq2seq",
        texts=requests(400, seed),
        layers=layers,
        width=width,
        max_length=128,
        seed=seed,
    )
    lm = load_model(str(folder))
    params = sum(p.numel() for p in lm.model.parameters())
    settings = GenerationSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def run_batch(key: str, texts: list[str]) -> list[object]:
        # One model call for the whole batch, as the service makes it.
        batch = dataclasses.replace(settings, batch_size=max(1, len(texts)))
        return [g.text for g in generate(lm, texts, batch)]

    return Model(
        "t5",
        f"tiny T5 from config ({layers}+{layers} layers, width {width}, {params / 1e6:.2f} M "
        f"parameters, random weights) generate(), greedy, {new_tokens} new tokens, on "
        f"{lm.device}; built and loaded in {time.perf_counter() - start:.2f}s",
        run_batch,
        lambda: None,
    )


# --- measurement ----------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    model: str
    clients: int
    batching: bool
    requests: int
    seconds: float
    latencies: list[float]
    batch_sizes: list[int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def pool(runs: list[Result]) -> Result:
    """Repeats of one configuration as one: requests and seconds summed, latencies pooled."""
    first = runs[0]
    return dataclasses.replace(
        first,
        requests=sum(r.requests for r in runs),
        seconds=sum(r.seconds for r in runs),
        latencies=[x for r in runs for x in r.latencies],
        batch_sizes=[x for r in runs for x in r.batch_sizes],
    )


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of values <= it."""
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def drive(
    batcher: DynamicBatcher[str, object], key: str, texts: list[str], clients: int, per_client: int
) -> list[float]:
    """``clients`` tasks, each sending ``per_client`` requests in sequence; their latencies."""
    latencies: list[float] = []

    async def client(c: int) -> None:
        for r in range(per_client):
            text = texts[(c * per_client + r) % len(texts)]
            start = time.perf_counter()
            await batcher.submit(key, text)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies


def measure(
    model: Model,
    texts: list[str],
    *,
    clients: int,
    per_client: int,
    batching: bool,
    max_batch: int,
    max_wait_ms: float,
) -> Result:
    model.reset()
    sizes: list[int] = []

    async def main() -> tuple[float, list[float]]:
        batcher: DynamicBatcher[str, object] = DynamicBatcher(
            model.run_batch,
            max_batch_size=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max(256, clients),
            enabled=batching,
            on_batch=lambda key, size, seconds: sizes.append(size),
        )
        try:
            start = time.perf_counter()
            latencies = await drive(batcher, model.name, texts, clients, per_client)
            return time.perf_counter() - start, latencies
        finally:
            await batcher.close()

    seconds, latencies = asyncio.run(main())
    return Result(model.name, clients, batching, len(latencies), seconds, latencies, sizes)


def report(results: list[Result]) -> None:
    log("| model | clients | batching | requests | req/s | p50 ms | p99 ms | mean batch | vs off |")
    log("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    off = {(r.model, r.clients): r for r in results if not r.batching}
    for r in results:
        base = off.get((r.model, r.clients))
        ratio = f"{r.rate / base.rate:.2f}x" if base is not None else "-"
        log(
            f"| {r.model} | {r.clients} | {'on' if r.batching else 'off'} | {r.requests} | "
            f"{r.rate:,.1f} | {1000 * percentile(r.latencies, 50):.1f} | "
            f"{1000 * percentile(r.latencies, 99):.1f} | "
            f"{sum(r.batch_sizes) / len(r.batch_sizes):.1f} | {ratio} |"
        )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests/s and p50/p99 latency through the service's DynamicBatcher at "
        "1, 8 and 32 concurrent clients, batching off and on, on real model calls.",
    )
    parser.add_argument(
        "--requests-per-client", type=int, help="sequential requests per client (default 32)"
    )
    parser.add_argument("--max-batch", type=int, default=16, help="largest batch (default 16)")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="longest a batch's first request waits for company (default 10)",
    )
    parser.add_argument(
        "--models", default="minilm,t5", help="comma-separated: minilm, t5 (default both)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each configuration, off/on order alternating, pooled (default 1)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 1 and 8 clients")
    parser.add_argument("--new-tokens", type=int, default=16, help="t5: tokens per answer")
    parser.add_argument("--width", type=int, default=128, help="t5: model width (default 128)")
    parser.add_argument("--layers", type=int, default=2, help="t5: layers (default 2)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 0: torch's choice (default 1)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="data and weight seed")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the tiny T5 is written (default: a temporary directory, removed)",
    )
    args = parser.parse_args(argv)
    args.requests_per_client = args.requests_per_client or (2 if args.smoke else 32)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.smoke:
        args.new_tokens, args.width, args.layers = min(args.new_tokens, 4), 32, 1
    if unknown := set(args.models) - {"minilm", "t5"}:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))} (minilm, t5)")
    if (
        min(args.requests_per_client, args.repeats, args.max_batch, args.new_tokens, args.layers)
        < 1
    ):
        parser.error(
            "--requests-per-client, --repeats, --max-batch, --new-tokens, --layers must be >= 1"
        )
    if args.max_wait_ms < 0 or args.threads < 0 or args.width < 4 or args.width % 4:
        parser.error("--max-wait-ms, --threads >= 0; --width a multiple of 4 (4 heads)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    for line in describe(
        ("torch", "transformers"), extra=f"{device}; torch threads {torch.get_num_threads()}"
    ):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    clients = SMOKE_CLIENTS if args.smoke else CLIENTS
    texts = requests(max(clients) * args.requests_per_client, args.seed + 1)
    results: list[Result] = []
    with work_dir(args.work_dir) as work:
        for name in args.models:
            if name == "minilm":
                model = minilm()
            else:
                model = tiny_t5(
                    work,
                    width=args.width,
                    layers=args.layers,
                    new_tokens=args.new_tokens,
                    seed=args.seed,
                )
            log(f"model {model.name}: {model.description}")
            model.reset()
            model.run_batch(model.name, texts[: args.max_batch])  # first-call costs
            for n in clients:
                runs: dict[bool, list[Result]] = {False: [], True: []}
                for rep in range(args.repeats):
                    # Alternate which goes first so a change in machine load hits both.
                    for batching in (False, True) if rep % 2 == 0 else (True, False):
                        r = measure(
                            model,
                            texts,
                            clients=n,
                            per_client=args.requests_per_client,
                            batching=batching,
                            max_batch=args.max_batch,
                            max_wait_ms=args.max_wait_ms,
                        )
                        runs[batching].append(r)
                        log(
                            f"  {name}: {n} clients, batching {'on' if batching else 'off'}: "
                            f"{r.requests} requests in {r.seconds:.2f}s"
                        )
                results.extend([pool(runs[False]), pool(runs[True])])
    log("")
    log(
        f"batching on: batches of at most {args.max_batch}, waiting at most "
        f"{args.max_wait_ms:g} ms; off: every request its own model call, same code path. "
        f"Each client sends {args.requests_per_client} requests in sequence; "
        f"{args.repeats} run(s) of each row, pooled."
    )
    log("")
    report(results)
    if hasattr(os, "getloadavg"):
        log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
