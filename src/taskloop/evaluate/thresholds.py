"""Decision thresholds chosen on validation data, saved with the model, read at inference.

A decision is a named yes/no (or one-of-C) call made from a score, where a higher score
means "more positive": ``qa.no_answer`` (abstain), ``summarize.factuality`` (the summary
is supported), ``reward.accept``. :func:`threshold_tuning` picks the threshold by a rule
on labelled validation scores; :func:`save_thresholds` writes it next to the model, and
the task that makes the decision reads it back with :func:`tuned_threshold`.

Rules (binary; multi-class decisions are tuned one-vs-rest, one threshold per class):

* ``f1``: the threshold with the highest F1 of the positive class;
* ``youden``: the highest Youden's J = TPR - FPR;
* ``precision>=X``: among thresholds whose precision reaches X, the highest recall;
* ``recall>=X``: among thresholds whose recall reaches X, the highest precision.

Candidate thresholds are the observed scores and a score at or above the threshold is
positive, so the figures in ``Thresholds.validation`` are exactly what :func:`decide`
gives on the validation scores. Ties go to the higher threshold (fewer positives).

Where thresholds live: ``<model folder>/taskloop_thresholds.json`` (name → Thresholds)
when the model is a local folder of one's own, so they travel with the folder into the
registry; otherwise (hub ids, the packaged MiniLM encoder, read-only package folders)
``$TASKLOOP_HOME/thresholds/<slug of the name>.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from taskloop.config import taskloop_home
from taskloop.evaluate.errors import EvalInputError, ThresholdError

if TYPE_CHECKING:
    from taskloop.data.records import QAExample

THRESHOLDS_FILE = "taskloop_thresholds.json"
QA_NO_ANSWER = "qa.no_answer"
SUMMARIZE_FACTUALITY = "summarize.factuality"
REWARD_ACCEPT = "reward.accept"
RULES = ("f1", "youden", "precision", "recall")
POSITIVE = "positive"  # the key of a binary decision's threshold
# Float slack when comparing a computed precision/recall with a target (9/10 vs 0.9).
_EPS = 1e-12


class Thresholds(BaseModel):
    """One decision's thresholds and how they did on the validation data.

    ``thresholds`` maps each class to its threshold (binary: ``{"positive": t}``;
    multi-class: the classes in score-column order). ``validation`` holds, per class and
    at that class's threshold (one-vs-rest): precision, recall, f1, tpr, fpr, support
    (validation examples of the class), threshold.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["binary", "multiclass"]
    rule: str
    thresholds: dict[str, float]
    validation: dict[str, dict[str, float]]
    n: int
    created: str
    model: str | None = None
    score_name: str = "score"
    description: str = ""  # what "positive" means, for people reading the file
    fallback: str | None = None  # multi-class: the label when no class clears its threshold

    @property
    def value(self) -> float:
        """The threshold of a binary decision.

        Raises:
            ThresholdError: the decision is multi-class.
        """
        if self.kind != "binary":
            raise ThresholdError(
                f"thresholds {self.name!r} are multi-class: there is no single value",
                hint="read .thresholds[class] or use decide()",
            )
        return self.thresholds[POSITIVE]


_FILE = TypeAdapter(dict[str, Thresholds])


# --------------------------------------------------------------------------- tuning


def parse_rule(rule: str, target: float | None = None) -> tuple[str, float | None]:
    """``"precision>=0.9"`` or (``"precision"``, 0.9) → ("precision", 0.9); f1/youden take none.

    Raises:
        ThresholdError: unknown rule, a target missing or out of (0, 1], or one given to
            a rule without targets.
    """
    text = rule.strip().lower().replace(" ", "")
    match = re.fullmatch(r"(precision|recall)>=([0-9.eE+-]+)", text)
    if match:
        if target is not None and not math.isclose(target, float(match.group(2))):
            raise ThresholdError(
                f"rule {rule!r} and target {target} disagree", hint="give the target once"
            )
        text, target = match.group(1), float(match.group(2))
    if text not in RULES:
        raise ThresholdError(
            f"unknown threshold rule {rule!r}",
            hint="use f1, youden, precision>=X or recall>=X (or precision/recall with a target)",
        )
    if text in ("f1", "youden"):
        if target is not None:
            raise ThresholdError(
                f"rule {text!r} takes no target (got {target})",
                hint="targets go with precision or recall",
            )
        return text, None
    if target is None or not 0 < target <= 1:
        raise ThresholdError(
            f"rule {text!r} needs a target in (0, 1], got {target}",
            hint=f"for example {text}>=0.9",
        )
    return text, target


