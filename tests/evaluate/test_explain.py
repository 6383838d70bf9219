"""Token attributions: IG completeness on tiny models, saliency against autograd, a crafted
linear classifier with attributions known by hand, truncation, frozen parameters, words."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain import (
    SEQUENCE_ROW,
    attribute,
    encode_example,
    explain,
    load_explainable,
    word_map,
)
from taskloop.models.loader import LoadedModel, ModelSpec, load_model
from taskloop.models.tiny import build_tiny_encoder, build_tiny_model, build_tokenizer

CLASSIFIER_TEXTS = ["the movie was good", "the plot was long and bad", "good acting", "fine"]


def build_classifier(out_dir: Path, *, labels: int = 3, max_length: int = 32) -> Path:
    """A tiny random BertForSequenceClassification (1 layer, width 32) saved with its tokenizer."""
    names = {i: f"c{i}" for i in range(labels)}
    return build_tiny_encoder(
        out_dir, texts=CLASSIFIER_TEXTS, labels=names, max_length=max_length, append_eos=True
    )


GOOD_SCALE = 3.0


class CraftedClassifier(torch.nn.Module):
    """logits = [0, w · Σ_i m_i e_i] with w = (1, 0): only the first embedding axis counts.

    Every token's embedding is (0, 1) except "good", which is (3, 1); so the "pos" logit is
    3 × (number of "good" tokens) and no other token can move it.
    """

    def __init__(self, vocab_size: int, good_id: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, 2)
        with torch.no_grad():
            self.embed.weight.zero_()
            self.embed.weight[:, 1] = 1.0
            self.embed.weight[good_id, 0] = GOOD_SCALE
        self.readout = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
        self.config = SimpleNamespace(id2label={0: "neg", 1: "pos"}, model_type="crafted")

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: Any,
    ) -> SimpleNamespace:
        e = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        m = torch.ones(e.shape[:2]) if attention_mask is None else attention_mask
        pos = ((e @ self.readout) * m).sum(-1)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(pos), pos], dim=-1))


def crafted_lm(texts: list[str] = CLASSIFIER_TEXTS) -> LoadedModel:
    """The crafted classifier as a LoadedModel (word-level tokenizer, </s> appended)."""
    tok = build_tokenizer(texts, max_length=32)
    model = CraftedClassifier(len(tok), int(tok.convert_tokens_to_ids("good")))  # type: ignore[arg-type]
    return LoadedModel(
        spec=ModelSpec("crafted"),
        model=model.eval(),
        tokenizer=tok,
        kind="classify",
        device="cpu",
        window=32,
        version="crafted",
        path="",
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    root = tmp_path_factory.mktemp("explain-models")
    return {
        "seq2seq": load_model(str(build_tiny_model(root / "s2s", "seq2seq", max_length=24))),
        "causal": load_model(str(build_tiny_model(root / "causal", "causal", max_length=24))),
        "classify": load_explainable(str(build_classifier(root / "clf"))),
    }


# One internal batch for the whole IG path: tiny models run fastest that way on the CPU.
BATCH = 2048


def _pad_baseline_ids(lm: LoadedModel, ids: list[int]) -> torch.Tensor:
    specials = set(lm.tokenizer.all_special_ids)
    return torch.tensor([[i if i in specials else lm.tokenizer.pad_token_id for i in ids]])


def test_ig_completeness_classifier(models: dict[str, LoadedModel]) -> None:
    """IG completeness on a random tiny BERT: Σ_i a_i = F(x) − F(x') within 1e-2 relative,
    where F = logit of class c1, x' = pad embeddings with [</s>] kept. F(x) and F(x') are
    recomputed here from the model directly (ids, and the embedded baseline ids)."""
    lm = models["classify"]
    a = attribute(lm, "the movie was good", method="ig", n_steps=200, label="c1",
                  internal_batch_size=BATCH)  # fmt: skip
    ids = lm.tokenizer("the movie was good")["input_ids"]
    with torch.no_grad():
        f_x = float(lm.model(input_ids=torch.tensor([ids])).logits[0, 1])
        base = lm.model.get_input_embeddings()(_pad_baseline_ids(lm, ids))
        f_b = float(lm.model(inputs_embeds=base).logits[0, 1])
    assert a.row_labels == ["c1"] and a.kind == "classify"
    assert a.outputs[0] == pytest.approx(f_x, abs=1e-5)
    assert a.baseline_outputs is not None and a.baseline_outputs[0] == pytest.approx(f_b, abs=1e-5)
    assert f_x != pytest.approx(f_b, abs=1e-4)  # a real difference to explain
    assert sum(a.sequence) == pytest.approx(f_x - f_b, rel=1e-2, abs=1e-4)
    assert a.deltas is not None and abs(a.deltas[0]) < 1e-3 * max(1.0, abs(f_x - f_b))


def test_ig_completeness_seq2seq_target_logprob(models: dict[str, LoadedModel]) -> None:
    """Tiny T5, target "Das Modell läuft </s>" (4 tokens) forced: every row obeys
    Σ_i a_i = F(x) − F(x') within 1% of max(1, |F(x) − F(x')|), and the sequence row's
    F(x) = Σ_t log p(y_t | y_<t, x) = −(mean token NLL) × 4, recomputed here from the
    model's own loss on the ids. (T5's feed-forward is ReLU, piecewise linear, so the
    Gauss-Legendre path integral converges slowly: 200 steps leave |delta| ≈ 3e-3.)"""
    lm = models["seq2seq"]
    src = "The model runs on a single GPU ."
    a = attribute(lm, src, target="Das Modell läuft", method="ig", n_steps=200,
                  internal_batch_size=BATCH)  # fmt: skip
    assert a.target_tokens == ["Das", "Modell", "läuft", "</s>"]
    assert a.row_labels == [*a.target_tokens, SEQUENCE_ROW]
    assert len(a.scores) == 5 and all(len(r) == len(a.source_tokens) for r in a.scores)
    ids = torch.tensor([lm.tokenizer(src)["input_ids"]])
    labels = torch.tensor([lm.tokenizer(text_target="Das Modell läuft")["input_ids"]])
    with torch.no_grad():
        seq_logprob = -float(lm.model(input_ids=ids, labels=labels).loss) * 4
        base = lm.model.get_input_embeddings()(_pad_baseline_ids(lm, ids[0].tolist()))
        base_logprob = -float(lm.model(inputs_embeds=base, labels=labels).loss) * 4
    assert a.outputs[-1] == pytest.approx(seq_logprob, abs=1e-4)
    assert a.baseline_outputs is not None
    assert a.baseline_outputs[-1] == pytest.approx(base_logprob, abs=1e-4)
    assert a.outputs[-1] == pytest.approx(sum(a.outputs[:-1]), abs=1e-4)  # the sum row
    for row, out, b in zip(a.scores, a.outputs, a.baseline_outputs, strict=True):
        assert sum(row) == pytest.approx(out - b, abs=1e-2 * max(1.0, abs(out - b)))
    assert a.deltas is not None and max(abs(d) for d in a.deltas) < 1e-2


def test_ig_completeness_causal(models: dict[str, LoadedModel]) -> None:
    """Tiny GPT-2: the prompt's attributions sum to log p(continuation | prompt) minus the
    same at the pad-embedding prompt, per token and for the sequence (rel 1e-2; GPT-2's
    GELU is smooth, so here 200 steps leave |delta| < 1e-5)."""
    lm = models["causal"]
    a = attribute(lm, "The model runs on", target="a single GPU", method="ig", n_steps=200,
                  internal_batch_size=BATCH)  # fmt: skip
    assert a.source_tokens == ["The", "model", "runs", "on"]
    assert a.target_tokens == ["a", "single", "GPU"]
    assert a.baseline_outputs is not None
    for row, out, b in zip(a.scores, a.outputs, a.baseline_outputs, strict=True):
        assert sum(row) == pytest.approx(out - b, rel=1e-2, abs=1e-4)


def test_special_tokens_marked_and_get_no_ig(models: dict[str, LoadedModel]) -> None:
    """The pad baseline keeps special tokens, so x − x' = 0 there and IG gives exactly 0."""
    a = attribute(models["seq2seq"], "The dog", target="Hund", method="ig", n_steps=8)
    assert a.source_tokens == ["The", "dog", "</s>"]
    assert a.source_special == [False, False, True]
    assert a.target_special == [False, True]  # Hund, </s>
    assert all(row[2] == 0.0 for row in a.scores)
    assert any(row[0] != 0.0 for row in a.scores)


