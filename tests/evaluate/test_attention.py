"""Cross-attention: weights come back under SDPA (eager switched on and off), the aggregates
are the means they claim, and heatmaps have the data's shape and the figure's pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taskloop.evaluate.attention import CrossAttention, cross_attention, eager_attention
from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain_render import DPI, attention_figure, heatmap_figure, save_png
from taskloop.models.loader import LoadedModel, load_model
from taskloop.models.tiny import build_tiny_model


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("attention-models")
    return load_model(str(build_tiny_model(root / "s2s", "seq2seq", layers=2, max_length=24)))


def test_cross_attention_under_sdpa(seq2seq: LoadedModel) -> None:
    """The loader leaves the model on SDPA, which returns no weights; cross_attention
    switches to eager for the pass (weights: 2 layers × 4 heads × 3 target × 5 source,
    each row a distribution over the source) and puts SDPA back."""
    assert seq2seq.model.config._attn_implementation == "sdpa"
    ca = cross_attention(seq2seq, "The dog is running", target="Hund rennt")
    assert ca.source_tokens == ["The", "dog", "is", "running", "</s>"]
    assert ca.target_tokens == ["Hund", "rennt", "</s>"]
    assert ca.weights.shape == (2, 4, 3, 5)
    assert np.allclose(ca.weights.sum(-1), 1.0, atol=1e-5)
    assert ca.attn_implementation == "sdpa"
    assert seq2seq.model.config._attn_implementation == "sdpa"


def test_aggregates_are_the_stated_means() -> None:
    """weights[l, h] = (l + 1)·(h + 1) everywhere (2 layers, 2 heads, 1×2 map):
    last layer = mean(2·1, 2·2) = 3; all layers = mean(1, 2, 2, 4) = 2.25."""
    w = np.zeros((2, 2, 1, 2))
    for layer in range(2):
        for head in range(2):
            w[layer, head] = (layer + 1) * (head + 1)
    ca = CrossAttention(["a", "b"], ["x"], w)
    assert np.allclose(ca.last_layer, 3.0) and ca.last_layer.shape == (1, 2)
    assert np.allclose(ca.all_layers, 2.25)
    assert ca.default == "all" and np.allclose(ca.aggregate(), ca.all_layers)
    assert np.allclose(ca.aggregate("last"), 3.0)
    d = ca.to_dict()
    assert d["shape"] == [1, 2] and d["layers"] == 2 and "weights" not in d
    assert ca.to_dict(weights=True)["weights"] == w.tolist()
    with pytest.raises(ExplainError, match="unknown attention aggregate"):
        ca.aggregate("first")  # type: ignore[arg-type]


def test_eager_attention_restored_after_error(seq2seq: LoadedModel) -> None:
    model = seq2seq.model
    with pytest.raises(RuntimeError), eager_attention(model) as before:
        assert before == "sdpa" and model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


def test_cross_attention_refuses_causal(tmp_path: Path) -> None:
    lm = load_model(str(build_tiny_model(tmp_path / "c", "causal", max_length=16)))
    with pytest.raises(ExplainError, match="only in encoder-decoder") as info:
        cross_attention(lm, "The dog", target="runs")
    assert info.value.hint and "ig" in info.value.hint


def test_heatmap_png_has_data_and_pixel_shape(seq2seq: LoadedModel, tmp_path: Path) -> None:
    """The array drawn is n_target × n_source (3 × 5) and equals the all-layer mean; the PNG
    read back is (height·dpi, width·dpi, RGBA) of the figure's size."""
    from matplotlib.image import imread

    ca = cross_attention(seq2seq, "The dog is running", target="Hund rennt")
    fig = attention_figure(ca)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    assert drawn.shape == (3, 5)
    assert np.allclose(drawn, ca.all_layers)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ca.source_tokens
    path = save_png(fig, tmp_path / "attn.png")
    width, height = fig.get_size_inches()
    image = imread(path)
    assert image.shape == (round(height * DPI), round(width * DPI), 4)
    last = np.asarray(attention_figure(ca, "last").axes[0].images[0].get_array())
    assert np.allclose(last, ca.last_layer)


def test_heatmap_caps_labels_but_keeps_every_value() -> None:
    """200 source tokens with max_labels=50: every 4th is labelled (ceil(200/50) = 4 →
    50 ticks), and the array keeps all 200 columns."""
    matrix = np.random.default_rng(0).random((2, 200))
    fig = heatmap_figure(matrix, ["a", "b"], [f"t{i}" for i in range(200)], title="t",
                         signed=False, colorbar_label="w", max_labels=50)  # fmt: skip
    ax = fig.axes[0]
    assert np.asarray(ax.images[0].get_array()).shape == (2, 200)
    assert list(ax.get_xticks()) == list(range(0, 200, 4))
    with pytest.raises(ValueError, match="does not match"):
        heatmap_figure(matrix, ["a"], ["x"], title="t", signed=False, colorbar_label="w")