def _rule_text(rule: str, target: float | None) -> str:
    return rule if target is None else f"{rule}>={target:g}"


def _tune_binary(
    scores: np.ndarray, positive: np.ndarray, rule: str, target: float | None, what: str
) -> float:
    """The threshold ``rule`` picks among the observed scores (positive: score >= t)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    n_pos = int(positive.sum())
    if n_pos in (0, len(positive)):
        only = "positive" if n_pos else "negative"
        raise ThresholdError(
            f"{what}: every one of the {len(positive)} validation labels is {only}; "
            "a threshold needs examples of both outcomes",
            hint="add validation examples of the other outcome",
        )
    if rule == "youden":
        fpr, tpr, cuts = roc_curve(positive, scores, drop_intermediate=False)
        keep = np.isfinite(cuts)  # roc_curve adds +inf: "nothing is positive"
        return _best(tpr[keep] - fpr[keep], cuts[keep])
    # precision[k], recall[k] belong to cuts[k]; the final (1, 0) pair has no threshold.
    precision, recall, cuts = precision_recall_curve(positive, scores)
    precision, recall = precision[:-1], recall[:-1]
    if rule == "f1":
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        return _best(f1, cuts)
    assert target is not None
    have, other = (precision, recall) if rule == "precision" else (recall, precision)
    ok = have >= target - _EPS
    if not ok.any():
        k = int(np.argmax(have))
        other_name = "recall" if rule == "precision" else "precision"
        raise ThresholdError(
            f"{what}: no threshold reaches {rule} {target:g}; the best reachable {rule} is "
            f"{have[k]:.4f} (at threshold {cuts[k]:.6g}, {other_name} {other[k]:.4f})",
            hint=f"lower the target to at most {math.floor(have[k] * 1e4) / 1e4:g}, "
            "or use f1 or youden",
        )
    # Highest other metric among those reaching the target, then the higher own metric.
    idx = np.flatnonzero(ok)
    idx = idx[other[idx] >= other[idx].max() - _EPS]
    return _best(have[idx], cuts[idx])


def _best(values: np.ndarray, cuts: np.ndarray) -> float:
    """The cut with the highest value; ties go to the highest cut."""
    tied = np.flatnonzero(values >= values.max() - _EPS)
    return float(cuts[tied[np.argmax(cuts[tied])]])


def _validation(scores: np.ndarray, positive: np.ndarray, t: float) -> dict[str, float]:
    """Precision, recall, F1, TPR, FPR and support of ``score >= t`` against ``positive``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    pred = scores >= t
    tn, fp, _, _ = confusion_matrix(positive, pred, labels=[False, True]).ravel()
    p, r, f, _ = precision_recall_fscore_support(
        positive, pred, average="binary", zero_division=0.0
    )
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "tpr": float(r),
        "fpr": float(fp / (fp + tn)) if fp + tn else 0.0,
        "support": float(positive.sum()),
        "threshold": t,
    }