def test_saliency_is_gradient_norm(models: dict[str, LoadedModel]) -> None:
    """saliency_i = ‖∂F/∂e_i‖₂, F = class-c0 logit; recomputed here with torch.autograd."""
    lm = models["classify"]
    a = attribute(lm, "good acting", method="saliency", label=0)
    ids = torch.tensor([lm.tokenizer("good acting")["input_ids"]])
    e = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(lm.model(inputs_embeds=e).logits[0, 0], e)
    expected = grad[0].norm(dim=-1).tolist()
    assert a.sequence == pytest.approx(expected, rel=1e-5)
    assert a.deltas is None and a.baseline_outputs is None


def test_crafted_classifier_known_attributions() -> None:
    """Crafted linear model (pos logit = 3 × #good): IG = (x − x')·w = 3 on "good", 0 on every
    other token; input × gradient the same; saliency = ‖w‖ = 1 on every token (</s> too)."""
    lm = crafted_lm()
    ig = attribute(lm, "the movie was good", method="ig", n_steps=20, label="pos")
    assert ig.source_tokens == ["the", "movie", "was", "good", "</s>"]
    assert ig.sequence == pytest.approx([0, 0, 0, GOOD_SCALE, 0], abs=1e-6)
    assert ig.outputs == pytest.approx([GOOD_SCALE])
    assert ig.baseline_outputs is not None and ig.baseline_outputs == pytest.approx([0.0])
    ixg = attribute(lm, "the movie was good", method="input_x_gradient", label="pos")
    assert ixg.sequence == pytest.approx([0, 0, 0, GOOD_SCALE, 0], abs=1e-6)
    sal = attribute(lm, "the movie was good", method="saliency", label="pos")
    assert sal.sequence == pytest.approx([1.0] * 5, abs=1e-6)


