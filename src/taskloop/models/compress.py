"""Model compression: pruning (weights, FFN neurons, attention heads) and quantization.

Three pruning methods, each ranked by one of three importance scores:

- ``magnitude``: global unstructured pruning of every Linear weight (not embeddings,
  the LM head or norms) with :mod:`torch.nn.utils.prune`; the weights become zeros, the
  model keeps its shape (smaller only when stored sparse, faster only on sparse kernels).
- ``ffn``: FFN neurons removed for real — rows of the up-projection and the matching
  columns of the down-projection — so the model gets smaller and faster, and the
  config's FFN width is updated so the saved model loads with ``from_pretrained``.
- ``heads``: attention heads switched off by zeroing their slices of the q/k/v and
  output projections. transformers 5 dropped ``prune_heads`` (and ``head_mask``), so the
  heads cannot be cut out physically: the model computes the same amount, only the
  weights are zero (it pays off with a later recovery fine-tune or a sparse runtime).

Importance: ``magnitude`` (|w|), ``gradient`` (first-order Taylor |w · ∂L/∂w|, or
|h · ∂L/∂h| for a neuron/head output h, summed over calibration batches) and
``activation`` (|w| × the norm of its input over calibration batches, as in Wanda; for
single weights it is compared within each output row, since activation scales differ too
much between layers for one global cut). Neurons and heads are cut in the same share in
every block, so that one FFN width per stack (the config's) still describes the model.

Quantization: ``int8`` is dynamic quantization of Linear layers for CPU inference
(:func:`torch.ao.quantization.quantize_dynamic`); ``bf16``/``fp16`` cast the weights.
:func:`compression_report` compares a model before and after: size on disk, parameters
(non-zero too), generation latency and a task metric.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taskloop.data.pairs import Pair
from taskloop.train.errors import CompressError

if TYPE_CHECKING:
    import torch

# Models and layers are typed Any: Hugging Face modules are reached through attributes
# (config, generate, wi, c_fc ...) that nn.Module's stubs cannot describe.
Module = Any

PruneMethod = Literal["magnitude", "heads", "ffn"]
Importance = Literal["magnitude", "gradient", "activation"]
QuantMode = Literal["int8", "bf16", "fp16"]
Metric = Literal["chrf", "bleu", "rougeL", "exact", "f1"]
GenKind = Literal["seq2seq", "causal"]

QUANT_MARKER = "quantization.json"
QUANT_WEIGHTS = "quantized.pt"
QUANT_FORMAT = "taskloop.dynamic-int8"
_EXCLUDED = ("lm_head",)  # output heads tied to (or as large as) the embeddings


# --- which layers are prunable -----------------------------------------------------------


def _conv1d_type() -> type | None:
    """GPT-2's Conv1D (a Linear with a transposed ``[in, out]`` weight), if importable."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


def _is_conv1d(module: Module) -> bool:
    conv = _conv1d_type()
    return conv is not None and isinstance(module, conv)


def _in_features(module: Module) -> int:
    return int(module.weight.shape[0] if _is_conv1d(module) else module.weight.shape[1])


def _out_features(module: Module) -> int:
    return int(module.weight.shape[1] if _is_conv1d(module) else module.weight.shape[0])


def _out_rows(module: Module) -> torch.Tensor:
    """The weight with output features as rows ([out, in])."""
    w = module.weight.detach().float()
    return w.t() if _is_conv1d(module) else w  # type: ignore[no-any-return]


def prunable_layers(model: Module) -> list[tuple[str, Module]]:
    """Linear (and GPT-2 Conv1D) layers by name, without the LM head or weights tied to
    an embedding (pruning those would prune the input embeddings too)."""
    from torch import nn

    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = []
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Linear) or _is_conv1d(module)):
            continue
        if name.split(".")[-1] in _EXCLUDED or id(module.weight) in embedded:
            continue
        out.append((name, module))
    return out


def sparsity(model: Module) -> float:
    """Share of zero weights among the prunable weights (see :func:`prunable_layers`)."""
    zeros = total = 0
    for _, module in prunable_layers(model):
        weight = module.weight
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total if total else 0.0


def _weight_tensors(model: Module) -> Iterator[torch.Tensor]:
    """Every parameter once (tied ones once), plus the weights inside int8 Linear layers."""
    yield from model.parameters()
    for module in model.modules():
        if _is_dynamic_quantized(module):
            weight, bias = module._weight_bias()
            yield weight.dequantize()
            if bias is not None:
                yield bias


def count_params(model: Module) -> tuple[int, int]:
    """(parameters, non-zero parameters), counting int8 weights as parameters too."""
    total = nonzero = 0
    for tensor in _weight_tensors(model):
        total += tensor.numel()
        nonzero += int((tensor != 0).sum())
    return total, nonzero


# --- reports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerPrune:
    """What pruning did to one layer (or FFN block, or attention module)."""

    name: str
    unit: str  # "weights", "neurons" or "heads"
    before: int
    kept: int
    removed: list[int] = field(default_factory=list)  # neuron or head indices


