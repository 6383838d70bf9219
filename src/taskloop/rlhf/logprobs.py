"""Prompt/response batches for seq2seq and causal policies, and the response-aligned
logits, hidden states and token log-probabilities that PPO, DPO and KTO all need.

A batch holds B prompts and B responses (token ids). For an encoder-decoder the prompt
is the encoder input (right-padded) and the response is teacher-forced through the
decoder (``decoder_start`` + response[:-1]); for a decoder-only model the prompt is
left-padded and the response right-padded after it, positions counted from each row's
first real token (as ``generate`` counts them), so a forward pass reproduces the
log-probs that sampling saw. Either way the outputs are aligned with ``response_ids``:
position ``t`` holds the distribution that produced response token ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

Kind = Literal["seq2seq", "causal"]


def policy_kind(model: Any) -> Kind:
    """ "seq2seq" for an encoder-decoder model, else "causal"."""
    return "seq2seq" if getattr(model.config, "is_encoder_decoder", False) else "causal"


def decoder_start_id(model: Any) -> int | None:
    """The decoder start token of an encoder-decoder (its generation config's, else its
    config's); None for a decoder-only model."""
    if policy_kind(model) != "seq2seq":
        return None
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "decoder_start_token_id", None)
        if value is not None:
            return int(value)
    return None


@dataclass(frozen=True)
class ResponseBatch:
    """Tensors of one forward pass over prompts and their responses.

    ``input_ids``/``attention_mask``: the encoder input (seq2seq, (B, P)) or prompt and
    response side by side (causal, (B, P + T)); ``response_ids``/``response_mask``: (B, T),
    the mask 1.0 on real response tokens; ``decoder_input_ids``: seq2seq only;
    ``position_ids``: causal only; ``prompt_width``: P.
    """

    kind: Kind
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    decoder_input_ids: torch.Tensor | None
    position_ids: torch.Tensor | None
    prompt_width: int

    def __len__(self) -> int:
        return int(self.response_ids.size(0))

    def select(self, index: torch.Tensor) -> ResponseBatch:
        """The rows ``index`` (a mini-batch), same widths."""

        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[index]

        return ResponseBatch(
            kind=self.kind,
            input_ids=self.input_ids[index],
            attention_mask=self.attention_mask[index],
            response_ids=self.response_ids[index],
            response_mask=self.response_mask[index],
            decoder_input_ids=pick(self.decoder_input_ids),
            position_ids=pick(self.position_ids),
            prompt_width=self.prompt_width,
        )


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], kind: Kind, max_tokens: int
) -> list[list[int]]:
    """Token ids of each prompt, at most ``max_tokens``: a seq2seq prompt keeps its start
    (and the tokenizer's end-of-sequence), a causal prompt keeps its end (what the next
    token continues)."""
    ids: list[list[int]] = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    if kind == "causal":
        return [x[-max_tokens:] for x in ids]
    out = []
    for x in ids:
        if len(x) > max_tokens:
            eos = tokenizer.eos_token_id
            x = [*x[: max_tokens - 1], eos] if eos is not None and x[-1] == eos else x[:max_tokens]
        out.append(x)
    return out