def test_zero_baseline(models: dict[str, LoadedModel]) -> None:
    """baseline="zeros" on the crafted model: x − 0 = x, so "good" gets 3 and every other
    token (embedding (0, 1), w = (1, 0)) 0, and </s> is no longer pinned: also 0 here."""
    a = attribute(crafted_lm(), "good good", method="ig", baseline="zeros", n_steps=10, label=1)
    assert a.sequence == pytest.approx([3.0, 3.0, 0.0], abs=1e-6)
    assert a.baseline == "zeros" and a.n_steps == 10


def test_predicted_class_is_default_and_bad_labels_fail(models: dict[str, LoadedModel]) -> None:
    """No label → argmax of the logits; an unknown name or index is an ExplainError."""
    lm = models["classify"]
    ids = torch.tensor([lm.tokenizer("fine")["input_ids"]])
    with torch.no_grad():
        predicted = int(lm.model(input_ids=ids).logits[0].argmax())
    a = attribute(lm, "fine", method="saliency")
    assert a.row_labels == [f"c{predicted}"]
    with pytest.raises(ExplainError, match="unknown label"):
        attribute(lm, "fine", method="saliency", label="nope")
    with pytest.raises(ExplainError, match="out of range"):
        attribute(lm, "fine", method="saliency", label=7)


def test_generated_target_and_rows(models: dict[str, LoadedModel]) -> None:
    """No target: the output is generated greedily (≤ 3 tokens here) and explained; one row
    per generated token plus the sequence row."""
    lm = models["seq2seq"]
    ex = encode_example(lm, "A dog is running", max_new_tokens=3)
    assert ex.generated and 1 <= len(ex.target_ids) <= 3
    a = attribute(lm, ex, method="saliency")
    assert a.generated and len(a.scores) == len(ex.target_ids) + 1
    seq_only = attribute(lm, ex, method="saliency", per_token=False)
    assert seq_only.row_labels == [SEQUENCE_ROW]
    assert seq_only.sequence == pytest.approx(a.sequence, rel=1e-5)


def test_long_input_truncated_to_window(models: dict[str, LoadedModel]) -> None:
    """A 40-word source for a 24-token window: 24 tokens kept (the last one </s>), the
    record says truncated and how long the input was."""
    lm = models["seq2seq"]
    text = " ".join(["dog"] * 40)
    a = attribute(lm, text, target="Hund", method="saliency")
    assert len(a.source_tokens) == 24 and a.source_tokens[-1] == "</s>"
    assert a.truncated and a.source_length == 41
    assert any("truncated to 24 of 41" in n for n in a.notes)