@dataclass(frozen=True)
class PruneReport:
    """What :func:`model_pruning` asked for and what it achieved.

    ``sparsity`` is the share of zero weights among the prunable weights after pruning
    (FFN pruning removes weights instead of zeroing them, so its sparsity stays low while
    ``params_after`` falls).
    """

    method: str
    importance: str
    amount: float
    sparsity: float
    params_before: int
    params_after: int
    nonzero_before: int
    nonzero_after: int
    layers: list[LayerPrune] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- calibration -------------------------------------------------------------------------


def _model_device(model: Module) -> torch.device:
    import torch

    for p in model.parameters():
        return p.device  # type: ignore[no-any-return]
    return torch.device("cpu")


def _loss_of(out: Any) -> torch.Tensor:
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if loss is None:
        raise CompressError(
            "gradient importance needs a loss, but the model returned none for a calibration batch",
            hint="calibration batches must carry labels (see encode_pairs)",
        )
    return loss  # type: ignore[no-any-return]


def _calibrate(
    model: Module,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
    *,
    backward: bool,
    after_batch: Callable[[], None] | None = None,
) -> int:
    """Run the calibration batches (with backward passes for gradient scores).

    Returns:
        The number of batches run.

    Raises:
        CompressError: no calibration batches were given.
    """
    import torch

    if calibration is None:
        raise CompressError(
            "gradient and activation importance need calibration batches",
            hint="pass calibration data (--data), or use --importance magnitude",
        )
    device = _model_device(model)
    was_training = model.training
    model.eval()  # no dropout: scores of the model as it will run
    batches = 0
    try:
        for batch in calibration:
            inputs = {k: v.to(device) for k, v in batch.items()}
            if backward:
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    _loss_of(model(**inputs)).backward()  # type: ignore[no-untyped-call]
            else:
                with torch.no_grad():
                    model(**inputs)
            if after_batch is not None:
                after_batch()
            batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if not batches:
        raise CompressError("the calibration data gave no batches", hint="pass more data")
    return batches


