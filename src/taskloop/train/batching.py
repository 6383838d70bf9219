"""Tokenised pairs, length-grouped batches and multi-task sampling with exact resume.

Every pair is tokenised once. Batches hold up to ``tokens`` padded tokens (source and
target together), grouped by length so little of each batch is padding: pairs are
shuffled, cut into pools of ``POOL`` batches, sorted by length within a pool, and cut
into batches; the batch order is shuffled again. Multi-task sampling picks the task of
each micro-batch with probability ∝ size^(1/T).

Resume is exact because nothing here holds hidden random state: a task's batch order
for its ``epoch`` is a pure function of (seed, task, epoch, the allowed pool), and the
task of micro-batch ``k`` is a pure function of (seed, k). A stream's state is then
just (epoch, position), saved in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskloop.data.pairs import Pair
from taskloop.train.losses import IGNORE_INDEX

POOL = 64  # batches per length-sorting pool: large enough to group, small enough to mix


@dataclass
class Encoded:
    """Token ids of one task's pairs (labels end with EOS; causal prompts do not)."""

    task: str
    source: list[list[int]]
    target: list[list[int]]

    def __len__(self) -> int:
        return len(self.source)

    def lengths(self) -> np.ndarray:
        return np.array([len(s) + len(t) for s, t in zip(self.source, self.target, strict=True)])


def encode(
    pairs: Sequence[Pair], tokenizer: Any, *, kind: str, max_source: int, max_target: int
) -> tuple[list[list[int]], list[list[int]], int]:
    """Token ids of sources and targets, cut to the limits; returns (src, tgt, cut count).

    Seq2seq targets end with EOS from the tokenizer's template (or one is added); causal
    targets always get an EOS so the model learns where to stop.
    """
    src = tokenizer([p.source for p in pairs], add_special_tokens=True)["input_ids"]
    add = kind == "seq2seq"
    tgt = tokenizer([p.target for p in pairs], add_special_tokens=add)["input_ids"]
    eos = tokenizer.eos_token_id
    cut = 0
    out_src, out_tgt = [], []
    for s, t in zip(src, tgt, strict=True):
        if kind == "causal":
            # tokenizers that add BOS to every text must not repeat it mid-sequence
            if t and tokenizer.bos_token_id is not None and t[0] == tokenizer.bos_token_id:
                t = t[1:]
            t = [*t, eos]
        elif not t or t[-1] != eos:
            t = [*t, eos]
        if len(s) > max_source or len(t) > max_target:
            cut += 1
            # keep the end of a source that ends with EOS, the start of a target
            s = s[: max_source - 1] + s[-1:] if len(s) > max_source and add else s[-max_source:]
            t = [*t[: max_target - 1], eos] if len(t) > max_target else t
        out_src.append(s)
        out_tgt.append(t)
    return out_src, out_tgt, cut