def encode_responses(
    tokenizer: Any, responses: Sequence[str], kind: Kind, max_tokens: int
) -> list[list[int]]:
    """Token ids of each given response (DPO/KTO data), ended by end-of-sequence as a
    sampled response is, at most ``max_tokens`` including it. Seq2seq responses go
    through the target-side tokenizer (``text_target``: Marian's differs)."""
    eos = tokenizer.eos_token_id
    if kind == "seq2seq":
        ids = tokenizer(text_target=list(responses), add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    tail = [eos] if eos is not None else []
    return [list(x)[: max(0, max_tokens - len(tail))] + tail for x in ids]


def cut_at_eos(ids: Sequence[int], eos_id: int | None, pad_id: int | None) -> list[int]:
    """A generated response up to and including its first end-of-sequence token;
    trailing padding dropped when there is none."""
    out: list[int] = []
    for token in ids:
        out.append(int(token))
        if eos_id is not None and token == eos_id:
            return out
    while out and pad_id is not None and out[-1] == pad_id and pad_id != eos_id:
        out.pop()
    return out


def split_generated(
    kind: Kind,
    sequences: torch.Tensor,
    prompt_width: int,
    *,
    eos_id: int | None,
    pad_id: int | None,
) -> list[list[int]]:
    """The response token lists of ``generate``'s output: after the decoder start token
    (seq2seq) or after the prompt columns (causal), cut after the first end-of-sequence."""
    start = 1 if kind == "seq2seq" else prompt_width
    return [cut_at_eos(row[start:].tolist(), eos_id, pad_id) for row in sequences]


def _pad(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(width, 1)), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            if left:
                out[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            else:
                out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def _lengths_mask(lengths: Sequence[int], width: int, *, left: bool) -> torch.Tensor:
    pos = torch.arange(width).unsqueeze(0)
    n = torch.tensor(list(lengths)).unsqueeze(1)
    return (pos >= width - n) if left else (pos < n)


def make_batch(
    kind: Kind,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    decoder_start_id: int | None = None,
    device: Any = "cpu",
) -> ResponseBatch:
    """One batch of prompts and responses (token ids), padded as the model kind needs.

    Raises:
        ValueError: prompts and responses differ in number, a response is empty, or a
            seq2seq batch has no decoder start token.
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if any(len(r) == 0 for r in response_ids):
        raise ValueError("every response needs at least one token (its end-of-sequence)")
    responses = _pad(response_ids, pad_id, left=False)
    T = responses.size(1)
    r_mask = _lengths_mask([len(r) for r in response_ids], T, left=False)
    prompts = _pad(prompt_ids, pad_id, left=kind == "causal")
    P = prompts.size(1)
    p_mask = _lengths_mask([len(p) for p in prompt_ids], P, left=kind == "causal")
    if kind == "seq2seq":
        if decoder_start_id is None:
            raise ValueError("a seq2seq batch needs the model's decoder_start_token_id")
        start = torch.full((len(response_ids), 1), decoder_start_id, dtype=torch.long)
        decoder_in = torch.cat([start, responses[:, :-1]], dim=1)
        return ResponseBatch(
            kind=kind,
            input_ids=prompts.to(device),
            attention_mask=p_mask.long().to(device),
            response_ids=responses.to(device),
            response_mask=r_mask.float().to(device),
            decoder_input_ids=decoder_in.to(device),
            position_ids=None,
            prompt_width=P,
        )
    mask = torch.cat([p_mask, r_mask], dim=1).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ResponseBatch(
        kind=kind,
        input_ids=torch.cat([prompts, responses], dim=1).to(device),
        attention_mask=mask.to(device),
        response_ids=responses.to(device),
        response_mask=r_mask.float().to(device),
        decoder_input_ids=None,
        position_ids=positions.to(device),
        prompt_width=P,
    )


def forward(
    model: Any, batch: ResponseBatch, *, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, T, V) aligned with the response tokens, and (with ``hidden``) the last
    layer's hidden states (B, T, H) at the same positions (what a value head reads)."""
    T = batch.response_ids.size(1)
    if batch.kind == "seq2seq":
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            decoder_input_ids=batch.decoder_input_ids,
            output_hidden_states=hidden,
            use_cache=False,
        )
        states = out.decoder_hidden_states[-1] if hidden else None
        return out.logits, states
    P = batch.prompt_width
    # The last response token predicts nothing we score: leave it out of the pass.
    out = model(
        input_ids=batch.input_ids[:, :-1],
        attention_mask=batch.attention_mask[:, :-1],
        position_ids=None if batch.position_ids is None else batch.position_ids[:, :-1],
        output_hidden_states=hidden,
        use_cache=False,
    )
    logits = out.logits[:, P - 1 : P - 1 + T]
    states = out.hidden_states[-1][:, P - 1 : P - 1 + T] if hidden else None
    return logits, states


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t]) under ``logits[t]``, shape (B, T), in float32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(model: Any, batch: ResponseBatch) -> torch.Tensor:
    """Sum of the response tokens' log-probs per row, shape (B,)."""
    logits, _ = forward(model, batch)
    return (token_logprobs(logits, batch.response_ids) * batch.response_mask).sum(-1)