class _InputStats:
    """Per input feature of each module, summed over the calibration tokens: x² (for
    activation norms), or with ``taylor`` |Σ x · ∂L/∂x| per batch — the first-order change
    of the loss if that feature were zero — added up over batches (call :meth:`flush`
    after each backward pass)."""

    def __init__(self, modules: Sequence[Module], *, taylor: bool) -> None:
        self.taylor = taylor
        self.sums: list[torch.Tensor | None] = [None] * len(modules)
        self.pending: list[torch.Tensor | None] = [None] * len(modules)
        self.handles = [m.register_forward_pre_hook(self._hook(i)) for i, m in enumerate(modules)]

    def _hook(self, i: int) -> Callable[[Module, tuple[Any, ...]], None]:
        def hook(_module: Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if not self.taylor:
                flat = x.detach().float().reshape(-1, x.size(-1))
                self.sums[i] = _add(self.sums[i], (flat * flat).sum(0))
            elif x.requires_grad:
                saved = x.detach().float()

                def on_grad(grad: torch.Tensor) -> None:
                    dot = (grad.float() * saved).reshape(-1, saved.size(-1)).sum(0)
                    self.pending[i] = _add(self.pending[i], dot)

                x.register_hook(on_grad)

        return hook

    def flush(self) -> None:
        """End of a batch: its signed sums become absolute values and accumulate."""
        for i, dot in enumerate(self.pending):
            if dot is not None:
                self.sums[i] = _add(self.sums[i], dot.abs())
                self.pending[i] = None

    def get(self, i: int, width: int) -> torch.Tensor:
        """The sums of module i (zeros when it never ran)."""
        import torch

        found = self.sums[i]
        return found.cpu() if found is not None else torch.zeros(width)

    def __enter__(self) -> _InputStats:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def _add(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value


def _collect(
    model: Module,
    modules: Sequence[Module],
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[torch.Tensor]:
    """Input statistics of ``modules`` over the calibration batches (see _InputStats)."""
    taylor = importance == "gradient"
    with _InputStats(modules, taylor=taylor) as stats:
        _calibrate(model, calibration, backward=taylor, after_batch=stats.flush)
    return [stats.get(i, _in_features(m)) for i, m in enumerate(modules)]


# --- magnitude (unstructured) pruning ----------------------------------------------------


def _gradient_scores(
    model: Module, modules: list[Module], calibration: Iterable[Mapping[str, torch.Tensor]] | None
) -> dict[tuple[Module, str], torch.Tensor]:
    """|w · ∂L/∂w| of every weight, summed over calibration batches (first-order Taylor)."""
    import torch

    scores = [torch.zeros_like(m.weight, dtype=torch.float32) for m in modules]

    def add() -> None:
        for s, m in zip(scores, modules, strict=True):
            if m.weight.grad is not None:
                s += (m.weight.detach().float() * m.weight.grad.float()).abs()

    _calibrate(model, calibration, backward=True, after_batch=add)
    return {(m, "weight"): s for m, s in zip(modules, scores, strict=True)}


def _wanda_masks(
    model: Module,
    modules: list[Module],
    amount: float,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[torch.Tensor]:
    """Keep-masks from |w_ij| · ||x_j||, pruning ``amount`` of each output row (Wanda).

    Scores are compared within a row, not globally: activation norms differ by orders of
    magnitude between layers, and a global cut empties whole layers.
    """
    import torch

    masks = []
    for m, sq in zip(modules, _collect(model, modules, "activation", calibration), strict=True):
        rows = _out_rows(m).abs()  # [out, in]
        score = rows * sq.sqrt().to(rows.device)[None, :]
        k = round(amount * score.size(1))
        mask = torch.ones_like(score, dtype=torch.bool)
        if k:
            lowest = torch.topk(score, k, dim=1, largest=False).indices
            mask.scatter_(1, lowest, False)
        masks.append(mask.t() if _is_conv1d(m) else mask)  # back to the weight's layout
    return masks


def _prune_magnitude(
    model: Module,
    amount: float,
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[LayerPrune]:
    from torch.nn.utils import prune

    layers = prunable_layers(model)
    if not layers:
        raise CompressError("the model has no Linear layers to prune")
    modules = [m for _, m in layers]
    if importance == "activation":
        for m, mask in zip(modules, _wanda_masks(model, modules, amount, calibration), strict=True):
            prune.custom_from_mask(m, "weight", mask)  # type: ignore[no-untyped-call]
    else:
        scores = (
            None if importance == "magnitude" else _gradient_scores(model, modules, calibration)
        )
        prune.global_unstructured(
            [(m, "weight") for m in modules],
            pruning_method=prune.L1Unstructured,
            importance_scores=scores,
            amount=amount,
        )
    for m in modules:
        prune.remove(m, "weight")  # type: ignore[no-untyped-call]  # the zeros become permanent
    return [
        LayerPrune(name, "weights", m.weight.numel(), int((m.weight != 0).sum()))
        for name, m in layers
    ]


# --- FFN (structured) pruning ------------------------------------------------------------


@dataclass
class _FFN:
    """One feed-forward block: up-projections (rows = neurons) and a down-projection."""

    name: str
    ups: list[Module]
    down: Module
    config_key: str

    @property
    def width(self) -> int:
        return _in_features(self.down)


def _ffn_config_key(name: str, config: Any, generic: str) -> str:
    if generic == "fc" and getattr(config, "encoder_ffn_dim", None) is not None:
        parts = name.split(".")
        return "encoder_ffn_dim" if "encoder" in parts else "decoder_ffn_dim"
    return {"fc": "ffn_dim", "t5": "d_ff", "gpt2": "n_inner", "llama": "intermediate_size"}[generic]


def _ffn_blocks(model: Module) -> list[_FFN]:
    """Every FFN block the pruner knows: T5 (wi/wo, wi_0/wi_1/wo), BART/Marian/OPT
    (fc1/fc2), GPT-2 (mlp.c_fc/c_proj) and Llama-style (gate/up/down_proj)."""
    config = getattr(model, "config", None)
    blocks: list[_FFN] = []
    for name, module in model.named_modules():

        def has(*names: str, module: Module = module) -> bool:
            return all(hasattr(module, n) for n in names)

        if has("wi", "wo"):
            ups, down, generic = [module.wi], module.wo, "t5"
        elif has("wi_0", "wi_1", "wo"):
            ups, down, generic = [module.wi_0, module.wi_1], module.wo, "t5"
        elif has("fc1", "fc2"):
            ups, down, generic = [module.fc1], module.fc2, "fc"
        elif has("c_fc", "c_proj"):
            ups, down, generic = [module.c_fc], module.c_proj, "gpt2"
        elif has("gate_proj", "up_proj", "down_proj"):
            ups, down, generic = [module.gate_proj, module.up_proj], module.down_proj, "llama"
        else:
            continue
        blocks.append(_FFN(name, ups, down, _ffn_config_key(name, config, generic)))
    if not blocks:
        raise CompressError(
            f"found no feed-forward blocks in {type(model).__name__}",
            hint="FFN pruning knows T5, BART/Marian/OPT, GPT-2 and Llama-style models; "
            "use --method magnitude for others",
        )
    return blocks


def _ffn_scores(
    model: Module,
    blocks: list[_FFN],
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[torch.Tensor]:
    """Importance of each neuron of each block (higher = keep)."""
    # ||column i of the down-projection||: how much neuron i can move the output.
    down_norms = [_out_rows(b.down).norm(dim=0) for b in blocks]
    if importance == "magnitude":
        out = []
        for block, down in zip(blocks, down_norms, strict=True):
            score = down.clone()
            for up in block.ups:
                score *= _out_rows(up).norm(dim=1)
            out.append(score)
        return out
    stats = _collect(model, [b.down for b in blocks], importance, calibration)
    if importance == "gradient":  # |Σ h · ∂L/∂h|: the loss change if neuron h were 0
        return stats
    return [s.sqrt() * d.cpu() for s, d in zip(stats, down_norms, strict=True)]


def _keep_outputs(module: Module, keep: torch.Tensor) -> None:
    """Keep only the output features ``keep`` of a Linear/Conv1D layer, in place."""
    from torch import nn

    conv = _is_conv1d(module)
    idx = keep.to(module.weight.device)
    weight = module.weight.detach()[:, idx] if conv else module.weight.detach()[idx]
    module.weight = nn.Parameter(weight.clone())
    if module.bias is not None:
        module.bias = nn.Parameter(module.bias.detach()[idx].clone())
    if conv:
        module.nf = len(keep)
    else:
        module.out_features = len(keep)


def _keep_inputs(module: Module, keep: torch.Tensor) -> None:
    """Keep only the input features ``keep`` of a Linear/Conv1D layer, in place."""
    from torch import nn

    conv = _is_conv1d(module)
    idx = keep.to(module.weight.device)
    weight = module.weight.detach()[idx] if conv else module.weight.detach()[:, idx]
    module.weight = nn.Parameter(weight.clone())
    if conv:
        if hasattr(module, "nx"):
            module.nx = len(keep)
    else:
        module.in_features = len(keep)


def _prune_ffn(
    model: Module,
    amount: float,
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[LayerPrune]:
    import torch

    blocks = _ffn_blocks(model)
    scores = _ffn_scores(model, blocks, importance, calibration)
    layers = []
    widths: dict[str, int] = {}
    for block, score in zip(blocks, scores, strict=True):
        width = block.width
        # The same count in every block: the config holds one FFN width per stack.
        remove = min(round(amount * width), width - 1)
        order = torch.argsort(score.cpu(), stable=True)
        removed = sorted(int(i) for i in order[:remove])
        keep = torch.tensor(sorted(int(i) for i in order[remove:]), dtype=torch.long)
        for up in block.ups:
            _keep_outputs(up, keep)
        _keep_inputs(block.down, keep)
        widths[block.config_key] = len(keep)
        layers.append(LayerPrune(block.name, "neurons", width, len(keep), removed))
    config = getattr(model, "config", None)
    if config is not None:
        for key, width in widths.items():
            setattr(config, key, width)
    return layers


# --- attention-head pruning --------------------------------------------------------------


@dataclass
class _Attention:
    """One attention module: its head count and size, q/k/v and output projections."""

    name: str
    heads: int
    head_dim: int
    qkv: list[tuple[Module, int]]  # (layer, offset of this projection's outputs)
    out: Module


def _attention_blocks(model: Module) -> list[_Attention]:
    """T5 (q/k/v/o), BART/Marian/Llama (q_proj/k_proj/v_proj/out_proj|o_proj) and GPT-2
    (c_attn/c_proj) attention modules, self- and cross-attention alike."""
    config = getattr(model, "config", None)
    blocks = []
    for name, module in model.named_modules():
        heads = next(
            (
                int(v)
                for v in (
                    getattr(module, a, None)
                    for a in ("n_heads", "num_heads", "num_attention_heads")
                )
                if isinstance(v, int)
            ),
            None,
        )
        if all(hasattr(module, n) for n in ("q", "k", "v", "o")):
            qkv, out = [(module.q, 0), (module.k, 0), (module.v, 0)], module.o
        elif all(hasattr(module, n) for n in ("q_proj", "k_proj", "v_proj")) and (
            hasattr(module, "out_proj") or hasattr(module, "o_proj")
        ):
            out = getattr(module, "out_proj", None) or module.o_proj
            # Grouped-query k/v projections (fewer outputs than q) serve several query
            # heads at once: they stay, and the head is cut through q and the output.
            qkv = [
                (layer, 0)
                for layer in (module.q_proj, module.k_proj, module.v_proj)
                if _out_features(layer) == _out_features(module.q_proj)
            ]
        elif all(hasattr(module, n) for n in ("c_attn", "c_proj")) and _is_conv1d(module.c_attn):
            embed = _in_features(module.c_proj)
            qkv = [(module.c_attn, 0), (module.c_attn, embed), (module.c_attn, 2 * embed)]
            out = module.c_proj
        else:
            continue
        if heads is None:
            heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 0)
        if not heads:
            continue
        head_dim = _in_features(out) // heads
        blocks.append(_Attention(name, heads, head_dim, qkv, out))
    if not blocks:
        raise CompressError(
            f"found no attention modules in {type(model).__name__}",
            hint="head pruning knows T5, BART/Marian, Llama-style and GPT-2 attention; "
            "use --method magnitude for others",
        )
    return blocks


def _head_scores(
    model: Module,
    blocks: list[_Attention],
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[torch.Tensor]:
    """Importance of each head: the norm of its slice of the output projection
    (magnitude), × the norm of its output (activation), or |Σ o_h · ∂L/∂o_h| — the
    gradient of a head mask at 1 (Michel et al., 2019) — for gradient."""

    def per_head(values: torch.Tensor, block: _Attention) -> torch.Tensor:
        return values.reshape(block.heads, block.head_dim).sum(1)

    # Squared norms of each input column of the output projection, summed per head.
    slices = [per_head(_out_rows(b.out).pow(2).sum(0), b).sqrt() for b in blocks]
    if importance == "magnitude":
        return slices
    stats = _collect(model, [b.out for b in blocks], importance, calibration)
    if importance == "gradient":
        return [per_head(s, b) for s, b in zip(stats, blocks, strict=True)]
    return [per_head(s, b).sqrt() * m.cpu() for s, b, m in zip(stats, blocks, slices, strict=True)]


def _zero_head(block: _Attention, head: int) -> None:
    import torch

    lo, hi = head * block.head_dim, (head + 1) * block.head_dim
    with torch.no_grad():
        for layer, offset in block.qkv:
            cols = slice(offset + lo, offset + hi)
            if _is_conv1d(layer):
                layer.weight[:, cols] = 0
            else:
                layer.weight[cols] = 0
            if getattr(layer, "bias", None) is not None:
                layer.bias[cols] = 0
        if _is_conv1d(block.out):
            block.out.weight[lo:hi] = 0
        else:
            block.out.weight[:, lo:hi] = 0


def _prune_heads(
    model: Module,
    amount: float,
    importance: Importance,
    calibration: Iterable[Mapping[str, torch.Tensor]] | None,
) -> list[LayerPrune]:
    import torch

    blocks = _attention_blocks(model)
    scores = _head_scores(model, blocks, importance, calibration)
    layers = []
    for block, score in zip(blocks, scores, strict=True):
        # Per module, never all heads: a module with no head left outputs only its bias.
        remove = min(round(amount * block.heads), block.heads - 1)
        removed = sorted(int(i) for i in torch.argsort(score.cpu(), stable=True)[:remove])
        for head in removed:
            _zero_head(block, head)
        layers.append(LayerPrune(block.name, "heads", block.heads, block.heads - remove, removed))
    return layers


def model_pruning(
    model: Module,
    *,
    amount: float,
    method: PruneMethod = "magnitude",
    importance: Importance = "magnitude",
    calibration: Iterable[Mapping[str, torch.Tensor]] | None = None,
) -> PruneReport:
    """Prune ``model`` in place and report what was removed.

    Args:
        amount: share to remove, in [0, 1): of all prunable weights (magnitude; of each
            output row with activation importance), of the neurons of each FFN block
            (ffn), of the heads of each attention module (heads, at least one kept).
        method: "magnitude" (global unstructured), "ffn" (physically removes neurons and
            updates the config), "heads" (zeroes heads; see the module docstring).
        importance: "magnitude", "gradient" (Taylor, needs batches with labels) or
            "activation" (Wanda-style, needs batches).
        calibration: batches of model inputs (``input_ids``, ``attention_mask``,
            ``labels``), as :func:`encode_pairs` makes them.

    Raises:
        CompressError: a bad amount, method or importance; calibration missing for a
            data-driven importance; no layers the method knows.
    """
    from taskloop.log import step

    if not 0.0 <= amount < 1.0:
        raise CompressError(f"amount must be within [0, 1), not {amount}")
    pruners = {"magnitude": _prune_magnitude, "ffn": _prune_ffn, "heads": _prune_heads}
    if method not in pruners:
        raise CompressError(
            f"unknown pruning method {method!r}", hint="use magnitude, heads or ffn"
        )
    if importance not in ("magnitude", "gradient", "activation"):
        raise CompressError(
            f"unknown importance {importance!r}", hint="use magnitude, gradient or activation"
        )
    with step("prune", method=method, importance=importance, amount=amount) as info:
        params_before, nonzero_before = count_params(model)
        layers = pruners[method](model, amount, importance, calibration)
        params_after, nonzero_after = count_params(model)
        achieved = sparsity(model)
        info.update(
            sparsity=round(achieved, 4), params_before=params_before, params_after=params_after
        )
    return PruneReport(
        method=method,
        importance=importance,
        amount=amount,
        sparsity=achieved,
        params_before=params_before,
        params_after=params_after,
        nonzero_before=nonzero_before,
        nonzero_after=nonzero_after,
        layers=layers,
    )


# --- batches from pairs ------------------------------------------------------------------


def encode_pairs(
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    batch_size: int = 8,
    max_source_tokens: int = 256,
    max_target_tokens: int = 128,
) -> list[dict[str, torch.Tensor]]:
    """Pairs as model batches with labels (-100 at padding) for calibration.

    A seq2seq batch holds the encoded sources and the targets as labels; a causal batch
    holds ``source target</s>`` with the source positions masked out of the labels.
    """
    import torch

    batches = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if kind == "seq2seq":
            enc = tokenizer(
                [p.source for p in chunk],
                padding=True,
                truncation=True,
                max_length=max_source_tokens,
                return_tensors="pt",
            )
            labels = tokenizer(
                text_target=[p.target for p in chunk],
                padding=True,
                truncation=True,
                max_length=max_target_tokens,
                return_tensors="pt",
            )["input_ids"]
            labels[labels == tokenizer.pad_token_id] = -100
            batches.append({**{k: v for k, v in enc.items()}, "labels": labels})
            continue
        rows = []
        for p in chunk:
            src = tokenizer(p.source, add_special_tokens=True)["input_ids"][-max_source_tokens:]
            tgt = tokenizer(" " + p.target, add_special_tokens=False)["input_ids"]
            tgt = [*tgt[: max_target_tokens - 1], tokenizer.eos_token_id]
            rows.append((src + tgt, [-100] * len(src) + tgt))
        width = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, labs) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            labels[i, : len(labs)] = torch.tensor(labs)
        batches.append({"input_ids": input_ids, "attention_mask": attention, "labels": labels})
    return batches


# --- recovery fine-tune ------------------------------------------------------------------


def recover(
    model: Module,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    steps: int,
    lr: float = 5e-4,
    batch_size: int = 8,
    device: str = "cpu",
    seed: int = 0,
) -> list[float]:
    """Fine-tune a pruned model for ``steps`` steps while its zero weights stay zero.

    Every prunable weight with zeros is re-parametrised as ``weight_orig * mask`` (prune's
    forward pre-hook) for the duration of the fine-tune, so the optimizer cannot bring a
    pruned weight back; the masks are then made permanent with ``prune.remove``.

    Returns:
        The per-step losses of :func:`taskloop.train.loop.fit_pairs`.

    Raises:
        CompressError: the training loop is not available in this install.
    """
    from torch.nn.utils import prune

    try:
        from taskloop.train import loop
    except ImportError:
        loop = None  # type: ignore[assignment]
    fit_pairs = getattr(loop, "fit_pairs", None)
    if fit_pairs is None:
        raise CompressError(
            "recovery fine-tuning needs taskloop.train.loop.fit_pairs, which this install lacks",
            hint="run without --recover-steps",
        )
    masked = []
    for _, module in prunable_layers(model):
        mask = module.weight.detach() != 0
        if not bool(mask.all()):
            prune.custom_from_mask(module, "weight", mask)  # type: ignore[no-untyped-call]
            masked.append(module)
    try:
        losses = fit_pairs(
            model, tokenizer, pairs, kind=kind, steps=steps, lr=lr, batch_size=batch_size,
            device=device, seed=seed,
        )  # fmt: skip
    finally:
        for module in masked:
            prune.remove(module, "weight")  # type: ignore[no-untyped-call]
    return list(losses)


# --- quantization ------------------------------------------------------------------------


def _is_dynamic_quantized(module: Module) -> bool:
    from torch.ao.nn.quantized import dynamic

    return isinstance(module, dynamic.Linear)


def is_quantized(model: Module) -> bool:
    """Whether ``model`` holds int8 dynamic-quantized Linear layers."""
    return any(_is_dynamic_quantized(m) for m in model.modules())


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao.quantization warns on every call that it is deprecated in favour of torchao
    # (not installed, and a GPU-first library); the eager API still works in torch 2.13,
    # so only those two warnings are silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning
        )
        yield


def _linear_from_conv1d(conv: Module) -> Module:
    """GPT-2's Conv1D as the nn.Linear it is (weight transposed), so it can be quantized."""
    import torch
    from torch import nn

    linear = nn.Linear(conv.weight.shape[0], conv.weight.shape[1], bias=conv.bias is not None)
    linear.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.t())
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


def _replace(model: Module, name: str, new: Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _quantize_int8(model: Module, names: Sequence[str]) -> Module:
    """Dynamic int8 quantization of the named Linear/Conv1D layers (a new model)."""
    import copy

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model)
    for name in names:
        module = model.get_submodule(name)
        if _is_conv1d(module):
            _replace(model, name, _linear_from_conv1d(module))
    with _quiet_quantization():
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            model, dict.fromkeys(names, default_dynamic_qconfig), dtype=torch.qint8
        )


def quantize_model(model: Module, *, mode: QuantMode, device: str = "cpu") -> Module:
    """The model quantized for inference.

    Args:
        mode: "int8": dynamic quantization of the Linear layers (GPT-2's Conv1D too; not
            the LM head) for CPU inference, as a new model (the original is untouched);
            "bf16" / "fp16": the model cast in place and moved to ``device``.
        device: where the model runs: int8 needs "cpu"; fp16 needs a GPU.

    Raises:
        CompressError: int8 off the CPU, fp16 on the CPU, an unknown mode.
        DeviceError: the device is not available here.
    """
    import torch

    from taskloop.log import step
    from taskloop.models.loader import pick_device

    if mode not in ("int8", "bf16", "fp16"):
        raise CompressError(f"unknown quantization mode {mode!r}", hint="use int8, bf16 or fp16")
    device = pick_device(device)
    with step("quantize", mode=mode, device=device):
        if mode == "int8":
            if device != "cpu":
                raise CompressError(
                    "int8 dynamic quantization runs on the CPU only",
                    hint="use --device cpu, or bf16/fp16 on a GPU",
                )
            model = model.to("cpu", dtype=torch.float32)
            return _quantize_int8(model, [name for name, _ in prunable_layers(model)])
        if mode == "fp16" and device == "cpu":
            raise CompressError(
                "fp16 on the CPU is slow and many CPU kernels lack it",
                hint="use --mode bf16 or int8 on the CPU, or --device cuda for fp16",
            )
        dtype = torch.bfloat16 if mode == "bf16" else torch.float16
        return model.to(device=device, dtype=dtype)


def _model_kind(config: Any) -> GenKind:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def save_compressed(model: Module, out_dir: str | Path, tokenizer: Any = None) -> Path:
    """Save a (pruned or quantized) model so that it can be loaded again.

    A float model goes through ``save_pretrained``. An int8 model cannot (its layers hold
    packed int8 weights): its ``state_dict`` goes to ``quantized.pt`` next to the config,
    and ``quantization.json`` says how to rebuild it (see :func:`load_quantized`).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if not is_quantized(model):
        model.save_pretrained(out)
        return out
    config = model.config
    config.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(out)
    torch.save(model.state_dict(), out / QUANT_WEIGHTS)
    marker = {
        "format": QUANT_FORMAT,
        "mode": "int8",
        "weights": QUANT_WEIGHTS,
        "kind": _model_kind(config),
        "modules": [name for name, m in model.named_modules() if _is_dynamic_quantized(m)],
        "torch": torch.__version__,
    }
    (out / QUANT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return out


def load_quantized(path: str | Path) -> Module:
    """Rebuild an int8 model written by :func:`save_compressed` (eval mode, CPU).

    Raises:
        CompressError: the folder has no ``quantization.json`` or it is of another format.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        GenerationConfig,
    )

    folder = Path(path)
    marker_path = folder / QUANT_MARKER
    if not marker_path.is_file():
        raise CompressError(
            f"{str(folder)!r} holds no {QUANT_MARKER}: not an int8 model saved by taskloop",
            hint="load float models with taskloop.models.loader.load_model",
        )
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompressError(f"{marker_path}: not valid JSON: {exc}") from None
    if not isinstance(marker, dict) or marker.get("format") != QUANT_FORMAT:
        raise CompressError(f"{marker_path}: unknown quantization format")
    config = AutoConfig.from_pretrained(folder)
    auto = AutoModelForSeq2SeqLM if marker.get("kind") == "seq2seq" else AutoModelForCausalLM
    model = auto.from_config(config)  # type: ignore[no-untyped-call]
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    quantized = _quantize_int8(model, marker["modules"])
    with warnings.catch_warnings():
        # Loading packed int8 weights goes through torch's legacy TypedStorage path.
        warnings.filterwarnings(
            "ignore", message="TypedStorage is deprecated", category=UserWarning
        )
        state = torch.load(folder / marker["weights"], map_location="cpu", weights_only=True)
    quantized.load_state_dict(state)
    quantized.eval()
    return quantized


def disk_size(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


# --- before/after report -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelStats:
    """One model's side of a :class:`CompressionReport`."""

    size_bytes: int
    params: int
    nonzero_params: int
    dtype: str
    device: str
    latency_mean_ms: float | None = None  # per batch of greedy generation
    latency_p50_ms: float | None = None
    metric: float | None = None


@dataclass(frozen=True)
class CompressionReport:
    """A model before and after compression, on the same inputs."""

    metric_name: str
    pairs: int
    batch_size: int
    max_new_tokens: int
    before: ModelStats
    after: ModelStats

    @property
    def size_ratio(self) -> float:
        return self.after.size_bytes / self.before.size_bytes if self.before.size_bytes else 0.0

    @property
    def speedup(self) -> float | None:
        b, a = self.before.latency_mean_ms, self.after.latency_mean_ms
        return b / a if b is not None and a else None

    @property
    def metric_delta(self) -> float | None:
        b, a = self.before.metric, self.after.metric
        return a - b if a is not None and b is not None else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(size_ratio=self.size_ratio, speedup=self.speedup, metric_delta=self.metric_delta)
        return out

    def table(self) -> str:
        """A markdown table: one row per measure, before / after / change."""

        def num(v: float | None, fmt: str) -> str:
            return "n/a" if v is None else format(v, fmt)

        def mib(n: int) -> str:
            return f"{n / 2**20:.2f} MiB"

        b, a = self.before, self.after
        rows = [
            ("size on disk", mib(b.size_bytes), mib(a.size_bytes), f"×{self.size_ratio:.3f}"),
            ("parameters", f"{b.params:,}", f"{a.params:,}", f"×{_ratio(a.params, b.params)}"),
            (
                "non-zero parameters",
                f"{b.nonzero_params:,}",
                f"{a.nonzero_params:,}",
                f"×{_ratio(a.nonzero_params, b.nonzero_params)}",
            ),
            ("dtype / device", f"{b.dtype} / {b.device}", f"{a.dtype} / {a.device}", ""),
            (
                f"latency mean (ms / batch of {self.batch_size})",
                num(b.latency_mean_ms, ".1f"),
                num(a.latency_mean_ms, ".1f"),
                "n/a" if self.speedup is None else f"{self.speedup:.2f}× faster",
            ),
            (
                "latency p50 (ms / batch)",
                num(b.latency_p50_ms, ".1f"),
                num(a.latency_p50_ms, ".1f"),
                "",
            ),
            (
                f"{self.metric_name} ({self.pairs} pairs)",
                num(b.metric, ".4g"),
                num(a.metric, ".4g"),
                num(self.metric_delta, "+.4g"),
            ),
        ]
        lines = ["| measure | before | after | change |", "|---|---|---|---|"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
        return "\n".join(lines)


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def _dtype_name(model: Module) -> str:
    if is_quantized(model):
        return "int8"
    for p in model.parameters():
        return str(p.dtype).removeprefix("torch.")
    return "none"


def score(predictions: Sequence[str], references: Sequence[str], metric: Metric) -> float | None:
    """One corpus-level task metric by :mod:`taskloop.evaluate.metrics` (None: no pairs).

    Every metric is on 0–100, as training and ``taskloop run`` report them: chrF++ and BLEU
    as sacrebleu gives them, ROUGE-L F, exact match and token F1 times 100.
    """
    from taskloop.evaluate import metrics

    if not predictions:
        return None
    if metric in ("chrf", "bleu"):
        return metrics.bleu_chrf(predictions, references)["chrf++" if metric == "chrf" else "bleu"]
    if metric == "rougeL":
        value = metrics.rouge(predictions, [[r] for r in references]).get("rougeL")
        return None if value is None else 100 * value
    if metric in ("exact", "f1"):
        fn = metrics.exact_match if metric == "exact" else metrics.token_f1
        pairs = zip(predictions, references, strict=True)
        return 100 * sum(fn(p, [r]) for p, r in pairs) / len(predictions)
    raise CompressError(f"unknown metric {metric!r}", hint="use chrf, bleu, rougeL, exact or f1")


@contextmanager
def _generation_tokenizer(tokenizer: Any, kind: GenKind) -> Iterator[Any]:
    """The tokenizer set up for batched generation (a causal LM pads on the left)."""
    saved = (tokenizer.padding_side, tokenizer.truncation_side, tokenizer.pad_token)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "causal":
        tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = saved[0], saved[1]
        if saved[2] is None:
            tokenizer.pad_token = None


def _input_limit(model: Module, tokenizer: Any, kind: GenKind, max_new_tokens: int) -> int:
    config = getattr(model, "config", None)
    limits = [
        v
        for v in (
            getattr(tokenizer, "model_max_length", None),
            getattr(config, "n_positions", None),
            getattr(config, "max_position_embeddings", None),
        )
        if isinstance(v, int) and 0 < v < 1_000_000
    ]
    limit = min(limits) if limits else 512
    return max(1, limit - max_new_tokens) if kind == "causal" else limit


def timed_generation(
    model: Module,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    kind: GenKind,
    batch_size: int = 8,
    max_new_tokens: int = 32,
) -> tuple[list[str], list[float]]:
    """Greedy outputs for ``sources`` and the milliseconds each batch took.

    The first batch runs once untimed first (warm-up: lazy init, allocator, caches).
    """
    import torch

    if not sources:
        return [], []
    device = _model_device(model)
    outputs: list[str] = []
    times: list[float] = []
    with _generation_tokenizer(tokenizer, kind) as tok, torch.inference_mode():
        limit = _input_limit(model, tok, kind, max_new_tokens)
        batches = [list(sources[i : i + batch_size]) for i in range(0, len(sources), batch_size)]

        def run(texts: list[str]) -> list[str]:
            enc = tok(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=limit
            ).to(device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tok.pad_token_id,
            )
            if kind == "causal":
                out = out[:, enc["input_ids"].shape[1] :]
            return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]

        run(batches[0])  # warm-up
        for texts in batches:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            outputs.extend(run(texts))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1000)
    return outputs, times


def _stats(
    model: Module,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    metric: Metric,
    batch_size: int,
    max_new_tokens: int,
) -> ModelStats:
    with tempfile.TemporaryDirectory(prefix="taskloop-size-") as tmp:
        size = disk_size(save_compressed(model, tmp))
    params, nonzero = count_params(model)
    outputs, times = timed_generation(
        model,
        tokenizer,
        [p.source for p in pairs],
        kind=kind,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    return ModelStats(
        size_bytes=size,
        params=params,
        nonzero_params=nonzero,
        dtype=_dtype_name(model),
        device=str(_model_device(model)),
        latency_mean_ms=statistics.fmean(times) if times else None,
        latency_p50_ms=statistics.median(times) if times else None,
        metric=score(outputs, [p.target for p in pairs], metric),
    )


def compression_report(
    before_model: Module,
    after_model: Module,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    kind: GenKind,
    metric: Metric = "chrf",
    batch_size: int = 8,
    max_new_tokens: int = 32,
) -> CompressionReport:
    """Compare two models on the same pairs: size on disk, parameters, latency, metric.

    Size is what :func:`save_compressed` writes (no tokenizer). Latency is per batch of
    greedy generation after a warm-up batch; the metric scores the outputs against the
    pairs' targets. Without pairs, latency and metric are None.
    """
    import transformers

    from taskloop.log import step

    if metric not in ("chrf", "bleu", "rougeL", "exact", "f1"):
        raise CompressError(
            f"unknown metric {metric!r}", hint="use chrf, bleu, rougeL, exact or f1"
        )
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    args = dict(kind=kind, metric=metric, batch_size=batch_size, max_new_tokens=max_new_tokens)
    with step("compression_report", pairs=len(pairs)):
        before = _stats(before_model, tokenizer, pairs, **args)  # type: ignore[arg-type]
        after = _stats(after_model, tokenizer, pairs, **args)  # type: ignore[arg-type]
    return CompressionReport(
        metric_name=metric,
        pairs=len(pairs),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        before=before,
        after=after,
    )
