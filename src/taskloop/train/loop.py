"""The supervised fine-tuning loop behind ``taskloop train`` (and ``pretrain``).

Reads top to bottom: the records it reports, the forward pass (token-level
cross-entropy, or distillation), the loop itself — multi-task micro-batches, gradient
accumulation, mixed precision, periodic evaluation on the task metrics with early
stopping and the curriculum's pacing, checkpoints with exact resume — and the entry
points: :func:`train` (data and model from :mod:`taskloop.train.prepare`, device and
optimizer from :mod:`taskloop.train.runtime`), which ends with the best model saved and
logged to the registry, and :func:`fit_pairs` for short in-memory fine-tunes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskloop.data.pairs import Pair, by_task, to_pairs
from taskloop.errors import TaskloopError
from taskloop.log import step as log_step
from taskloop.train import checkpoint as ckpt_io
from taskloop.train.batching import (
    Encoded,
    TaskStream,
    collate,
    pick_task,
    task_probabilities,
)
from taskloop.train.config import TrainConfig
from taskloop.train.errors import CheckpointError, TrainDataError
from taskloop.train.evaluation import (
    PRIMARY,
    EvalItem,
    eval_items,
    evaluate_generation,
    overall,
)
from taskloop.train.losses import shift_for_causal, token_cross_entropy
from taskloop.train.prepare import (
    DataSummary,
    augment_examples,
    build_or_load,
    encode_tasks,
    load_for_training,
    prepare_examples,
    quiet_transformers,
)
from taskloop.train.runtime import Runtime, lr_factor, make_optimizer, make_runtime, seed_everything

logger = logging.getLogger("taskloop.train")

# (student model, batch on the device, task of the batch) → the batch's loss
Distill = Callable[[Any, dict[str, Any], str], Any]


# ----------------------------------------------------------------------------- records


@dataclass
class StepLog:
    """What the progress bar shows after each optimizer step."""

    step: int
    total: int | None
    loss: float
    lr: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None
    epoch: float


@dataclass
class EvalLog:
    step: int
    loss: float
    score: float  # mean primary metric over tasks (or -loss when eval.metric is loss)
    tasks: dict[str, dict[str, float]]
    competence: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    out_dir: Path
    model_dir: Path  # the best model (or the last, without evaluation)
    steps: int
    best_step: int | None
    best_score: float | None
    metric: str
    stopped: str  # "max_steps", "epochs", "time_budget", "early_stopping"
    train_tokens: int
    train_seconds: float
    tokens_per_s: float
    final: dict[str, dict[str, float]]
    history: list[EvalLog]
    data: DataSummary
    run_id: str | None = None
    model_version: int | None = None
    curriculum: dict[str, Any] = field(default_factory=dict)  # competence and its history

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"], out["model_dir"] = str(self.out_dir), str(self.model_dir)
        return out


# ------------------------------------------------------------------------ forward pass


def forward_loss(
    model: Any,
    batch: dict[str, Any],
    *,
    kind: str,
    label_smoothing: float,
    distill: Distill | None = None,
    tokens: int | None = None,
    task: str = "",
) -> tuple[Any, int]:
    """(mean token loss, target tokens) for one batch already on the device.

    Pass ``tokens`` when known (counted on the CPU) to spare a device synchronisation.
    """
    labels = batch["labels"]
    if tokens is None:
        tokens = int((labels != -100).sum())
    if distill is not None:
        return distill(model, batch, task), tokens
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if kind == "causal":
        position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = model(**inputs, position_ids=position_ids).logits
        logits, labels = shift_for_causal(logits, labels)
    else:
        logits = model(**inputs).logits
    return token_cross_entropy(logits, labels, label_smoothing=label_smoothing), tokens


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    non_blocking = getattr(device, "type", "cpu") == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


def eval_loss(
    model: Any,
    encoded: Sequence[Encoded],
    rt: Runtime,
    *,
    kind: str,
    pad_id: int,
    start_id: int | None,
    tokens_per_batch: int,
) -> tuple[float, dict[str, float]]:
    """Mean token cross-entropy (no smoothing) over every held-out pair, and per task."""
    import torch

    sums: dict[str, list[float]] = {}  # task → [loss sum, tokens]
    was_training = model.training
    model.eval()
    try:
        for enc in encoded:
            acc = sums.setdefault(enc.task, [0.0, 0.0])
            stream = TaskStream(enc, 0, 0, tokens_per_batch, 64, True)
            for rows in stream.plan():
                batch = to_device(
                    collate(enc, rows, kind=kind, pad_id=pad_id, decoder_start_id=start_id),
                    rt.device,
                )
                with torch.no_grad(), rt.autocast():
                    loss, n = forward_loss(model, batch, kind=kind, label_smoothing=0.0)
                acc[0] += float(loss) * n
                acc[1] += n
    finally:
        model.train(was_training)
    total = sum(a[0] for a in sums.values()) / max(sum(a[1] for a in sums.values()), 1)
    return total, {task: a[0] / max(a[1], 1) for task, a in sums.items()}


def pair_losses(
    model: Any, enc: Encoded, rt: Runtime, *, kind: str, pad_id: int, start_id: int | None
) -> list[float]:
    """The model's mean token loss on each pair of ``enc`` (for curriculum difficulty)."""
    import torch

    out = [0.0] * len(enc)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(enc), 64):
            rows = np.arange(start, min(start + 64, len(enc)))
            batch = to_device(
                collate(enc, rows, kind=kind, pad_id=pad_id, decoder_start_id=start_id), rt.device
            )
            labels = batch.pop("labels")
            with torch.no_grad(), rt.autocast():
                if kind == "causal":  # positions follow the left padding, as in training
                    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                    logits = model(**batch, position_ids=position_ids).logits
                    logits, labels = shift_for_causal(logits, labels)
                else:
                    logits = model(**batch).logits
                per_token = token_cross_entropy(logits, labels, reduction="none")
            counts = (labels != -100).sum(-1).clamp(min=1)
            for i, value in zip(rows, (per_token.sum(-1) / counts).tolist(), strict=True):
                out[int(i)] = float(value)
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------- the loop


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    micro_step: int = 0
    tokens: int = 0
    elapsed: float = 0.0  # training seconds before this process (resume)
    best_score: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    history: list[EvalLog] = field(default_factory=list)
    pacing: dict[str, Any] = field(default_factory=dict)  # task → PacingState dict


