"""Pruning (weights, FFN neurons, heads), int8/bf16/fp16 quantization, the before/after
report, recovery fine-tuning and the ``compress`` CLI, on hand-built layers and tiny models."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from taskloop.data.pairs import Pair
from taskloop.models.compress import compression_report, score, timed_generation
from taskloop.models.prune import (
    GenKind,
    Importance,
    count_params,
    encode_pairs,
    model_pruning,
    recover,
    sparsity,
)
from taskloop.models.quantize import (
    disk_size,
    is_quantized,
    load_quantized,
    quantize_model,
    save_compressed,
)
from taskloop.models.tiny import build_tiny_model
from taskloop.train.errors import CompressError

PAIRS = [
    Pair("translate", "The model runs on a single GPU", "Das Modell läuft", "1", "t.jsonl:1"),
    Pair("translate", "A dog is running across the meadow", "Ein Hund rennt", "2", "t.jsonl:2"),
    Pair("translate", "The council voted", "Der Rat stimmte", "3", "t.jsonl:3"),
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compress")
    return {
        "seq2seq": build_tiny_model(root / "t5", "seq2seq", width=64),
        "causal": build_tiny_model(root / "gpt2", "causal", width=32),
    }


def _load(path: Path, kind: str) -> tuple[Any, Any]:
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    return auto.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _logits(model: Any, tok: Any, kind: str) -> torch.Tensor:
    enc = tok(["The model runs on a single GPU", "A dog"], padding=True, return_tensors="pt")
    extra = {"labels": torch.tensor([[5, 6, 7], [8, 9, 1]])} if kind == "seq2seq" else {}
    with torch.no_grad():
        logits: torch.Tensor = model(**enc, **extra).logits.float()
    return logits


# --- unstructured pruning on hand-built layers ---------------------------------------


def test_magnitude_zeroes_exactly_the_smallest_weights() -> None:
    """Weights (-5, 1, 8, -3 / 2, -7, 4, 6), amount 0.5: the four smallest |w| (1, 2, 3, 4)
    become 0, so the mask is (1, 0, 1, 0 / 0, 1, 0, 1) and sparsity 4/8."""
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-5.0, 1.0, 8.0, -3.0], [2.0, -7.0, 4.0, 6.0]]))
    model = nn.Sequential(layer)
    report = model_pruning(model, amount=0.5)
    mask = (layer.weight != 0).int().tolist()
    assert mask == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert layer.weight[0, 0].item() == -5.0  # kept weights keep their values
    assert report.sparsity == 0.5 and sparsity(model) == 0.5
    assert (report.nonzero_before, report.nonzero_after) == (8, 4)
    assert [(x.name, x.before, x.kept) for x in report.layers] == [("0", 8, 4)]
    assert not hasattr(layer, "weight_orig")  # made permanent


class _Toy(nn.Module):
    """y = w · x with w = (10, 1), loss = y²; the batch is {"x": …}."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.tensor([[10.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        y = self.proj(x)
        return SimpleNamespace(loss=(y**2).mean(), logits=y)


def test_gradient_and_activation_importance_can_prune_the_largest_weight() -> None:
    """x = (0.001, 1): y = 10·0.001 + 1 = 1.01, ∂L/∂w = 2y·x = (0.00202, 2.02).
    Taylor |w·g| = (0.0202, 2.02) and Wanda |w|·||x|| = (0.01, 1): both drop w₀ = 10,
    which magnitude pruning keeps (it drops w₁ = 1)."""
    batches = [{"x": torch.tensor([[0.001, 1.0]])}]
    by_magnitude = _Toy()
    model_pruning(by_magnitude, amount=0.5)
    assert by_magnitude.proj.weight.tolist() == [[10.0, 0.0]]
    for importance in ("gradient", "activation"):
        toy = _Toy()
        report = model_pruning(toy, amount=0.5, importance=importance, calibration=batches)
        assert toy.proj.weight.tolist() == [[0.0, 1.0]], importance
        assert report.sparsity == 0.5


