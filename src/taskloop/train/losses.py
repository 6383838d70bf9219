"""Token-level losses: cross-entropy with padding masked and optional label smoothing.

Labels hold token ids with ``ignore_index`` (-100) at padding, as Hugging Face models
expect. The loss is the mean over real (non-padding) tokens of the whole batch, so a
batch of long targets weighs each token the same as a batch of short ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100


def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy over vocabulary logits ``[B, T, V]`` against labels ``[B, T]``.

    Args:
        label_smoothing: share of probability mass spread over the vocabulary (0 = off).
        reduction: "mean" over non-ignored tokens, "sum", or "none" (``[B, T]``, 0 at padding).
    """
    import torch.nn.functional as F

    vocab = logits.size(-1)
    # float32 for the softmax: bf16 logits lose the small probabilities smoothing needs.
    flat = F.cross_entropy(
        logits.reshape(-1, vocab).float(),
        labels.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction="none",
    )
    if reduction == "none":
        return flat.view(labels.shape)
    total = flat.sum()
    if reduction == "sum":
        return total
    count = (labels != ignore_index).sum().clamp(min=1)
    return total / count


def shift_for_causal(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align a causal LM's logits with the next token: logits[:, :-1] predict labels[:, 1:]."""
    return logits[:, :-1, :], labels[:, 1:]