def _total_steps(cfg: TrainConfig, streams: Sequence[TaskStream], probs: np.ndarray) -> int | None:
    if cfg.run.max_steps:
        return cfg.run.max_steps
    if cfg.run.epochs is None:
        return None
    # An "epoch" is one pass over the largest share: the batches the biggest task needs,
    # divided by how often it is drawn.
    per_epoch = max(
        s.batches_per_epoch() / max(p, 1e-9) for s, p in zip(streams, probs, strict=True)
    )
    return max(1, math.ceil(cfg.run.epochs * float(per_epoch) / cfg.batch.grad_accum))


@dataclass
class Loop:
    """Everything one training run holds; ``run()`` trains until a stop condition."""

    cfg: TrainConfig
    out: Path
    model: Any
    tokenizer: Any
    kind: str
    rt: Runtime
    train_enc: list[Encoded]
    eval_enc: list[Encoded]
    eval_items: list[EvalItem]
    optimizer: Any = None
    streams: list[TaskStream] = field(default_factory=list)
    probs: np.ndarray = field(default_factory=lambda: np.ones(1))
    state: LoopState = field(default_factory=LoopState)
    total: int | None = None
    lr: float = 0.0
    max_steps: int | None = None
    distill: Distill | None = None
    difficulties: dict[str, np.ndarray] = field(default_factory=dict)
    train_pairs: dict[str, list[Pair]] = field(default_factory=dict)
    on_step: Callable[[StepLog], None] | None = None
    on_eval: Callable[[EvalLog], None] | None = None
    save_checkpoints: bool = True
    evaluate: bool = True
    curriculum: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    last_loss: float = float("nan")  # the last logged step's loss

    def __post_init__(self) -> None:
        cfg = self.cfg
        rank, world = self.rt.world
        self.streams = [
            TaskStream(
                enc, i, cfg.run.seed, cfg.batch.tokens, cfg.batch.size, cfg.batch.group_by_length
            )
            for i, enc in enumerate(self.train_enc)
        ]
        self.probs = task_probabilities(
            [len(e) for e in self.train_enc], cfg.data.sampling_temperature
        )
        self.lr = self.lr or cfg.optim.lr
        self.total = self.max_steps or _total_steps(cfg, self.streams, self.probs)
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model, cfg, self.rt.device, self.lr)
        self.model.to(self.rt.device)
        if self.rt.accelerator is not None:
            self.model, self.optimizer = self.rt.accelerator.prepare(self.model, self.optimizer)
        self.world_rank, self.world_size = rank, world
        if cfg.curriculum.enabled and self.curriculum:
            self._init_curriculum()

    # -- curriculum -------------------------------------------------------------------

    def _init_curriculum(self) -> None:
        """Difficulty of every training pair, and each task's pool at its competence.

        The loss part of the difficulty is the current model's loss on each pair, measured
        once here; a model built from scratch has no informative loss yet, so it is left out.
        """
        from taskloop.data.curriculum import (
            DEFAULT_WEIGHTS,
            PacingState,
            curriculum_learning,
            difficulty,
        )

        cur = self.cfg.curriculum
        use_loss = cur.weights.get("loss", 0) > 0 and self.cfg.model.init is None
        for enc, stream in zip(self.train_enc, self.streams, strict=True):
            pairs = self.train_pairs.get(enc.task, [])
            if enc.task not in self.difficulties:
                weights = dict(cur.weights)
                # Hard-example rows rank by their hardness unless the config weighs it
                # (0 turns it off); difficulty() drops it when no pair carries one.
                weights.setdefault("hardness", DEFAULT_WEIGHTS["hardness"])
                losses = pair_losses(self.model, enc, self.rt, kind=self.kind,
                                     pad_id=self.tokenizer.pad_token_id,
                                     start_id=getattr(self._unwrapped().config,
                                                      "decoder_start_token_id", None),
                                     ) if use_loss else None  # fmt: skip
                if losses is None:
                    weights.pop("loss", None)
                self.difficulties[enc.task] = difficulty(
                    pairs, token_lengths=enc.lengths().tolist(), losses=losses, weights=weights
                )
            state = self.state.pacing.get(enc.task)
            competence = PacingState.from_dict(state).c if state else cur.start
            if state is None:
                self.state.pacing[enc.task] = PacingState(c=cur.start).to_dict()
            stream.restrict(curriculum_learning(self.difficulties[enc.task], competence))

    def _pace(self, log: EvalLog) -> None:
        """Move each task's competence by its validation metric (its loss with eval.metric loss)."""
        from taskloop.data.curriculum import Pacing, PacingState, curriculum_learning, update_pacing

        cur = self.cfg.curriculum
        by_loss = self.cfg.eval.metric == "loss"
        pacing = Pacing(
            start=cur.start, step=cur.step, backoff=cur.backoff, higher_is_better=not by_loss
        )
        for enc, stream in zip(self.train_enc, self.streams, strict=True):
            name = "loss" if by_loss else PRIMARY.get(enc.task, "")
            metric = log.tasks.get(enc.task, {}).get(name)
            if metric is None:
                continue
            state = update_pacing(
                PacingState.from_dict(self.state.pacing[enc.task]), metric, log.step, pacing
            )
            self.state.pacing[enc.task] = state.to_dict()
            log.competence[enc.task] = state.c
            stream.restrict(curriculum_learning(self.difficulties[enc.task], state.c))

    # -- checkpoints --------------------------------------------------------------------

    def trainer_state(self) -> dict[str, Any]:
        import torch

        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "loop": {
                "step": self.state.step,
                "micro_step": self.state.micro_step,
                "tokens": self.state.tokens,
                "elapsed": self.state.elapsed,
            },
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.rt.scaler is not None:
            state["scaler"] = self.rt.scaler.state_dict()
        if self.difficulties:  # measured on the starting model: a resumed one would differ
            state["difficulties"] = {t: torch.from_numpy(d) for t, d in self.difficulties.items()}
        return state

    def meta_state(self) -> dict[str, Any]:
        s = self.state
        return {
            **self.meta,
            "config": self.cfg.model_dump(mode="json"),
            "kind": self.kind,
            "streams": [st.state() for st in self.streams],
            "best_score": s.best_score, "best_step": s.best_step, "bad_evals": s.bad_evals,
            "history": [asdict(h) for h in s.history], "pacing": s.pacing,
        }  # fmt: skip

    def save_checkpoint(self) -> Path | None:
        if not self.rt.is_main:
            return None
        model = self._unwrapped()
        return ckpt_io.save(
            self.out, self.state.step, model=model, tokenizer=self.tokenizer,
            meta=self.meta_state(), trainer_state=self.trainer_state(),
            keep=self.cfg.checkpoint.keep,
        )  # fmt: skip

    def restore(self, ck: ckpt_io.Checkpoint) -> None:
        """Continue exactly from ``ck``: streams, optimizer, RNG, counters, history."""
        import torch

        meta = ck.meta
        for stream, st in zip(self.streams, meta["streams"], strict=True):
            stream.load_state(st)
        s = self.state
        s.best_score, s.best_step, s.bad_evals = (
            meta["best_score"],
            meta["best_step"],
            meta["bad_evals"],
        )
        s.history = [EvalLog(**h) for h in meta["history"]]
        s.pacing = meta.get("pacing") or {}
        trainer = ckpt_io.load_trainer_state(ck)
        self.optimizer.load_state_dict(trainer["optimizer"])
        torch.set_rng_state(trainer["torch_rng"])
        if "cuda_rng" in trainer and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer["cuda_rng"])
        if self.rt.scaler is not None and "scaler" in trainer:
            self.rt.scaler.load_state_dict(trainer["scaler"])
        loop = trainer["loop"]
        s.step, s.micro_step = int(loop["step"]), int(loop["micro_step"])
        s.tokens, s.elapsed = int(loop["tokens"]), float(loop["elapsed"])
        if self.cfg.curriculum.enabled and self.curriculum:
            saved = trainer.get("difficulties") or {}
            self.difficulties.update({t: d.numpy() for t, d in saved.items()})
            self._init_curriculum()
            for stream, st in zip(self.streams, meta["streams"], strict=True):
                stream.load_state(st)  # the curriculum's restrict must not move the stream

    def _unwrapped(self) -> Any:
        if self.rt.accelerator is not None:
            return self.rt.accelerator.unwrap_model(self.model)
        return self.model

    # -- evaluation -----------------------------------------------------------------------

    def run_eval(self, *, num_beams: int | None = None) -> EvalLog:
        cfg = self.cfg
        model = self._unwrapped()
        pad = self.tokenizer.pad_token_id
        start = getattr(model.config, "decoder_start_token_id", None)
        with log_step("train.eval", step=self.state.step) as info:
            loss, task_loss = eval_loss(
                self.model, self.eval_enc, self.rt, kind=self.kind, pad_id=pad, start_id=start,
                tokens_per_batch=max(cfg.batch.tokens or 4096, 4096),
            )  # fmt: skip
            tasks: dict[str, dict[str, float]] = {}
            if cfg.eval.metric != "loss" and self.eval_items:
                with self.rt.autocast():
                    tasks, _ = evaluate_generation(
                        model, self.tokenizer, self.eval_items, kind=self.kind,
                        device=self.rt.device, num_beams=num_beams or cfg.eval.num_beams,
                        max_new_tokens=cfg.eval.max_new_tokens,
                        max_source_tokens=cfg.data.max_source_tokens,
                        length_penalty=cfg.eval.length_penalty, batch_size=cfg.eval.batch_size,
                    )  # fmt: skip
            score = -loss if cfg.eval.metric == "loss" or not tasks else overall(tasks)
            info.update(loss=round(loss, 4), score=round(score, 3))
        for task, value in task_loss.items():
            tasks.setdefault(task, {})["loss"] = value
        return EvalLog(self.state.step, loss, score, tasks)

    def after_eval(self, log: EvalLog) -> bool:
        """Record ``log``; save the best model; True when early stopping says stop."""
        s, ev = self.state, self.cfg.eval
        if self.cfg.curriculum.enabled and self.curriculum:
            self._pace(log)
        s.history.append(log)
        if self.on_eval is not None:
            self.on_eval(log)
        if s.best_score is None or log.score > s.best_score + ev.min_delta:
            s.best_score, s.best_step, s.bad_evals = log.score, log.step, 0
            if self.rt.is_main:
                best = self.out / "best"
                self._unwrapped().save_pretrained(best)
                self.tokenizer.save_pretrained(best)
                (best / "metrics.json").write_text(json.dumps(asdict(log), indent=2), "utf-8")
            return False
        s.bad_evals += 1
        return ev.patience is not None and s.bad_evals >= ev.patience

    # -- training -----------------------------------------------------------------------

    def run(self) -> str:
        """Train until a stop condition; returns which one stopped it."""
        import torch

        cfg, s, rt = self.cfg, self.state, self.rt
        model = self.model
        model.train()
        pad = self.tokenizer.pad_token_id
        start = getattr(self._unwrapped().config, "decoder_start_token_id", None)
        multiple = 8 if rt.device.type == "cuda" else 1
        budget = cfg.run.time_budget_s
        began = time.perf_counter() - s.elapsed
        window_tokens, window_start = 0, time.perf_counter()
        accum = cfg.batch.grad_accum
        every_eval = cfg.eval.every_steps if self.evaluate else None
        every_ckpt = cfg.checkpoint.every_steps if self.save_checkpoints else None
        stopped = "max_steps" if cfg.run.max_steps or self.max_steps else "epochs"
        while True:
            elapsed = time.perf_counter() - began
            if self.total is not None and s.step >= self.total:
                break
            if budget is not None and elapsed >= budget:
                stopped = "time_budget"
                break
            progress = max(
                s.step / self.total if self.total else 0.0, elapsed / budget if budget else 0.0
            )
            lr_now = self.lr * lr_factor(
                s.step, progress, warmup=cfg.optim.warmup_steps, schedule=cfg.optim.schedule
            )
            for group in self.optimizer.param_groups:
                group["lr"] = lr_now
            loss_sum: Any = 0.0
            tok_sum = 0
            for _ in range(accum):
                task = pick_task(self.probs, cfg.run.seed, s.micro_step)
                s.micro_step += 1
                rows = self.streams[task].next()
                if self.world_size > 1:  # each process takes its share of the batch
                    rows = (
                        rows[self.world_rank :: self.world_size]
                        if len(rows) >= self.world_size
                        else rows
                    )
                cpu_batch = collate(
                    self.train_enc[task], rows, kind=self.kind, pad_id=pad,
                    decoder_start_id=start, multiple_of=multiple,
                )  # fmt: skip
                n = int((cpu_batch["labels"] != -100).sum())
                batch = to_device(cpu_batch, rt.device)
                with rt.autocast():
                    loss, _ = forward_loss(
                        model, batch, kind=self.kind, label_smoothing=cfg.optim.label_smoothing,
                        distill=self.distill, tokens=n, task=self.train_enc[task].task,
                    )  # fmt: skip
                rt.backward(loss / accum)
                # kept on the device: reading it every step would wait for the GPU
                loss_sum = loss_sum + loss.detach() * n
                tok_sum += n
                window_tokens += int(batch["input_ids"].numel()) if self.kind == "causal" else n
            if cfg.optim.max_grad_norm:
                if rt.accelerator is not None:
                    rt.accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
                else:
                    if rt.scaler is not None:
                        rt.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            if rt.scaler is not None:
                rt.scaler.step(self.optimizer)
                rt.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            s.step += 1
            s.tokens += tok_sum
            s.elapsed = time.perf_counter() - began
            if s.step % cfg.run.log_every == 0 or s.step == 1:
                step_loss = float(loss_sum) / max(tok_sum, 1)
                self.last_loss = step_loss
                now = time.perf_counter()
                rate = window_tokens / max(now - window_start, 1e-9)
                window_tokens, window_start = 0, now
                eta = None
                if self.total:
                    eta = s.elapsed / s.step * (self.total - s.step)
                if budget:
                    eta = min(eta if eta is not None else budget, max(budget - s.elapsed, 0.0))
                first = self.streams[0]
                epoch = first.epoch + first.pos / max(first.batches_per_epoch(), 1)
                log = StepLog(s.step, self.total, step_loss, lr_now, rate, s.elapsed, eta, epoch)
                if self.on_step is not None:
                    self.on_step(log)
                logger.debug(
                    "step %d loss %.4f lr %.2e %.0f tok/s", s.step, step_loss, lr_now, rate
                )
            if every_eval and s.step % every_eval == 0 and self.after_eval(self.run_eval()):
                stopped = "early_stopping"
                break
            if every_ckpt and s.step % every_ckpt == 0:
                self.save_checkpoint()
        return stopped