def plan_batches(
    lengths: np.ndarray,
    allowed: np.ndarray,
    *,
    tokens: int | None,
    size: int,
    group_by_length: bool,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Batches (arrays of row indices) covering ``allowed`` once, in a shuffled order.

    With ``tokens``, a batch grows while rows × longest row stays within ``tokens``
    (at least one row per batch).
    """
    order = rng.permutation(allowed)
    if group_by_length:
        rows_per_pool = POOL * (size if tokens is None else max(1, tokens // 32))
        pools = [order[i : i + rows_per_pool] for i in range(0, len(order), rows_per_pool)]
        order = np.concatenate(
            [p[np.argsort(-lengths[p], kind="stable")] for p in pools] or [order]
        )
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        if tokens is None:
            end = min(start + size, len(order))
        else:
            end, longest = start, 0
            while end < len(order):
                longest = max(longest, int(lengths[order[end]]))
                if (end - start + 1) * longest > tokens and end > start:
                    break
                end += 1
        batches.append(order[start:end])
        start = end
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


@dataclass
class TaskStream:
    """Endless batches of one task: epoch after epoch over the allowed rows."""

    data: Encoded
    index: int  # task position, part of the seed
    seed: int
    tokens: int | None
    size: int
    group_by_length: bool
    allowed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    epoch: int = 0
    pos: int = 0
    _plan: list[np.ndarray] | None = field(default=None, repr=False)
    _lengths: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not len(self.allowed):
            self.allowed = np.arange(len(self.data))
        self._lengths = self.data.lengths()

    def plan(self) -> list[np.ndarray]:
        if self._plan is None:
            rng = np.random.default_rng([self.seed, self.index, self.epoch])
            assert self._lengths is not None
            self._plan = plan_batches(
                self._lengths, self.allowed, tokens=self.tokens, size=self.size,
                group_by_length=self.group_by_length, rng=rng,
            )  # fmt: skip
        return self._plan

    def next(self) -> np.ndarray:
        plan = self.plan()
        if self.pos >= len(plan):
            self.epoch, self.pos, self._plan = self.epoch + 1, 0, None
            plan = self.plan()
        batch = plan[self.pos]
        self.pos += 1
        return batch

    def restrict(self, allowed: np.ndarray) -> None:
        """Draw from ``allowed`` rows from the next epoch on (the curriculum's pool)."""
        if len(allowed) == len(self.allowed) and np.array_equal(allowed, self.allowed):
            return
        self.allowed = np.asarray(allowed, dtype=np.int64)
        self.epoch, self.pos, self._plan = self.epoch + 1, 0, None

    def batches_per_epoch(self) -> int:
        return len(self.plan())

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "allowed": self.allowed.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.allowed = np.asarray(state["allowed"], dtype=np.int64)
        self.epoch, self.pos, self._plan = int(state["epoch"]), int(state["pos"]), None


def task_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """p_i ∝ n_i^(1/T): T=1 proportional to size, T→∞ uniform over tasks."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    probs: np.ndarray = weights / weights.sum()
    return probs


def pick_task(probs: np.ndarray, seed: int, micro_step: int) -> int:
    """The task of micro-batch ``micro_step``: a pure function, so resume needs no RNG state."""
    if len(probs) == 1:
        return 0
    return int(np.random.default_rng([seed, 7919, micro_step]).choice(len(probs), p=probs))


def _padded(
    seqs: Sequence[Sequence[int]], width: int, fill: int, *, left: bool = False
) -> np.ndarray:
    arr = np.full((len(seqs), width), fill, dtype=np.int64)
    for i, seq in enumerate(seqs):
        if seq:
            if left:
                arr[i, width - len(seq) :] = seq
            else:
                arr[i, : len(seq)] = seq
    return arr


def _mask(seqs: Sequence[Sequence[int]], width: int, *, left: bool = False) -> np.ndarray:
    lengths = np.array([len(q) for q in seqs])[:, None]
    cols = np.arange(width)[None, :]
    keep = cols >= width - lengths if left else cols < lengths
    return keep.astype(np.int64)


def collate(
    data: Encoded,
    rows: np.ndarray,
    *,
    kind: str,
    pad_id: int,
    decoder_start_id: int | None,
    multiple_of: int = 1,
) -> dict[str, Any]:
    """Padded tensors for one batch.

    seq2seq: input_ids/attention_mask from sources, labels from targets (IGNORE at
    padding) and decoder_input_ids = labels shifted right after the start token.
    causal: source+target in one sequence, padded on the left, labels only on the
    target part (the prompt is context, not something to learn to write).
    """
    import torch

    def width(n: int) -> int:
        return -(-n // multiple_of) * multiple_of

    src = [data.source[i] for i in rows]
    tgt = [data.target[i] for i in rows]
    if kind == "seq2seq":
        input_ids = _padded(src, width(max(map(len, src))), pad_id)
        labels = _padded(tgt, width(max(map(len, tgt))), IGNORE_INDEX)
        dec_in = np.empty_like(labels)
        dec_in[:, 0] = pad_id if decoder_start_id is None else decoder_start_id
        dec_in[:, 1:] = labels[:, :-1]
        dec_in[dec_in == IGNORE_INDEX] = pad_id
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(_mask(src, input_ids.shape[1])),
            "decoder_input_ids": torch.from_numpy(dec_in),
            "labels": torch.from_numpy(labels),
        }
    seqs = [[*s, *t] for s, t in zip(src, tgt, strict=True)]
    n = width(max(map(len, seqs)))
    input_ids = _padded(seqs, n, pad_id, left=True)
    attention = _mask(seqs, n, left=True)
    masked = [[IGNORE_INDEX] * len(s) + list(t) for s, t in zip(src, tgt, strict=True)]
    labels = _padded(masked, n, IGNORE_INDEX, left=True)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "labels": torch.from_numpy(labels),
    }
