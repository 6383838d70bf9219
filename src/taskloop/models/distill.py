"""Knowledge distillation: a student learns from one teacher or several task specialists.

The loss mixes two terms (Hinton et al., 2015)::

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE

KL is averaged over the label positions (labels ≠ ignore_index), CE is the usual token
cross-entropy on the labels; T² keeps the soft term's gradients on the scale of the hard
one when T changes. Logits are compared token by token, so teacher and student must share
one tokenizer (:func:`check_compatible` refuses them otherwise). Several teachers can feed
one student: each batch row takes the logits of its task's specialist, or of a general
teacher registered under ``"*"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskloop.train.errors import DistillError

if TYPE_CHECKING:
    import torch

GENERAL = "*"  # the teacher of every task without a specialist
_SPECIAL_IDS = ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id")
_MODEL_KEYS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
_CAUSAL_KEYS = ("input_ids", "attention_mask", "position_ids")


@dataclass(frozen=True)
class DistillOutput:
    """The loss of one batch and its two terms (``kl`` without the T² factor)."""

    loss: torch.Tensor
    kl: torch.Tensor
    ce: torch.Tensor


def _common_vocab(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """The student's logits cut to the teacher's vocabulary (padding rows dropped)."""
    s_shape, t_shape = tuple(student_logits.shape), tuple(teacher_logits.shape)
    if student_logits.dim() != 3 or s_shape[:2] != t_shape[:2]:
        raise DistillError(
            f"student logits {list(s_shape)} and teacher logits {list(t_shape)} differ in "
            "shape: both must be [batch, tokens, vocab] over the same batch",
            hint="run teacher and student on the same input_ids and decoder inputs",
        )
    s_vocab, t_vocab = s_shape[2], t_shape[2]
    if s_vocab < t_vocab:
        raise DistillError(
            f"the student's vocabulary ({s_vocab}) is smaller than the teacher's ({t_vocab})",
            hint="build the student with the teacher's tokenizer and embedding size",
        )
    # Extra student columns are embedding padding (vocab rounded up to a multiple of 8/128).
    return student_logits[..., :t_vocab]


def distillation_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the distillation loss: (KL at temperature T, token cross-entropy).

    Args:
        student_logits, teacher_logits: ``[B, T, V]`` aligned with ``labels`` ``[B, T]``
            (a causal LM's logits already shifted); the student's V may exceed the
            teacher's by padding rows.

    Returns:
        ``kl``: mean over label positions of KL(p_teacher ‖ p_student), both softened by
        ``temperature`` (no T² factor); ``ce``: cross-entropy of the student on ``labels``.

    Raises:
        DistillError: shapes differ, or the student's vocabulary is the smaller one.
    """
    import torch.nn.functional as F

    from taskloop.train.losses import token_cross_entropy

    if temperature <= 0:
        raise DistillError(f"temperature must be positive, not {temperature}")
    common = _common_vocab(student_logits, teacher_logits)
    # float32: in bf16, exp of small log-probabilities underflows and the KL turns to noise.
    log_p_s = F.log_softmax(common.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)  # [B, T]
    mask = labels != ignore_index
    kl = (per_token * mask).sum() / mask.sum().clamp(min=1)
    ce = token_cross_entropy(
        student_logits, labels, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    return kl, ce


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``alpha · T² · KL + (1 − alpha) · CE`` (see :func:`distillation_terms`)."""
    if not 0.0 <= alpha <= 1.0:
        raise DistillError(f"alpha must be within [0, 1], not {alpha}")
    kl, ce = distillation_terms(
        student_logits,
        teacher_logits,
        labels,
        temperature=temperature,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce


def _first_difference(teacher: dict[str, int], student: dict[str, int]) -> str:
    """``'hello' is 57 in the teacher and 8 in the student`` for the lowest differing id."""
    for token, tid in sorted(teacher.items(), key=lambda kv: kv[1]):
        sid = student.get(token)
        if sid != tid:
            where = "missing" if sid is None else str(sid)
            return f"{token!r} is {tid} in the teacher and {where} in the student"
    for token, sid in sorted(student.items(), key=lambda kv: kv[1]):
        if token not in teacher:
            return f"{token!r} is {sid} in the student and missing in the teacher"
    return "same tokens"  # pragma: no cover - only called when the vocabularies differ


def _kind(model: Any) -> str:
    return "seq2seq" if getattr(model.config, "is_encoder_decoder", False) else "causal"


def check_compatible(
    student_tokenizer: Any,
    teacher_tokenizers: Mapping[str, Any],
    *,
    student_model: Any | None = None,
    teacher_models: Mapping[str, Any] | None = None,
) -> None:
    """Refuse teachers whose logits cannot be compared token by token with the student's.

    Args:
        student_tokenizer, teacher_tokenizers: tokenizers by teacher name (task or "*").
        student_model, teacher_models: when given, their kinds (seq2seq or causal) and
            decoder start tokens must agree too.

    Raises:
        DistillError: vocabularies, special token ids, kinds or decoder starts differ;
            the message names the teacher and the first differing token.
    """
    advice = (
        "distillation compares logits token by token, so use a student built with the "
        "teacher's tokenizer"
    )
    student_vocab = dict(student_tokenizer.get_vocab())
    for name, tok in teacher_tokenizers.items():
        vocab = dict(tok.get_vocab())
        if vocab != student_vocab:
            raise DistillError(
                f"teacher {name!r} and the student use different tokenizers (vocab "
                f"{len(vocab)} vs {len(student_vocab)}; {_first_difference(vocab, student_vocab)})"
                f": {advice}"
            )
        for attr in _SPECIAL_IDS:
            t_id, s_id = getattr(tok, attr, None), getattr(student_tokenizer, attr, None)
            if t_id != s_id:
                raise DistillError(
                    f"teacher {name!r} and the student differ in {attr} ({t_id} vs {s_id}): "
                    f"{advice}"
                )
    if student_model is None or teacher_models is None:
        return
    s_kind = _kind(student_model)
    s_start = getattr(student_model.config, "decoder_start_token_id", None)
    for name, teacher in teacher_models.items():
        t_kind = _kind(teacher)
        if t_kind != s_kind:
            raise DistillError(
                f"teacher {name!r} is a {t_kind} model and the student a {s_kind} model: "
                "their logits are over different positions",
                hint="distil into a student of the teacher's kind",
            )
        t_start = getattr(teacher.config, "decoder_start_token_id", None)
        if s_kind == "seq2seq" and t_start != s_start:
            raise DistillError(
                f"teacher {name!r} and the student start decoding with different tokens "
                f"(decoder_start_token_id {t_start} vs {s_start}): {advice}"
            )


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device  # type: ignore[no-any-return]


def _with_positions(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with a causal LM's ``position_ids`` as training computes them.

    ``cumsum(attention_mask) − 1``, clamped at 0: each row's first real token sits at
    position 0 after its left padding, so a padded row reads like the same row unpadded.
    Positions already in the batch, or a batch without a mask (no padding), stay as given.
    """
    out = dict(batch)
    if "position_ids" not in out and "attention_mask" in out:
        out["position_ids"] = (out["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return out


def teacher_logits(
    teachers: Mapping[str, Any], tasks: Sequence[str], batch: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The teachers' logits ``[B, T, V]`` for a batch, row i from ``tasks[i]``'s teacher.

    Each teacher runs once, under ``no_grad``, on its own rows; a task without a
    specialist takes the general teacher ``"*"``. V is the smallest teacher vocabulary
    (the rest is embedding padding).

    Args:
        teachers: Hugging Face models by task name, in eval mode on their devices.
        tasks: the task of each batch row.
        batch: ``input_ids``, ``attention_mask``, ``labels`` and, for seq2seq,
            ``decoder_input_ids`` when present (else the teacher derives them from labels).
            A causal teacher gets ``position_ids`` from the batch, else from the attention
            mask as in training (left padding does not shift the positions).

    Raises:
        DistillError: a row's task has no teacher and there is no general one.
    """
    import torch

    input_ids = batch["input_ids"]
    if len(tasks) != input_ids.size(0):
        raise DistillError(f"{len(tasks)} task names for a batch of {input_ids.size(0)} rows")
    rows: dict[str, list[int]] = {}  # teacher name -> its rows
    for i, task in enumerate(tasks):
        name = task if task in teachers else GENERAL if GENERAL in teachers else None
        if name is None:
            raise DistillError(
                f"no teacher for task {task!r} (teachers: {', '.join(sorted(teachers))})",
                hint=f"add a teacher for {task!r} or a general teacher under {GENERAL!r}",
            )
        rows.setdefault(name, []).append(i)
    causal = _with_positions(batch)
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, idx in rows.items():
        teacher = teachers[name]
        seq2seq = getattr(teacher.config, "is_encoder_decoder", False)
        where = torch.tensor(idx, device=input_ids.device)
        device = _device(teacher)
        source, keys = (batch, _MODEL_KEYS) if seq2seq else (causal, _CAUSAL_KEYS)
        inputs = {k: source[k][where].to(device) for k in keys if k in source}
        if seq2seq and "decoder_input_ids" not in inputs:
            inputs["labels"] = batch["labels"][where].to(device)
        with torch.no_grad():
            logits = teacher(**inputs).logits
        parts.append((where, logits.to(input_ids.device)))
    vocab = min(logits.size(-1) for _, logits in parts)
    first = parts[0][1]
    out = first.new_empty((input_ids.size(0), first.size(1), vocab), dtype=torch.float32)
    for where, logits in parts:
        out[where] = logits[..., :vocab].float()
    return out


def knowledge_distillation(
    student: Any,
    teachers: Mapping[str, Any],
    tasks: Sequence[str],
    batch: Mapping[str, torch.Tensor],
    *,
    temperature: float = 2.0,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
) -> DistillOutput:
    """The distillation loss of ``student`` on one batch, taught by ``teachers``.

    The student runs with gradients (call ``loss.backward()``); teachers without. A
    seq2seq batch without ``decoder_input_ids`` gets them from the labels once, so that
    student and teachers read the same decoder inputs. Causal student and teachers run
    with the ``position_ids`` training uses for left-padded batches (``cumsum(mask) − 1``),
    and their logits are shifted to predict the next token.

    Args:
        teachers: models by task name, ``"*"`` for a general teacher (see
            :func:`teacher_logits`).
        tasks: the task of each row of ``batch``.
        batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 at padding).
    """
    from taskloop.train.losses import shift_for_causal

    if "labels" not in batch:
        raise DistillError("the batch has no labels", hint="collate batches with labels")
    if not 0.0 <= alpha <= 1.0:
        raise DistillError(f"alpha must be within [0, 1], not {alpha}")
    batch = dict(batch)
    labels = batch["labels"]
    seq2seq = getattr(student.config, "is_encoder_decoder", False)
    if seq2seq and "decoder_input_ids" not in batch:
        batch["decoder_input_ids"] = student.prepare_decoder_input_ids_from_labels(labels=labels)
    if not seq2seq:
        batch = _with_positions(batch)
    soft = teacher_logits(teachers, tasks, batch)
    keys = _MODEL_KEYS if seq2seq else _CAUSAL_KEYS
    inputs = {k: v for k, v in batch.items() if k in keys}
    logits = student(**inputs).logits
    if not seq2seq:
        logits, labels = shift_for_causal(logits, labels)
        soft = soft[:, :-1, :]
    kl, ce = distillation_terms(
        logits, soft, labels, temperature=temperature, label_smoothing=label_smoothing
    )
    loss = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return DistillOutput(loss=loss, kl=kl, ce=ce)