# ------------------------------------------------------------------------- entry points


def _distiller(
    cfg: TrainConfig, student_tok: Any, kind: str, rt: Runtime, tasks: Sequence[str]
) -> Distill | None:
    """The distillation loss from the configured teachers, or None when there are none.

    Raises:
        DistillError: tokenizers or kinds differ, or a task has no teacher (before training).
    """
    if not cfg.distill.teachers:
        return None
    from taskloop.models.distill import check_compatible, knowledge_distillation
    from taskloop.models.errors import ModelKindError
    from taskloop.train.errors import DistillError

    untaught = [
        t for t in tasks if t not in cfg.distill.teachers and "*" not in cfg.distill.teachers
    ]
    if untaught:
        raise DistillError(
            f"no teacher for task {', '.join(untaught)}: distill.teachers names "
            f"{', '.join(cfg.distill.teachers)}",
            hint='add a teacher for each task, or a general one under "*"',
        )
    teachers: dict[str, Any] = {}
    toks: dict[str, Any] = {}
    for task, name in cfg.distill.teachers.items():
        try:
            model, tok, _ = load_for_training(name, kind)
        except ModelKindError as exc:
            raise DistillError(f"teacher {task!r}: {exc.message}", hint=exc.hint) from None
        teachers[task] = model.to(rt.device).eval()
        toks[task] = tok
    check_compatible(student_tok, toks)

    def loss(model: Any, batch: dict[str, Any], task: str) -> Any:
        out = knowledge_distillation(
            model, teachers, [task] * int(batch["input_ids"].shape[0]), batch,
            temperature=cfg.distill.temperature, alpha=cfg.distill.alpha,
            label_smoothing=cfg.optim.label_smoothing,
        )  # fmt: skip
        return out.loss

    return loss