def _binary_labels(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    out = np.zeros(len(labels), dtype=bool)
    for i, label in enumerate(labels):
        value = label.item() if isinstance(label, np.generic) else label
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            out[i] = bool(value)
        else:
            raise ThresholdError(
                f"binary labels must be 0/1 or true/false; label {i} is {value!r}",
                hint="give 2-D scores (one column per class) for a multi-class decision",
            )
    return out


def _class_indices(labels: Sequence[Any] | np.ndarray, classes: list[str]) -> np.ndarray:
    index = {c: k for k, c in enumerate(classes)}
    out = np.zeros(len(labels), dtype=int)
    for i, label in enumerate(labels):
        value = label.item() if isinstance(label, np.generic) else label
        if isinstance(value, str) and value in index:
            out[i] = index[value]
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
            out[i] = value
        else:
            raise ThresholdError(
                f"label {i} ({value!r}) is neither a class name nor a column index; "
                f"classes: {', '.join(classes)}",
                hint="labels are class names or 0-based score columns",
            )
    return out


def threshold_tuning(
    scores: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    rule: str = "f1",
    target: float | None = None,
    classes: Sequence[str] | None = None,
    name: str = "decision",
    model: str | None = None,
    score_name: str = "score",
    description: str = "",
    fallback: str = "none",
) -> Thresholds:
    """Choose decision thresholds on validation scores.

    Args:
        scores: (n,) for a binary decision, higher = more positive; (n, C) for C classes.
        labels: binary: 0/1 or bools (1 = positive); multi-class: class names or column
            indices.
        rule: "f1", "youden", "precision>=X", "recall>=X" (or "precision"/"recall" with
            ``target``).
        classes: multi-class: the class of each score column (default "0".."C-1").
        name: the decision ("qa.no_answer", "reward.accept", ...).
        model: the model the scores came from (where :func:`save_thresholds` puts them).
        score_name: what was thresholded, for people and for the check at inference.
        fallback: multi-class: the label :func:`decide` gives when no class clears its
            threshold.

    Raises:
        ThresholdError: bad shapes or labels, one class only, or a target no threshold
            reaches (the message says the best reachable value).
    """
    rule, target = parse_rule(rule, target)
    arr = np.asarray(scores, dtype=float)
    n = arr.shape[0] if arr.ndim else 0
    if arr.ndim not in (1, 2) or n == 0:
        raise ThresholdError(
            f"{name}: scores must be a non-empty 1-D (binary) or 2-D (classes) array, "
            f"got shape {arr.shape}",
            hint="one score per example, or one row of class scores per example",
        )
    if len(labels) != n:
        raise ThresholdError(
            f"{name}: {n} scores but {len(labels)} labels",
            hint="give one label per score",
        )
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).reshape(n, -1).all(axis=1))[0])
        raise ThresholdError(
            f"{name}: score {bad} is not a finite number", hint="drop or fix that example"
        )
    common: dict[str, Any] = {
        "name": name,
        "rule": _rule_text(rule, target),
        "n": n,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "score_name": score_name,
        "description": description,
    }
    if arr.ndim == 1:
        positive = _binary_labels(labels)
        t = _tune_binary(arr, positive, rule, target, name)
        return Thresholds(
            kind="binary",
            thresholds={POSITIVE: t},
            validation={POSITIVE: _validation(arr, positive, t)},
            **common,
        )
    n_classes = arr.shape[1]
    names = [str(c) for c in classes] if classes is not None else [str(k) for k in range(n_classes)]
    if n_classes < 2 or len(names) != n_classes or len(set(names)) != n_classes:
        raise ThresholdError(
            f"{name}: {n_classes} score columns but classes {names}",
            hint="give one distinct class name per score column (at least 2); "
            "a binary decision takes 1-D scores",
        )
    idx = _class_indices(labels, names)
    thresholds: dict[str, float] = {}
    validation: dict[str, dict[str, float]] = {}
    for k, cls in enumerate(names):
        positive = idx == k
        t = _tune_binary(arr[:, k], positive, rule, target, f"{name}, class {cls!r}")
        thresholds[cls] = t
        validation[cls] = _validation(arr[:, k], positive, t)
    return Thresholds(
        kind="multiclass",
        thresholds=thresholds,
        validation=validation,
        fallback=fallback,
        **common,
    )


