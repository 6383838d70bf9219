"""Response-aligned log-probs: a forward pass over (prompt, sampled response) must give
exactly the distributions ``generate`` sampled from, for seq2seq and causal models, with
prompts of different lengths padded together."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taskloop.models.tiny import build_tiny_model
from taskloop.rlhf.logprobs import (
    cut_at_eos,
    decoder_start_id,
    encode_prompts,
    encode_responses,
    forward,
    make_batch,
    policy_kind,
    sequence_logprobs,
    split_generated,
    token_logprobs,
)

PROMPTS = ["The model runs on a single GPU", "A dog is running", "The council voted seven to two"]


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    kind = request.param
    path: Path = build_tiny_model(tmp_path_factory.mktemp(kind), kind, seed=3)
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = cls.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left" if kind == "causal" else "right"
    return kind, model, tok


def _generate(kind, model, tok):
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        max_new_tokens=6,
        output_logits=True,
        return_dict_in_generate=True,
        suppress_tokens=None,
        pad_token_id=tok.pad_token_id,
    )
    width = enc["input_ids"].size(1)
    responses = split_generated(
        kind, out.sequences, width, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id
    )
    # generate's raw logits per step: (B, steps, V)
    return responses, torch.stack(out.logits, dim=1)


def test_forward_reproduces_generation_logits(tiny) -> None:
    kind, model, tok = tiny
    assert policy_kind(model) == kind
    responses, gen_logits = _generate(kind, model, tok)
    prompt_ids = encode_prompts(tok, PROMPTS, kind, max_tokens=64)
    batch = make_batch(
        kind,
        prompt_ids,
        responses,
        pad_id=tok.pad_token_id,
        decoder_start_id=decoder_start_id(model),
    )
    with torch.no_grad():
        logits, hidden = forward(model, batch, hidden=True)
    assert hidden is not None and hidden.shape[:2] == batch.response_ids.shape
    mine = token_logprobs(logits, batch.response_ids)
    theirs = token_logprobs(gen_logits[:, : batch.response_ids.size(1)], batch.response_ids)
    mask = batch.response_mask.bool()
    assert mask.any()
    assert torch.allclose(mine[mask], theirs[mask], atol=1e-4)


def test_padding_does_not_change_a_row(tiny) -> None:
    kind, model, tok = tiny
    prompt_ids = encode_prompts(tok, PROMPTS, kind, max_tokens=64)
    response_ids = encode_responses(tok, ["a dog", "the model runs on", "GPU"], kind, 16)
    start = decoder_start_id(model)
    with torch.no_grad():
        together = sequence_logprobs(
            model, make_batch(kind, prompt_ids, response_ids, pad_id=tok.pad_token_id,
                              decoder_start_id=start)
        )  # fmt: skip
        alone = [
            sequence_logprobs(
                model,
                make_batch(kind, [p], [r], pad_id=tok.pad_token_id, decoder_start_id=start),
            )[0]
            for p, r in zip(prompt_ids, response_ids, strict=True)
        ]
    assert torch.allclose(together, torch.stack(alone), atol=1e-4)
    # the response ends with end-of-sequence, as a sampled one does
    assert all(r[-1] == tok.eos_token_id for r in response_ids)


def test_select_keeps_rows(tiny) -> None:
    kind, _, tok = tiny
    batch = make_batch(
        kind,
        encode_prompts(tok, PROMPTS, kind, 64),
        encode_responses(tok, ["a", "b c", "d"], kind, 8),
        pad_id=tok.pad_token_id,
        decoder_start_id=0,
    )
    part = batch.select(torch.tensor([2, 0]))
    assert len(part) == 2
    assert torch.equal(part.response_ids[1], batch.response_ids[0])


def test_cut_at_eos() -> None:
    assert cut_at_eos([5, 6, 1, 7, 1], eos_id=1, pad_id=0) == [5, 6, 1]
    assert cut_at_eos([5, 6, 0, 0], eos_id=1, pad_id=0) == [5, 6]
    assert cut_at_eos([], eos_id=1, pad_id=0) == []


def test_prompt_truncation_keeps_the_right_end(tiny) -> None:
    kind, _, tok = tiny
    long = " ".join(["dog"] * 50)
    (ids,) = encode_prompts(tok, [long + " GPU"], kind, max_tokens=8)
    assert len(ids) == 8
    if kind == "causal":
        assert ids[-1] == tok.convert_tokens_to_ids("GPU")  # the end is what continues
    else:
        assert ids[-1] == tok.eos_token_id  # the encoder still sees an end


def test_make_batch_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="2 prompts but 1"):
        make_batch("causal", [[1], [2]], [[3]], pad_id=0)
    with pytest.raises(ValueError, match="at least one token"):
        make_batch("causal", [[1]], [[]], pad_id=0)
    with pytest.raises(ValueError, match="decoder_start"):
        make_batch("seq2seq", [[1]], [[2]], pad_id=0)