def train(
    cfg: TrainConfig,
    *,
    resume: bool | str = False,
    on_step: Callable[[StepLog], None] | None = None,
    on_eval: Callable[[EvalLog], None] | None = None,
) -> TrainResult:
    """Fine-tune (or train from scratch) as ``cfg`` says; see the module docstring.

    Args:
        resume: True continues from the latest checkpoint under ``cfg.out``; a path
            continues from that checkpoint folder.
        on_step: called after logged optimizer steps (progress bars).
        on_eval: called after each evaluation (hyper-parameter search prunes here).

    Raises:
        TrainConfigError, TrainDataError, CheckpointError, ModelError.
    """
    quiet_transformers()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.run.seed)
    rt = make_runtime(cfg)
    resume_from = _resume_point(out, resume)
    (out / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2), "utf-8")

    train_ex, eval_ex, summary = prepare_examples(cfg)
    train_ex = augment_examples(cfg, train_ex, summary)
    if resume_from is not None:
        model, tokenizer, kind = load_for_training(
            str(resume_from.model_dir), resume_from.meta["kind"]
        )
    else:
        # Several processes: the main one trains the tokenizer and builds the model first.
        with rt.main_first():
            model, tokenizer, kind = build_or_load(cfg, train_ex, out)
        if cfg.pretrain.steps > 0:
            from taskloop.train.pretrain import domain_pretrain

            model = domain_pretrain(cfg, model, tokenizer, kind, rt, out, on_step=on_step)
    model_type = getattr(model.config, "model_type", "")
    vocab = set(tokenizer.get_vocab()) if model_type == "marian" else set()
    train_pairs = to_pairs(train_ex, kind=kind, model_type=model_type, vocab=vocab)
    eval_pairs = to_pairs(eval_ex, kind=kind, model_type=model_type, vocab=vocab)
    if not train_pairs:
        raise TrainDataError(
            f"none of the {len(train_ex)} training examples has a label to learn from",
            hint="translations need target, summaries summary, QA answers, code completion",
        )
    summary.train_pairs = {t: len(p) for t, p in by_task(train_pairs).items()}
    summary.eval_pairs = {t: len(p) for t, p in by_task(eval_pairs).items()}
    train_enc, cut = encode_tasks(train_pairs, tokenizer, kind, cfg)
    eval_enc, _ = encode_tasks(eval_pairs, tokenizer, kind, cfg)
    summary.truncated = cut
    if cut:
        summary.warnings.append(
            f"{cut} training pairs were cut to data.max_source_tokens/max_target_tokens"
        )
    distill = _distiller(cfg, tokenizer, kind, rt, [e.task for e in train_enc])
    loop = Loop(
        cfg, out, model, tokenizer, kind, rt, train_enc, eval_enc,
        eval_items(eval_pairs, cfg.data.eval_max_items), distill=distill,
        train_pairs={str(t): p for t, p in by_task(train_pairs).items()},
        on_step=on_step, on_eval=on_eval, meta={"data": asdict(summary)},
    )  # fmt: skip
    if resume_from is not None:
        loop.restore(resume_from)
        logger.info("resumed from %s (step %d)", resume_from.path, loop.state.step)
    with log_step("train.loop", total_steps=loop.total, tasks=len(train_enc)) as info:
        stopped = loop.run()
        info.update(steps=loop.state.step, tokens=loop.state.tokens, stopped=stopped)
    return finish(loop, stopped, summary)


