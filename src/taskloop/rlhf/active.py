"""Active learning: pick the inputs most worth a person's rating and put them in the
labelling queue that the feedback page shows first.

Each signal is a number in [0, 1] (1 = most worth labelling), or None where it does not
apply (no reward model, no stored confidence, no reference set); nothing is invented:

- ``uncertainty``: the reward model cannot tell whether one answer is acceptable:
  H(σ((r - t) / scale)), the binary entropy in bits of the accept probability, with
  ``t`` the reward model's tuned accept threshold (the median reward of the candidates
  when it has none). 1 at the threshold, towards 0 far from it.
- ``pair_uncertainty``: two answers to the same input that the reward model cannot rank:
  H(σ((r_a - r_b) / scale)), 1 when the rewards are equal (the most ambiguous other
  answer counts).
- ``disagreement``: several reward models disagree: 2 · std over the models of
  σ((r_m - t_m) / scale) (population std; 1 when half accept surely and half reject
  surely).
- ``answer_disagreement``: several answers to the same input differ: 1 - the mean
  pairwise token F1 (:func:`taskloop.evaluate.metrics.token_f1`).
- ``low_confidence``: 1 - the confidence the task stored with its answer (QA's
  ``confidence``, or exp of a stored mean token log-prob); None when none is stored.
- ``drift``: the input is far from a reference set: the mean distance to its k nearest
  reference embeddings, as a percentile of the reference's own leave-one-out distances.

:func:`priority` is the weighted mean of the signals that apply; :func:`select` ranks
candidates by it (``strategy`` "uncertainty" uses the two reward-uncertainty signals only,
"random" is the baseline) and :func:`enqueue` writes the choice to the service's queue.
docs/active-learning.md explains the choices and the measured benefit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from scipy.special import entr, expit

from taskloop.log import step
from taskloop.rlhf.errors import ActiveLearningError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taskloop.serve.records import PredictionRecord

Strategy = Literal["uncertainty", "combined", "random"]
STRATEGIES: tuple[Strategy, ...] = ("uncertainty", "combined", "random")

SIGNALS: tuple[str, ...] = (
    "uncertainty",
    "pair_uncertainty",
    "disagreement",
    "answer_disagreement",
    "low_confidence",
    "drift",
)
UNCERTAINTY_SIGNALS = ("uncertainty", "pair_uncertainty")
DEFAULT_WEIGHTS: dict[str, float] = dict.fromkeys(SIGNALS, 1.0)
# What each signal says about an input, in the words of the queue's "reason".
SIGNAL_WORDS: dict[str, str] = {
    "uncertainty": "reward near the accept threshold",
    "pair_uncertainty": "reward model cannot rank two answers",
    "disagreement": "reward models disagree",
    "answer_disagreement": "answers to this input disagree",
    "low_confidence": "model unsure of its answer",
    "drift": "unlike the reference inputs",
}
# Keys of a stored confidence, in the order they are looked for (see confidence_of).
CONFIDENCE_KEYS = ("confidence",)
LOGPROB_KEYS = ("mean_logprob", "mean_token_logprob")
# Fields of a --data row that are answers or metadata, not the task input.
ANSWER_FIELDS = frozenset({"task", "id", "output", "outputs", "confidence", "scores", "details"})


# --- signals: pure functions over arrays ---------------------------------------------


def binary_entropy(p: np.ndarray | Sequence[float] | float) -> np.ndarray:
    """Entropy in bits of a coin with heads probability ``p``: 1 at 0.5, 0 at 0 and 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    out: np.ndarray = (entr(q) + entr(1.0 - q)) / math.log(2.0)
    return out


def threshold_uncertainty(
    rewards: np.ndarray | Sequence[float], threshold: float, *, scale: float = 1.0
) -> np.ndarray:
    """H(σ((r - threshold) / scale)) per reward: 1 at the threshold, towards 0 away from it.

    Example: rewards [0, 2] with threshold 0 give [1.0, H(σ(2)) = H(0.881) = 0.527].
    """
    r = np.asarray(rewards, dtype=np.float64)
    return binary_entropy(expit((r - threshold) / _positive(scale, "scale")))


def pair_uncertainty(
    rewards_a: np.ndarray | Sequence[float],
    rewards_b: np.ndarray | Sequence[float],
    *,
    scale: float = 1.0,
) -> np.ndarray:
    """H(σ((r_a - r_b) / scale)) per pair: 1 when the reward model ranks A and B equally,
    towards 0 when it prefers one surely."""
    a = np.asarray(rewards_a, dtype=np.float64)
    b = np.asarray(rewards_b, dtype=np.float64)
    return binary_entropy(expit((a - b) / _positive(scale, "scale")))


