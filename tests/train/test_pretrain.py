"""Domain-adaptive pretraining: T5 span corruption, sentinels, and the stage before fine-tuning."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskloop.models.tiny import build_tiny_model
from taskloop.train.config import load_train_config
from taskloop.train.errors import TrainDataError
from taskloop.train.loop import StepLog, train
from taskloop.train.prepare import load_for_training
from taskloop.train.pretrain import build_encoded, ensure_sentinels, read_text, span_corrupt
from tests.train.copytask import copy_rows, write_jsonl

VOCAB = [
    "red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star",
    "rain", "wind", "fire",
]  # fmt: skip
SENTINELS = list(range(900, 1000))
EOS = 1


def restore(src: Sequence[int], tgt: Sequence[int]) -> list[int]:
    """The original sequence: each sentinel in ``src`` replaced by its span from ``tgt``."""
    assert src[-1] == EOS
    assert tgt[-1] == EOS
    spans: dict[int, list[int]] = {}
    current: list[int] = []
    for tok in tgt[:-1]:
        if tok in SENTINELS:
            current = spans.setdefault(tok, [])
        else:
            current.append(tok)
    out: list[int] = []
    for tok in src[:-1]:
        out.extend(spans[tok] if tok in SENTINELS else [tok])
    return out


def check_invariants(ids: list[int], density: float, mean_span: float, seed: int) -> None:
    src, tgt = span_corrupt(
        ids, SENTINELS, noise_density=density, mean_span=mean_span, eos=EOS,
        rng=np.random.default_rng(seed),
    )  # fmt: skip
    n = len(ids)
    kept = [t for t in src[:-1] if t not in SENTINELS]
    hidden = [t for t in tgt[:-1] if t not in SENTINELS]
    # Every original token exactly once, across what the input keeps and the target holds.
    assert sorted(kept + hidden) == sorted(ids)
    assert restore(src, tgt) == ids
    assert tgt[0] == SENTINELS[0]
    if n >= 2:  # (one token cannot be corrupted: see test_span_corrupt_one_token)
        # Sentinels in order, the same ones in input and target.
        used_src = [t for t in src if t in SENTINELS]
        used_tgt = [t for t in tgt if t in SENTINELS]
        assert used_src == used_tgt == SENTINELS[: len(used_src)]
        assert len(hidden) == min(max(1, round(n * density)), n - 1)
        assert len(used_src) >= 1
        assert all(tgt[tgt.index(s) + 1] not in SENTINELS for s in used_tgt)  # no empty span


def test_span_corrupt_by_hand() -> None:
    """20 tokens, density 0.15: round(3.0) = 3 noise tokens in round(3/3) = 1 span.

    Input: 17 kept tokens, 1 sentinel, EOS (19); target: sentinel, 3 tokens, EOS (5).
    """
    ids = list(range(100, 120))
    src, tgt = span_corrupt(
        ids, SENTINELS, noise_density=0.15, mean_span=3.0, eos=EOS, rng=np.random.default_rng(0)
    )
    assert len(src) == 17 + 1 + 1
    assert len(tgt) == 1 + 3 + 1
    assert tgt[0] == 900
    assert src.count(900) == 1
    cut = src.index(900)
    assert tgt[1:4] == ids[cut : cut + 3]  # the hidden span is contiguous
    assert src[:cut] + tgt[1:4] + src[cut + 1 : -1] == ids
    check_invariants(ids, 0.15, 3.0, 0)


def test_span_corrupt_several_spans_by_hand() -> None:
    """10 tokens, density 0.3 → 3 noise tokens; mean span 1.5 → round(2.0) = 2 spans."""
    ids = list(range(10, 20))
    src, tgt = span_corrupt(
        ids, SENTINELS, noise_density=0.3, mean_span=1.5, eos=EOS, rng=np.random.default_rng(4)
    )
    assert [t for t in src if t in SENTINELS] == [900, 901]
    assert [t for t in tgt if t in SENTINELS] == [900, 901]
    assert len(tgt) == 2 + 3 + 1
    assert len(src) == 7 + 2 + 1
    assert src[0] == 10  # a kept run comes first, as in T5
    check_invariants(ids, 0.3, 1.5, 4)


def test_span_corrupt_is_reproducible_for_a_seed() -> None:
    ids = list(range(100, 160))

    def run(seed: int) -> tuple[list[int], list[int]]:
        return span_corrupt(
            ids, SENTINELS, noise_density=0.15, mean_span=3.0, eos=EOS,
            rng=np.random.default_rng(seed),
        )  # fmt: skip

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_span_corrupt_one_token() -> None:
    assert span_corrupt([5], SENTINELS, noise_density=0.5, mean_span=3, eos=EOS,
                        rng=np.random.default_rng(0)) == ([5, EOS], [900, EOS])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=2, max_value=800), min_size=1, max_size=300),
    density=st.floats(min_value=0.01, max_value=0.99),
    mean_span=st.floats(min_value=1.0, max_value=12.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_span_corrupt_invariants(
    ids: list[int], density: float, mean_span: float, seed: int
) -> None:
    check_invariants(ids, density, mean_span, seed)


def test_ensure_sentinels_adds_tokens_and_resizes_embeddings(tmp_path: Path) -> None:
    model, tokenizer, _ = load_for_training(
        str(build_tiny_model(tmp_path / "m", "seq2seq")), "seq2seq"
    )
    before = len(tokenizer)
    assert "<extra_id_0>" not in tokenizer.get_vocab()
    ids = ensure_sentinels(model, tokenizer, count=100)
    assert len(tokenizer) == before + 100
    assert ids == list(range(before, before + 100))
    assert tokenizer.convert_ids_to_tokens(ids[7]) == "<extra_id_7>"
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] >= len(tokenizer)
    # An added sentinel is one token, not split into pieces.
    assert tokenizer("red <extra_id_3>", add_special_tokens=False)["input_ids"][-1] == ids[3]
    # A second call finds them and changes nothing.
    rows = model.get_input_embeddings().weight.shape[0]
    assert ensure_sentinels(model, tokenizer, count=100) == ids
    assert len(tokenizer) == before + 100
    assert model.get_input_embeddings().weight.shape[0] == rows


def test_read_text_plain_jsonl_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first line\n\n  second line  \n")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "from json"}) + "\n" + "not json\n" + json.dumps([1]) + "\n"
        + json.dumps({"other": 1}) + "\n"
    )  # fmt: skip
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("zipped\n")
    texts = read_text([str(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.txt.gz")])
    assert texts == ["first line", "second line", "from json", "zipped"]
    with pytest.raises(TrainDataError, match="does not exist"):
        read_text([str(tmp_path / "missing.txt")])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TrainDataError, match="no text found"):
        read_text([str(tmp_path / "empty.txt")])


class _FakeTokenizer:
    """Gives a fixed id list per text; the middle text tokenizes to nothing."""

    eos_token_id = EOS

    def __call__(self, texts: list[str], add_special_tokens: bool) -> dict[str, Any]:
        return {"input_ids": [[5, 6, 7, 8, 9], [], [8, 9]]}


def test_causal_pretraining_examples_skip_empty_texts() -> None:
    cfg = load_train_config(None, ["model.name=x", "data.max_source_tokens=4"])
    enc = build_encoded(["a", "b", "c"], _FakeTokenizer(), "causal", cfg, model=None)
    assert enc.source == [[], []]
    assert enc.target == [[5, 6, 7], [8, 9]]  # cut to max_source_tokens - 1
    assert enc.lengths().tolist() == [3, 2]


# -------------------------------------------------------------------- the stage in train()


def pretrain_config(model: Path, tmp: Path, out: Path, *extra: str) -> Any:
    rng = random.Random(0)
    data = write_jsonl(tmp / "translate.jsonl", copy_rows(40, VOCAB, rng=rng))
    domain = tmp / "domain.txt"
    domain.write_text(
        "\n".join(" ".join(rng.choice(VOCAB) for _ in range(rng.randint(5, 20))) for _ in range(60))
    )
    return load_train_config(None, [
        f"model.name={model}", f"data.train=[{data}]", f"out={out}", "tracking.enabled=false",
        "data.clean.enabled=false", "run.device=cpu", "run.max_steps=2", "run.log_every=1",
        "eval.every_steps=null", "eval.metric=loss", "batch.tokens=null", "batch.size=8",
        "optim.warmup_steps=0", "optim.lr=3e-3", "pretrain.steps=10", f"pretrain.text=[{domain}]",
        *extra,
    ])  # fmt: skip


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_pretraining_stage_runs_before_fine_tuning(kind: str, tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path / "m", kind, texts=VOCAB)  # type: ignore[arg-type]
    cfg = pretrain_config(base, tmp_path, tmp_path / "run")
    steps: list[int] = []

    def on_step(log: StepLog) -> None:
        steps.append(log.step)

    result = train(cfg, on_step=on_step)
    assert steps == [*range(1, 11), 1, 2]  # 10 pretraining steps, then 2 fine-tuning steps
    assert result.steps == 2
    done = tmp_path / "run" / "pretrained"
    assert (done / "config.json").is_file()
    adapted, tokenizer, _ = load_for_training(str(done), kind)
    base_model, base_tok, _ = load_for_training(str(base), kind)
    if kind == "seq2seq":  # span corruption needs the sentinels
        assert len(tokenizer) == len(base_tok) + 100
        assert "<extra_id_99>" in tokenizer.get_vocab()
    else:
        assert len(tokenizer) == len(base_tok)
    # The stage trained the weights it shares with the base model.
    name, weight = next(
        (n, p)
        for n, p in adapted.named_parameters()
        if n.endswith("layer.0.layer_norm.weight") or n.endswith("h.0.ln_1.weight")
    )
    assert not torch.equal(weight, dict(base_model.named_parameters())[name])
    # The fine-tuned model kept the adapted vocabulary.
    _, best_tok, _ = load_for_training(str(result.model_dir), kind)
    assert len(best_tok) == len(tokenizer)


def test_a_finished_pretraining_stage_is_reused(tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path / "m", "seq2seq", texts=VOCAB)
    cfg = pretrain_config(base, tmp_path, tmp_path / "run")
    train(cfg)
    stamp = (tmp_path / "run" / "pretrained" / "model.safetensors").stat().st_mtime_ns
    steps: list[int] = []
    result = train(cfg, on_step=lambda log: steps.append(log.step))
    assert steps == [1, 2]  # no pretraining steps the second time
    assert (tmp_path / "run" / "pretrained" / "model.safetensors").stat().st_mtime_ns == stamp
    _, best_tok, _ = load_for_training(str(result.model_dir), "seq2seq")
    assert "<extra_id_0>" in best_tok.get_vocab()