def decide(
    thresholds: Thresholds, scores: Sequence[float] | Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """Apply thresholds to scores.

    Binary: a bool per score, ``score >= t``. Multi-class (one-vs-rest): among the classes
    whose score reaches their own threshold, the one with the largest ``score - t``; the
    ``fallback`` label when none does.

    Returns:
        Binary: bool array (n,). Multi-class: array of class names (n,).

    Raises:
        ThresholdError: the scores' shape does not fit the thresholds.
    """
    arr = np.asarray(scores, dtype=float)
    if thresholds.kind == "binary":
        if arr.ndim != 1:
            raise ThresholdError(
                f"{thresholds.name} is a binary decision: scores must be 1-D, got {arr.shape}"
            )
        return np.asarray(arr >= thresholds.value)
    names = list(thresholds.thresholds)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ThresholdError(
            f"{thresholds.name} has {len(names)} classes ({', '.join(names)}): scores must "
            f"have shape (n, {len(names)}), got {arr.shape}"
        )
    margin = arr - np.array([thresholds.thresholds[c] for c in names])
    over = margin >= 0
    best = np.argmax(np.where(over, margin, -np.inf), axis=1)
    fallback = thresholds.fallback or "none"
    return np.array(
        [names[b] if row.any() else fallback for b, row in zip(best, over, strict=True)],
        dtype=object,
    )


# ---------------------------------------------------------------------- persistence


def slug(name: str) -> str:
    """A file name for a model name: ``owner/model`` → ``owner--model``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


def _own_folder(path: Path) -> bool:
    """A folder thresholds may be written into: not inside an installed package or the
    Hugging Face cache (those are shared, and the next install or download replaces them)."""
    parts = set(path.resolve().parts)
    return not ({"site-packages", "dist-packages"} & parts) and path.parent.name != "snapshots"


def thresholds_file(model: str | Path) -> Path:
    """Where the thresholds of ``model`` live (the file need not exist).

    Raises:
        ThresholdError: ``model`` names a folder that does not exist.
        ModelNotFoundError: a ``models:/`` URI the registry cannot resolve.
    """
    name = str(model)
    if name.startswith("models:/"):
        from taskloop.models.loader import ModelSpec, resolve

        return resolve(ModelSpec(name)) / THRESHOLDS_FILE
    path = Path(name).expanduser()
    if path.is_dir():
        if _own_folder(path):
            return path / THRESHOLDS_FILE
        name = str(path.resolve())
    elif name.startswith((".", "/", "~")):
        raise ThresholdError(
            f"model folder {name!r} does not exist",
            hint="pass the folder the model was saved in, or its hub id",
        )
    return taskloop_home() / "thresholds" / f"{slug(name)}.json"


def _read(file: Path) -> dict[str, Thresholds]:
    if not file.is_file():
        return {}
    try:
        return _FILE.validate_json(file.read_bytes())
    except (ValidationError, ValueError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ThresholdError(
            f"thresholds file {file} is unreadable: {detail}",
            hint="delete it and tune again (taskloop thresholds tune / qa)",
        ) from None


def load_all_thresholds(model: str | Path) -> tuple[Path, dict[str, Thresholds]]:
    """Every decision's thresholds saved for ``model``, and the file they come from.

    Raises:
        ThresholdError: the file exists but is not a thresholds file.
    """
    file = thresholds_file(model)
    return file, _read(file)


def load_thresholds(name: str, model: str | Path) -> Thresholds | None:
    """The thresholds of decision ``name`` saved for ``model``; None when there are none.

    Raises:
        ThresholdError: the file exists but is not a thresholds file.
    """
    return load_all_thresholds(model)[1].get(name)


def save_thresholds(th: Thresholds, where: str | Path | None = None) -> Path:
    """Save ``th`` for the model ``where`` (default ``th.model``), keeping other decisions.

    Returns:
        The file written.

    Raises:
        ThresholdError: no model to save with, a ``models:/`` URI, a corrupt existing
            file, or the file cannot be written.
    """
    target = str(where) if where is not None else th.model
    if target is None:
        raise ThresholdError(
            f"thresholds {th.name!r} name no model to be saved with",
            hint="pass the model folder or hub id the scores came from",
        )
    if target.startswith("models:/"):
        raise ThresholdError(
            f"cannot save thresholds into the registered model {target}",
            hint="save them into the model folder before registering it "
            "(taskloop thresholds tune ... --model FOLDER)",
        )
    file = thresholds_file(target)
    stored = _read(file)
    stored[th.name] = th if th.model is not None else th.model_copy(update={"model": target})
    data = json.dumps(
        {k: v.model_dump(mode="json") for k, v in stored.items()}, indent=2, allow_nan=False
    )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        # Write beside and rename: a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(prefix=".thresholds-", suffix=".json", dir=file.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(data + "\n")
        Path(tmp).replace(file)
    except OSError as exc:
        raise ThresholdError(
            f"cannot write thresholds file {file}: {exc.strerror or exc}",
            hint="check the folder's permissions, or set TASKLOOP_HOME",
        ) from None
    return file


@dataclass(frozen=True)
class Tuned:
    """A binary threshold read for inference, with the file it came from."""

    thresholds: Thresholds
    file: Path

    @property
    def value(self) -> float:
        return self.thresholds.value

    @property
    def source(self) -> str:
        """How predictions name where the threshold came from."""
        return f"tuned: {self.file}"


def tuned_threshold(name: str, model: str | Path, *, score_name: str | None = None) -> Tuned | None:
    """The saved binary threshold of decision ``name`` for ``model``, or None.

    Raises:
        ThresholdError: the file is corrupt, or the saved thresholds are multi-class or
            were tuned on another score than ``score_name``.
    """
    file, stored = load_all_thresholds(model)
    th = stored.get(name)
    if th is None:
        return None
    if th.kind != "binary":
        raise ThresholdError(f"{file}: {name!r} is multi-class; this decision is binary")
    if score_name is not None and th.score_name != score_name:
        raise ThresholdError(
            f"{file}: {name!r} was tuned on the score {th.score_name!r}, but this decision "
            f"thresholds {score_name!r}",
            hint=f"tune {name!r} again on the score this path reports",
        )
    return Tuned(th, file)


# ------------------------------------------------------------------ QA no-answer


@dataclass
class NoAnswerScores:
    """Each scoreable question's no-answer score, label and never-abstaining answer."""

    path: str  # "extractive" (sentence encoder) or "qa-head"
    model: str  # the encoder or QA model: where the thresholds are saved
    score_name: str
    default_cut: float  # the built-in rule abstains when score > default_cut
    examples: list[QAExample]
    scores: np.ndarray  # (n,) higher = more likely no answer
    labels: np.ndarray  # (n,) bool: the question has no answer
    answers: list[str]  # what the path answers when it does not abstain
    skipped: int = 0  # questions without gold answers or malformed


@dataclass
class QATuning:
    """The tuned ``qa.no_answer`` thresholds and SQuAD v2 figures before and after."""

    thresholds: Thresholds
    scores: NoAnswerScores
    squad_default: dict[str, float]
    squad_tuned: dict[str, float]


def qa_no_answer_scores(
    examples: Sequence[QAExample], *, model: str | None = None, device: str = "auto"
) -> NoAnswerScores:
    """Run the QA path ``model`` selects without abstaining and collect no-answer scores.

    ``model`` None or a sentence encoder: the offline extractive default (score: minus
    the best sentence cosine); a ``*ForQuestionAnswering`` model: the QA head (score:
    null score minus best span score). Questions with no gold answers and no
    ``is_impossible`` flag cannot be labelled and are skipped.

    Raises:
        ThresholdError: the model has no no-answer score (seq2seq, causal), or nothing
            is left to tune on.
        ModelNotFoundError: the model cannot be found offline.
    """
    from taskloop.models.encoder import load_encoder
    from taskloop.tasks import qa
    from taskloop.tasks.context import FileOptions, Resources, TaskContext

    items = [
        ex for ex in examples if not qa.why_not_answerable(ex) and qa.gold_answers(ex) is not None
    ]
    skipped = len(examples) - len(items)
    if not items:
        raise ThresholdError(
            f"none of the {len(examples)} questions can be labelled answerable or not",
            hint="give SQuAD v2 style rows: answers for answerable questions, "
            "is_impossible true (or no answers) for the others",
        )
    resources = Resources(device=device)
    lm = None if model is None else resources.model(model)  # loaded once, reused below
    kind = "encoder" if lm is None else lm.kind
    answers: Sequence[qa.Answer | str]
    if kind == "encoder":
        encoder = load_encoder(model, device=device)
        answers = qa.answer_extractive(items, encoder, threshold=-1)  # -1: never abstain
        path, key, score_name, cut = (
            "extractive",
            encoder.name,
            qa.EXTRACTIVE_NO_ANSWER_SCORE,
            -qa.NO_ANSWER_THRESHOLD,
        )
    elif kind == "qa":
        assert model is not None and lm is not None
        ctx = TaskContext(
            file="validation", options=FileOptions(task="qa", model=model), resources=resources
        )
        answers = qa.answer_qa_model(items, lm, ctx, null_threshold=math.inf)
        path, key, score_name, cut = "qa-head", model, qa.HEAD_NO_ANSWER_SCORE, 0.0
    else:
        raise ThresholdError(
            f"model {model!r} is a {kind} model: its answers carry no no-answer score",
            hint="tune qa.no_answer for a *ForQuestionAnswering model or a sentence "
            "encoder (the offline extractive default)",
        )
    kept: list[QAExample] = []
    scores: list[float] = []
    texts: list[str] = []
    for ex, ans in zip(items, answers, strict=True):
        if isinstance(ans, str) or ans.no_answer_score is None:
            skipped += 1  # the item failed (a question longer than the window ...)
            continue
        kept.append(ex)
        scores.append(ans.no_answer_score)
        texts.append(ans.text)
    return NoAnswerScores(
        path=path,
        model=key,
        score_name=score_name,
        default_cut=cut,
        examples=kept,
        scores=np.asarray(scores, dtype=float),
        labels=np.array([qa.gold_answers(ex) == [] for ex in kept], dtype=bool),
        answers=texts,
        skipped=skipped,
    )


def _squad_at(found: NoAnswerScores, abstain: np.ndarray) -> dict[str, float]:
    """SQuAD v2 figures when the questions in ``abstain`` answer ""."""
    from taskloop.data.records import Prediction
    from taskloop.tasks import qa

    preds = [
        Prediction(id=ex.id, task="qa", where=ex.where, output="" if no else text, status="ok")
        for ex, text, no in zip(found.examples, found.answers, abstain, strict=True)
    ]
    return qa.score(found.examples, preds)


def tune_qa_no_answer(
    examples: Sequence[QAExample],
    *,
    model: str | None = None,
    rule: str = "f1",
    target: float | None = None,
    device: str = "auto",
) -> QATuning:
    """Tune ``qa.no_answer`` (positive = the question has no answer) on validation questions.

    Raises:
        ThresholdError: see :func:`qa_no_answer_scores` and :func:`threshold_tuning`.
    """
    found = qa_no_answer_scores(examples, model=model, device=device)
    th = threshold_tuning(
        found.scores,
        found.labels,
        rule=rule,
        target=target,
        name=QA_NO_ANSWER,
        model=found.model,
        score_name=found.score_name,
        description="positive: the question has no answer (the model abstains)",
    )
    return QATuning(
        thresholds=th,
        scores=found,
        squad_default=_squad_at(found, found.scores > found.default_cut),
        squad_tuned=_squad_at(found, decide(th, found.scores)),
    )


# ------------------------------------------------------------------ scores files


def read_scores(path: str | Path) -> tuple[np.ndarray, list[Any]]:
    """Scores and labels of a JSON Lines file: ``{"score": 0.7 or [..], "label": ...}``.

    Blank lines are skipped. Every row must have the same shape of score: a number
    (binary) or a list of numbers of one length (one per class).

    Raises:
        EvalInputError: the file cannot be read, or a row is bad (``file:line`` says which).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(
            f"{path}: cannot read scores: {getattr(exc, 'strerror', None) or exc}",
            hint='give a UTF-8 JSON Lines file of {"score": ..., "label": ...} rows',
        ) from None
    scores: list[float | list[float]] = []
    labels: list[Any] = []
    width: int | None = None  # 0: binary, else the number of classes
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(
                f"{where}: not valid JSON: {exc.msg}", hint="one JSON object per line"
            ) from None
        if not isinstance(row, dict) or "score" not in row or "label" not in row:
            raise EvalInputError(
                f"{where}: a row needs a score and a label", hint='{"score": 0.7, "label": 1}'
            )
        score, label = row["score"], row["label"]
        if _is_number(score):
            shape = 0
            value: float | list[float] = float(score)
        elif isinstance(score, list) and score and all(_is_number(x) for x in score):
            shape = len(score)
            value = [float(x) for x in score]
        else:
            raise EvalInputError(
                f"{where}: score must be a finite number or a list of them, got {score!r}",
                hint="binary decisions take one score, multi-class ones a list per class",
            )
        if width is None:
            width = shape
        elif shape != width:
            want = "a number" if width == 0 else f"a list of {width} numbers"
            raise EvalInputError(
                f"{where}: score has another shape than the rows before (they have {want})",
                hint="every row scores the same decision",
            )
        if not isinstance(label, bool | int | str) or (isinstance(label, str) and not label):
            raise EvalInputError(
                f"{where}: label must be 0/1, true/false, a class index or a class name, "
                f"got {label!r}"
            )
        scores.append(value)
        labels.append(label)
    if not scores:
        raise EvalInputError(f"{path}: no score rows", hint='{"score": 0.7, "label": 1} per line')
    return np.asarray(scores, dtype=float), labels


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