def _resume_point(out: Path, resume: bool | str) -> ckpt_io.Checkpoint | None:
    if resume is False:
        return None
    if resume is True:
        found = ckpt_io.latest(out)
        if found is None:
            raise CheckpointError(
                f"nothing to resume: no checkpoint under {out / 'checkpoints'}",
                hint="drop --resume to start a new run",
            )
        return found
    return ckpt_io.read(Path(resume))


def finish(loop: Loop, stopped: str, summary: DataSummary) -> TrainResult:
    """Final evaluation, the best model in place, the summary written, the run logged.

    With several processes only the main one writes files and logs the run.
    """
    cfg, s, out = loop.cfg, loop.state, loop.out
    main = loop.rt.is_main
    if loop.evaluate and (not s.history or s.history[-1].step != s.step):
        loop.after_eval(loop.run_eval())
    if loop.save_checkpoints and cfg.checkpoint.every_steps is not None:
        loop.save_checkpoint()
    best = out / "best"
    if main and not (best / "config.json").is_file():
        loop._unwrapped().save_pretrained(best)
        loop.tokenizer.save_pretrained(best)
    if loop.rt.accelerator is not None:
        loop.rt.accelerator.wait_for_everyone()
    final: dict[str, dict[str, float]] = {}
    beams = cfg.eval.final_num_beams
    if main and loop.evaluate and beams and beams != cfg.eval.num_beams and loop.eval_items:
        best_model, _, _ = load_for_training(str(best), loop.kind)
        best_model.to(loop.rt.device)
        final, _ = evaluate_generation(
            best_model, loop.tokenizer, loop.eval_items, kind=loop.kind, device=loop.rt.device,
            num_beams=beams, max_new_tokens=cfg.eval.max_new_tokens,
            max_source_tokens=cfg.data.max_source_tokens, length_penalty=cfg.eval.length_penalty,
            batch_size=cfg.eval.batch_size,
        )  # fmt: skip
    elif s.history:
        best_log = next((h for h in s.history if h.step == s.best_step), s.history[-1])
        final = best_log.tasks
    result = TrainResult(
        out_dir=out, model_dir=best, steps=s.step, best_step=s.best_step,
        best_score=s.best_score, metric=cfg.eval.metric, stopped=stopped,
        train_tokens=s.tokens, train_seconds=s.elapsed,
        tokens_per_s=s.tokens / max(s.elapsed, 1e-9), final=final, history=s.history,
        data=summary, curriculum=_curriculum_report(s.pacing),
    )  # fmt: skip
    if not main:
        return result
    resolved = json.dumps(cfg.model_dump(mode="json"), indent=2)
    (out / "config.json").write_text(resolved, "utf-8")
    (best / "taskloop_config.json").write_text(resolved, "utf-8")
    plot = _plot_history(result, out)

    def write_result() -> None:
        text = json.dumps(result.to_dict(), indent=2, default=str)
        (out / "result.json").write_text(text, "utf-8")

    write_result()  # before tracking: an unreachable server must not cost the summary
    if cfg.tracking.enabled:
        try:
            _track(cfg, result, [p for p in (plot,) if p is not None])
        except TaskloopError as exc:
            note = f"the run was not logged to the registry: {exc.message}"
            logger.warning(note)
            summary.warnings.append(note + (f" ({exc.hint})" if exc.hint else ""))
        write_result()
    return result