def test_parameters_frozen_during_and_restored_after(models: dict[str, LoadedModel]) -> None:
    """No parameter gets a gradient, and each requires_grad flag is put back as it was."""
    lm = models["seq2seq"]
    params = list(lm.model.parameters())
    params[0].requires_grad_(False)  # a mix of flags, to see each one restored
    before = [p.requires_grad for p in params]
    attribute(lm, "The dog", target="Hund", method="ig", n_steps=4)
    assert [p.requires_grad for p in params] == before
    assert all(p.grad is None for p in params)
    assert not lm.model.training
    params[0].requires_grad_(True)


def test_embedding_mismatch_is_refused(
    models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the embeddings fed to the model do not reproduce its output from ids (a family
    that scales them elsewhere), the attribution is refused rather than silently wrong."""
    import taskloop.evaluate.explain as explain_module

    real = explain_module._embedder

    def doubled(model: Any, kind: str) -> Any:
        embed = real(model, kind)
        return lambda ids: embed(ids) * 2.0

    monkeypatch.setattr(explain_module, "_embedder", doubled)
    with pytest.raises(ExplainError, match="differs from the output from token ids"):
        attribute(models["seq2seq"], "The dog", target="Hund", method="saliency")


def test_unsupported_kind_and_missing_model(models: dict[str, LoadedModel], tmp_path: Path) -> None:
    lm = dataclasses.replace(models["seq2seq"], kind="qa")
    with pytest.raises(ExplainError, match="is a qa model") as info:
        attribute(lm, "x", method="ig")
    assert info.value.hint
    with pytest.raises(ExplainError, match="cannot load") as info:
        load_explainable(str(tmp_path / "absent"))
    assert info.value.hint
    with pytest.raises(ExplainError, match="unknown attribution method"):
        attribute(models["seq2seq"], "x", method="lime")  # type: ignore[arg-type]


def test_classifier_folder_loads_as_classify(models: dict[str, LoadedModel]) -> None:
    """A *ForSequenceClassification config loads as a classifier (not a causal LM)."""
    lm = models["classify"]
    assert lm.kind == "classify"
    assert type(lm.model).__name__ == "BertForSequenceClassification"


def test_explain_runs_methods_and_skips_attention_for_causal(
    models: dict[str, LoadedModel],
) -> None:
    """One target shared by all methods; attention on a causal model is a note, not a crash."""
    e = explain(models["causal"], "The model", methods=["ig", "saliency", "attention"], n_steps=4,
                max_new_tokens=2)  # fmt: skip
    assert [a.method for a in e.attributions] == ["ig", "saliency"]
    assert e.attributions[0].target_tokens == e.attributions[1].target_tokens
    assert e.attention is None and any("no cross-attention" in n for n in e.notes)
    d = e.to_dict()
    assert d["attributions"][0]["max_abs_delta"] is not None
    with pytest.raises(ExplainError, match="unknown method"):
        explain(models["causal"], "x", methods=["shap"])


def test_word_map_with_offsets_merges_pieces() -> None:
    """Offsets: "playing" split as play|ing (0-4, 4-7) maps both pieces to one word;
    "!" is its own word; the special token (0, 0) maps to None."""
    words, index = word_map(
        "playing now!",
        ["play", "ing", "now", "!", "</s>"],
        [False, False, False, False, True],
        [(0, 4), (4, 7), (8, 11), (11, 12), (0, 0)],
    )
    assert words == ["playing", "now", "!"]
    assert index == [0, 0, 1, 2, None]


def test_word_map_without_offsets_uses_markers() -> None:
    """SentencePiece: ▁ starts a word; WordPiece: ## continues one; specials → None."""
    words, index = word_map(
        "", ["\u2581Hel", "lo", "\u2581world", "</s>"], [False] * 3 + [True], None
    )
    assert words == ["Hello", "world"] and index == [0, 0, 1, None]
    words, index = word_map("", ["[CLS]", "hel", "##lo", "you"], [True, False, False, False], None)
    assert words == ["hello", "you"] and index == [None, 0, 0, 1]
