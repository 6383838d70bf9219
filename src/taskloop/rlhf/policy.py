"""The policy PPO optimises: a seq2seq or causal LM with a value head, and a frozen
reference copy that the KL penalty measures against.

The value head is one linear layer on the last hidden states at the response
positions (the decoder's states for an encoder-decoder), so it shares the model's trunk
and its loss trains that trunk too. :func:`save_policy` writes the model with
``save_pretrained`` and its tokenizer (an ordinary task model that
:func:`taskloop.models.loader.load_model` opens), and the value head beside them in
``value_head.safetensors``; :func:`load_policy` on that folder picks the head up again,
so a run can go on from where it stopped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from taskloop.log import step
from taskloop.rlhf.errors import PolicyError
from taskloop.rlhf.logprobs import Kind, policy_kind

VALUE_HEAD_FILE = "value_head.safetensors"
# A logit this low is a probability of exactly 0 in float32 softmax, without the NaNs
# that -inf gives in entropy (0 * -inf).
_BANNED_LOGIT = -1e9


@dataclass
class Policy:
    """A trainable LM, its value head and a frozen reference copy.

    ``banned`` are token ids never sampled (padding, the model's suppressed tokens):
    generation suppresses them and :func:`response_logits` masks them the same way, so
    the log-probs PPO computes are those of the distribution it sampled from.
    """

    model: Any  # transformers.PreTrainedModel (trainable)
    ref: Any  # the frozen reference (eval mode, no gradients)
    value_head: torch.nn.Linear
    tokenizer: Any
    kind: Kind
    source: str  # what was loaded (folder or models:/ name)
    reference: str  # what the reference was loaded from
    device: torch.device
    window: int  # the most tokens the model reads (a causal LM: prompt + response)
    banned: list[int] = field(default_factory=list)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trainable parameter: the model's and the value head's."""
        return [*self.model.parameters(), *self.value_head.parameters()]


def _auto_class(config: Any) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return (
        AutoModelForSeq2SeqLM
        if getattr(config, "is_encoder_decoder", False)
        else (AutoModelForCausalLM)
    )


def resolve_folder(name: str | Path) -> Path:
    """The local folder of a policy: a save_pretrained folder, a ``models:/`` name (from
    the registry) or a hub id already in the local cache."""
    from taskloop.models.errors import ModelNotFoundError
    from taskloop.models.loader import ModelSpec, resolve

    try:
        return resolve(ModelSpec(str(name)))
    except ModelNotFoundError as exc:
        raise PolicyError(f"policy {str(name)!r}: {exc.message}", hint=exc.hint) from None


def _load_lm(folder: Path, name: str, device: torch.device) -> Any:
    import transformers
    from transformers import AutoConfig

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    config = AutoConfig.from_pretrained(folder)
    archs = " ".join(getattr(config, "architectures", None) or [])
    if not getattr(config, "is_encoder_decoder", False) and any(
        s in archs for s in ("SequenceClassification", "QuestionAnswering", "ForMaskedLM")
    ):
        raise PolicyError(
            f"policy {name!r} is a {archs} model: PPO needs a seq2seq or causal LM",
            hint="pass a text-generating model (the task model you serve)",
        )
    try:
        model = _auto_class(config).from_pretrained(folder, dtype=torch.float32)
    except ValueError as exc:
        raise PolicyError(
            f"policy {name!r} ({config.model_type}) is neither a seq2seq nor a causal LM: "
            f"{str(exc).splitlines()[0]}",
            hint="pass a text-generating model (the task model you serve)",
        ) from None
    return model.to(device)


def _tokenizer(folder: Path, kind: Kind) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise PolicyError(
            f"policy folder {str(folder)!r} has no usable tokenizer: {exc}",
            hint="save the tokenizer next to the model (tokenizer.save_pretrained)",
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.pad_token is None:
        raise PolicyError(
            f"the tokenizer of {str(folder)!r} has neither a pad nor an end-of-sequence token",
            hint="set tokenizer.eos_token and save it again",
        )
    tok.padding_side = "left" if kind == "causal" else "right"
    return tok


def banned_tokens(model: Any, tokenizer: Any) -> list[int]:
    """Token ids a response never holds: padding (unless it is also the end token) and
    whatever the model's generation config suppresses (single-token ``bad_words_ids``
    included)."""
    gen = getattr(model, "generation_config", None)
    out: set[int] = set()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is not None and pad != eos:
        out.add(int(pad))
    for token in getattr(gen, "suppress_tokens", None) or []:
        out.add(int(token))
    for words in getattr(gen, "bad_words_ids", None) or []:
        if len(words) == 1:
            out.add(int(words[0]))
    out.discard(-1)
    if eos is not None:
        out.discard(int(eos))  # a response must be able to end
    return sorted(out)


def context_window(model: Any, tokenizer: Any) -> int:
    """The most tokens ``model`` reads (what :mod:`taskloop.models.loader` reports)."""
    from taskloop.models.loader import context_window as window

    return window(tokenizer, model.config)


def _value_head(model: Any, device: torch.device, seed: int) -> torch.nn.Linear:
    hidden = int(model.config.get_text_config().hidden_size)
    gen = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        # Small weights: the first values are near 0, the scale the normalised scores have.
        head.weight.copy_(torch.randn(1, hidden, generator=gen) / (hidden**0.5) * 0.1)
        head.bias.zero_()
    return head.to(device)


def _read_value_head(path: Path, head: torch.nn.Linear) -> dict[str, str]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta: dict[str, str] = f.metadata() or {}
        head.load_state_dict({"weight": tensors["weight"], "bias": tensors["bias"]})
    except Exception as exc:
        raise PolicyError(
            f"{path}: not a value head for this model: {type(exc).__name__}: {exc}",
            hint=f"delete {VALUE_HEAD_FILE} to start a fresh value head",
        ) from None
    return meta


def load_policy(
    name: str | Path,
    *,
    reference: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
) -> Policy:
    """Load a policy with its value head and a frozen reference.

    Args:
        name: a save_pretrained folder, ``models:/NAME@ALIAS`` or a cached hub id. A
            folder written by :func:`save_policy` brings its value head back.
        reference: the model the KL is measured against (default: the reference the
            saved value head names, else ``name``'s own weights as loaded).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        seed: initialises a new value head.

    Raises:
        PolicyError: the model is not found, not a seq2seq/causal LM, or has no tokenizer.
    """
    from taskloop.models.loader import pick_device

    dev = torch.device(pick_device(device))
    folder = resolve_folder(name)
    with step("rlhf.load_policy", policy=str(name), device=str(dev)) as info:
        model = _load_lm(folder, str(name), dev)
        kind = policy_kind(model)
        tok = _tokenizer(folder, kind)
        head = _value_head(model, dev, seed)
        saved_ref = None
        if (folder / VALUE_HEAD_FILE).is_file():
            saved_ref = _read_value_head(folder / VALUE_HEAD_FILE, head).get("reference")
        ref_name = str(reference) if reference is not None else saved_ref or str(name)
        if ref_name == str(name):
            ref = copy.deepcopy(model)
        else:
            try:
                ref_folder = resolve_folder(ref_name)
            except PolicyError as exc:
                raise PolicyError(
                    f"the reference of {str(name)!r}: {exc.message}",
                    hint="pass the model the policy started from (--reference MODEL)",
                ) from None
            ref = _load_lm(ref_folder, ref_name, dev)
            if policy_kind(ref) != kind or ref.config.vocab_size != model.config.vocab_size:
                raise PolicyError(
                    f"reference {ref_name!r} does not match policy {str(name)!r} "
                    "(kind or vocabulary differ)",
                    hint="pass the model the policy started from as the reference",
                )
        ref.eval()
        ref.requires_grad_(False)
        # Eval mode throughout (gradients still flow): dropout would make the training
        # pass's log-probs differ from the rollout's.
        model.eval()
        policy = Policy(
            model=model,
            ref=ref,
            value_head=head,
            tokenizer=tok,
            kind=kind,
            source=str(name),
            reference=ref_name,
            device=dev,
            window=context_window(model, tok),
            banned=banned_tokens(model, tok),
        )
        info.update(kind=kind, params=sum(p.numel() for p in model.parameters()))
    return policy


def values(policy: Policy, hidden: torch.Tensor) -> torch.Tensor:
    """The value head on hidden states (B, T, H) -> values (B, T), in float32."""
    out: torch.Tensor = policy.value_head(hidden.float()).squeeze(-1)
    return out


def response_logits(policy: Policy, logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Logits as sampling saw them: float32, divided by the temperature, banned tokens
    masked out."""
    out = logits.float()
    if temperature != 1.0:
        out = out / temperature
    if policy.banned:
        ban = torch.zeros(out.size(-1), dtype=torch.bool, device=out.device)
        ids = [i for i in policy.banned if i < out.size(-1)]
        ban[ids] = True
        out = out.masked_fill(ban, _BANNED_LOGIT)
    return out


def save_policy(policy: Policy, out: Path, *, metadata: dict[str, str] | None = None) -> Path:
    """Write the model (save_pretrained, generation config kept), the tokenizer and the
    value head (``value_head.safetensors``) into ``out``.

    Returns:
        ``out``, which :func:`taskloop.models.loader.load_model` opens as a task model
        and :func:`load_policy` opens with its value head.
    """
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    with step("rlhf.save_policy", out=str(out)):
        policy.model.save_pretrained(out)
        policy.tokenizer.save_pretrained(out)
        state = {
            k: v.detach().cpu().contiguous() for k, v in policy.value_head.state_dict().items()
        }
        meta = {"reference": policy.reference, "kind": policy.kind, **(metadata or {})}
        save_file(state, str(out / VALUE_HEAD_FILE), metadata=meta)
    return out
