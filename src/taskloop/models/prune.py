"""Pruning: weights, FFN neurons or attention heads, ranked by what matters least.

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
:func:`recover` fine-tunes a pruned model briefly with its zeros held at zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
GenKind = Literal["seq2seq", "causal"]
_EXCLUDED = ("lm_head",)  # output heads tied to (or as large as) the embeddings


def is_dynamic_quantized(module: Module) -> bool:
    from torch.ao.nn.quantized import dynamic

    return isinstance(module, dynamic.Linear)


# --- which layers are prunable -----------------------------------------------------------


def _conv1d_type() -> type | None:
    """GPT-2's Conv1D (a Linear with a transposed ``[in, out]`` weight), if importable."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


def is_conv1d(module: Module) -> bool:
    conv = _conv1d_type()
    return conv is not None and isinstance(module, conv)


def _in_features(module: Module) -> int:
    return int(module.weight.shape[0] if is_conv1d(module) else module.weight.shape[1])


def _out_features(module: Module) -> int:
    return int(module.weight.shape[1] if is_conv1d(module) else module.weight.shape[0])


def _out_rows(module: Module) -> torch.Tensor:
    """The weight with output features as rows ([out, in])."""
    w = module.weight.detach().float()
    return w.t() if is_conv1d(module) else w  # type: ignore[no-any-return]


def prunable_layers(model: Module) -> list[tuple[str, Module]]:
    """Linear (and GPT-2 Conv1D) layers by name, without the LM head or weights tied to
    an embedding (pruning those would prune the input embeddings too)."""
    from torch import nn

    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = []
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Linear) or is_conv1d(module)):
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
        if is_dynamic_quantized(module):
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


def model_device(model: Module) -> torch.device:
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
    device = model_device(model)
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
        masks.append(mask.t() if is_conv1d(m) else mask)  # back to the weight's layout
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

    conv = is_conv1d(module)
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

    conv = is_conv1d(module)
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
        elif all(hasattr(module, n) for n in ("c_attn", "c_proj")) and is_conv1d(module.c_attn):
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
            if is_conv1d(layer):
                layer.weight[:, cols] = 0
            else:
                layer.weight[cols] = 0
            if getattr(layer, "bias", None) is not None:
                layer.bias[cols] = 0
        if is_conv1d(block.out):
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