def test_data_driven_importance_needs_calibration() -> None:
    with pytest.raises(CompressError, match="calibration"):
        model_pruning(_Toy(), amount=0.5, importance="gradient")
    with pytest.raises(CompressError, match="amount"):
        model_pruning(_Toy(), amount=1.0)


def test_magnitude_skips_embeddings_and_lm_head(tiny: dict[str, Path]) -> None:
    model, _ = _load(tiny["seq2seq"], "seq2seq")
    shared = model.shared.weight.detach().clone()
    report = model_pruning(model, amount=0.3)
    assert torch.equal(model.shared.weight, shared)  # also the tied LM head
    assert report.sparsity == pytest.approx(0.3, abs=1e-3)


# --- FFN pruning ------------------------------------------------------------------------


def _kill_neurons(model: Any, kind: str, dead: list[int]) -> None:
    """Zero the up-projection rows (and biases) of ``dead`` neurons in every FFN: their
    activation is act(0) = 0 (ReLU, GELU), so they add nothing to the output."""
    with torch.no_grad():
        for module in model.modules():
            if kind == "seq2seq" and hasattr(module, "wi"):
                module.wi.weight[dead] = 0
            if kind == "causal" and hasattr(module, "c_fc"):
                module.c_fc.weight[:, dead] = 0  # Conv1D: [in, out]
                module.c_fc.bias[dead] = 0


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
@pytest.mark.parametrize("importance", ["magnitude", "activation"])
def test_ffn_pruning_removes_dead_neurons_and_round_trips(
    tiny: dict[str, Path], tmp_path: Path, kind: GenKind, importance: Importance
) -> None:
    """T5 d_ff = 128 (width 64), GPT-2 n_inner = 4·32 = 128; a quarter (32) of the neurons,
    every 4th, are dead. Pruning 0.25 must remove exactly those, shrink each FFN to 96 and
    the config with it, cut 32·(64+64) weights per T5 block (2 blocks) or 32·(32+32+1) per
    GPT-2 block (1 block, with the up bias), and leave the logits unchanged; the saved model
    loads with from_pretrained and gives the same logits."""
    model, tok = _load(tiny[kind], kind)
    dead = list(range(0, 128, 4))
    _kill_neurons(model, kind, dead)
    reference = _logits(model, tok, kind)
    calibration = encode_pairs(tok, PAIRS, kind=kind) if importance == "activation" else None
    report = model_pruning(
        model, amount=0.25, method="ffn", importance=importance, calibration=calibration
    )
    assert [layer.removed for layer in report.layers] == [dead] * len(report.layers)
    assert {(layer.before, layer.kept) for layer in report.layers} == {(128, 96)}
    removed = 2 * 32 * (64 + 64) if kind == "seq2seq" else 32 * (32 + 32 + 1)
    assert report.params_before - report.params_after == removed
    if kind == "seq2seq":
        assert model.config.d_ff == 96
        assert model.encoder.block[0].layer[1].DenseReluDense.wi.out_features == 96
    else:
        assert model.config.n_inner == 96
    torch.testing.assert_close(_logits(model, tok, kind), reference, atol=1e-5, rtol=1e-4)
    save_compressed(model, tmp_path / "pruned", tok)
    again, _ = _load(tmp_path / "pruned", kind)
    assert count_params(again)[0] == report.params_after
    torch.testing.assert_close(_logits(again, tok, kind), reference, atol=1e-5, rtol=1e-4)


def test_ffn_gradient_importance_runs_and_shrinks(tiny: dict[str, Path]) -> None:
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    calibration = encode_pairs(tok, PAIRS, kind="seq2seq", batch_size=2)
    report = model_pruning(
        model, amount=0.5, method="ffn", importance="gradient", calibration=calibration
    )
    assert model.config.d_ff == 64 and report.params_after < report.params_before
    assert all(p.grad is None for p in model.parameters())  # calibration leaves no gradients


