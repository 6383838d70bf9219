"""GPU paths of loading and generation (skipped without CUDA; CI has none).

The same tiny model must give the same greedy tokens on CUDA (float32) as on the CPU,
and half precision must load and generate on CUDA while being refused on the CPU.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from taskloop.models import GenerationSettings, ModelSpec, generate, load_model  # noqa: E402
from taskloop.models.encoder import load_encoder  # noqa: E402
from taskloop.models.tiny import build_tiny_model  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

INPUTS = ["The model runs on a single GPU.", "A dog is running across the green meadow."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_model(tmp_path_factory.mktemp("gpu") / "s2s", "seq2seq")


def test_cuda_matches_cpu_greedy(tiny):
    settings = GenerationSettings(max_new_tokens=6, min_new_tokens=6)
    cpu = generate(load_model(ModelSpec(str(tiny), device="cpu")), INPUTS, settings)
    gpu_lm = load_model(ModelSpec(str(tiny), device="cuda"))
    assert gpu_lm.device == "cuda"
    assert next(gpu_lm.model.parameters()).is_cuda
    gpu = generate(gpu_lm, INPUTS, settings)
    assert [g.texts for g in gpu] == [c.texts for c in cpu]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cuda(tiny, dtype):
    lm = load_model(ModelSpec(str(tiny), device="cuda", dtype=dtype))
    assert str(next(lm.model.parameters()).dtype) == f"torch.{dtype}"
    out = generate(lm, INPUTS, GenerationSettings(max_new_tokens=4, min_new_tokens=4))
    assert all(len(g.text.split()) >= 1 for g in out)


def test_encoder_on_cuda_matches_cpu():
    import numpy as np

    cpu = load_encoder(device="cpu").encode(INPUTS)
    gpu = load_encoder(device="cuda").encode(INPUTS)
    assert np.allclose(cpu, gpu, atol=1e-4)
