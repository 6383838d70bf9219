"""Evaluation during training: validation loss and each task's metric on generations.

Each task is scored with its usual metric, computed by the reference libraries through
:mod:`taskloop.evaluate.metrics`: translation BLEU (sacrebleu), summarization ROUGE-L
(rouge-score), QA token F1 (SQuAD rules), and code chrF++ against the reference
completion (pass@k needs the sandbox and is left to ``taskloop run``). The run's
"score" is the mean of the tasks' primary metrics, so early stopping and the
curriculum's pacing see every task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskloop.data.pairs import NO_ANSWER, Pair

PRIMARY = {"translate": "bleu", "summarize": "rougeL", "qa": "f1", "codegen": "chrf"}


@dataclass(frozen=True)
class EvalItem:
    """One held-out example: the model input and every reference for it."""

    task: str
    source: str
    references: tuple[str, ...]


def eval_items(pairs: Sequence[Pair], limit: int | None = None) -> list[EvalItem]:
    """Pairs grouped by example (several summaries → one item), at most ``limit`` per task."""
    grouped: dict[tuple[str, str], list[Pair]] = {}
    for pair in pairs:
        grouped.setdefault((pair.task, pair.id), []).append(pair)
    items: list[EvalItem] = []
    per_task: dict[str, int] = {}
    for (task, _), group in grouped.items():
        if limit is not None and per_task.get(task, 0) >= limit:
            continue
        per_task[task] = per_task.get(task, 0) + 1
        refs = dict.fromkeys(r for p in group for r in (p.target, *p.alternatives))
        items.append(EvalItem(task, group[0].source, tuple(refs)))
    return items


def generate_texts(
    model: Any,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    kind: str,
    device: Any,
    num_beams: int = 1,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    max_source_tokens: int = 512,
    length_penalty: float = 1.0,
) -> list[str]:
    """Generate for every source in length-sorted batches; outputs in input order."""
    import torch

    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[str] = [""] * len(sources)
    was_training = model.training
    model.eval()
    if kind == "causal":
        tokenizer.padding_side = "left"
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [sources[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_source_tokens,
            ).to(device)
            with torch.inference_mode():
                gen = model.generate(
                    **enc,
                    num_beams=num_beams,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    length_penalty=length_penalty,
                    early_stopping=num_beams > 1,
                    pad_token_id=tokenizer.pad_token_id,
                )
            if kind == "causal":
                gen = gen[:, enc["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(gen, skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text.strip()
    finally:
        model.train(was_training)
    return out


def score_task(
    task: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """The task's metrics (0–100 scale) over ``predictions``."""
    from taskloop.evaluate import metrics

    if not predictions:
        return {}
    if task == "translate":
        return metrics.bleu_chrf(predictions, [r[0] for r in references])
    if task == "summarize":
        return {k: 100 * v for k, v in metrics.rouge(predictions, references).items()}
    if task == "qa":
        golds = [[g for g in r if g != NO_ANSWER] for r in references]
        preds = ["" if p.strip().lower() == NO_ANSWER else p for p in predictions]
        n = len(preds)
        return {
            "f1": 100 * sum(metrics.token_f1(p, g) for p, g in zip(preds, golds, strict=True)) / n,
            "exact": 100
            * sum(metrics.exact_match(p, g) for p, g in zip(preds, golds, strict=True))
            / n,
        }
    chrf = [metrics.sentence_chrf(p, r[0]) for p, r in zip(predictions, references, strict=True)]
    return {"chrf": sum(chrf) / len(chrf)}


def evaluate_generation(
    model: Any,
    tokenizer: Any,
    items: Sequence[EvalItem],
    *,
    kind: str,
    device: Any,
    num_beams: int,
    max_new_tokens: int,
    max_source_tokens: int,
    length_penalty: float = 1.0,
    batch_size: int = 64,
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per-task metrics and the generated texts (in ``items`` order)."""
    preds = generate_texts(
        model, tokenizer, [it.source for it in items], kind=kind, device=device,
        num_beams=num_beams, max_new_tokens=max_new_tokens, batch_size=batch_size,
        max_source_tokens=max_source_tokens, length_penalty=length_penalty,
    )  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(it.task for it in items):
        idx = [i for i, it in enumerate(items) if it.task == task]
        results[task] = score_task(
            task, [preds[i] for i in idx], [items[i].references for i in idx]
        )
    return results, preds


def overall(results: dict[str, dict[str, float]]) -> float:
    """Mean of each task's primary metric."""
    values = [r[PRIMARY[t]] for t, r in results.items() if PRIMARY.get(t) in r]
    return sum(values) / len(values) if values else 0.0