# --- head pruning -----------------------------------------------------------------------


def test_head_pruning_zeroes_the_weakest_heads(tiny: dict[str, Path]) -> None:
    """T5 width 64, 4 heads of 16. Heads 1 and 3 of the encoder self-attention get output
    columns scaled by 0.01, so amount 0.5 (2 of 4 per module) removes them there: their
    q/k/v rows and output columns become 0, heads 0 and 2 are untouched."""
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    attn = model.encoder.block[0].layer[0].SelfAttention
    with torch.no_grad():
        for head in (1, 3):
            attn.o.weight[:, head * 16 : (head + 1) * 16] *= 0.01
    kept_q = attn.q.weight[0:16].detach().clone()
    report = model_pruning(model, amount=0.5, method="heads")
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["encoder.block.0.layer.0.SelfAttention"].removed == [1, 3]
    assert len(report.layers) == 3  # encoder self, decoder self, decoder cross
    assert all(layer.kept == 2 for layer in report.layers)
    for head in (1, 3):
        cols = slice(head * 16, (head + 1) * 16)
        for proj in (attn.q, attn.k, attn.v):
            assert not proj.weight[cols].any()
        assert not attn.o.weight[:, cols].any()
    assert torch.equal(attn.q.weight[0:16], kept_q)
    # 3 modules · 2 heads · (3 · 16·64 + 64·16) zero weights among all prunable ones.
    total = 3 * 4 * 64 * 64 + 2 * 2 * 64 * 128
    assert report.sparsity == pytest.approx(3 * 2 * 4 * 16 * 64 / total)
    assert torch.isfinite(_logits(model, tok, "seq2seq")).all()


def test_head_pruning_with_gradient_importance_on_gpt2(tiny: dict[str, Path]) -> None:
    model, tok = _load(tiny["causal"], "causal")
    calibration = encode_pairs(tok, PAIRS, kind="causal")
    report = model_pruning(
        model, amount=0.5, method="heads", importance="gradient", calibration=calibration
    )
    (layer,) = report.layers
    assert layer.name == "transformer.h.0.attn" and len(layer.removed) == 2
    c_attn = model.transformer.h[0].attn.c_attn.weight  # [32, 96]: q | k | v columns
    for head in layer.removed:
        for offset in (0, 32, 64):
            assert not c_attn[:, offset + head * 8 : offset + (head + 1) * 8].any()


# --- quantization -----------------------------------------------------------------------


def test_int8_is_close_to_fp32_generates_and_round_trips(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    reference = _logits(model, tok, "seq2seq")
    quantized = quantize_model(model, mode="int8")
    assert is_quantized(quantized) and not is_quantized(model)  # the original is untouched
    got = _logits(quantized, tok, "seq2seq")
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0)
    assert cosine.item() > 0.99
    enc = tok(["The model runs on a single GPU"], return_tensors="pt")
    out = quantized.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] >= 2
    saved = save_compressed(quantized, tmp_path / "int8", tok)
    assert (saved / "quantization.json").is_file() and (saved / "quantized.pt").is_file()
    with _no_warnings():
        again = load_quantized(saved)
    assert is_quantized(again)
    torch.testing.assert_close(_logits(again, tok, "seq2seq"), got)
    float_dir = save_compressed(model, tmp_path / "fp32")
    assert disk_size(saved / "quantized.pt") < disk_size(float_dir / "model.safetensors")


class _no_warnings:
    """Fails on any warning (the deprecation notices of torch.ao are silenced on purpose)."""

    def __enter__(self) -> None:
        import warnings

        self.ctx = warnings.catch_warnings()
        self.ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)


