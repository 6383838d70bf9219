"""Batches: token budget, length grouping, multi-task sampling and exact stream resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskloop.data.pairs import Pair
from taskloop.models.tiny import build_tiny_model
from taskloop.train.batching import (
    Encoded,
    TaskStream,
    collate,
    encode,
    pick_task,
    plan_batches,
    task_probabilities,
)

PAD, EOS, START = 0, 1, 0


def varied(n: int = 600, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(2, 120, size=n)


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Padded cells over all cells: Σ(rows·longest − Σlen) / Σ(rows·longest)."""
    cells = sum(len(b) * int(lengths[b].max()) for b in batches)
    real = sum(int(lengths[b].sum()) for b in batches)
    return (cells - real) / cells


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("tokens", [None, 512])
def test_plan_covers_every_allowed_row_once(group: bool, tokens: int | None) -> None:
    lengths = varied()
    allowed = np.sort(np.random.default_rng(1).choice(len(lengths), 400, replace=False))
    batches = plan_batches(
        lengths, allowed, tokens=tokens, size=8, group_by_length=group,
        rng=np.random.default_rng(2),
    )  # fmt: skip
    rows = np.concatenate(batches)
    assert len(rows) == len(allowed)
    assert sorted(rows.tolist()) == allowed.tolist()


