"""The PPO policy: a value head on the response positions' hidden states, a frozen
reference, the banned tokens masked as generation suppresses them, and a save that the
ordinary model loader opens and that brings the value head back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taskloop.models.tiny import build_tiny_model
from taskloop.rlhf.errors import PolicyError
from taskloop.rlhf.logprobs import (
    decoder_start_id,
    encode_prompts,
    encode_responses,
    forward,
    make_batch,
)
from taskloop.rlhf.policy import (
    VALUE_HEAD_FILE,
    banned_tokens,
    load_policy,
    response_logits,
    save_policy,
    values,
)

PROMPTS = ["A dog is running", "The council voted seven to two"]
RESPONSES = ["a dog", "the model runs on a single GPU"]


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp(request.param), request.param, seed=5)


def _batch(policy):
    tok = policy.tokenizer
    return make_batch(
        policy.kind,
        encode_prompts(tok, PROMPTS, policy.kind, 32),
        encode_responses(tok, RESPONSES, policy.kind, 16),
        pad_id=tok.pad_token_id,
        decoder_start_id=decoder_start_id(policy.model),
    )


def test_value_head_reads_response_positions(tiny: Path) -> None:
    policy = load_policy(tiny, device="cpu")
    hidden_size = policy.model.config.get_text_config().hidden_size
    assert hidden_size == 32
    assert policy.value_head.in_features == 32 and policy.value_head.out_features == 1
    batch = _batch(policy)
    logits, hidden = forward(policy.model, batch, hidden=True)
    assert hidden is not None
    v = values(policy, hidden)
    # one value per response token: (B, T), the response widths
    assert v.shape == batch.response_ids.shape == (2, max(len(r.split()) for r in RESPONSES) + 1)
    assert v.dtype == torch.float32
    assert logits.shape[:2] == v.shape
    # the value of a token depends only on its own hidden state: recompute one by hand
    w, b = policy.value_head.weight[0], policy.value_head.bias[0]
    assert torch.allclose(v[1, 3], hidden[1, 3] @ w + b, atol=1e-6)


def test_reference_is_a_frozen_copy(tiny: Path) -> None:
    policy = load_policy(tiny, device="cpu")
    assert policy.ref is not policy.model
    assert all(not p.requires_grad for p in policy.ref.parameters())
    assert all(p.requires_grad for p in policy.model.parameters())
    assert not policy.ref.training
    for a, b in zip(policy.model.parameters(), policy.ref.parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    assert policy.reference == str(tiny)


def test_banned_tokens_are_masked_as_generation_suppresses_them(tiny: Path) -> None:
    policy = load_policy(tiny, device="cpu")
    tok = policy.tokenizer
    # the tiny models suppress <pad>, <unk>, <s>; </s> must stay possible
    assert policy.banned == sorted({tok.pad_token_id, tok.unk_token_id, tok.bos_token_id})
    assert tok.eos_token_id not in banned_tokens(policy.model, tok)
    logits = torch.zeros(1, 1, policy.model.config.vocab_size)
    out = response_logits(policy, logits, temperature=2.0)
    probs = torch.softmax(out, -1)[0, 0]
    allowed = policy.model.config.vocab_size - len(policy.banned)
    assert probs[policy.banned].sum().item() == 0.0
    assert torch.allclose(probs[tok.eos_token_id], torch.tensor(1.0 / allowed))
    # temperature divides: logits of 2 at temperature 2 are 1 (</s> is id 1)
    assert response_logits(policy, torch.full((1, 1, 4), 2.0), 2.0)[0, 0, 1].item() == 1.0


def test_save_load_round_trip(tiny: Path, tmp_path: Path) -> None:
    from taskloop.models.loader import ModelSpec, load_model

    policy = load_policy(tiny, device="cpu", seed=3)
    with torch.no_grad():
        policy.value_head.weight.add_(0.5)
        next(policy.model.parameters()).add_(0.01)  # a trained policy differs from the start
    saved = save_policy(policy, tmp_path / "policy")
    assert (saved / VALUE_HEAD_FILE).is_file()
    assert (saved / "generation_config.json").is_file()
    # an ordinary task model for the loader, same outputs as the policy
    lm = load_model(ModelSpec(str(saved), device="cpu"))
    assert lm.kind == policy.kind
    batch = _batch(policy)
    with torch.no_grad():
        mine, _ = forward(policy.model, batch)
        theirs, _ = forward(lm.model, batch)
    assert torch.allclose(mine, theirs, atol=1e-5)
    assert (
        lm.model.generation_config.suppress_tokens == policy.model.generation_config.suppress_tokens
    )
    # load_policy brings the value head back, and the reference stays the original model
    again = load_policy(saved, device="cpu", seed=99)
    assert torch.equal(again.value_head.weight, policy.value_head.weight)
    assert torch.equal(again.value_head.bias, policy.value_head.bias)
    assert again.reference == str(tiny)
    for a, b in zip(again.ref.parameters(), load_policy(tiny).model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_fresh_value_head_depends_on_the_seed(tiny: Path) -> None:
    a = load_policy(tiny, device="cpu", seed=1).value_head.weight
    b = load_policy(tiny, device="cpu", seed=1).value_head.weight
    c = load_policy(tiny, device="cpu", seed=2).value_head.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_refuses_what_is_not_a_policy(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "missing")
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from taskloop.models.tiny import build_tokenizer

    folder = tmp_path / "classifier"
    tok = build_tokenizer(["a b c"])
    config = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, num_labels=1,
                        pad_token_id=tok.pad_token_id)  # fmt: skip
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    with pytest.raises(PolicyError, match="seq2seq or causal"):
        load_policy(folder)


def test_a_broken_value_head_is_reported(tiny: Path, tmp_path: Path) -> None:
    policy = load_policy(tiny, device="cpu")
    saved = save_policy(policy, tmp_path / "p")
    (saved / VALUE_HEAD_FILE).write_bytes(b"not safetensors")
    with pytest.raises(PolicyError, match="not a value head") as info:
        load_policy(saved)
    assert VALUE_HEAD_FILE in (info.value.hint or "")


def test_a_separate_reference(tiny: Path, tmp_path: Path) -> None:
    kind = load_policy(tiny).kind
    other = build_tiny_model(tmp_path / "other", kind, seed=9)
    policy = load_policy(tiny, reference=other, device="cpu")
    assert policy.reference == str(other)
    first = next(policy.ref.parameters())
    assert torch.equal(first, next(load_policy(other).model.parameters()))
    assert not torch.equal(first, next(policy.model.parameters()))
    wrong = build_tiny_model(tmp_path / "wrong", "causal" if kind == "seq2seq" else "seq2seq")
    with pytest.raises(PolicyError, match="does not match"):
        load_policy(tiny, reference=wrong)
    with pytest.raises(PolicyError, match="the reference of") as info:
        load_policy(tiny, reference=tmp_path / "gone")
    assert "--reference" in (info.value.hint or "")