def test_int8_gpt2_converts_conv1d_and_generates(tiny: dict[str, Path], tmp_path: Path) -> None:
    model, tok = _load(tiny["causal"], "causal")
    reference = _logits(model, tok, "causal")
    with _no_warnings():
        quantized = quantize_model(model, mode="int8")
    names = {type(m).__name__ for m in quantized.modules()}
    assert "Conv1D" not in names
    got = _logits(quantized, tok, "causal")
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0)
    assert cosine.item() > 0.99
    outputs, _ = timed_generation(quantized, tok, ["The model runs"], kind="causal")
    assert isinstance(outputs[0], str)
    again = load_quantized(save_compressed(quantized, tmp_path / "q", tok))
    torch.testing.assert_close(_logits(again, tok, "causal"), got)


def test_casts_and_refusals(tiny: dict[str, Path]) -> None:
    model, _ = _load(tiny["seq2seq"], "seq2seq")
    with pytest.raises(CompressError, match="fp16 on the CPU"):
        quantize_model(model, mode="fp16", device="cpu")
    with pytest.raises(CompressError, match="unknown quantization mode"):
        quantize_model(model, mode="int4", device="cpu")  # type: ignore[arg-type]
    cast = quantize_model(copy.deepcopy(model), mode="bf16", device="cpu")
    assert {p.dtype for p in cast.parameters()} == {torch.bfloat16}


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", ["fp16", "bf16"])
@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_half_precision_on_gpu_matches_fp32(
    tiny: dict[str, Path], mode: str, kind: GenKind
) -> None:
    """fp16/bf16 on CUDA: logits close to the CPU fp32 ones (cosine > 0.99), generation
    runs, and the report compares the CPU fp32 model with the GPU one."""
    model, tok = _load(tiny[kind], kind)
    reference = _logits(model, tok, kind)
    half = quantize_model(copy.deepcopy(model), mode=mode, device="cuda")  # type: ignore[arg-type]
    dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    assert {p.dtype for p in half.parameters()} == {dtype}
    enc = tok(["The model runs on a single GPU", "A dog"], padding=True, return_tensors="pt")
    extra = {"labels": torch.tensor([[5, 6, 7], [8, 9, 1]])} if kind == "seq2seq" else {}
    with torch.no_grad():
        got = half(**{k: v.cuda() for k, v in {**enc, **extra}.items()}).logits.float().cpu()
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0)
    assert cosine.item() > 0.99
    report = compression_report(model, half, tok, PAIRS, kind=kind, batch_size=2, max_new_tokens=4)
    assert report.before.device == "cpu" and report.after.device.startswith("cuda")
    assert report.after.dtype == str(dtype).removeprefix("torch.")
    assert report.after.size_bytes < 0.6 * report.before.size_bytes  # 2 bytes a weight, not 4
    assert report.after.latency_mean_ms is not None and report.after.metric is not None


@pytest.mark.gpu
@needs_cuda
def test_gradient_pruning_on_gpu(tiny: dict[str, Path]) -> None:
    """Calibration batches built on the CPU are moved to the model's device."""
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    model.cuda()
    calibration = encode_pairs(tok, PAIRS, kind="seq2seq")
    for method in ("magnitude", "ffn", "heads"):
        report = model_pruning(
            model, amount=0.25, method=method, importance="gradient", calibration=calibration
        )
        assert report.layers
    assert model.config.d_ff == 96
    assert torch.isfinite(_logits(model.cpu(), tok, "seq2seq")).all()


# --- report and recovery ------------------------------------------------------------------


