"""Ensembles: pick one output per item from several models' outputs.

Three rules, each over the candidates one item got from the ensemble's members:

majority vote (:func:`majority_vote`)
    Candidates that are equal after normalisation (SQuAD's answer normalisation for QA,
    case and whitespace for translation and summaries, trailing whitespace and blank
    lines for code) form one answer; the answer with most (weighted) votes wins and the
    text of its earliest member is returned. A tie goes to the answer of the earliest
    member (member order is priority: put the champion first), or, with
    ``tie_break="mbr"``, to the tied answer with the highest expected utility.
minimum Bayes risk (:func:`mbr_select`)
    The candidate with the highest expected utility against the other candidates,
    ``U(i) = sum_{j != i} w_j u(c_i, c_j) / sum_{j != i} w_j``, with ``u`` a sentence-level
    metric on 0-100 computed by its reference library: chrF++ and BLEU (sacrebleu),
    ROUGE-L F (rouge-score, Porter stemmer), SQuAD token F1, METEOR (nltk; exact + stem
    matching when WordNet's data is not installed, see :func:`metric_note`). The winner
    is the "centre" of the candidates: what most of them agree with.
reranking (:func:`rerank`)
    Each (source, candidate) pair is scored by a reward model (:func:`reward_scorer`,
    a sequence classifier: its single logit, or its positive class's logit) or any
    callable, and the highest score wins.

Every rule breaks a remaining tie by member order and returns a :class:`Selection`.
:func:`combine` lines members up by item (``(task, id)`` for ``taskloop run``
predictions, position for plain strings), leaves out members with no output for an item,
and selects per item. Ids that some member lacks are an :class:`EnsembleError` (an
ensemble over different data is almost always a mistake) unless ``on_mismatch`` is
"intersection", which keeps the common ids and says how many were dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from taskloop.data.records import Prediction, TaskName
from taskloop.evaluate.errors import EnsembleError, EvalInputError, MetricError
from taskloop.evaluate.metrics import (
    meteor_items,
    meteor_note,
    normalize_answer,
    rouge_items,
    sentence_chrf,
    sentence_scores,
    token_f1,
)

if TYPE_CHECKING:
    from taskloop.data.records import Example
    from taskloop.models.loader import LoadedModel

Method = Literal["vote", "mbr", "rerank"]
METHODS: tuple[Method, ...] = ("vote", "mbr", "rerank")
MBR_METRICS = ("chrf++", "bleu", "rougeL", "f1", "meteor")
METRIC_NAMES = {
    "chrf++": "chrF++",
    "bleu": "BLEU",
    "rougeL": "ROUGE-L",
    "f1": "token F1",
    "meteor": "METEOR",
}
# The task's per-item primary metric is its MBR utility and vote tie-break by default.
TASK_METRIC: dict[str, str] = {
    "translate": "chrf++",
    "summarize": "rougeL",
    "qa": "f1",
    "codegen": "chrf++",
}
# The corpus metric "ensemble vs best single member" compares, and its scale to 0-100
# (the task scorers return fractions except sacrebleu's points).
TASK_PRIMARY: dict[str, tuple[str, float]] = {
    "translate": ("bleu", 1.0),
    "summarize": ("rougeL", 100.0),
    "qa": ("f1", 100.0),
    "codegen": ("pass@1", 100.0),
}
# Names a classifier's accepting label goes by (looked up case-insensitively).
POSITIVE_LABELS = frozenset(
    {"positive", "pos", "accept", "accepted", "good", "chosen", "preferred", "yes", "true"}
)

Scorer = Callable[[str, Sequence[str]], Sequence[float]]
Normaliser = Callable[[str], str]


class Selection(BaseModel):
    """The candidate an ensemble rule picked for one item, and why.

    Attributes:
        method: "vote", "mbr" or "rerank".
        index: the winner's position among the candidates given.
        member: the winner's member name.
        text: the winner's text, as its member wrote it.
        scores: per candidate: (weighted) votes of its answer, expected utility (0-100),
            or reward.
        members: the candidates' member names, in the order given.
        why: one line a person reads: the count, utility or reward that decided.
        metric: the utility metric (MBR, or a vote's MBR tie-break).
        tied: candidates level at the top before the tie-break (one entry: no tie).
        id, task: the item, when selected through :func:`combine`.
    """

    model_config = ConfigDict(frozen=True)

    method: Method
    index: int
    member: str
    text: str
    scores: tuple[float, ...]
    members: tuple[str, ...]
    why: str
    metric: str | None = None
    tied: tuple[int, ...] = ()
    id: str | None = None
    task: TaskName | None = None


# --- normalisation and metrics ------------------------------------------------------------


def squash(text: str) -> str:
    """Lower case with whitespace collapsed: translations and summaries that differ only
    in case or spacing are the same answer."""
    return " ".join(text.lower().split())


def code_lines(text: str) -> str:
    """Code with trailing whitespace and blank lines dropped (case and indentation are
    meaningful in code, so they stay)."""
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def normaliser(task: str | None) -> Normaliser:
    """The vote's equality rule for ``task``: SQuAD's for QA, :func:`code_lines` for
    code, :func:`squash` otherwise."""
    if task == "qa":
        return normalize_answer
    if task == "codegen":
        return code_lines
    return squash


def metric_note(metric: str) -> str:
    """How ``metric`` is computed here, when that matters ("" otherwise)."""
    return meteor_note() if metric == "meteor" else ""


# Sentence-level utilities, each the evaluation's own per-item metric (same libraries,
# same tokenisation, same METEOR fallback without WordNet), on 0-100.
def _bleu(hyp: str, ref: str) -> float:
    return sentence_scores([hyp], [[ref]], metrics=("bleu",))["bleu"][0]


def _rouge(hyp: str, ref: str) -> float:
    return rouge_items([hyp], [[ref]])["rougeL"][0]


def _f1(hyp: str, ref: str) -> float:
    return 100.0 * token_f1(hyp, [ref])


def _meteor(hyp: str, ref: str) -> float:
    return meteor_items([hyp], [[ref]])[0]


_UTILITIES: dict[str, Callable[[str, str], float]] = {
    "chrf++": sentence_chrf,
    "bleu": _bleu,
    "rougeL": _rouge,
    "f1": _f1,
    "meteor": _meteor,
}


def utility(metric: str) -> Callable[[str, str], float]:
    """``u(hypothesis, reference)`` on 0-100 for ``metric``; two empty texts agree (100),
    one empty text agrees with nothing (0).

    Raises:
        MetricError: ``metric`` is not one of :data:`MBR_METRICS`.
    """
    if metric not in _UTILITIES:
        raise MetricError(
            f"unknown MBR metric {metric!r}",
            hint="use one of " + ", ".join(MBR_METRICS),
        )
    base = _UTILITIES[metric]

    def u(hyp: str, ref: str) -> float:
        if not hyp.strip() or not ref.strip():
            # QA's no-answer "" must agree with another "", which chrF and BLEU score 0.
            return 100.0 if not hyp.strip() and not ref.strip() else 0.0
        return base(hyp, ref)

    return u


# --- the three rules ------------------------------------------------------------------------


def _check(candidates: Sequence[str], names: Sequence[str] | None) -> tuple[str, ...]:
    if not candidates:
        raise EnsembleError(
            "no candidates to choose from",
            hint="give at least one member's output for the item",
        )
    if names is None:
        return tuple(f"#{i}" for i in range(len(candidates)))
    if len(names) != len(candidates):
        raise EnsembleError(
            f"{len(names)} member names for {len(candidates)} candidates",
            hint="give one name per candidate, in the same order",
        )
    return tuple(names)


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise EnsembleError(
            f"{len(w)} weights for {n} candidates", hint="give one weight per candidate"
        )
    if any(not math.isfinite(x) or x < 0 for x in w) or not any(w):
        raise EnsembleError(
            f"weights must be finite, non-negative and not all zero: {w}",
            hint="weight a member by how much its output counts (1 = an ordinary vote)",
        )
    return w


def _top(scores: Sequence[float], texts: Sequence[str]) -> list[int]:
    """Indices at the maximum score (float noise below 1e-9 is level), in order, one per
    distinct text: equal texts score alike and are no tie to break."""
    best = max(scores)
    first: dict[str, int] = {}
    for i, s in enumerate(scores):
        if s >= best - 1e-9:
            first.setdefault(texts[i], i)
    return list(first.values())


def _selection(
    method: Method,
    winner: int,
    candidates: Sequence[str],
    names: Sequence[str],
    scores: Sequence[float],
    why: str,
    tied: Sequence[int],
    metric: str | None = None,
) -> Selection:
    """The record every rule returns: the winner, every candidate's score, and why."""
    return Selection(
        method=method,
        index=winner,
        member=names[winner],
        text=candidates[winner],
        scores=tuple(scores),
        members=tuple(names),
        why=why,
        metric=metric,
        tied=tuple(tied),
    )


def _quote(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def majority_vote(
    candidates: Sequence[str],
    *,
    normalise: Normaliser = squash,
    names: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    tie_break: Literal["order", "mbr"] = "order",
    metric: str = "chrf++",
) -> Selection:
    """The answer most candidates give, equal after ``normalise``.

    Args:
        candidates: one output per member, in priority order (earlier wins ties).
        normalise: the equality rule (:func:`normaliser` gives the task's).
        names: member names (default ``#0``, ``#1``, ...).
        weights: votes per candidate (default 1 each).
        tie_break: "order": the tied answer whose first member comes earliest; "mbr":
            the tied answer whose first candidate has the highest expected ``metric``
            against all candidates (still level: member order).

    Returns:
        The selection; ``scores`` are the (weighted) votes of each candidate's answer and
        ``text`` is the first candidate of the winning answer, unnormalised.
    """
    names = _check(candidates, names)
    w = _weights(weights, len(candidates))
    if tie_break not in ("order", "mbr"):
        raise EnsembleError(f"unknown tie-break {tie_break!r}", hint="use 'order' or 'mbr'")
    keys = [normalise(c) for c in candidates]
    votes: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        votes[key] = votes.get(key, 0.0) + w[i]
        first.setdefault(key, i)
    scores = tuple(votes[k] for k in keys)
    tied = [first[k] for k, v in votes.items() if v >= max(votes.values()) - 1e-9]
    winner = tied[0]  # dicts keep insertion order: the earliest member's answer
    total = sum(w)
    why = f"{_fmt(votes[keys[winner]])} of {_fmt(total)} votes for {_quote(candidates[winner])}"
    used_metric = None
    if len(tied) > 1:
        others = ", ".join(_quote(candidates[i]) for i in tied if i != winner)
        if tie_break == "mbr":
            used_metric = metric
            expected = mbr_select(candidates, metric=metric, names=names, weights=w).scores
            pick = max(tied, key=lambda i: (expected[i], -i))
            detail = ", ".join(f"{_quote(candidates[i])} {expected[i]:.2f}" for i in tied)
            why = (
                f"{_fmt(votes[keys[pick]])} of {_fmt(total)} votes for "
                f"{_quote(candidates[pick])}, tied with {len(tied) - 1} other answer(s); "
                f"broken by expected {METRIC_NAMES[metric]} ({detail})"
            )
            winner = pick
        else:
            why += f", tied with {others}; broken by member order ({names[winner]} first)"
    return _selection("vote", winner, candidates, names, scores, why, tied, used_metric)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def mbr_select(
    candidates: Sequence[str],
    *,
    metric: str = "chrf++",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> Selection:
    """The candidate with the highest expected utility against the others (MBR).

    ``U(i) = sum_{j != i} w_j * u(c_i, c_j) / sum_{j != i} w_j`` with ``u`` from
    :func:`utility` (candidate ``i`` as hypothesis, ``j`` as reference); a lone
    candidate is chosen with utility 0. Level utilities go to the earlier member.

    Raises:
        MetricError: unknown ``metric``.
    """
    names = _check(candidates, names)
    w = _weights(weights, len(candidates))
    u = utility(metric)
    memo: dict[tuple[str, str], float] = {}
    scores: list[float] = []
    for i, hyp in enumerate(candidates):
        num = den = 0.0
        for j, ref in enumerate(candidates):
            if i == j or w[j] == 0:
                continue
            if (hyp, ref) not in memo:
                memo[(hyp, ref)] = u(hyp, ref)
            num += w[j] * memo[(hyp, ref)]
            den += w[j]
        scores.append(num / den if den else 0.0)
    tied = _top(scores, candidates)
    winner = tied[0]
    label = METRIC_NAMES[metric]
    if len(candidates) == 1:
        why = "the only candidate"
    else:
        rest = sorted((s for i, s in enumerate(scores) if i != winner), reverse=True)
        why = (
            f"highest expected {label} against the other {len(candidates) - 1} candidates: "
            f"{scores[winner]:.2f} (next {rest[0]:.2f})"
        )
        if len(tied) > 1:
            why += f"; tied with {len(tied) - 1} other(s), broken by member order"
    return _selection("mbr", winner, candidates, names, scores, why, tied, metric)


def rerank(
    candidates: Sequence[str],
    *,
    scorer: Scorer,
    source: str,
    names: Sequence[str] | None = None,
) -> Selection:
    """The candidate ``scorer(source, candidates)`` rates highest (earlier wins ties).

    Args:
        scorer: one score per candidate, higher is better: :func:`reward_scorer` or any
            callable (a verifier, a length prior ...).
        source: the item's input (translate source, document, question and context).

    Raises:
        EnsembleError: the scorer returned the wrong number of scores, or a NaN.
    """
    names = _check(candidates, names)
    scores = [float(s) for s in scorer(source, list(candidates))]
    if len(scores) != len(candidates):
        raise EnsembleError(
            f"the scorer returned {len(scores)} scores for {len(candidates)} candidates",
            hint="a scorer must return one score per candidate, in order",
        )
    bad = [i for i, s in enumerate(scores) if math.isnan(s)]
    if bad:
        raise EnsembleError(
            f"the scorer returned NaN for candidate(s) {bad} ({', '.join(names[i] for i in bad)})",
            hint="check the reward model: its weights or inputs are broken",
        )
    tied = _top(scores, candidates)
    winner = tied[0]
    rest = sorted((s for i, s in enumerate(scores) if i != winner), reverse=True)
    why = f"highest reward {scores[winner]:.4g}" + (f" (next {rest[0]:.4g})" if rest else "")
    if len(tied) > 1:
        why += f"; tied with {len(tied) - 1} other(s), broken by member order"
    return _selection("rerank", winner, candidates, names, scores, why, tied)


# --- a reward model as scorer ---------------------------------------------------------------


def positive_index(config: Any) -> int | None:
    """The logit that means "good" in a classifier's config: 0 for a single logit, the
    label named like "positive"/"accept"/"chosen", else 1 of two labels; None if unclear."""
    n = int(getattr(config, "num_labels", 1))
    if n == 1:
        return 0
    for label, index in (getattr(config, "label2id", None) or {}).items():
        if str(label).lower() in POSITIVE_LABELS:
            return int(index)
    return 1 if n == 2 else None


def reward_scorer(
    model: str | Path | LoadedModel,
    *,
    batch_size: int = 16,
    device: str = "auto",
    max_length: int | None = None,
) -> Scorer:
    """A scorer from a reward model: an ``AutoModelForSequenceClassification`` reading
    (source, candidate) pairs; the reward is its single logit, or the positive class's.

    Args:
        model: a folder or hub id (loaded with :func:`taskloop.models.loader.load_model`,
            kind "classify"), or a loaded classifier.
        batch_size: pairs per forward pass; pairs are sorted by length to pad less.
        max_length: tokens per pair (default: the model's window); longer pairs lose
            tokens from the longer side first.

    Raises:
        EnsembleError: the model is not a sequence classifier, or its positive label
            cannot be told among more than two.
        ModelNotFoundError: the model cannot be found (offline).
    """
    pairs = reward_pair_scorer(model, batch_size=batch_size, device=device, max_length=max_length)

    def score(source: str, candidates: Sequence[str]) -> list[float]:
        return pairs([source] * len(candidates), candidates)

    return score


PairScorer = Callable[[Sequence[str], Sequence[str]], list[float]]


def reward_pair_scorer(
    model: str | Path | LoadedModel,
    *,
    batch_size: int = 16,
    device: str = "auto",
    max_length: int | None = None,
) -> PairScorer:
    """Like :func:`reward_scorer`, but scoring ``(sources[i], candidates[i])`` pairs with
    different sources in one batch (what PPO's rollouts and reward training need)."""
    from taskloop.models.loader import LoadedModel, ModelSpec, load_model

    lm = (
        model
        if isinstance(model, LoadedModel)
        else load_model(ModelSpec(str(model), kind="classify", device=device))
    )
    if lm.kind != "classify":
        raise EnsembleError(
            f"reward model {lm.name!r} is a {lm.kind} model, not a sequence classifier",
            hint="pass a folder saved from an AutoModelForSequenceClassification",
        )
    positive = positive_index(lm.model.config)
    if positive is None:
        raise EnsembleError(
            f"reward model {lm.name!r} has {lm.model.config.num_labels} labels and none is "
            "named like 'positive' or 'accept'",
            hint="use a single-logit reward model, or name its accepting label in label2id",
        )
    import inspect

    accepted = set(inspect.signature(lm.model.forward).parameters)
    limit = min(max_length or lm.window, lm.window)

    def score(sources: Sequence[str], candidates: Sequence[str]) -> list[float]:
        import torch

        if len(sources) != len(candidates):
            raise EnsembleError(f"{len(sources)} sources but {len(candidates)} candidates")
        out = [0.0] * len(candidates)
        order = sorted(
            range(len(candidates)), key=lambda i: -(len(sources[i]) + len(candidates[i]))
        )
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = lm.tokenizer(
                [sources[i] for i in idx],
                [candidates[i] for i in idx],
                padding=True,
                truncation="longest_first",
                max_length=limit,
                return_tensors="pt",
            )
            # DistilBERT-style models take no token_type_ids.
            inputs = {k: v.to(lm.device) for k, v in enc.items() if k in accepted}
            with lm.lock, torch.inference_mode():
                logits = lm.model(**inputs).logits
            for i, value in zip(idx, logits[:, positive].float().cpu().tolist(), strict=True):
                out[i] = float(value)
        return out

    return score


# --- members over the same data ---------------------------------------------------------------


def member_names(paths: Sequence[str | Path]) -> list[str]:
    """A short name per results path: the folder's name (for ``DIR/results.jsonl``, DIR's);
    a repeated name gets ``#2``, ``#3``."""
    out: list[str] = []
    for p in map(Path, paths):
        name = p.parent.name if p.name == "results.jsonl" else (p.name if p.is_dir() else p.stem)
        base, k = name or str(p), 2
        while name in out or not name:
            name, k = f"{base}#{k}", k + 1
        out.append(name)
    return out


def read_results(path: str | Path) -> list[Prediction]:
    """The predictions of a ``taskloop run`` results folder or ``results.jsonl``.

    Raises:
        EvalInputError: the path is missing, empty, or a row is not a prediction (the
            message names the file and line), or an id repeats within a task.
    """
    p = Path(path)
    file = p / "results.jsonl" if p.is_dir() else p
    if not file.is_file():
        raise EvalInputError(
            f"{file}: no such results file",
            hint="pass a `taskloop run` output folder (it holds results.jsonl) or the file",
        )
    preds: list[Prediction] = []
    seen: dict[tuple[str, str], int] = {}
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                pred = Prediction.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"]) or "row"
                raise EvalInputError(
                    f"{file}:{lineno}: not a prediction row: {where}: {first['msg']}",
                    hint="members must be results.jsonl files written by `taskloop run`",
                ) from None
            key = (pred.task, pred.id)
            if key in seen:
                raise EvalInputError(
                    f"{file}:{lineno}: {pred.task} id {pred.id!r} repeats line {seen[key]}",
                    hint="each item may appear once per member",
                )
            seen[key] = lineno
            preds.append(pred)
    if not preds:
        raise EvalInputError(f"{file}: no predictions", hint="the results file is empty")
    return preds


@dataclass(frozen=True)
class Item:
    """One item lined up across members.

    Attributes:
        task, id: the item (task None for plain strings given without one; id is the
            position then).
        candidates: (member, text) of the members with an output, in member order.
        rows: every member's prediction for the item (with or without output); empty
            for plain strings.
    """

    task: TaskName | None
    id: str
    candidates: tuple[tuple[str, str], ...]
    rows: Mapping[str, Prediction] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.task, self.id)


@dataclass
class Alignment:
    """Members lined up by item.

    Attributes:
        members: names in priority order.
        items: in the order the members first list them.
        counts: items per member.
        missing: per member, ``task/id`` of items other members have and it lacks.
        warnings: what a person should know (ids dropped by "intersection").
    """

    members: tuple[str, ...]
    items: list[Item]
    counts: dict[str, int]
    missing: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)


def _label(key: tuple[str | None, str]) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def _mismatch(counts: Mapping[str, int], missing: Mapping[str, list[str]], show: int = 5) -> str:
    have = ", ".join(f"{m} {n}" for m, n in counts.items())
    lacks = "; ".join(
        f"{m} lacks {len(ids)}: " + ", ".join(ids[:show]) + (" ..." if len(ids) > show else "")
        for m, ids in missing.items()
        if ids
    )
    return f"items per member: {have}; {lacks}"


def align(
    per_member: Mapping[str, Sequence[Prediction | str | None]],
    *,
    task: TaskName | None = None,
    on_mismatch: Literal["error", "intersection"] = "error",
) -> Alignment:
    """Line members up by item.

    Args:
        per_member: member name → its predictions (matched by ``(task, id)``) or plain
            strings (matched by position; None = no output). Order is priority.
        task: the task of plain strings (predictions carry their own).
        on_mismatch: ids missing from some member: "error", or keep the ids every
            member has ("intersection", with a warning).

    Raises:
        EnsembleError: fewer than two members, predictions mixed with strings, plain
            strings of different lengths, a repeated id, or ids missing from a member
            (with "error").
    """
    members = tuple(per_member)
    if len(members) < 2:
        raise EnsembleError(
            f"an ensemble needs at least two members, got {len(members)}",
            hint="pass the results of two or more models over the same data",
        )
    values = [list(v) for v in per_member.values()]
    kinds = {isinstance(x, Prediction) for v in values for x in v if x is not None}
    if len(kinds) > 1:
        raise EnsembleError(
            "members mix predictions and plain strings",
            hint="give every member as predictions (results.jsonl rows) or as strings",
        )
    counts = {m: len(v) for m, v in zip(members, values, strict=True)}
    if kinds != {True}:
        return _align_strings(members, values, counts, task)
    keyed: dict[str, dict[tuple[str | None, str], Prediction]] = {}
    order: dict[tuple[str | None, str], None] = {}
    for m, rows in zip(members, values, strict=True):
        keyed[m] = {}
        for row in rows:
            assert isinstance(row, Prediction)
            key: tuple[str | None, str] = (row.task, row.id)
            if key in keyed[m]:
                raise EnsembleError(
                    f"member {m}: {_label(key)} appears twice",
                    hint="each item may appear once per member",
                )
            keyed[m][key] = row
            order.setdefault(key, None)
    missing = {m: [_label(k) for k in order if k not in keyed[m]] for m in members}
    warnings: list[str] = []
    keep = list(order)
    if any(missing.values()):
        if on_mismatch == "error":
            raise EnsembleError(
                "members do not cover the same items: " + _mismatch(counts, missing),
                hint="run every model over the same data, or pass --intersection to "
                "ensemble only the items all members have",
            )
        keep = [k for k in order if all(k in keyed[m] for m in members)]
        warnings.append(
            f"kept the {len(keep)} items every member has, dropped {len(order) - len(keep)} "
            "(" + _mismatch(counts, missing) + ")"
        )
    items = []
    for key in keep:
        found = {m: keyed[m][key] for m in members if key in keyed[m]}
        cands = tuple((m, r.output) for m, r in found.items() if r.output is not None)
        items.append(Item(next(iter(found.values())).task, key[1], cands, found))
    return Alignment(members, items, counts, missing, warnings)


def _align_strings(
    members: tuple[str, ...],
    values: list[list[Any]],
    counts: dict[str, int],
    task: TaskName | None,
) -> Alignment:
    if len(set(counts.values())) > 1:
        have = ", ".join(f"{m} {n}" for m, n in counts.items())
        raise EnsembleError(
            f"plain-string members are matched by position but differ in length: {have}",
            hint="give every member one output per item (None where it has none)",
        )
    items = []
    for i in range(len(values[0])):
        cands = tuple((m, v[i]) for m, v in zip(members, values, strict=True) if v[i] is not None)
        items.append(Item(task, str(i), cands))
    return Alignment(members, items, counts, {m: [] for m in members})


def select(
    item: Item,
    *,
    method: Method,
    metric: str | None = None,
    normalise: Normaliser | None = None,
    tie_break: Literal["order", "mbr"] = "order",
    scorer: Scorer | None = None,
    source: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> Selection:
    """Apply ``method`` to one aligned item (defaults follow the item's task)."""
    names = [m for m, _ in item.candidates]
    texts = [t for _, t in item.candidates]
    w = [weights.get(m, 1.0) for m in names] if weights else None
    used = metric or TASK_METRIC.get(item.task or "", "chrf++")
    if method == "vote":
        sel = majority_vote(
            texts,
            normalise=normalise or normaliser(item.task),
            names=names,
            weights=w,
            tie_break=tie_break,
            metric=used,
        )
    elif method == "mbr":
        sel = mbr_select(texts, metric=used, weights=w, names=names)
    elif method == "rerank":
        if scorer is None or source is None:
            raise EnsembleError(
                f"rerank of {_label(item.key)} needs a scorer and the item's source",
                hint="pass a reward model (--reward-model) and the task data (--data)",
            )
        sel = rerank(texts, scorer=scorer, source=source, names=names)
    else:
        raise EnsembleError(f"unknown method {method!r}", hint="use one of " + ", ".join(METHODS))
    return sel.model_copy(update={"id": item.id, "task": item.task})


def combine(
    per_member: Mapping[str, Sequence[Prediction | str | None]],
    *,
    method: Method,
    task: TaskName | None = None,
    metric: str | None = None,
    normalise: Normaliser | None = None,
    tie_break: Literal["order", "mbr"] = "order",
    scorer: Scorer | None = None,
    sources: Mapping[tuple[str, str], str] | Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    on_mismatch: Literal["error", "intersection"] = "error",
) -> list[Selection]:
    """One selection per item that at least one member has an output for.

    Args:
        per_member: member name → predictions or plain strings (see :func:`align`);
            member order is priority.
        method: "vote", "mbr" or "rerank".
        task: the task of plain strings (sets the vote's normalisation and the metric).
        metric: MBR utility / vote tie-break metric (default: the task's per-item
            primary, :data:`TASK_METRIC`).
        normalise: the vote's equality rule (default: :func:`normaliser` of the task).
        scorer, sources: rerank only: the scorer and each item's input, keyed by
            ``(task, id)`` for predictions, by position for plain strings.
        weights: member → weight (votes, or the weight of its output as MBR evidence).

    Returns:
        Selections in item order; items where no member has an output are left out
        (:func:`align` lists them).

    Raises:
        EnsembleError: see :func:`align`; rerank without scorer or a source.
    """
    alignment = align(per_member, task=task, on_mismatch=on_mismatch)
    out = []
    for pos, item in enumerate(alignment.items):
        if not item.candidates:
            continue
        out.append(
            select(
                item,
                method=method,
                metric=metric,
                normalise=normalise,
                tie_break=tie_break,
                scorer=scorer,
                source=_source_of(sources, item, pos),
                weights=weights,
            )
        )
    return out


def _source_of(
    sources: Mapping[tuple[str, str], str] | Sequence[str] | None, item: Item, pos: int
) -> str | None:
    if sources is None:
        return None
    if isinstance(sources, Mapping):
        return sources.get((item.task or "", item.id))
    return sources[pos] if pos < len(sources) else None


def source_text(example: Example) -> str:
    """What a reward model reads as an item's input: the translate source, the document,
    the question and its context, or the code prompt."""
    task = example.task
    if task == "translate":
        return str(getattr(example, "source", ""))
    if task == "summarize":
        return str(getattr(example, "document", ""))
    if task == "qa":
        return f"{getattr(example, 'question', '')}\n{getattr(example, 'context', '')}"
    return str(getattr(example, "prompt", ""))


# --- results of the ensemble -------------------------------------------------------------------


def ensemble_name(members: Sequence[str]) -> str:
    return f"ensemble({','.join(members)})"


def to_prediction(item: Item, selection: Selection | None, members: Sequence[str]) -> Prediction:
    """The ensemble's prediction for ``item``: the chosen member's row (checks, scores,
    details) with ``model`` = "ensemble(A,B,...)" and ``details["ensemble"]`` saying who
    was chosen and why; a "failed" row when no member has an output."""
    name = ensemble_name(members)
    first = next(iter(item.rows.values()))
    if selection is None:
        reasons = "; ".join(f"{m}: {r.status} {r.reason}".strip() for m, r in item.rows.items())
        return first.model_copy(
            update={
                "output": None,
                "status": "failed",
                "model": name,
                "checks": [],
                "scores": {},
                "details": {"ensemble": {"chosen": None, "why": "no member has an output"}},
                "reason": f"no member produced an output ({reasons})",
            }
        )
    chosen = item.rows[selection.member]
    info = {
        "method": selection.method,
        "metric": selection.metric,
        "chosen": selection.member,
        "chosen_model": chosen.model,
        "why": selection.why,
        "tie": len(selection.tied) > 1,
        "candidates": [
            {"member": m, "output": t, "score": round(s, 4)}
            for (m, t), s in zip(item.candidates, selection.scores, strict=True)
        ],
        "no_output": [m for m in members if m in item.rows and item.rows[m].output is None],
    }
    return chosen.model_copy(
        update={"model": name, "details": {**chosen.details, "ensemble": info}}
    )


def picked_counts(selections: Sequence[Selection], members: Sequence[str]) -> dict[str, int]:
    """How often each member's output was chosen."""
    counts = dict.fromkeys(members, 0)
    for s in selections:
        counts[s.member] = counts.get(s.member, 0) + 1
    return counts


class TaskScores(BaseModel):
    """Every system scored by the task's own scorer over the same items."""

    task: TaskName
    n: int  # items of the task in the data that the ensemble covers
    primary: str  # the compared metric, 0-100
    systems: dict[str, dict[str, float]]  # system → the task scorer's metrics (its scale)
    primary_values: dict[str, float]  # system → primary on 0-100
    best_member: str | None
    ensemble: str
    delta: float | None  # ensemble minus the best single member, primary metric (0-100)


def score_systems(
    groups: Sequence[tuple[TaskName, Sequence[Example]]],
    systems: Mapping[str, Sequence[Prediction]],
    *,
    ensemble: str,
) -> list[TaskScores]:
    """Score every system with the task's scorer (``taskloop.tasks.<task>.score``, as
    ``taskloop run`` does) over the same examples: those of the data the systems cover.

    Args:
        groups: (task, examples) from the task data (several files of a task are merged).
        systems: system name → its predictions (members, then the ensemble).
        ensemble: which system is the ensemble.

    Returns:
        One entry per task with covered examples; ``best_member`` is the member with the
        highest primary metric (earlier member on a tie).
    """
    from taskloop.data.records import Where
    from taskloop.tasks import task_module

    by_task: dict[TaskName, list[Example]] = {}
    for task, examples in groups:
        by_task.setdefault(task, []).extend(examples)
    covered = {(p.task, p.id) for preds in systems.values() for p in preds}
    out = []
    for task, examples in by_task.items():
        exs = [ex for ex in examples if (task, ex.id) in covered]
        if not exs:
            continue
        name, scale = TASK_PRIMARY[task]
        metrics: dict[str, dict[str, float]] = {}
        primary: dict[str, float] = {}
        for system, preds in systems.items():
            by_id = {p.id: p for p in preds if p.task == task}
            aligned = [
                by_id.get(ex.id)
                or Prediction(
                    id=ex.id,
                    task=task,
                    where=Where(file=ex.where.file, row=ex.where.row),
                    output=None,
                    status="failed",
                    reason="no output from this system",
                )
                for ex in exs
            ]
            metrics[system] = task_module(task).score(exs, aligned)
            if name in metrics[system]:
                primary[system] = scale * metrics[system][name]
        members = [s for s in systems if s != ensemble and s in primary]
        best = max(members, key=lambda s: (primary[s], -members.index(s)), default=None)
        delta = primary[ensemble] - primary[best] if best and ensemble in primary else None
        out.append(
            TaskScores(
                task=task,
                n=len(exs),
                primary=name,
                systems=metrics,
                primary_values=primary,
                best_member=best,
                ensemble=ensemble,
                delta=delta,
            )
        )
    return out
