"""Labels a reward model needs with active learning (uncertainty sampling) vs random.

A pool-based simulation on the Anthropic HH-RLHF harmless-base test pairs in
``../shared/data/preferences`` (2312 dialogues, each with a chosen and a rejected last
assistant turn):

* features: frozen all-MiniLM-L6-v2 embeddings (the packaged encoder,
  :func:`taskloop.models.encoder.load_encoder`) of prompt + response for the chosen and
  the rejected answer. Each dialogue is split at its last "\\n\\nAssistant:"; the text
  embedded is the prompt's last human turn plus the response, because the encoder reads
  256 tokens and 16% of the whole dialogues are longer (their response would be cut
  away, leaving chosen and rejected the same); with the last turn 0.2% are longer.
* reward model: a linear Bradley-Terry model on the embedding difference,
  P(chosen > rejected) = σ(w·(e_c - e_r)): sklearn's LogisticRegression without
  intercept on ±(e_c - e_r) with labels 1/0 (each labelled pair gives both orders, so
  the model is symmetric), C fixed at ``--c``.
* a test split (``--test-fraction`` of the pairs, fixed, seed 0) is never labelled;
  the rest is the pool. Each run starts from ``--seed-size`` random labels and acquires
  ``--batch`` labels at a time up to ``--budget``: "uncertainty" takes the pool pairs
  whose predicted P is closest to 0.5 (:func:`taskloop.rlhf.active.threshold_uncertainty`
  on the margin with threshold 0, i.e. binary entropy of P), "random" a random batch.
  Both strategies share each run's seed set; runs differ in the seed set and the random
  draws (``--runs`` seeds).
* figures: test pair accuracy against labels (mean over runs), the accuracy with the
  whole pool labelled, and the labels each strategy needs to reach a target accuracy:
  ``--target-share`` of the full-pool accuracy, and fixed accuracies (``--targets``).
  "labels needed" is read off the mean curve (first budget at or above the target) and
  also per run (mean over runs; a run that never reaches it counts as the budget and
  is reported). As the curves are noisy, the area under them is compared too: per run,
  the mean accuracy over the label counts of a window (up to 500 labels, and all), the
  paired difference uncertainty - random over the runs, and a paired t-test.

Embeddings are cached under the system temp folder, so a rerun is quick. Writes the
curves to docs/figures/active_learning.png and prints a Markdown table.
::

    python benchmarks/active_learning.py                  # 10 runs, up to the whole pool
    python benchmarks/active_learning.py --runs 3 --budget 300   # a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from machine import describe  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (
    ROOT.parent / "shared" / "data" / "preferences" / "hh_rlhf_harmless_base_test.jsonl.gz"
)
FIGURE = ROOT / "docs" / "figures" / "active_learning.png"
SPLIT = "\n\nAssistant:"
HUMAN = "\n\nHuman:"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str = "") -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


def split_dialogue(text: str) -> tuple[str, str]:
    """(prompt, response): the dialogue cut at its last "\\n\\nAssistant:"."""
    i = text.rfind(SPLIT)
    if i < 0:
        return "", text.strip()
    return text[:i], text[i + len(SPLIT) :].strip()


def load_pairs(path: Path) -> list[Pair]:
    """The preference pairs: helper B's reader when it is there, else parsed here."""
    try:
        from taskloop.rlhf.feedback import read_feedback
    except ImportError:
        read_feedback = None
    if read_feedback is not None:
        pairs, _points = read_feedback(path)
        return [Pair(p.prompt, p.chosen, p.rejected) for p in pairs]
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            prompt, chosen = split_dialogue(row["chosen"])
            _, rejected = split_dialogue(row["rejected"])
            out.append(Pair(prompt, chosen, rejected))
    return out


def last_turn(prompt: str) -> str:
    """The prompt's last human turn (what the response answers)."""
    i = prompt.rfind(HUMAN)
    return (prompt[i:] if i >= 0 else prompt).strip()


def feature_text(prompt: str, response: str) -> str:
    return f"{last_turn(prompt)}\n\nAssistant: {response}"