def test_score_uses_the_reference_metrics_on_0_to_100() -> None:
    """Every metric on 0–100, as training and ``taskloop run`` report them.

    exact: 'Das Modell' vs 'das modell!' normalise equal, 'x' vs 'y' do not → 100 · 1/2.
    f1: 'cat sat' vs 'cat sat down': 2 common tokens, P = 2/2, R = 2/3,
    F1 = 2PR / (P + R) = 0.8 → 80. ROUGE-L: 'the cat sat on the mat' vs 'the cat lay on the
    mat': LCS 'the cat on the mat' = 5 of 6 tokens each side, F = 5/6 → 83.33.
    chrF++ of identical strings is 100."""
    assert score(["Das Modell", "x"], ["das modell!", "y"], "exact") == pytest.approx(50.0)
    assert score(["cat sat"], ["cat sat down"], "f1") == pytest.approx(80.0)
    assert score(["the cat sat on the mat"], ["the cat lay on the mat"], "rougeL") == (
        pytest.approx(500 / 6)
    )
    assert score(["ein Hund"], ["ein Hund"], "chrf") == pytest.approx(100.0)
    assert score([], [], "bleu") is None


def test_compression_report_fields(tiny: dict[str, Path]) -> None:
    """Targets of pairs 1 and 3 are the before-model's own greedy outputs and pair 2's is
    not: exact match before = 100 · 2/3 = 66.67. FFN pruning of half the neurons makes the
    saved model and the parameter count smaller by the removed 2·64·(64+64) weights."""
    before, tok = _load(tiny["seq2seq"], "seq2seq")
    sources = [p.source for p in PAIRS]
    outputs, _ = timed_generation(before, tok, sources, kind="seq2seq", max_new_tokens=6)
    pairs = [
        Pair("qa", PAIRS[0].source, outputs[0], "1", "f:1"),
        Pair("qa", PAIRS[1].source, outputs[1] + " never", "2", "f:2"),
        Pair("qa", PAIRS[2].source, outputs[2], "3", "f:3"),
    ]
    after = copy.deepcopy(before)
    model_pruning(after, amount=0.5, method="ffn")
    report = compression_report(
        before, after, tok, pairs, kind="seq2seq", metric="exact", batch_size=2, max_new_tokens=6
    )
    assert report.before.metric == pytest.approx(200 / 3)
    assert report.after.metric is not None and 0.0 <= report.after.metric <= 100.0
    assert report.before.params - report.after.params == 2 * 64 * (64 + 64)
    assert report.after.size_bytes < report.before.size_bytes
    assert report.before.latency_mean_ms is not None and report.before.latency_mean_ms > 0
    assert report.after.latency_p50_ms is not None
    assert report.before.dtype == "float32" and report.before.device == "cpu"
    data = report.to_dict()
    assert data["size_ratio"] == pytest.approx(report.after.size_bytes / report.before.size_bytes)
    assert data["before"]["params"] == report.before.params
    table = report.table()
    assert table.splitlines()[0] == "| measure | before | after | change |"
    assert "| exact (3 pairs) | 66.67 |" in table


def _fake_fit_pairs(model: Any, tokenizer: Any, pairs: Any, *, kind: GenKind, steps: int,
                    lr: float, **_: Any) -> list[float]:  # fmt: skip
    """Plain SGD on the pairs, touching every parameter (as a real fine-tune would)."""
    batch = encode_pairs(tokenizer, pairs, kind=kind)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _step in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _check_recovery_keeps_zeros(model: Any, tok: Any) -> list[float]:
    model_pruning(model, amount=0.5)
    zeros = {n: (m.weight == 0).clone() for n, m in _prunable(model)}
    before = {n: m.weight.detach().clone() for n, m in _prunable(model)}
    losses = recover(model, tok, PAIRS, kind="seq2seq", steps=3, lr=1e-2)
    assert sparsity(model) == pytest.approx(0.5, abs=1e-3)
    for name, module in _prunable(model):
        assert not module.weight[zeros[name]].any(), name
        assert not hasattr(module, "weight_orig")
    assert any(not torch.equal(before[n], m.weight) for n, m in _prunable(model))
    return losses


def _prunable(model: Any) -> list[tuple[str, Any]]:
    from taskloop.models.prune import prunable_layers

    return prunable_layers(model)


