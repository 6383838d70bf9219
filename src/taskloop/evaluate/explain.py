"""Token attributions with Captum: which input tokens drove a model's output.

What is explained:

- generators (seq2seq and causal LMs): the log-probability of each target token under
  teacher forcing on the target (generated greedily, or given), one row per target token,
  plus a last row for the whole target (the sum of the rows' outputs: the log-probability
  of the sequence);
- classifiers and reward models (``AutoModelForSequenceClassification``): the chosen class
  logit (default: the predicted class; a reward model's only logit), one row.

Methods (per source token, the hidden dimension reduced as said):

- ``ig``: Integrated Gradients (Sundararajan et al., 2017), ``(x - x') · ∫ ∂F/∂x`` summed
  over the hidden dimension. Signed, and complete: the row sums to ``F(x) - F(x')`` up to
  the convergence delta that is reported with it.
- ``saliency``: the L2 norm over the hidden dimension of the plain gradient ``∂F/∂x`` at the
  input (Simonyan et al., 2014). Unsigned and local: cheap (one backward pass), but it
  says how sensitive the output is to a token, not how much the token contributed.
- ``input_x_gradient``: ``x · ∂F/∂x`` summed over the hidden dimension; signed, a
  first-order Taylor estimate of the contribution.

Why :class:`captum.attr.IntegratedGradients` over ``inputs_embeds`` rather than
``LayerIntegratedGradients`` on the embedding layer: T5, BART and Marian share one
embedding module between encoder and decoder, so a hook on that layer would interpolate
the decoder's inputs too. Passing the encoder ``inputs_embeds`` keeps the decoder inputs
fixed (teacher forcing on the target), and a causal LM's target embeddings are appended
as constants; every family is handled the same way. Because some encoders scale ids'
embeddings outside the embedding module (Marian), the embeddings used are checked once per
example: the output computed from them must equal the output computed from the ids.

Baselines for IG: ``pad`` replaces every non-special source token with the pad token's
embedding and keeps special tokens (``</s>``, ``[CLS]``), so those get no attribution
(positions are still added inside the model); ``zeros`` uses all-zero vectors.

Attribution runs in float32 and eval mode with every parameter frozen
(``requires_grad_(False)``; the flags are put back afterwards), so gradients are taken
with respect to the input embeddings only. Inputs longer than the model's window are
truncated the way the tokenizer truncates, and the record says so.
"""

from __future__ import annotations

import bisect
import copy
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taskloop.evaluate.errors import ExplainError
from taskloop.log import step

if TYPE_CHECKING:
    import numpy as np
    import torch

    from taskloop.evaluate.attention import CrossAttention
    from taskloop.models.loader import LoadedModel

Method = Literal["ig", "saliency", "input_x_gradient"]
GRADIENT_METHODS: tuple[Method, ...] = ("ig", "saliency", "input_x_gradient")
BaselineKind = Literal["pad", "zeros"]
SEQUENCE_ROW = "<sequence>"
EXPLAINABLE = ("seq2seq", "causal", "classify")
DEFAULT_MAX_NEW_TOKENS = 32

# Words as filter_inputs and feature_selection see them: runs of word characters, or one
# punctuation mark.
WORD = re.compile(r"\w+|[^\w\s]")
# Word-start markers of SentencePiece (▁) and byte-level BPE (Ġ), continuation of WordPiece.
_START_MARKS = ("\u2581", "\u0120")
_CONT_MARK = "##"


@dataclass
class Encoded:
    """One example tokenised as the model reads it, with its target.

    ``word_index[i]`` is the word of ``words`` that source token ``i`` belongs to (None for
    special tokens). ``target_ids`` is empty for a classifier.
    """

    source: str
    source_ids: list[int]
    source_tokens: list[str]
    source_special: list[bool]
    words: list[str]
    word_index: list[int | None]
    source_length: int  # tokens before truncation
    target_ids: list[int] = field(default_factory=list)
    target_tokens: list[str] = field(default_factory=list)
    target_special: list[bool] = field(default_factory=list)
    target_text: str = ""
    generated: bool = False
    token_type_ids: list[int] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.source_length > len(self.source_ids)


