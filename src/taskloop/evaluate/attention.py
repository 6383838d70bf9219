"""Cross-attention of encoder-decoder models: which source tokens each target token read.

The model runs once with ``output_attentions=True`` on the source and the target under
teacher forcing (decoder position ``t`` is the one that predicts target token ``t``), and
the decoder's cross-attention comes back as an array of shape
``(layers, heads, n_target, n_source)``; each row sums to 1 over the source.

Two aggregates are offered: ``last`` (mean over the heads of the last decoder layer) and
``all`` (mean over every layer and head). ``all`` is the default and the one drawn: single
layers of trained models often park most of their attention on ``</s>`` or punctuation
(the last layer especially), and the mean over layers is the steadier picture of which
source words a target word is tied to. Attention is a description of the computation,
not an attribution: it says where the model looked, not what changed the output (use
``ig`` for that).

SDPA and flash-attention kernels never materialise the weights (transformers 5 returns an
empty tuple), so the model is switched to eager attention for the pass and switched back
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain import Encoded, decoder_inputs, encode_example

if TYPE_CHECKING:
    import numpy as np

    from taskloop.models.loader import LoadedModel

Aggregate = Literal["all", "last"]
DEFAULT_AGGREGATE: Aggregate = "all"


@dataclass
class CrossAttention:
    """Decoder cross-attention of one example: ``weights`` is (layers, heads, T, S)."""

    source_tokens: list[str]
    target_tokens: list[str]
    weights: np.ndarray
    default: Aggregate = DEFAULT_AGGREGATE
    attn_implementation: str = "eager"  # what the model used before the eager pass
    notes: list[str] = field(default_factory=list)

    @property
    def last_layer(self) -> np.ndarray:
        """(T, S): mean over the heads of the last decoder layer."""
        return self.weights[-1].mean(axis=0)  # type: ignore[no-any-return]

    @property
    def all_layers(self) -> np.ndarray:
        """(T, S): mean over every layer and head."""
        return self.weights.mean(axis=(0, 1))  # type: ignore[no-any-return]

    def aggregate(self, which: Aggregate | None = None) -> np.ndarray:
        """The (T, S) map ``which`` names (default: :attr:`default`)."""
        which = which or self.default
        if which == "last":
            return self.last_layer
        if which == "all":
            return self.all_layers
        raise ExplainError(f"unknown attention aggregate {which!r}", hint="use 'all' or 'last'")

    def to_dict(self, *, weights: bool = False) -> dict[str, Any]:
        """Tokens, shape and both aggregates; the full array only when ``weights``."""
        layers, heads, n_t, n_s = self.weights.shape
        out: dict[str, Any] = {
            "source_tokens": self.source_tokens,
            "target_tokens": self.target_tokens,
            "layers": int(layers),
            "heads": int(heads),
            "shape": [int(n_t), int(n_s)],
            "default": self.default,
            "last_layer": self.last_layer.tolist(),
            "all_layers": self.all_layers.tolist(),
            "attn_implementation": self.attn_implementation,
            "notes": list(self.notes),
        }
        if weights:
            out["weights"] = self.weights.tolist()
        return out


@contextmanager
def eager_attention(model: Any) -> Iterator[str]:
    """Run ``model`` with eager attention (which returns weights); restore it after.

    Yields:
        The implementation the model had before ("sdpa", "eager", ...).
    """
    config = model.config
    current = str(getattr(config, "_attn_implementation", None) or "eager")
    if current == "eager":
        yield current
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    else:  # older transformers: the config field is what the layers read
        config._attn_implementation = "eager"
    try:
        yield current
    finally:
        if setter is not None:
            setter(current)
        else:
            config._attn_implementation = current


def cross_attention(
    lm: LoadedModel,
    example: Encoded | str,
    *,
    target: str | None = None,
    aggregate: Aggregate = DEFAULT_AGGREGATE,
    max_new_tokens: int | None = None,
) -> CrossAttention:
    """The decoder's cross-attention over the source for the target (generated if absent).

    Raises:
        ExplainError: the model is not an encoder-decoder, or returned no attentions.
    """
    import torch

    if lm.kind != "seq2seq":
        raise ExplainError(
            f"model {lm.name!r} is a {lm.kind} model: cross-attention exists only in "
            "encoder-decoder (seq2seq) models",
            hint="use --method ig or saliency for this model",
        )
    ex = (
        example
        if isinstance(example, Encoded)
        else encode_example(lm, example, target, max_new_tokens=max_new_tokens)
    )
    model = lm.model
    src = torch.tensor([ex.source_ids], device=lm.device)
    labels = torch.tensor([ex.target_ids], device=lm.device)
    dec = decoder_inputs(model, labels)
    with lm.lock, eager_attention(model) as before, torch.inference_mode():
        out = model(
            input_ids=src,
            attention_mask=torch.ones_like(src),
            decoder_input_ids=dec,
            output_attentions=True,
        )
    layers = getattr(out, "cross_attentions", None)
    if not layers or any(a is None for a in layers):
        raise ExplainError(
            f"model {lm.name!r} returned no cross-attention weights",
            hint="its attention implementation may not support output_attentions; "
            "use --method ig instead",
        )
    weights = torch.stack([a[0] for a in layers]).float().cpu().numpy()  # (L, H, T, S)
    return CrossAttention(
        source_tokens=ex.source_tokens,
        target_tokens=ex.target_tokens,
        weights=weights,
        default=aggregate,
        attn_implementation=before,
        notes=list(ex.notes),
    )
