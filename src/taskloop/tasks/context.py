"""What a task run gets besides its examples: resolved per-file options and shared resources.

``FileOptions`` is what ``manifest.json`` may set per task file (unknown keys fail);
CLI overrides and per-task defaults are merged into it before a task sees it.
``Resources`` holds what is shared across tasks of one run: the generation cache, the
device, the sentence encoder, the sandbox worker count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from taskloop.data.records import TaskName
from taskloop.models.cache import LRUCache
from taskloop.models.encoder import Encoder, load_encoder
from taskloop.models.generate import GenerationSettings
from taskloop.models.loader import LoadedModel, ModelSpec, load_model


class FileOptions(BaseModel):
    """Per-file options (``manifest.json`` → ``files`` → path → options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName | None = None
    model: str | None = Field(None, description="hub id or local folder of the task model")
    mode: Literal["extractive", "abstractive", "hybrid", "generative"] | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    glossary: str | None = Field(None, description="TSV in the archive: source<TAB>target")
    dictionary: str | None = Field(None, description="bilingual dictionary TSV for alignment")
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    num_beams: int | None = Field(None, ge=1, le=32)
    batch_size: int | None = Field(None, ge=1, le=1024)
    max_input_tokens: int | None = Field(None, ge=8)
    long_input: Literal["split", "truncate"] = "split"
    long_model: str | None = Field(None, description="LED/LongT5-style model for long inputs")
    samples: int = Field(1, ge=1, le=200, description="codegen: samples per problem (pass@k)")
    temperature: float = Field(0.8, gt=0, le=5)
    timeout_s: float | None = Field(None, gt=0, le=600)
    memory_mb: int | None = Field(None, ge=32, le=65536)
    no_answer_threshold: float | None = Field(None, ge=-1, le=1)
    max_sentences: int | None = Field(None, ge=1, le=100)
    entailment_model: str | None = None
    prefix: str | None = None

    def merged(self, **overrides: object) -> FileOptions:
        """A copy with the non-None ``overrides`` applied."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return FileOptions.model_validate(data)


@dataclass
class Resources:
    """Shared by every task of one run."""

    cache: LRUCache = field(default_factory=LRUCache)
    device: str = "auto"
    dtype: str = "auto"
    allow_download: bool = False
    encoder_name: str | None = None  # None: the packaged all-MiniLM-L6-v2
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))

    def model(
        self, name: str, kind: Literal["auto", "seq2seq", "causal", "qa"] = "auto"
    ) -> LoadedModel:
        """Load ``name`` on this run's device (raises ModelNotFoundError offline)."""
        return load_model(
            ModelSpec(
                name,
                kind=kind,
                device=self.device,
                dtype=self.dtype,
                allow_download=self.allow_download,
            )
        )

    def encoder(self) -> Encoder:
        return load_encoder(self.encoder_name, device=self.device)


@dataclass
class TaskContext:
    """Everything one task file's run needs besides its examples."""

    file: str
    options: FileOptions
    resources: Resources
    glossary: dict[str, str] = field(default_factory=dict)
    dictionary: dict[str, set[str]] = field(default_factory=dict)
    # What a task has to say about the whole file (shown once in the run's summary).
    warnings: list[str] = field(default_factory=list)

    def generation(self, **defaults: object) -> GenerationSettings:
        """Generation settings from the task's ``defaults`` with the file's options on top."""
        values: dict[str, object] = dict(defaults)
        opts = self.options
        for name in ("max_new_tokens", "num_beams", "batch_size", "prefix"):
            value = getattr(opts, name)
            if value is not None:
                values[name] = value
        return GenerationSettings(**values)  # type: ignore[arg-type]