@dataclass
class Attribution:
    """Attributions of one output to the source tokens of one example.

    ``scores`` has one row per explained value (``row_labels``) and one column per source
    token: for generators the target tokens' rows then the sequence row
    (``n_target + 1`` rows), for classifiers the one class row. ``outputs`` holds the
    explained value at the input per row, ``baseline_outputs`` at the IG baseline, and
    ``deltas`` the IG convergence delta (``sum(row) - (output - baseline_output)``).
    """

    method: Method
    kind: str
    source: str
    source_tokens: list[str]
    source_special: list[bool]
    words: list[str]
    word_index: list[int | None]
    target_text: str
    target_tokens: list[str]
    target_special: list[bool]
    row_labels: list[str]
    scores: list[list[float]]
    outputs: list[float]
    baseline_outputs: list[float] | None = None
    deltas: list[float] | None = None
    baseline: str | None = None
    n_steps: int | None = None
    explained: str = ""  # what F is, in words
    source_length: int = 0
    truncated: bool = False
    generated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def sequence(self) -> list[float]:
        """The row of the whole output (sequence log-prob, or the class logit)."""
        return self.scores[-1]

    @property
    def token_rows(self) -> list[list[float]]:
        """Per-target-token rows (generators); the class row for a classifier."""
        return self.scores[:-1] if self.kind != "classify" else self.scores

    @property
    def max_abs_delta(self) -> float | None:
        return max(abs(d) for d in self.deltas) if self.deltas else None

    def matrix(self) -> np.ndarray:
        import numpy as np

        return np.asarray(self.scores, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_abs_delta"] = self.max_abs_delta
        return out


@dataclass
class Explanation:
    """Everything explained about one example: attributions per method, cross-attention."""

    id: str
    model: str
    kind: str
    source: str
    target: str
    generated: bool
    reference: str | None = None
    attributions: list[Attribution] = field(default_factory=list)
    attention: CrossAttention | None = None
    images: dict[str, str] = field(default_factory=dict)  # what → PNG path
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "generated": self.generated,
            "reference": self.reference,
            "attributions": [a.to_dict() for a in self.attributions],
            "attention": self.attention.to_dict() if self.attention is not None else None,
            "images": dict(self.images),
            "notes": list(self.notes),
        }


def load_explainable(name: str, *, device: str = "auto") -> LoadedModel:
    """Load a model that can be explained: seq2seq, causal LM or sequence classifier.

    The loader's kind detection decides (``*ForSequenceClassification`` is "classify").

    Raises:
        ExplainError: the model is not found, or is of a kind that cannot be explained.
    """
    from taskloop.models.errors import ModelError
    from taskloop.models.loader import ModelSpec, load_model, resolve

    try:
        path = resolve(ModelSpec(name))
        if (path / "quantization.json").is_file():
            raise ExplainError(
                f"model {name!r} is int8-quantized; gradients do not flow through its layers",
                hint="explain the float model it was quantized from",
            )
        lm = load_model(ModelSpec(name, device=device))
    except ModelError as exc:
        raise ExplainError(
            f"cannot load {name!r} to explain it: {exc.message}", hint=exc.hint
        ) from None
    except (OSError, ValueError) as exc:
        raise ExplainError(
            f"model {name!r}: unreadable config: {exc}",
            hint="pass a folder saved with save_pretrained, or a hub id in the cache",
        ) from None
    check_kind(lm)
    return lm


def check_kind(lm: LoadedModel) -> None:
    """Raise ExplainError unless ``lm`` is a seq2seq, causal or classifier model."""
    if lm.kind not in EXPLAINABLE:
        raise ExplainError(
            f"model {lm.name!r} is a {lm.kind} model; explanations cover seq2seq and causal "
            "generators and sequence classifiers / reward models",
            hint="pass a seq2seq or causal LM, or an AutoModelForSequenceClassification model",
        )


# --- tokenising ---------------------------------------------------------------------------