def test_token_budget_rows_times_longest() -> None:
    lengths = varied()
    lengths[7] = 900  # longer than the budget on its own
    batches = plan_batches(
        lengths, np.arange(len(lengths)), tokens=512, size=8, group_by_length=True,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    for b in batches:
        assert len(b) >= 1
        if len(b) > 1:
            assert len(b) * lengths[b].max() <= 512
    assert [b.tolist() for b in batches if 7 in b] == [[7]]
    # Greedy filling: far more than one row per batch on these lengths (mean ≈ 61).
    assert np.mean([len(b) for b in batches]) > 3


def test_token_budget_hand_example() -> None:
    """Lengths all 5, budget 12: 2 rows (10 ≤ 12) fit, 3 rows (15) do not → pairs."""
    lengths = np.full(6, 5)
    batches = plan_batches(
        lengths, np.arange(6), tokens=12, size=99, group_by_length=False,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert sorted(len(b) for b in batches) == [2, 2, 2]


def test_size_mode_gives_full_batches_but_one() -> None:
    lengths = varied(101)
    batches = plan_batches(
        lengths, np.arange(101), tokens=None, size=8, group_by_length=True,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    sizes = sorted(len(b) for b in batches)
    assert sizes == [5] + [8] * 12


@pytest.mark.parametrize("tokens", [None, 1024])
def test_length_grouping_pads_less_than_random(tokens: int | None) -> None:
    lengths = varied(2000)
    kw = {"tokens": tokens, "size": 16}
    grouped = plan_batches(
        lengths, np.arange(2000), group_by_length=True, rng=np.random.default_rng(0), **kw
    )
    shuffled = plan_batches(
        lengths, np.arange(2000), group_by_length=False, rng=np.random.default_rng(0), **kw
    )
    assert padding_share(lengths, grouped) < 0.5 * padding_share(lengths, shuffled)


def test_batch_order_is_shuffled_not_longest_first() -> None:
    lengths = varied(2000)
    batches = plan_batches(
        lengths, np.arange(2000), tokens=None, size=16, group_by_length=True,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    longest = [int(lengths[b].max()) for b in batches]
    assert longest != sorted(longest, reverse=True)


def encoded(n: int = 50, task: str = "translate") -> Encoded:
    rng = np.random.default_rng(3)
    src = [list(range(4, 4 + int(k))) for k in rng.integers(1, 20, n)]
    tgt = [[*list(range(4, 4 + int(k))), EOS] for k in rng.integers(1, 10, n)]
    return Encoded(task, src, tgt)


def stream(data: Encoded, seed: int = 0) -> TaskStream:
    return TaskStream(data, 0, seed, tokens=None, size=4, group_by_length=True)


def test_stream_state_round_trip_reproduces_next_batches_across_epochs() -> None:
    data = encoded()
    a = stream(data)
    per_epoch = a.batches_per_epoch()
    assert per_epoch == 13  # ceil(50 / 4)
    for _ in range(per_epoch - 3):
        a.next()
    saved = a.state()
    expected = [a.next().tolist() for _ in range(10)]  # crosses into epoch 1
    assert a.epoch == 1
    b = stream(data)
    b.load_state(saved)
    assert [b.next().tolist() for _ in range(10)] == expected


def test_stream_epochs_cover_rows_and_differ_in_order() -> None:
    data = encoded()
    s = stream(data)
    epoch0 = [s.next().tolist() for _ in range(s.batches_per_epoch())]
    epoch1 = [s.next().tolist() for _ in range(s.batches_per_epoch())]
    assert sorted(r for b in epoch0 for r in b) == list(range(50))
    assert sorted(r for b in epoch1 for r in b) == list(range(50))
    assert epoch0 != epoch1
    same, other = stream(data, seed=0), stream(data, seed=1)
    assert [same.next().tolist() for _ in range(3)] == epoch0[:3]
    assert [other.next().tolist() for _ in range(3)] != epoch0[:3]


def test_restrict_draws_from_the_new_pool_from_the_next_epoch() -> None:
    s = stream(encoded())
    s.next()
    s.restrict(np.arange(10))
    assert (s.epoch, s.pos) == (1, 0)
    rows = [r for _ in range(s.batches_per_epoch()) for r in s.next().tolist()]
    assert sorted(rows) == list(range(10))
    s.restrict(np.arange(10))  # the same pool: no new epoch
    assert s.epoch == 1
    state = s.state()
    assert state["allowed"] == list(range(10))


def test_task_probabilities_by_hand() -> None:
    """Sizes 100, 300. T=1: 100/400, 300/400. T=2: √100=10, √300≈17.3205 → 10/27.3205.

    T=1000: 100^0.001≈1.00462, 300^0.001≈1.00572 → ≈0.49973 each (near uniform).
    """
    assert task_probabilities([100, 300], 1.0) == pytest.approx([0.25, 0.75])
    assert task_probabilities([100, 300], 2.0) == pytest.approx(
        [10 / (10 + 300**0.5), 300**0.5 / (10 + 300**0.5)]
    )
    assert task_probabilities([100, 300], 2.0)[0] == pytest.approx(0.366025, abs=1e-6)
    assert task_probabilities([100, 300], 1000.0) == pytest.approx([0.5, 0.5], abs=1e-3)
    assert task_probabilities([7], 1.0) == pytest.approx([1.0])


def test_pick_task_is_a_pure_function_that_follows_the_probabilities() -> None:
    probs = np.array([0.2, 0.8])
    first = [pick_task(probs, 5, k) for k in range(4000)]
    assert first == [pick_task(probs, 5, k) for k in range(4000)]
    assert first != [pick_task(probs, 6, k) for k in range(4000)]
    share = first.count(0) / len(first)
    assert share == pytest.approx(0.2, abs=0.03)
    assert {pick_task(np.array([1.0]), 5, k) for k in range(50)} == {0}


def test_collate_seq2seq_by_hand() -> None:
    """decoder_input_ids = [start] + labels[:-1] with -100 read as pad (T5's shift_right);
    labels are -100 at padding.

    Row 2: labels [4, 1, -100] → [0] + [4, 1] = [0, 4, 1].
    """
    data = Encoded("t", source=[[5, 6, EOS], [7, EOS]], target=[[8, 9, EOS], [4, EOS]])
    batch = collate(data, np.array([0, 1]), kind="seq2seq", pad_id=PAD, decoder_start_id=START)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [7, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[8, 9, 1], [4, 1, -100]]
    assert batch["decoder_input_ids"].tolist() == [[0, 8, 9], [0, 4, 1]]
    assert all(t.dtype == torch.long for t in batch.values())
    # Rows in the order asked, and a start token other than pad.
    batch = collate(data, np.array([1]), kind="seq2seq", pad_id=PAD, decoder_start_id=3)
    assert batch["decoder_input_ids"].tolist() == [[3, 4]]


def test_collate_seq2seq_matches_the_models_own_shift(tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(build_tiny_model(tmp_path / "m", "seq2seq"))
    data = Encoded("t", source=[[5, 6, EOS], [7, EOS]], target=[[8, 9, 10, EOS], [4, EOS]])
    batch = collate(
        data, np.array([0, 1]), kind="seq2seq", pad_id=model.config.pad_token_id,
        decoder_start_id=model.config.decoder_start_token_id,
    )  # fmt: skip
    expected = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
    assert batch["decoder_input_ids"].tolist() == expected.tolist()


def test_collate_causal_by_hand() -> None:
    """Left padding; prompt + target in one row; labels only on the target part."""
    data = Encoded("t", source=[[5, 6, 7], [7]], target=[[8, EOS], [9, EOS]])
    batch = collate(data, np.array([0, 1]), kind="causal", pad_id=PAD, decoder_start_id=None)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 1], [0, 0, 7, 9, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 1], [-100, -100, -100, 9, 1]]


def test_collate_pads_to_a_multiple() -> None:
    data = Encoded("t", source=[[5, 6, EOS]], target=[[8, EOS]])
    s2s = collate(
        data, np.array([0]), kind="seq2seq", pad_id=PAD, decoder_start_id=START, multiple_of=8
    )
    assert s2s["input_ids"].shape == (1, 8)
    assert s2s["labels"].tolist() == [[8, 1] + [-100] * 6]
    causal = collate(
        data, np.array([0]), kind="causal", pad_id=PAD, decoder_start_id=None, multiple_of=8
    )
    assert causal["input_ids"].tolist() == [[0, 0, 0, 5, 6, 1, 8, 1]]


def test_encode_adds_eos_cuts_to_limits_and_counts_cuts(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    s2s_tok = AutoTokenizer.from_pretrained(
        build_tiny_model(tmp_path / "s", "seq2seq", texts=words)
    )
    causal_tok = AutoTokenizer.from_pretrained(
        build_tiny_model(tmp_path / "c", "causal", texts=words)
    )
    pairs = [
        Pair("translate", "a b", "c d", "1", "f:1"),
        Pair("translate", "a b c d e f g", "a b c d e f g h", "2", "f:2"),
    ]
    ids = {w: s2s_tok.convert_tokens_to_ids(w) for w in words}
    eos = s2s_tok.eos_token_id
    src, tgt, cut = encode(pairs, s2s_tok, kind="seq2seq", max_source=4, max_target=5)
    assert src[0] == [ids["a"], ids["b"], eos]
    assert tgt[0] == [ids["c"], ids["d"], eos]
    assert src[1] == [ids["a"], ids["b"], ids["c"], eos]  # the end (EOS) kept
    assert tgt[1] == [ids["a"], ids["b"], ids["c"], ids["d"], eos]  # the start kept
    assert cut == 1

    cids = {w: causal_tok.convert_tokens_to_ids(w) for w in words}
    ceos = causal_tok.eos_token_id
    src, tgt, cut = encode(pairs, causal_tok, kind="causal", max_source=4, max_target=5)
    assert src[0] == [cids["a"], cids["b"]]  # a prompt gets no EOS
    assert tgt[0] == [cids["c"], cids["d"], ceos]
    assert src[1] == [cids[w] for w in ["d", "e", "f", "g"]]  # a prompt keeps its end (the cue)
    assert tgt[1] == [cids["a"], cids["b"], cids["c"], cids["d"], ceos]
    assert cut == 1
    assert Encoded("translate", src, tgt).lengths().tolist() == [5, 9]