def _curriculum_report(pacing: dict[str, Any]) -> dict[str, Any]:
    """Per task: the curriculum's current competence and how it moved (empty when off)."""
    if not pacing:
        return {}
    from taskloop.data.curriculum import PacingState, describe

    return asdict(describe({t: PacingState.from_dict(d) for t, d in pacing.items()}))


def _plot_history(result: TrainResult, out: Path) -> Path | None:
    """``curves.png``: validation loss and score against steps."""
    if not result.history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h.step for h in result.history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(steps, [h.loss for h in result.history], marker="o")
    ax1.set(xlabel="step", ylabel="validation loss", title="loss")
    ax2.plot(steps, [h.score for h in result.history], marker="o", color="tab:green")
    ax2.set(xlabel="step", ylabel=result.metric, title="validation score")
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _track(cfg: TrainConfig, result: TrainResult, artifacts: list[Path]) -> None:
    from taskloop.models.registry import log_run

    metrics: list[tuple[int, dict[str, float]]] = []
    for h in result.history:
        values = {"val_loss": h.loss, "val_score": h.score}
        for task, m in h.tasks.items():
            values.update({f"{task}_{k}".replace("+", "p"): v for k, v in m.items()})
        metrics.append((h.step, values))
    metrics.append((result.steps, {"train_tokens_per_s": result.tokens_per_s}))
    record = log_run(
        experiment=cfg.tracking.experiment, run_name=cfg.name,
        config=cfg.model_dump(mode="json"), metrics=metrics, artifacts=artifacts,
        model_dir=result.model_dir, register_as=cfg.tracking.register_as,
        alias=cfg.tracking.alias if cfg.tracking.register_as else None, uri=cfg.tracking.uri,
        tags={"taskloop.tasks": ",".join(result.data.train_pairs)},
    )  # fmt: skip
    result.run_id, result.model_version = record.run_id, record.version


