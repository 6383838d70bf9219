"""The typed config of ``taskloop train`` / ``pretrain`` / ``tune``: YAML + ``key=value``.

Unknown keys fail with their dotted place; the resolved config is saved as
``config.json`` next to every checkpoint and model it produced. The loop takes plain
values from it at the edge (:func:`taskloop.train.loop.train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from taskloop.config import read_yaml
from taskloop.data.errors import validated
from taskloop.data.records import TaskName
from taskloop.train.errors import TrainConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInit(_Section):
    """Build a model from scratch (random weights) with a tokenizer trained on the data."""

    arch: Literal["marian", "bart", "t5", "gpt2"] = "marian"
    d_model: int = Field(256, ge=8)
    layers: int = Field(3, ge=1, description="encoder layers (and decoder layers unless set)")
    decoder_layers: int | None = Field(None, ge=1)
    heads: int = Field(4, ge=1)
    ffn: int = Field(1024, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float = Field(0.0, ge=0, lt=1)
    max_positions: int = Field(256, ge=8)
    vocab_size: int = Field(8000, ge=50, description="tokenizer vocabulary (BPE, shared)")
    tokenizer: str | None = Field(None, description="use this tokenizer folder instead")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelInit:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        return self


class ModelSection(_Section):
    name: str | None = Field(None, description="hub id, folder, or models:/NAME@ALIAS")
    init: ModelInit | None = None
    kind: Literal["auto", "seq2seq", "causal"] = "auto"

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.name is None) == (self.init is None):
            raise ValueError("set exactly one of model.name (a model to fine-tune) or model.init")
        return self


class CleanSection(_Section):
    enabled: bool = True
    rules: list[str] | None = Field(None, description="rule names (default: all)")
    near_duplicate_threshold: float = Field(0.9, gt=0, le=1)
    length_ratio: tuple[float, float] = (0.3, 3.0)
    warn_share: float = Field(0.2, gt=0, le=1)


class AugmentSection(_Section):
    ratio: float = Field(0.0, ge=0, le=10, description="added examples per original (0 = off)")
    methods: list[str] = Field(default_factory=lambda: ["synonym", "rename_identifiers"])
    dictionary: str | None = Field(None, description="bilingual TSV dictionary for synonyms")
    synonyms: str | None = Field(None, description="TSV word<TAB>synonym table (beats WordNet)")
    paraphrase_prefix: str = Field("", description="text before each paraphrase input")
    back_translation_model: str | None = None
    paraphrase_model: str | None = None


class DataSection(_Section):
    train: list[str] = Field(
        default_factory=list,
        description="task archives, blobs, folders, JSONL files or saved HF datasets",
    )
    eval: list[str] = Field(default_factory=list, description="held-out data (default: a split)")
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    eval_max_items: int = Field(200, ge=1, description="rows generated per eval")
    tasks: list[TaskName] | None = None
    max_source_tokens: int = Field(256, ge=4)
    max_target_tokens: int = Field(128, ge=2)
    clean: CleanSection = Field(default_factory=CleanSection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    sampling_temperature: float = Field(
        1.0, gt=0, description="task sampling ∝ size^(1/T): 1 = proportional, large = uniform"
    )
    target_lang: str | None = Field(
        None, description="language targets must be in (cleaning's wrong_language rule)"
    )
    key_file: str | None = Field(None, description="key for encrypted input blobs")


class CurriculumSection(_Section):
    enabled: bool = False
    start: float = Field(0.3, gt=0, le=1)
    step: float = Field(0.15, ge=0, le=1)
    backoff: float = Field(0.1, ge=0, le=1)
    weights: dict[str, float] = Field(
        default_factory=lambda: {"length": 0.4, "rarity": 0.3, "loss": 0.3}
    )


class OptimSection(_Section):
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["linear", "cosine", "inverse_sqrt", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class BatchSection(_Section):
    tokens: int | None = Field(
        4096, ge=16, description="padded (source+target) tokens per batch; null: use size"
    )
    size: int = Field(16, ge=1, description="rows per batch when tokens is null")
    grad_accum: int = Field(1, ge=1)
    group_by_length: bool = True


class RunSection(_Section):
    max_steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(3.0, gt=0)
    time_budget_s: float | None = Field(None, gt=0, description="stop after this wall time")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"
    accelerate: Literal["auto", "on", "off"] = Field(
        "auto", description="use Accelerate (auto: when started by `accelerate launch`)"
    )
    log_every: int = Field(10, ge=1)

    @field_validator("accelerate", mode="before")
    @classmethod
    def _yaml_bool(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `on`/`off` as true/false.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class EvalSection(_Section):
    every_steps: int | None = Field(200, ge=1, description="null: at the end only")
    metric: Literal["auto", "loss"] = Field(
        "auto", description="auto (per task: bleu, rougeL, f1, chrf) or loss"
    )
    num_beams: int = Field(1, ge=1)
    final_num_beams: int | None = Field(None, ge=1, description="beams for the final eval")
    max_new_tokens: int = Field(64, ge=1)
    length_penalty: float = 1.0
    batch_size: int = Field(64, ge=1, description="rows per generation batch")
    patience: int | None = Field(5, ge=1, description="evals without improvement before stop")
    min_delta: float = Field(0.0, ge=0)


class CheckpointSection(_Section):
    every_steps: int | None = Field(500, ge=1)
    keep: int = Field(2, ge=1)


class DistillSection(_Section):
    teachers: dict[str, str] = Field(
        default_factory=dict, description='task (or "*") → teacher model; empty = off'
    )
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)


class PretrainSection(_Section):
    """Domain-adaptive pretraining on unlabeled text before fine-tuning (a stage)."""

    text: list[str] = Field(default_factory=list, description="plain-text or JSONL files")
    steps: int = Field(0, ge=0, description="0 = no pretraining stage")
    noise_density: float = Field(0.15, gt=0, lt=1)
    mean_span: float = Field(3.0, ge=1)
    lr: float | None = Field(None, gt=0, description="default: optim.lr")


class TrackingSection(_Section):
    enabled: bool = True
    uri: str | None = Field(None, description="MLflow tracking URI (default: embedded SQLite)")
    experiment: str = "taskloop"
    register_as: str | None = Field(None, description="registered model name")
    alias: str | None = Field("challenger", description="alias set on the new version")


class TrainConfig(_Section):
    """Everything ``taskloop train`` can be told."""

    name: str = "run"
    out: str = "runs/run"
    model: ModelSection
    data: DataSection = Field(default_factory=DataSection)
    curriculum: CurriculumSection = Field(default_factory=CurriculumSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    batch: BatchSection = Field(default_factory=BatchSection)
    run: RunSection = Field(default_factory=RunSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    pretrain: PretrainSection = Field(default_factory=PretrainSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    @model_validator(mode="after")
    def _stops(self) -> TrainConfig:
        r = self.run
        if r.max_steps is None and r.epochs is None and r.time_budget_s is None:
            raise ValueError(
                "run: set run.max_steps, run.epochs or run.time_budget_s, or training never ends"
            )
        return self


TUNE_KEYS = ("search", "tune")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=3e-4", "data.tasks=[qa]"]`` → nested dict; values are parsed as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(
                f"override {item!r}: expected KEY=VALUE", hint="e.g. optim.lr=3e-4 run.max_steps=50"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise TrainConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TrainConfigError(f"override {item!r}: {part!r} is set to a value already")
            node = child
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, recursively for mappings."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_train_config(
    path: str | Path | None, overrides: list[str] | None = None, **extra: Any
) -> TrainConfig:
    """The YAML file's config with ``key=value`` overrides (and ``extra`` dicts) on top.

    Relative data and model paths stay relative to the working directory, like every
    other path a user types.
    """
    data = read_yaml(path, TrainConfigError) if path is not None else {}
    # `search:` and `tune:` configure `taskloop tune`; one file serves both commands.
    for key in TUNE_KEYS:
        data.pop(key, None)
    data = merge(data, parse_overrides(overrides or []))
    data = merge(data, extra)
    return validate(data, str(path) if path else None)


def validate(data: dict[str, Any], source: str | None = None) -> TrainConfig:
    return validated(
        TrainConfig,
        data,
        error=TrainConfigError,
        where=f"config{' ' + source if source else ''}: ",
        hint="see docs/training.md for every key; unknown keys are refused",
    )
