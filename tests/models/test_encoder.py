"""The packaged all-MiniLM-L6-v2 sentence encoder (real weights, loaded once per session)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from taskloop.models.cache import LRUCache
from taskloop.models.encoder import MINILM_NAME, Encoder, load_encoder


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder()


def fresh(enc: Encoder) -> Encoder:
    """The same model with an empty cache of its own (the shared one stays untouched)."""
    return dataclasses.replace(enc, cache=LRUCache())


def test_packaged_minilm_loads_once(encoder: Encoder) -> None:
    assert encoder.name == MINILM_NAME
    assert encoder.dim == 384
    assert encoder.max_tokens == 256  # MiniLM was trained on 256-token inputs
    assert load_encoder() is encoder


def test_shape_dtype_and_unit_norm(encoder: Encoder) -> None:
    texts = ["A short one.", "A somewhat longer sentence about rivers and cities.", "x"]
    vectors = fresh(encoder).encode(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fresh(encoder).encode([]).shape == (0, 384)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(encoder: Encoder) -> None:
    """Unit vectors: the dot product is the cosine."""
    anchor, paraphrase, unrelated = fresh(encoder).encode(
        [
            "The city council approved new cycling lanes along the river.",
            "New bike lanes by the river were approved by the town council.",
            "The recipe needs two eggs, flour and a pinch of salt.",
        ]
    )
    close, far = float(anchor @ paraphrase), float(anchor @ unrelated)
    assert close > 0.6
    assert far < 0.3
    assert close > far + 0.4


def test_batching_and_order_do_not_change_a_vector(encoder: Encoder) -> None:
    """Texts are sorted by length and padded together; attention masks keep each
    vector what it is alone (to float tolerance)."""
    texts = ["Short.", "A much longer sentence that forces the short one to be padded a lot."]
    together = fresh(encoder).encode(texts)
    reversed_ = fresh(encoder).encode(texts[::-1])
    alone = np.stack([fresh(encoder).encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together, reversed_[::-1], atol=1e-5)


def test_each_text_is_embedded_once(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """First call: all 4 lookups miss, but only the 3 distinct texts are embedded (the
    repeat shares its vector). Second call: 4 hits, the model is not run. Third call,
    one known and one new text: 1 more hit, 1 more miss, only the new text embedded."""
    enc = fresh(encoder)
    embedded: list[list[str]] = []
    real = enc._embed

    def counting(texts: list[str]) -> np.ndarray:
        embedded.append(list(texts))
        return real(texts)

    monkeypatch.setattr(enc, "_embed", counting)
    texts = ["alpha beta", "gamma delta", "alpha beta", "epsilon"]
    first = enc.encode(texts)
    assert embedded == [["alpha beta", "gamma delta", "epsilon"]]
    np.testing.assert_array_equal(first[0], first[2])
    assert (enc.cache.stats.hits, enc.cache.stats.misses) == (0, 4)

    second = enc.encode(texts)
    assert len(embedded) == 1
    assert (enc.cache.stats.hits, enc.cache.stats.misses) == (4, 4)
    np.testing.assert_array_equal(first, second)

    enc.encode(["epsilon", "zeta"])
    assert embedded[-1] == ["zeta"]
    assert (enc.cache.stats.hits, enc.cache.stats.misses) == (5, 5)