def ensemble_disagreement(
    rewards: np.ndarray | Sequence[Sequence[float]],
    thresholds: Sequence[float],
    *,
    scale: float = 1.0,
) -> np.ndarray:
    """2 · std over models of σ((r_m - t_m) / scale), per candidate, in [0, 1].

    ``rewards`` has shape (models, candidates) and ``thresholds`` one value per model:
    raw rewards of different models have different offsets, their accept probabilities
    are comparable. The population std of numbers in [0, 1] is at most 0.5, hence the 2.

    Raises:
        ActiveLearningError: fewer than two models, or thresholds that do not match.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or len(thresholds) != r.shape[0]:
        raise ActiveLearningError(
            f"ensemble disagreement needs rewards of shape (models >= 2, candidates) and one "
            f"threshold per model; got shape {r.shape} and {len(thresholds)} thresholds",
            hint="pass --reward-model at least twice",
        )
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    p = expit((r - t) / _positive(scale, "scale"))
    out: np.ndarray = np.clip(2.0 * p.std(axis=0), 0.0, 1.0)
    return out


def answer_disagreement(answers: Sequence[str]) -> float | None:
    """1 - mean pairwise token F1 of several answers to one input; None for fewer than two.

    Example: "the Danube" and "Danube" normalise to the same tokens (F1 1), so 0.0;
    "Danube" and "Mur" share nothing, so 1.0.
    """
    from taskloop.evaluate.metrics import token_f1

    if len(answers) < 2:
        return None
    f1 = [(token_f1(a, [b]) + token_f1(b, [a])) / 2.0 for a, b in combinations(list(answers), 2)]
    return float(np.clip(1.0 - float(np.mean(f1)), 0.0, 1.0))


def confidence_of(
    scores: Mapping[str, Any] | None = None, details: Mapping[str, Any] | None = None
) -> float | None:
    """The confidence a task stored with its answer, in [0, 1], or None when it stored none.

    Looks in ``scores`` then ``details`` for ``confidence`` (QA stores one in its details:
    the span or no-answer probability), then for a mean token log-prob (``mean_logprob``,
    ``mean_token_logprob``; exp of it is the geometric-mean token probability).
    """
    for where in (scores or {}, details or {}):
        for key in CONFIDENCE_KEYS:
            value = _finite(where.get(key))
            if value is not None:
                return float(np.clip(value, 0.0, 1.0))
        for key in LOGPROB_KEYS:
            value = _finite(where.get(key))
            if value is not None:
                return float(np.clip(math.exp(min(value, 0.0)), 0.0, 1.0))
    return None


def low_confidence(confidence: float | None) -> float | None:
    """1 - ``confidence`` (None stays None: the signal does not apply)."""
    return None if confidence is None else float(np.clip(1.0 - confidence, 0.0, 1.0))


def knn_distance(
    points: np.ndarray, reference: np.ndarray, k: int, *, leave_one_out: bool = False
) -> np.ndarray:
    """Mean Euclidean distance of each point to its ``k`` nearest reference points.

    With ``leave_one_out`` the points are the reference itself and each point's own
    (zero) distance is left out.
    """
    from taskloop.monitor.drift import squared_distances

    d = np.sqrt(squared_distances(points, reference))
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    k = min(k, d.shape[1] - (1 if leave_one_out else 0))
    nearest = np.partition(d, k - 1, axis=1)[:, :k]
    out: np.ndarray = nearest.mean(axis=1)
    return out


def drift_percentile(embeddings: np.ndarray, reference: np.ndarray, *, k: int = 5) -> np.ndarray:
    """Per embedding: the share of reference points whose own k-NN distance (leave one
    out) is at most this embedding's mean distance to its k nearest reference points.

    0 for an input in the densest part of the reference, 1 for one farther out than
    every reference point is from its neighbours.

    Raises:
        ActiveLearningError: fewer than 2 reference points, or dimensions that differ.
    """
    ref = np.asarray(reference, dtype=np.float64)
    emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    if ref.ndim != 2 or len(ref) < 2 or emb.ndim != 2 or emb.shape[1] != ref.shape[1]:
        raise ActiveLearningError(
            f"drift needs at least 2 reference embeddings of the candidates' dimension; got "
            f"reference {ref.shape}, candidates {emb.shape}",
            hint="pass a --reference file with more inputs",
        )
    if k < 1:
        raise ActiveLearningError(f"k must be at least 1, got {k}", hint="use k=5")
    own = np.sort(knn_distance(ref, ref, k, leave_one_out=True))
    dist = knn_distance(emb, ref, k)
    out: np.ndarray = np.searchsorted(own, dist, side="right") / len(own)
    return out


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ActiveLearningError(f"{name} must be positive, got {value}", hint=f"use {name}=1")
    return float(value)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# --- records -------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An input (with one answer, when there is one) that could be queued for labelling.

    ``prompt`` is what the reward model reads (the task model's input text), ``text`` what
    drift is measured on (the task's main field), ``confidence`` what the task stored (None:
    nothing), ``signals`` each signal's value (None: it does not apply).
    """

    id: str
    task: str
    input: dict[str, Any]
    prompt: str = ""
    text: str = ""
    output: str | None = None
    prediction_id: str | None = None
    input_hash: str = ""
    confidence: float | None = None
    signals: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """(task, input hash): candidates with equal keys ask about the same input."""
        from taskloop.serve.storage.repo import hash_input

        return (self.task, self.input_hash or hash_input(self.input))


