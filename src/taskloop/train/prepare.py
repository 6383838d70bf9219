"""Training data and model, prepared for the loop: read → clean → split → augment → pairs
→ token ids, and the model to train (a named one, or one built from scratch)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskloop.data.pairs import Pair, by_task, to_pairs
from taskloop.data.records import Example
from taskloop.log import step as log_step
from taskloop.train.batching import (
    Encoded,
    encode,
)
from taskloop.train.config import TrainConfig
from taskloop.train.errors import TrainConfigError, TrainDataError

logger = logging.getLogger("taskloop.train")


@dataclass
class DataSummary:
    examples: int = 0
    bad_rows: int = 0
    cleaned_away: int = 0
    clean: dict[str, Any] = field(default_factory=dict)
    augmented: dict[str, Any] = field(default_factory=dict)
    train_pairs: dict[str, int] = field(default_factory=dict)
    eval_pairs: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- data


def split_eval(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A deterministic held-out share of each task's examples (at least one when possible)."""
    rng = random.Random(seed)
    train: list[Example] = []
    held: list[Example] = []
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.task, []).append(ex)
    for group in groups.values():
        order = list(range(len(group)))
        rng.shuffle(order)
        n_eval = min(len(group) - 1, max(1, round(len(group) * fraction))) if fraction else 0
        chosen = set(order[:n_eval])
        for i, ex in enumerate(group):
            (held if i in chosen else train).append(ex)
    return train, held


def read_examples(cfg: TrainConfig, paths: Sequence[str], summary: DataSummary) -> list[Example]:
    from taskloop.train.inputs import read_inputs

    inputs = read_inputs(paths, tasks=cfg.data.tasks, key_file=cfg.data.key_file)
    summary.bad_rows += len(inputs.errors)
    summary.warnings.extend(inputs.warnings)
    for err in inputs.errors[:20]:
        logger.warning("skipped row %s", err)
    if len(inputs.errors) > 20:
        logger.warning("... and %d more bad rows", len(inputs.errors) - 20)
    return inputs.examples


def prepare_examples(cfg: TrainConfig) -> tuple[list[Example], list[Example], DataSummary]:
    """Read, clean and split: (train examples, eval examples, summary)."""
    if not cfg.data.train:
        raise TrainConfigError(
            "data.train is empty: nothing to train on",
            hint="set data.train to task archives, folders or JSONL files",
        )
    summary = DataSummary()
    with log_step("train.read", inputs=len(cfg.data.train)) as info:
        examples = read_examples(cfg, cfg.data.train, summary)
        held = read_examples(cfg, cfg.data.eval, summary) if cfg.data.eval else []
        info.update(examples=len(examples), eval=len(held))
    summary.examples = len(examples)
    if cfg.data.clean.enabled:
        from taskloop.data.cleaning import clean_labels

        c = cfg.data.clean
        report = clean_labels(
            examples, rules=c.rules, near_duplicate_threshold=c.near_duplicate_threshold,
            length_ratio=c.length_ratio, warn_share=c.warn_share, target_lang=cfg.data.target_lang,
        )  # fmt: skip
        examples = list(report.kept)
        summary.cleaned_away = len(report.removed)
        summary.clean = report.to_dict()
        summary.warnings.extend(report.warnings)
        logger.info("cleaning: %s", report.summary())
    if not examples:
        raise TrainDataError(
            "no training examples left"
            + (f" ({summary.bad_rows} bad rows, {summary.cleaned_away} cleaned away)"),
            hint="check data.train and data.tasks; `taskloop run` shows what each row lacks",
        )
    if not held:
        examples, held = split_eval(examples, cfg.data.eval_fraction, cfg.run.seed)
    return examples, held, summary


def augment_examples(
    cfg: TrainConfig, examples: list[Example], summary: DataSummary
) -> list[Example]:
    aug = cfg.data.augment
    if aug.ratio <= 0:
        return examples
    from taskloop.data.augment import data_augmentation, load_dictionary
    from taskloop.models.generate import GenerationSettings
    from taskloop.models.loader import ModelSpec, load_model

    def model(name: str | None) -> Any:
        return load_model(ModelSpec(name, kind="seq2seq", device=cfg.run.device)) if name else None

    report = data_augmentation(
        examples, ratio=aug.ratio, methods=aug.methods,
        dictionary=load_dictionary(aug.dictionary) if aug.dictionary else None,
        back_translation_model=model(aug.back_translation_model),
        paraphrase_model=model(aug.paraphrase_model), seed=cfg.run.seed,
        synonyms=load_dictionary(aug.synonyms) if aug.synonyms else None,
        paraphrase_settings=GenerationSettings(max_new_tokens=256, prefix=aug.paraphrase_prefix),
    )  # fmt: skip
    summary.augmented = report.to_dict()
    return [*examples, *report.added]


# ------------------------------------------------------------------------------ model


def quiet_transformers() -> None:
    """No download/loading progress bars or advice lines from transformers in our output."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def load_for_training(name: str, kind: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, kind) from a folder, hub cache or registry URI, in float32.

    ``kind`` "auto" reads the config (encoder-decoder → seq2seq, else causal).

    Raises:
        ModelNotFoundError: the name resolves to nothing on this machine.
        ModelKindError: the model cannot be loaded as ``kind``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from taskloop.models.errors import ModelKindError
    from taskloop.models.loader import ModelSpec, resolve

    path = resolve(ModelSpec(name))
    config = AutoConfig.from_pretrained(path)
    actual = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    if kind == "auto":
        kind = actual
    elif kind != actual:
        raise ModelKindError(
            f"model {name!r} ({config.model_type}) is a {actual} model, not {kind}",
            hint=f"set model.kind to auto or {actual}, or pick a {kind} model",
        )
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    try:
        # float32 master weights whatever the checkpoint was saved in; autocast does the rest
        model = cls.from_pretrained(path, dtype=torch.float32)
    except ValueError as exc:
        raise ModelKindError(
            f"model {name!r} ({config.model_type}) cannot be trained as {kind}: "
            f"{str(exc).splitlines()[0]}",
            hint="pick a seq2seq or causal language model",
        ) from None
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, kind


def build_or_load(cfg: TrainConfig, examples: Sequence[Example], out: Path) -> tuple[Any, Any, str]:
    if cfg.model.name is not None:
        return load_for_training(cfg.model.name, cfg.model.kind)
    from taskloop.train.scratch import build_from_scratch

    assert cfg.model.init is not None
    init_dir = out / "init"
    if not (init_dir / "config.json").is_file():
        texts = [t for p in to_pairs(examples) for t in (p.source, p.target)]
        with log_step("train.build_model", arch=cfg.model.init.arch, texts=len(texts)):
            build_from_scratch(cfg.model.init, texts, init_dir)
    kind = "causal" if cfg.model.init.arch == "gpt2" else "seq2seq"
    return load_for_training(str(init_dir), kind)


def encode_tasks(
    pairs: Sequence[Pair], tokenizer: Any, kind: str, cfg: TrainConfig
) -> tuple[list[Encoded], int]:
    encoded, cut = [], 0
    for task, group in by_task(pairs).items():
        src, tgt, n = encode(
            group, tokenizer, kind=kind,
            max_source=cfg.data.max_source_tokens, max_target=cfg.data.max_target_tokens,
        )  # fmt: skip
        cut += n
        encoded.append(Encoded(task, src, tgt))
    return encoded, cut