def embed_pairs(pairs: Sequence[Pair], data: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(chosen, rejected) embeddings, cached in the temp folder; and where the cache is."""
    from taskloop.models.encoder import load_encoder

    chosen = [feature_text(p.prompt, p.chosen) for p in pairs]
    rejected = [feature_text(p.prompt, p.rejected) for p in pairs]
    digest = hashlib.sha256("\x00".join(chosen + rejected).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "taskloop-bench-active" / f"{data.stem}-{digest}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["chosen"], z["rejected"], f"{cache} (cached)"
    encoder = load_encoder(device="cpu")
    start = time.perf_counter()
    both = encoder.encode(chosen + rejected)
    log(f"embedded {len(both)} texts in {time.perf_counter() - start:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, chosen=both[: len(pairs)], rejected=both[len(pairs) :])
    return both[: len(pairs)], both[len(pairs) :], str(cache)


def fit(diff: np.ndarray, c: float) -> object:
    """The linear Bradley-Terry model on labelled differences e_c - e_r (both orders).

    Fitted from scratch each round: a warm start from the previous round's weights
    already meets L-BFGS's tolerance and barely moves (it changed the final accuracy).
    """
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([diff, -diff])
    y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
    return LogisticRegression(C=c, fit_intercept=False, max_iter=1000).fit(x, y)


def margin(model: object, diff: np.ndarray) -> np.ndarray:
    """w·(e_a - e_b): > 0 means the model prefers the first answer."""
    out: np.ndarray = model.decision_function(diff)  # type: ignore[attr-defined]
    return out


def accuracy(model: object, diff: np.ndarray) -> float:
    return float((margin(model, diff) > 0).mean())


def run_curve(
    diff_pool: np.ndarray,
    diff_test: np.ndarray,
    *,
    strategy: str,
    seed_set: np.ndarray,
    batch: int,
    budget: int,
    c: float,
    seed: int,
) -> tuple[list[int], list[float]]:
    """Test accuracy after each acquisition round of one strategy."""
    from taskloop.rlhf.active import threshold_uncertainty

    rng = np.random.default_rng(seed + 1000)
    labelled = np.zeros(len(diff_pool), dtype=bool)
    labelled[seed_set] = True
    sizes, accs = [], []
    while True:
        model = fit(diff_pool[labelled], c)
        sizes.append(int(labelled.sum()))
        accs.append(accuracy(model, diff_test))
        if labelled.sum() >= budget or labelled.all():
            break
        free = np.flatnonzero(~labelled)
        take = min(batch, budget - int(labelled.sum()), len(free))
        if strategy == "uncertainty":
            # Highest entropy of P(first better) first; ties (none in practice) by index.
            unc = threshold_uncertainty(margin(model, diff_pool[free]), 0.0)
            pick = free[np.argsort(-unc, kind="stable")[:take]]
        else:
            pick = rng.choice(free, size=take, replace=False)
        labelled[pick] = True
    return sizes, accs


def labels_needed(sizes: Sequence[int], accs: Sequence[float], target: float) -> int | None:
    """The first label count whose accuracy reaches ``target`` (None: never)."""
    for n, a in zip(sizes, accs, strict=True):
        if a >= target - 1e-12:
            return n
    return None


def plot(
    sizes: np.ndarray,
    curves: dict[str, np.ndarray],
    full: float,
    target: float,
    out: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, color in (("uncertainty", "tab:blue"), ("random", "tab:orange")):
        mean, std = curves[name].mean(0), curves[name].std(0)
        ax.plot(sizes, mean, color=color, label=f"{name} (mean of {len(curves[name])} runs)")
        ax.fill_between(sizes, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
    ax.axhline(full, color="black", linestyle="--", linewidth=1, label=f"whole pool ({full:.3f})")
    ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target ({target:.3f})")
    ax.set_xlabel("labelled pairs")
    ax.set_ylabel("held-out pair accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=10, help="seeds (seed sets) per strategy")
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=0, help="labels to stop at (0: the pool)")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument("--target-share", type=float, default=0.95)
    parser.add_argument("--targets", default="0.60,0.62", help="fixed accuracies, comma separated")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args(argv)

    import torch
    from scipy.stats import ttest_rel

    torch.set_num_threads(1)
    started = time.perf_counter()
    for line in describe(["torch", "scikit-learn", "numpy"]):
        log(line)
    pairs = load_pairs(args.data)
    e_c, e_r, cache = embed_pairs(pairs, args.data)
    log(f"data: {args.data.name}, {len(pairs)} pairs; embeddings: {cache}")
    diff = (e_c - e_r).astype(np.float64)
    same = int((np.abs(diff).sum(1) == 0).sum())
    order = np.random.default_rng(0).permutation(len(diff))
    n_test = round(args.test_fraction * len(diff))
    test, pool = order[:n_test], order[n_test:]
    d_test, d_pool = diff[test], diff[pool]
    budget = min(args.budget, len(pool)) if args.budget > 0 else len(pool)
    full = accuracy(fit(d_pool, args.c), d_test)
    log(
        f"split: {len(pool)} pool, {len(test)} test pairs ({same} pairs embed identically); "
        f"whole pool labelled: test accuracy {full:.4f}"
    )
    curves: dict[str, list[list[float]]] = {"uncertainty": [], "random": []}
    sizes: list[int] = []
    for run in range(args.runs):
        seed_set = np.random.default_rng(run).choice(len(pool), args.seed_size, replace=False)
        for strategy in curves:
            sizes, accs = run_curve(
                d_pool,
                d_test,
                strategy=strategy,
                seed_set=seed_set,
                batch=args.batch,
                budget=budget,
                c=args.c,
                seed=run,
            )
            curves[strategy].append(accs)
        log(
            f"run {run + 1}/{args.runs}: final accuracy uncertainty "
            f"{curves['uncertainty'][-1][-1]:.4f}, random {curves['random'][-1][-1]:.4f}"
        )
    arr = {k: np.asarray(v) for k, v in curves.items()}
    target = args.target_share * full
    targets = [(f"{args.target_share:.0%} of whole pool ({target:.3f})", target)]
    targets += [(f"fixed {float(t):.3f}", float(t)) for t in args.targets.split(",") if t.strip()]

    log("")
    log(
        f"Labels needed (seed set {args.seed_size}, batches of {args.batch}, budget {budget}, "
        f"{args.runs} runs, test {len(test)} pairs, C={args.c}):"
    )
    log("")
    log(
        "| target accuracy | uncertainty: mean curve | random: mean curve | ratio "
        "| uncertainty: per run | random: per run |"
    )
    log("|---|---:|---:|---:|---:|---:|")
    for name, t in targets:
        mean_n = {k: labels_needed(sizes, list(a.mean(0)), t) for k, a in arr.items()}
        per_run = {k: [labels_needed(sizes, list(r), t) for r in a] for k, a in arr.items()}
        ratio = (
            f"{mean_n['uncertainty'] / mean_n['random']:.2f}"
            if mean_n["uncertainty"] and mean_n["random"]
            else "n/a"
        )
        cells = []
        for k in ("uncertainty", "random"):
            got = [n if n is not None else budget for n in per_run[k]]
            missed = sum(n is None for n in per_run[k])
            cells.append(
                f"{np.mean(got):.0f} ± {np.std(got):.0f}"
                + (f" ({missed} of {len(got)} runs never)" if missed else "")
            )
        shown = {k: (str(v) if v is not None else f"> {budget}") for k, v in mean_n.items()}
        log(
            f"| {name} | {shown['uncertainty']} | {shown['random']} | {ratio} "
            f"| {cells[0]} | {cells[1]} |"
        )
    log("")
    log("| labelled pairs | uncertainty accuracy | random accuracy |")
    log("|---:|---:|---:|")
    marks = sorted(
        {s for s in sizes if s in (20, 60, 100, 200, 300, 500, 750, 1000) or s == sizes[-1]}
    )
    for s in marks:
        j = sizes.index(s)
        u, r = arr["uncertainty"][:, j], arr["random"][:, j]
        log(f"| {s} | {u.mean():.4f} ± {u.std():.4f} | {r.mean():.4f} ± {r.std():.4f} |")
    log(f"| whole pool ({len(pool)}) | {full:.4f} | {full:.4f} |")
    log("")
    log(
        "| window (labelled pairs) | uncertainty mean acc. | random mean acc. "
        "| paired diff. | runs won | t-test p |"
    )
    log("|---|---:|---:|---:|---:|---:|")
    for low, high in ((args.seed_size, 500), (args.seed_size, budget)):
        cols = [j for j, n in enumerate(sizes) if low <= n <= high]
        if not cols:
            continue
        u, r = arr["uncertainty"][:, cols].mean(1), arr["random"][:, cols].mean(1)
        d = u - r
        p = float(ttest_rel(u, r).pvalue) if args.runs > 1 and np.any(d != 0) else float("nan")
        log(
            f"| {low}-{high} | {u.mean():.4f} | {r.mean():.4f} | {d.mean():+.4f} ± {d.std():.4f} "
            f"| {int((d > 0).sum())} of {len(d)} | {p:.3g} |"
        )
    title = (
        f"HH-RLHF harmless test: linear BT on MiniLM, {len(test)} held-out pairs, {args.runs} runs"
    )
    plot(np.asarray(sizes), arr, full, target, args.figure, title)
    log("")
    log(f"figure: {args.figure}")
    log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