@dataclass(frozen=True)
class Selected:
    """A candidate chosen for the queue: how urgent (``priority``) and why, in words."""

    candidate_id: str
    prediction_id: str | None
    task: str
    input: dict[str, Any]
    priority: float
    reason: str
    signals: Mapping[str, float | None] = field(default_factory=dict)


class RewardScorer(Protocol):
    """What the signals need of a reward model (:func:`taskloop.rlhf.reward.load_reward_model`)."""

    @property
    def threshold(self) -> float | None: ...

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray: ...


class Embedder(Protocol):
    """Anything that embeds texts into rows of a matrix (the MiniLM ``Encoder``)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


# --- combining and selecting ---------------------------------------------------------


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """The default weights updated with ``weights``.

    Raises:
        ActiveLearningError: an unknown signal name or a negative or non-finite weight.
    """
    out = dict(DEFAULT_WEIGHTS)
    for name, w in (weights or {}).items():
        if name not in DEFAULT_WEIGHTS:
            raise ActiveLearningError(
                f"unknown signal {name!r} in the weights", hint=f"one of {', '.join(SIGNALS)}"
            )
        if not (math.isfinite(w) and w >= 0):
            raise ActiveLearningError(
                f"weight of {name} must be a finite number >= 0, got {w}", hint="e.g. drift=0.5"
            )
        out[name] = float(w)
    return out


def _applicable(
    signals: Mapping[str, float | None], weights: Mapping[str, float]
) -> list[tuple[str, float, float]]:
    """(name, value, weight) of the signals that apply and weigh something."""
    out = []
    for name, value in signals.items():
        if value is None:
            continue
        if not (math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9):
            raise ActiveLearningError(
                f"signal {name} is {value}, outside [0, 1]",
                hint="signals are normalised to [0, 1]; compute them with this module",
            )
        w = weights.get(name, 0.0)
        if w > 0:
            out.append((name, min(max(float(value), 0.0), 1.0), w))
    return out


def priority(
    signals: Mapping[str, float | None], weights: Mapping[str, float] | None = None
) -> float:
    """The weighted mean of the signals that apply: Σ w_s·x_s / Σ w_s over the signals s
    that are not None and have weight > 0 (all weights 1 by default); 0.0 when none applies.

    Example: {"uncertainty": 0.9, "drift": 0.3, "low_confidence": None} with weights
    uncertainty 2, drift 1 gives (2·0.9 + 1·0.3) / 3 = 0.7.

    Raises:
        ActiveLearningError: a signal outside [0, 1], an unknown name or a bad weight.
    """
    parts = _applicable(signals, check_weights(weights))
    total = sum(w for _, _, w in parts)
    return sum(w * x for _, x, w in parts) / total if total > 0 else 0.0


def reason(
    signals: Mapping[str, float | None], weights: Mapping[str, float] | None = None, top: int = 2
) -> str:
    """The ``top`` signals that weigh most in the priority (w·x), in words with values,
    e.g. "reward near the accept threshold (0.97); unlike the reference inputs (0.91)"."""
    parts = _applicable(signals, check_weights(weights))
    parts.sort(key=lambda p: (-p[1] * p[2], SIGNALS.index(p[0]) if p[0] in SIGNALS else 99))
    return "; ".join(f"{SIGNAL_WORDS.get(n, n)} ({x:.2f})" for n, x, _ in parts[:top])


def strategy_weights(strategy: Strategy, weights: Mapping[str, float] | None) -> dict[str, float]:
    """The weights ``strategy`` ranks by: "uncertainty" keeps only the reward-uncertainty
    signals, "combined" all.

    Raises:
        ActiveLearningError: an unknown strategy or bad weights.
    """
    w = check_weights(weights)
    if strategy == "uncertainty":
        return {n: (v if n in UNCERTAINTY_SIGNALS else 0.0) for n, v in w.items()}
    if strategy in ("combined", "random"):
        return w
    raise ActiveLearningError(
        f"unknown strategy {strategy!r}", hint=f"one of {', '.join(STRATEGIES)}"
    )


def select(
    candidates: Sequence[Candidate],
    k: int,
    *,
    strategy: Strategy = "combined",
    seed: int = 0,
    weights: Mapping[str, float] | None = None,
    dedupe: bool = True,
) -> list[Selected]:
    """The ``k`` candidates most worth labelling, most urgent first.

    "uncertainty" and "combined" rank by :func:`priority` (under :func:`strategy_weights`)
    and skip candidates where no weighted signal applies; equal priorities keep the order
    the candidates were given. "random" takes a seeded random sample (priority 0, the
    baseline). With ``dedupe`` an input (task and input hash) is picked once, as its most
    urgent answer.

    Raises:
        ActiveLearningError: k < 0, an unknown strategy or bad weights, or candidates none
            of which has a signal the strategy uses.
    """
    if k < 0:
        raise ActiveLearningError(f"k must be >= 0, got {k}", hint="e.g. --k 20")
    w = strategy_weights(strategy, weights)
    if strategy == "random":
        order = [int(i) for i in np.random.default_rng(seed).permutation(len(candidates))]
        ranked = [(0.0, i) for i in order]
    else:
        scored = [
            (priority(c.signals, w), i)
            for i, c in enumerate(candidates)
            if _applicable(c.signals, w)
        ]
        if candidates and not scored:
            used = [n for n, v in w.items() if v > 0]
            raise ActiveLearningError(
                f"none of the {len(candidates)} candidates has a signal that strategy "
                f"{strategy!r} uses ({', '.join(used)})",
                hint="pass --reward-model for uncertainty, --reference for drift, or use "
                + (
                    "--strategy random"
                    if strategy == "combined"
                    else "--strategy combined (all signals) or random"
                ),
            )
        # Rounding keeps float noise from reordering equal priorities.
        ranked = sorted(scored, key=lambda pi: (-round(pi[0], 12), pi[1]))
    out: list[Selected] = []
    seen: set[tuple[str, str]] = set()
    for p, i in ranked:
        if len(out) >= k:
            break
        c = candidates[i]
        if dedupe:
            if c.key in seen:
                continue
            seen.add(c.key)
        why = f"random sample (seed {seed})" if strategy == "random" else reason(c.signals, w)
        out.append(
            Selected(
                candidate_id=c.id,
                prediction_id=c.prediction_id,
                task=c.task,
                input=c.input,
                priority=round(p, 6),
                reason=why,
                signals=dict(c.signals),
            )
        )
    return out


# --- signals for candidates ----------------------------------------------------------


def candidate_signals(
    candidates: Sequence[Candidate],
    *,
    reward_models: Sequence[RewardScorer] = (),
    reference: Sequence[str] | None = None,
    embedder: Embedder | None = None,
    k_neighbours: int = 5,
    scale: float = 1.0,
) -> list[Candidate]:
    """The candidates with every signal computed (None where it does not apply).

    Reward signals need ``reward_models`` and an answer; with several models, the
    uncertainties are their mean and ``disagreement`` applies. A model without a tuned
    threshold is centred on the median reward of these candidates. Pair uncertainty and
    answer disagreement compare the answers of candidates with the same input. Drift
    needs ``reference`` texts (embedded with ``embedder``, the packaged MiniLM by default).

    Raises:
        ActiveLearningError: a reward model returned the wrong number of scores, or the
            reference is too small.
    """
    n = len(candidates)
    signals: list[dict[str, float | None]] = [dict.fromkeys(SIGNALS) for _ in range(n)]
    for i, c in enumerate(candidates):
        signals[i]["low_confidence"] = low_confidence(c.confidence)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        if c.output is not None:
            groups[c.key].append(i)
    for members in groups.values():
        value = answer_disagreement([candidates[i].output or "" for i in members])
        for i in members:
            signals[i]["answer_disagreement"] = value
    answered = [i for i, c in enumerate(candidates) if c.output is not None]
    if reward_models and answered:
        _reward_signals(candidates, answered, groups, reward_models, scale, signals)
    if reference is not None and n:
        _drift_signals(candidates, reference, embedder, k_neighbours, signals)
    return [replace(c, signals=s) for c, s in zip(candidates, signals, strict=True)]


def _reward_signals(
    candidates: Sequence[Candidate],
    answered: list[int],
    groups: Mapping[tuple[str, str], list[int]],
    models: Sequence[RewardScorer],
    scale: float,
    signals: list[dict[str, float | None]],
) -> None:
    prompts = [candidates[i].prompt for i in answered]
    outputs = [candidates[i].output or "" for i in answered]
    rewards = np.zeros((len(models), len(candidates)), dtype=np.float64)
    thresholds = []
    with step("active.reward", models=len(models), answers=len(answered)):
        for m, model in enumerate(models):
            r = np.asarray(model.score(prompts, outputs), dtype=np.float64).reshape(-1)
            if len(r) != len(answered):
                raise ActiveLearningError(
                    f"reward model {m + 1} returned {len(r)} scores for {len(answered)} answers",
                    hint="a reward model returns one score per (prompt, completion)",
                )
            rewards[m, answered] = r
            t = model.threshold
            thresholds.append(float(np.median(r)) if t is None else float(t))
    unc = np.mean(
        [
            threshold_uncertainty(rewards[m, answered], thresholds[m], scale=scale)
            for m in range(len(models))
        ],
        axis=0,
    )
    dis = (
        ensemble_disagreement(rewards[:, answered], thresholds, scale=scale)
        if len(models) >= 2
        else None
    )
    for j, i in enumerate(answered):
        signals[i]["uncertainty"] = float(unc[j])
        if dis is not None:
            signals[i]["disagreement"] = float(dis[j])
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            others = [o for o in members if o != i]
            per_model = [
                pair_uncertainty(
                    np.full(len(others), rewards[m, i]), rewards[m, others], scale=scale
                )
                for m in range(len(models))
            ]
            signals[i]["pair_uncertainty"] = float(np.max(np.mean(per_model, axis=0)))


def _drift_signals(
    candidates: Sequence[Candidate],
    reference: Sequence[str],
    embedder: Embedder | None,
    k: int,
    signals: list[dict[str, float | None]],
) -> None:
    if embedder is None:
        from taskloop.models.encoder import load_encoder

        embedder = load_encoder()
    with step("active.drift", reference=len(reference), candidates=len(candidates)):
        ref = np.asarray(embedder.encode(list(reference)))
        emb = np.asarray(embedder.encode([c.text or c.prompt for c in candidates]))
        pct = drift_percentile(emb, ref, k=k)
    for i, value in enumerate(pct):
        signals[i]["drift"] = float(value)


# --- candidates from the store or a file ---------------------------------------------


def drift_text(task: str, value: Mapping[str, Any]) -> str:
    """The text of an input that drift is measured on: the task's main field (translate
    source, summarize document, qa question, codegen prompt), else its canonical JSON."""
    from taskloop.monitor.drift import DEFAULT_FIELD
    from taskloop.serve.storage.repo import canonical_json

    text = value.get(DEFAULT_FIELD.get(task, ""))
    return text if isinstance(text, str) and text.strip() else canonical_json(dict(value))


def from_predictions(records: Sequence[PredictionRecord]) -> list[Candidate]:
    """Candidates from stored predictions (their answer, input and stored confidence)."""
    from taskloop.serve.storage.repo import render_prompt

    return [
        Candidate(
            id=r.id,
            task=r.task,
            input=dict(r.input),
            prompt=render_prompt(r.task, r.input),
            text=drift_text(r.task, r.input),
            output=r.output,
            prediction_id=r.id,
            input_hash=r.input_hash,
            confidence=confidence_of(r.scores),
        )
        for r in records
    ]


def from_rows(
    rows: Sequence[tuple[int, Mapping[str, Any]]], *, task: str | None, source: str
) -> list[Candidate]:
    """Candidates from task rows ``(line, row)``: the row without its answer fields is the
    input; ``output`` (one answer) or ``outputs`` (several) and ``confidence`` are optional.

    Raises:
        ActiveLearningError: a row names no task and ``task`` is None, or has a bad answer.
    """
    from taskloop.serve.storage.repo import hash_input, render_prompt

    out: list[Candidate] = []
    for line, row in rows:
        name = row.get("task", task)
        if not isinstance(name, str) or not name:
            raise ActiveLearningError(
                f"{source}:{line}: the row names no task",
                hint='give each row a "task" field, or pass --task',
            )
        value = {k: v for k, v in row.items() if k not in ANSWER_FIELDS}
        answers = _answers(row, f"{source}:{line}")
        base = str(row.get("id") or f"{source}:{line}")
        scores, details = row.get("scores"), row.get("details")
        conf = confidence_of(
            scores if isinstance(scores, dict) else {},
            {**(details if isinstance(details, dict) else {}), **row},
        )
        one = Candidate(
            id=base,
            task=name,
            input=value,
            prompt=render_prompt(name, value),
            text=drift_text(name, value),
            input_hash=hash_input(value),
            confidence=conf,
        )
        if not answers:
            out.append(one)
        elif len(answers) == 1:
            out.append(replace(one, output=answers[0]))
        else:  # a row's confidence cannot be told apart per answer: none for each
            out.extend(
                replace(one, id=f"{base}#{j + 1}", output=a, confidence=None)
                for j, a in enumerate(answers)
            )
    return out


def _answers(row: Mapping[str, Any], where: str) -> list[str]:
    if "outputs" in row:
        outputs = row["outputs"]
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise ActiveLearningError(
                f'{where}: "outputs" must be a list of strings', hint='e.g. "outputs": ["a", "b"]'
            )
        return list(outputs)
    output = row.get("output")
    if output is None:
        return []
    if not isinstance(output, str):
        raise ActiveLearningError(f'{where}: "output" must be a string', hint='e.g. "output": "a"')
    return [output]


def unrated_predictions(
    session: Session, *, task: str | None = None, limit: int = 500
) -> list[PredictionRecord]:
    """The newest ``limit`` stored predictions (of ``task``) no person has rated yet (no
    human thumbs, score or preference names them; comments and simulated ratings do not
    count)."""
    from sqlalchemy import or_, select

    from taskloop.serve.records import PredictionRecord
    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    human = (FeedbackRow.source == "human") & FeedbackRow.kind.in_(
        ("thumbs", "score", "preference")
    )
    rated_a = select(FeedbackRow.prediction_id).where(human)
    rated_b = select(FeedbackRow.other_prediction_id).where(
        human, FeedbackRow.other_prediction_id.is_not(None)
    )
    q = (
        select(PredictionRow)
        .where(~or_(PredictionRow.id.in_(rated_a), PredictionRow.id.in_(rated_b)))
        .order_by(PredictionRow.created.desc(), PredictionRow.id)
        .limit(max(0, limit))
    )
    if task is not None:
        q = q.where(PredictionRow.task == task)
    return [PredictionRecord.model_validate(r, from_attributes=True) for r in session.scalars(q)]


def open_queue_keys(session: Session) -> set[tuple[str, str]]:
    """(task, input hash) of every queue item not yet done."""
    from sqlalchemy import select

    from taskloop.serve.storage.repo import hash_input
    from taskloop.serve.storage.tables import QueueRow

    q = select(QueueRow.task, QueueRow.input).where(QueueRow.done.is_(False))
    return {(t, hash_input(v)) for t, v in session.execute(q)}


def enqueue(session: Session, selected: Sequence[Selected]) -> list[int]:
    """Write ``selected`` to the labelling queue (priority, reason, prediction id) and
    commit each; an input already queued and not done (or twice in ``selected``) is
    skipped. Returns the new items' ids, in order.

    Raises:
        NotFoundError: a prediction id that is not stored.
    """
    from taskloop.serve.storage import repo

    queued = open_queue_keys(session)
    ids: list[int] = []
    with step("active.enqueue", selected=len(selected)) as info:
        for item in selected:
            key = (item.task, repo.hash_input(item.input))
            if key in queued:
                continue
            ids.append(
                repo.add_queue_item(
                    session,
                    task=item.task,
                    input=item.input,
                    priority=item.priority,
                    reason=item.reason,
                    prediction_id=item.prediction_id,
                )
            )
            queued.add(key)
        info.update(queued=len(ids))
    return ids