def _special_ids(tokenizer: Any) -> set[int]:
    """Ids of markup tokens (</s>, [CLS], language codes); <unk> stands for input text."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    return ids - {getattr(tokenizer, "unk_token_id", None)}


def word_map(
    text: str,
    tokens: Sequence[str],
    special: Sequence[bool],
    offsets: Sequence[tuple[int, int]] | None,
) -> tuple[list[str], list[int | None]]:
    """The words of ``text`` the tokens belong to, and each token's word.

    With character offsets (fast tokenizers) a token belongs to the :data:`WORD` span it
    overlaps most, so sub-word pieces of one word share it. Without offsets (slow
    tokenizers such as Marian's) pieces are merged by their markers: ``▁``/``Ġ`` starts a
    word, ``##`` continues one; with no markers at all each token is a word.

    Returns:
        ``(words, word_index)`` with words in source order and ``None`` for special tokens.
    """
    index: list[int | None] = []
    words: list[str] = []
    if offsets is not None:
        spans = [(m.start(), m.end()) for m in WORD.finditer(text)]
        starts = [s for s, _ in spans]
        used: dict[int, int] = {}
        for i, (s, e) in enumerate(offsets):
            if special[i] or e <= s or not spans:
                index.append(None)
                continue
            best, overlap = -1, 0
            j = max(bisect.bisect_right(starts, s) - 1, 0)
            while j < len(spans) and spans[j][0] < e:
                o = min(e, spans[j][1]) - max(s, spans[j][0])
                if o > overlap:
                    best, overlap = j, o
                j += 1
            if best < 0:  # only whitespace under the token
                index.append(None)
                continue
            if best not in used:
                used[best] = len(words)
                words.append(text[spans[best][0] : spans[best][1]])
            index.append(used[best])
        return words, index
    marked = any(t.startswith(_START_MARKS) for t in tokens)
    wordpiece = any(t.startswith(_CONT_MARK) for t in tokens)
    previous_special = True
    for i, tok in enumerate(tokens):
        if special[i]:
            index.append(None)
            previous_special = True
            continue
        if wordpiece:
            starts_word = not tok.startswith(_CONT_MARK)
        elif marked:
            starts_word = tok.startswith(_START_MARKS)
        else:
            starts_word = True
        piece = tok.removeprefix(_CONT_MARK).lstrip("".join(_START_MARKS))
        if starts_word or previous_special or not words:
            words.append(piece)
        else:
            words[-1] += piece
        index.append(len(words) - 1)
        previous_special = False
    return words, index


def _encode_source(lm: LoadedModel, text: str, limit: int) -> Encoded:
    tok = lm.tokenizer
    full = tok(text)["input_ids"]
    enc = tok(text, truncation=True, max_length=max(limit, 1), return_offsets_mapping=tok.is_fast)
    ids = [int(i) for i in enc["input_ids"]]
    specials = _special_ids(tok)
    special = [i in specials for i in ids]
    tokens = [str(t) for t in tok.convert_ids_to_tokens(ids)]
    offsets = [(int(o[0]), int(o[1])) for o in enc["offset_mapping"]] if tok.is_fast else None
    words, word_index = word_map(text, tokens, special, offsets)
    types = enc.get("token_type_ids") if lm.kind == "classify" else None
    encoded = Encoded(
        source=text,
        source_ids=ids,
        source_tokens=tokens,
        source_special=special,
        words=words,
        word_index=word_index,
        source_length=len(full),
        token_type_ids=[int(t) for t in types] if types is not None else None,
    )
    if encoded.truncated:
        encoded.notes.append(
            f"source truncated to {len(ids)} of {len(full)} tokens (the model's window); "
            "tokens past the cut are not explained"
        )
    if not ids:
        raise ExplainError("the source text gives no tokens", hint="pass a non-empty text")
    return encoded


def _cut_after_eos(ids: list[int], eos: int | None, pad: int | None) -> list[int]:
    out: list[int] = []
    for i in ids:
        if i == pad and i != eos:
            continue
        out.append(i)
        if eos is not None and i == eos:
            break
    return out


def _generation_limit(lm: LoadedModel, asked: int | None = None) -> int:
    """Tokens to generate: as asked, else the model's generation config, else 32."""
    config = getattr(lm.model, "generation_config", None)
    return int(asked or getattr(config, "max_new_tokens", None) or DEFAULT_MAX_NEW_TOKENS)


def encode_example(
    lm: LoadedModel,
    source: str,
    target: str | None = None,
    *,
    max_new_tokens: int | None = None,
) -> Encoded:
    """Tokenise ``source`` (truncated to the window) and the target, generating it if absent.

    Generation is greedy (one beam, no sampling): the explained output is then a function
    of the input. A causal LM's prompt is cut to leave room for the target in its window.

    Raises:
        ExplainError: the kind is not supported, or there is no target token to explain.
    """
    import torch

    check_kind(lm)
    tok = lm.tokenizer
    if lm.kind == "classify":
        return _encode_source(lm, source, lm.window)
    given: list[int] | None = None
    if target is not None:
        if lm.kind == "seq2seq":
            given = list(
                tok(text_target=target, truncation=True, max_length=lm.window)["input_ids"]
            )
        else:
            given = list(tok(target, add_special_tokens=False)["input_ids"])
        if not given:
            raise ExplainError("the target text gives no tokens", hint="pass a non-empty --target")
    if lm.kind == "causal":
        room = lm.window - (
            len(given) if given is not None else _generation_limit(lm, max_new_tokens)
        )
        if room < 1:
            raise ExplainError(
                f"the target leaves no room for the prompt in the model's {lm.window}-token window",
                hint="pass a shorter target, or fewer --max-new-tokens",
            )
        encoded = _encode_source(lm, source, room)
    else:
        encoded = _encode_source(lm, source, lm.window)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    if given is None:
        max_new_tokens = _generation_limit(lm, max_new_tokens)
        ids = torch.tensor([encoded.source_ids], device=lm.device)
        with lm.lock, torch.inference_mode():
            out = lm.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
            )
        new = [int(i) for i in out[0].tolist()]
        # A causal LM returns the prompt too; a seq2seq decoder starts with its start token.
        new = new[len(encoded.source_ids) :] if lm.kind == "causal" else new[1:]
        given = _cut_after_eos(new, eos, pad)
        encoded.generated = True
        if not given:
            raise ExplainError(
                "the model generated nothing to explain", hint="pass the output with --target"
            )
    specials = _special_ids(tok)
    encoded.target_ids = given
    encoded.target_tokens = [str(t) for t in tok.convert_ids_to_tokens(given)]
    encoded.target_special = [i in specials for i in given]
    encoded.target_text = str(tok.decode(given, skip_special_tokens=True))
    return encoded