def test_recovery_keeps_pruned_weights_at_zero(
    tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a stand-in training loop that updates every weight: the masked ones stay 0."""
    monkeypatch.setitem(
        sys.modules, "taskloop.train.loop", SimpleNamespace(fit_pairs=_fake_fit_pairs)
    )
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    losses = _check_recovery_keeps_zeros(model, tok)
    assert len(losses) == 3


def test_recovery_with_the_real_training_loop(tiny: dict[str, Path]) -> None:
    loop = pytest.importorskip("taskloop.train.loop")
    if not hasattr(loop, "fit_pairs"):
        pytest.skip("fit_pairs not yet available")
    model, tok = _load(tiny["seq2seq"], "seq2seq")
    losses = _check_recovery_keeps_zeros(model, tok)
    assert len(losses) == 3


# --- CLI --------------------------------------------------------------------------------


@pytest.fixture
def cli() -> Any:
    import typer
    from typer.testing import CliRunner

    from taskloop.models.compress_cli import app as compress_app

    root = typer.Typer()
    root.add_typer(compress_app, name="compress")

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(root, ["compress", *args])

    return invoke


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rows = [
        {"id": p.id, "source": p.source, "target": p.target, "task": "translate"} for p in PAIRS
    ]
    path = tmp_path / "translate.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_cli_prune_writes_model_and_report(
    cli: Any, tiny: dict[str, Path], data_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pruned"
    result = cli(
        "prune", str(tiny["seq2seq"]), "--amount", "0.5", "--method", "ffn",
        "--importance", "activation", "--data", str(data_file), "--out", str(out),
        "--max-new-tokens", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| measure | before | after | change |" in result.output
    report = json.loads((out / "compression.json").read_text())
    assert report["prune"]["method"] == "ffn"
    assert report["compression"]["metric_name"] == "chrf"  # translate's usual metric
    assert report["compression"]["pairs"] == 3
    model, _ = _load(out, "seq2seq")
    assert model.config.d_ff == 64


def test_cli_quantize_int8_and_errors(
    cli: Any, tiny: dict[str, Path], data_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "q"
    result = cli(
        "quantize", str(tiny["causal"]), "--mode", "int8", "--data", str(data_file),
        "--out", str(out), "--max-new-tokens", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert is_quantized(load_quantized(out))
    assert json.loads((out / "compression.json").read_text())["quantize"]["mode"] == "int8"

    result = cli("quantize", str(tiny["causal"]), "--mode", "fp16", "--out", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "error[train.compress]: fp16 on the CPU" in result.output
    result = cli("prune", str(tiny["causal"]), "--importance", "gradient")
    assert result.exit_code == 2
    assert "error[train.compress]: --importance gradient scores weights on data" in result.output
    assert "hint: pass --data FILE" in result.output


@pytest.mark.parametrize("command", ["prune", "quantize"])
def test_cli_model_help_names_registry_models(cli: Any, command: str) -> None:
    """MODEL takes a folder, a cached hub id or a registry name; the help says all three."""
    result = cli(command, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # undo the help's line wrapping
    assert "models:/NAME@ALIAS" in text
    assert "save_pretrained" in text and "hub id" in text


def test_cli_prune_with_recovery(
    cli: Any, tiny: dict[str, Path], data_file: Path, tmp_path: Path
) -> None:
    """Magnitude 0.3 then 2 recovery steps: two losses, and the saved model still has 30 %
    of its prunable weights at zero."""
    loop = pytest.importorskip("taskloop.train.loop")
    if not hasattr(loop, "fit_pairs"):
        pytest.skip("fit_pairs not yet available")
    out = tmp_path / "recovered"
    result = cli(
        "prune", str(tiny["seq2seq"]), "--amount", "0.3", "--data", str(data_file),
        "--recover-steps", "2", "--out", str(out), "--max-new-tokens", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "compression.json").read_text())
    assert len(report["recovery_losses"]) == 2
    model, _ = _load(out, "seq2seq")
    assert sparsity(model) == pytest.approx(0.3, abs=1e-3)