def fit_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: str,
    steps: int,
    lr: float = 5e-4,
    batch_size: int = 8,
    max_source_tokens: int = 256,
    max_target_tokens: int = 128,
    device: str = "cpu",
    seed: int = 0,
    after_step: Callable[[Any], None] | None = None,
) -> list[float]:
    """A short fine-tune of an in-memory model on ``pairs`` (recovery after pruning).

    Uses the same batching and loss as :func:`train`, constant learning rate, no
    evaluation or checkpoints. ``after_step(model)`` runs after each optimizer step
    (pruning re-applies its masks there). Returns the loss of every step.
    """
    from taskloop.train.config import validate

    cfg = validate({
        "model": {"name": "in-memory"},
        "batch": {"tokens": None, "size": batch_size},
        "optim": {"lr": lr, "warmup_steps": 0, "schedule": "constant"},
        "data": {"max_source_tokens": max_source_tokens, "max_target_tokens": max_target_tokens},
        "run": {"max_steps": steps, "seed": seed, "device": device, "precision": "fp32"},
        "eval": {"every_steps": None}, "checkpoint": {"every_steps": None},
        "tracking": {"enabled": False},
    })  # fmt: skip
    seed_everything(seed)
    rt = make_runtime(cfg)
    encoded, _ = encode_tasks(pairs, tokenizer, kind, cfg)
    loop = Loop(
        cfg, Path(), model, tokenizer, kind, rt, encoded, [], [],
        save_checkpoints=False, evaluate=False, curriculum=False,
    )  # fmt: skip
    losses: list[float] = []

    def record(log: StepLog) -> None:
        losses.append(log.loss)
        if after_step is not None:
            after_step(model)

    cfg.run.log_every = 1
    loop.on_step = record
    loop.run()
    model.eval()
    return losses