# --- attribution --------------------------------------------------------------------------


@contextmanager
def frozen(lm: LoadedModel) -> Iterator[Any]:
    """The model in eval mode, float32, with no parameter gradients; restored afterwards.

    A model in another dtype is copied to float32 (the shared, loaded one is left as is).
    """
    import torch

    model = lm.model
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).float()
    flags = [p.requires_grad for p in model.parameters()]
    training = model.training
    with lm.lock:
        model.eval()
        model.requires_grad_(False)
        try:
            with torch.enable_grad():
                yield model
        finally:
            for p, flag in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            model.train(training)


def _embedder(model: Any, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """ids → the ``inputs_embeds`` the model computes from them itself."""
    layer = model.get_input_embeddings()
    scale = 1.0
    if kind == "seq2seq":
        # Marian scales ids' embeddings in its encoder, not in the embedding module.
        enc_scale = getattr(model.get_encoder(), "embed_scale", None)
        if isinstance(enc_scale, int | float) and not hasattr(layer, "embed_scale"):
            scale = float(enc_scale)
    return lambda ids: layer(ids) * scale if scale != 1.0 else layer(ids)


def decoder_inputs(model: Any, labels: torch.Tensor) -> torch.Tensor:
    """Teacher-forcing decoder inputs: the labels shifted right after the start token.

    Raises:
        ExplainError: the model does not say how it shifts labels.
    """
    shift = getattr(model, "prepare_decoder_input_ids_from_labels", None)
    if shift is None:
        raise ExplainError(
            f"{type(model).__name__} has no prepare_decoder_input_ids_from_labels",
            hint="explanations of seq2seq models need a Hugging Face *ForConditionalGeneration "
            "model (T5, BART, Marian, mBART, M2M-100)",
        )
    return shift(labels=labels)  # type: ignore[no-any-return]


def _token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels → (B, T + 1): each label's log-prob, then the sum."""
    import torch

    lp = logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return torch.cat([lp, lp.sum(-1, keepdim=True)], dim=-1)


@dataclass
class _Problem:
    """F, its inputs and the arguments that stay fixed, for one example."""

    forward: Callable[..., torch.Tensor]
    by_ids: Callable[[], torch.Tensor]  # F at the input, computed from token ids
    embeds: torch.Tensor  # (1, S, H)
    extra: tuple[Any, ...]  # additional forward args, batch dim 1
    n_outputs: int
    row_labels: list[str]
    targets: list[int]  # which output each row explains
    explained: str


def _generator_problem(model: Any, lm: LoadedModel, ex: Encoded, per_token: bool) -> _Problem:
    import torch

    dev = lm.device
    embed = _embedder(model, lm.kind)
    src = torch.tensor([ex.source_ids], device=dev)
    labels = torch.tensor([ex.target_ids], device=dev)
    n_t = len(ex.target_ids)
    rows = [*ex.target_tokens, SEQUENCE_ROW] if per_token else [SEQUENCE_ROW]
    targets = [*range(n_t), n_t] if per_token else [n_t]
    with torch.no_grad():
        embeds = embed(src).detach()
    if lm.kind == "seq2seq":
        dec = decoder_inputs(model, labels)
        mask = torch.ones_like(src)

        def forward(e: torch.Tensor, m: torch.Tensor, d: torch.Tensor, y: torch.Tensor) -> Any:
            return _token_logprobs(
                model(inputs_embeds=e, attention_mask=m, decoder_input_ids=d).logits, y
            )

        def by_ids() -> torch.Tensor:
            return _token_logprobs(
                model(input_ids=src, attention_mask=mask, decoder_input_ids=dec).logits, labels
            )

        extra: tuple[Any, ...] = (mask, dec, labels)
        what = "log-probability of each target token given the source (teacher forcing)"
    else:
        n_p = len(ex.source_ids)
        with torch.no_grad():
            tgt = embed(labels).detach()
        full = torch.cat([src, labels], dim=1)

        def forward(e: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> Any:  # type: ignore[misc]
            logits = model(inputs_embeds=torch.cat([e, t], dim=1)).logits
            # the logits at position p predict token p + 1
            return _token_logprobs(logits[:, n_p - 1 : n_p - 1 + n_t], y)

        def by_ids() -> torch.Tensor:
            return _token_logprobs(model(input_ids=full).logits[:, n_p - 1 : n_p - 1 + n_t], labels)

        extra = (tgt, labels)
        what = "log-probability of each continuation token given the prompt"
    return _Problem(forward, by_ids, embeds, extra, n_t + 1, rows, targets, what)


def _classifier_problem(
    model: Any, lm: LoadedModel, ex: Encoded, label: int | str | None
) -> _Problem:
    import torch

    dev = lm.device
    src = torch.tensor([ex.source_ids], device=dev)
    mask = torch.ones_like(src)
    types = torch.tensor([ex.token_type_ids], device=dev) if ex.token_type_ids is not None else None
    kwargs = {"token_type_ids": types} if types is not None else {}
    with torch.no_grad():
        embeds = _embedder(model, "classify")(src).detach()
        logits = model(input_ids=src, attention_mask=mask, **kwargs).logits[0]
    n_labels = int(logits.shape[-1])
    id2label = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
    if label is None:
        index = int(logits.argmax())
    elif isinstance(label, str):
        by_name = {v: k for k, v in id2label.items()}
        if label not in by_name:
            raise ExplainError(
                f"unknown label {label!r}", hint="use one of " + ", ".join(sorted(by_name))
            )
        index = by_name[label]
    else:
        index = int(label)
    if not 0 <= index < n_labels:
        raise ExplainError(
            f"label index {index} out of range: the model has {n_labels} output(s)",
            hint=f"pass a label between 0 and {n_labels - 1}",
        )
    name = id2label.get(index, f"LABEL_{index}")

    def forward(e: torch.Tensor, m: torch.Tensor, *rest: torch.Tensor) -> Any:
        types_kw = {"token_type_ids": rest[0]} if rest else {}
        return model(inputs_embeds=e, attention_mask=m, **types_kw).logits.float()

    def by_ids() -> Any:
        return model(input_ids=src, attention_mask=mask, **kwargs).logits.float()

    extra = (mask, types) if types is not None else (mask,)
    what = "reward (the only logit)" if n_labels == 1 else f"logit of class {name!r}"
    return _Problem(forward, by_ids, embeds, extra, n_labels, [name], [index], what)


def _baseline(
    model: Any, lm: LoadedModel, ex: Encoded, kind: BaselineKind, embeds: torch.Tensor
) -> tuple[torch.Tensor, list[str]]:
    import torch

    pad = lm.tokenizer.pad_token_id
    if kind == "zeros" or pad is None:
        notes = ["no pad token: zero baseline used"] if kind == "pad" else []
        return torch.zeros_like(embeds), notes
    ids = [i if s else int(pad) for i, s in zip(ex.source_ids, ex.source_special, strict=True)]
    with torch.no_grad():
        base = _embedder(model, lm.kind)(torch.tensor([ids], device=lm.device)).detach()
    return base, []


def attribute(
    lm: LoadedModel,
    example: Encoded | str,
    *,
    target: str | None = None,
    method: Method = "ig",
    n_steps: int = 50,
    baseline: BaselineKind = "pad",
    internal_batch_size: int = 128,
    label: int | str | None = None,
    per_token: bool = True,
    max_new_tokens: int | None = None,
) -> Attribution:
    """Attribute the model's output on one example to its source tokens.

    Args:
        lm: a loaded seq2seq, causal or classify model (see :func:`load_explainable`).
        example: the source text, or an :func:`encode_example` result (reuse it across
            methods so the target is generated once).
        target: the output to explain (generators); generated greedily when None.
        method: "ig", "saliency" or "input_x_gradient" (see the module docstring).
        n_steps: IG integration steps (Gauss-Legendre); more steps, smaller delta.
        baseline: "pad" or "zeros" (IG only).
        internal_batch_size: most interpolated inputs per forward pass (IG memory).
        label: class to explain (index or name); default the predicted class.
        per_token: generators: a row per target token plus the sequence row (cost grows
            with the target length), or the sequence row only.
        max_new_tokens: most tokens generated when ``target`` is None.

    Returns:
        The :class:`Attribution` record.

    Raises:
        ExplainError: unsupported kind or method, nothing to attribute, or embeddings that
            do not reproduce the model's output.
    """
    import torch
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    if method not in GRADIENT_METHODS:
        raise ExplainError(
            f"unknown attribution method {method!r}", hint="use " + ", ".join(GRADIENT_METHODS)
        )
    if n_steps < 1:
        raise ExplainError(f"n_steps must be at least 1, not {n_steps}", hint="use --steps 50")
    ex = (
        example
        if isinstance(example, Encoded)
        else encode_example(lm, example, target, max_new_tokens=max_new_tokens)
    )
    with (
        step("explain.attribute", model=lm.name, method=method, tokens=len(ex.source_ids)) as info,
        frozen(lm) as model,
    ):
        problem = (
            _classifier_problem(model, lm, ex, label)
            if lm.kind == "classify"
            else _generator_problem(model, lm, ex, per_token)
        )
        n_rows = len(problem.targets)
        embeds = problem.embeds
        with torch.no_grad():
            outputs = problem.forward(embeds, *problem.extra)[0]
            reference = problem.by_ids()[0]
        if not torch.allclose(outputs, reference, rtol=1e-3, atol=1e-4):
            gap = float((outputs - reference).abs().max())
            raise ExplainError(
                f"model {lm.name!r}: the output computed from input embeddings differs from the "
                f"output from token ids (max difference {gap:.3g})",
                hint="this model family embeds its inputs in a way the explainer does not know; "
                "report it with the model's type",
            )
        inputs = embeds.expand(n_rows, *embeds.shape[1:]).contiguous()
        extra = tuple(
            a.expand(n_rows, *a.shape[1:]).contiguous() if isinstance(a, torch.Tensor) else a
            for a in problem.extra
        )
        notes = list(ex.notes)
        base_out: list[float] | None = None
        deltas: list[float] | None = None
        if method == "ig":
            base, base_notes = _baseline(model, lm, ex, baseline, embeds)
            notes += base_notes
            with torch.no_grad():
                at_base = problem.forward(base, *problem.extra)[0]
            base_out = [float(v) for v in at_base[problem.targets]]
            attr, delta = IntegratedGradients(problem.forward).attribute(
                inputs,
                baselines=base.expand_as(inputs).contiguous(),
                target=problem.targets,
                additional_forward_args=extra,
                n_steps=n_steps,
                # captum needs room for every row in each internal batch
                internal_batch_size=max(internal_batch_size, n_rows),
                return_convergence_delta=True,
            )
            scores = attr.sum(-1)
            deltas = [float(d) for d in delta]
        elif method == "saliency":
            inputs.requires_grad_(True)  # captum would do it, with a warning each call
            grads = Saliency(problem.forward).attribute(
                inputs, target=problem.targets, abs=False, additional_forward_args=extra
            )
            scores = grads.norm(dim=-1)
        else:
            inputs.requires_grad_(True)
            scores = (
                InputXGradient(problem.forward)
                .attribute(inputs, target=problem.targets, additional_forward_args=extra)
                .sum(-1)
            )
        info.update(
            rows=n_rows,
            max_abs_delta=max((abs(d) for d in deltas), default=None) if deltas else None,
        )
    return Attribution(
        method=method,
        kind=lm.kind,
        source=ex.source,
        source_tokens=ex.source_tokens,
        source_special=ex.source_special,
        words=ex.words,
        word_index=ex.word_index,
        target_text=ex.target_text if lm.kind != "classify" else problem.row_labels[0],
        target_tokens=ex.target_tokens if lm.kind != "classify" else problem.row_labels,
        target_special=ex.target_special if lm.kind != "classify" else [False],
        row_labels=problem.row_labels,
        scores=scores.detach().float().cpu().tolist(),
        outputs=[float(v) for v in outputs[problem.targets]],
        baseline_outputs=base_out,
        deltas=deltas,
        baseline=baseline if method == "ig" else None,
        n_steps=n_steps if method == "ig" else None,
        explained=problem.explained,
        source_length=ex.source_length,
        truncated=ex.truncated,
        generated=ex.generated,
        notes=notes,
    )


def explain(
    lm: LoadedModel,
    source: str,
    *,
    id: str = "text",
    target: str | None = None,
    reference: str | None = None,
    methods: Sequence[str] = ("ig",),
    n_steps: int = 50,
    baseline: BaselineKind = "pad",
    internal_batch_size: int = 128,
    label: int | str | None = None,
    max_new_tokens: int | None = None,
) -> Explanation:
    """Explain one example with each of ``methods`` ("ig", "saliency", "input_x_gradient",
    "attention"); the target is generated once and shared.

    Cross-attention ("attention") exists only in encoder-decoder models: for other kinds it
    is skipped with a note.

    Raises:
        ExplainError: see :func:`attribute`; an unknown method name.
    """
    from taskloop.evaluate.attention import cross_attention

    unknown = [m for m in methods if m not in (*GRADIENT_METHODS, "attention")]
    if unknown:
        raise ExplainError(
            f"unknown method(s) {', '.join(unknown)}",
            hint="use ig, saliency, input_x_gradient or attention",
        )
    ex = encode_example(lm, source, target, max_new_tokens=max_new_tokens)
    out = Explanation(
        id=id,
        model=lm.describe(),
        kind=lm.kind,
        source=source,
        target=ex.target_text,
        generated=ex.generated,
        reference=reference,
        notes=list(ex.notes),
    )
    for method in methods:
        if method == "attention":
            if lm.kind == "seq2seq":
                out.attention = cross_attention(lm, ex)
            else:
                out.notes.append(
                    f"no cross-attention: a {lm.kind} model has no encoder-decoder attention"
                )
            continue
        out.attributions.append(
            attribute(
                lm,
                ex,
                method=method,  # type: ignore[arg-type]
                n_steps=n_steps,
                baseline=baseline,
                internal_batch_size=internal_batch_size,
                label=label,
            )
        )
    if lm.kind == "classify" and out.attributions:
        out.target = out.attributions[0].target_text
    return out


def write_json(explanations: Sequence[Explanation], path: str | Path) -> Path:
    """``explanations.json``: every record, one list."""
    path = Path(path)
    path.write_text(
        json.dumps([e.to_dict() for e in explanations], indent=2, ensure_ascii=False),
        encoding="utf-8",
    )
    return path
