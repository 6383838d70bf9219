"""The model loader: tiny seq2seq and causal models by folder, errors that say what to pass."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from taskloop.models.errors import DeviceError, ModelKindError, ModelNotFoundError
from taskloop.models.loader import (
    ModelSpec,
    _kind_from_config,
    content_version,
    context_window,
    load_model,
    pick_device,
    pick_dtype,
)
from taskloop.models.tiny import build_tiny_model

# Distinct windows, so that a test cannot pass by reading the other model's value.
SEQ2SEQ_WINDOW = 48
CAUSAL_WINDOW = 40


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loader-models")
    return {
        "seq2seq": build_tiny_model(root / "s2s", "seq2seq", max_length=SEQ2SEQ_WINDOW),
        "causal": build_tiny_model(root / "causal", "causal", max_length=CAUSAL_WINDOW),
    }


def test_seq2seq_folder_loads_as_seq2seq(tiny_dirs: dict[str, Path]) -> None:
    """A T5 folder is an encoder-decoder: kind seq2seq, window = model_max_length = 48."""
    path = str(tiny_dirs["seq2seq"])
    lm = load_model(path)
    assert lm.kind == "seq2seq"
    assert type(lm.model).__name__ == "T5ForConditionalGeneration"
    assert lm.window == SEQ2SEQ_WINDOW
    assert lm.device == "cpu" or torch.cuda.is_available()
    assert lm.path == path and lm.name == path
    assert len(lm.version) == 64  # a SHA-256 of config and weights, not a hub commit
    assert lm.describe() == f"{path}@{lm.version[:12]} (seq2seq, {lm.device})"
    assert not lm.model.training  # eval mode: no dropout in generation


def test_causal_folder_loads_as_causal_with_left_padding(tiny_dirs: dict[str, Path]) -> None:
    """A GPT-2 folder is a decoder: kind causal, window 40, pads on the left so that
    generation continues from the real end of every prompt in a batch."""
    lm = load_model(str(tiny_dirs["causal"]))
    assert lm.kind == "causal"
    assert type(lm.model).__name__ == "GPT2LMHeadModel"
    assert lm.window == CAUSAL_WINDOW
    assert lm.tokenizer.padding_side == "left"
    assert lm.tokenizer.pad_token == "<pad>"
    assert lm.describe().endswith(f"(causal, {lm.device})")


def test_load_once_per_process(tiny_dirs: dict[str, Path]) -> None:
    """A str and the equal ModelSpec are one cache entry: the same object comes back."""
    path = str(tiny_dirs["seq2seq"])
    first = load_model(path)
    assert load_model(path) is first
    assert load_model(ModelSpec(path)) is first
    # A different spec (here: forcing the kind) is a different load.
    assert load_model(ModelSpec(path, kind="seq2seq")) is not first


def test_version_is_stable_and_follows_the_weights(
    tiny_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """The version hashes file names and contents, not the folder's path: a copy has the
    same version (so caches carry over), re-built weights get a new one."""
    original = tiny_dirs["seq2seq"]
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    v_original = content_version(original)
    assert content_version(original) == v_original  # stable across calls
    assert content_version(copy) == v_original
    assert load_model(str(copy)).version == v_original

    changed = tmp_path / "changed"
    shutil.copytree(original, changed)
    build_tiny_model(changed, "seq2seq", max_length=SEQ2SEQ_WINDOW, seed=1)  # new weights
    assert content_version(changed) != v_original
    assert load_model(str(changed)).version == content_version(changed)


def test_hub_snapshot_version_is_the_commit(tmp_path: Path) -> None:
    """A folder inside the hub cache's ``snapshots/`` is named by its commit: use it."""
    commit = "a" * 40
    snap = tmp_path / "models--x--y" / "snapshots" / commit
    snap.mkdir(parents=True)
    assert content_version(snap) == commit


def test_forcing_a_kind_the_model_lacks_is_a_kind_error(tiny_dirs: dict[str, Path]) -> None:
    """T5 has no causal-LM class: the error names the model and its type, in one line."""
    path = str(tiny_dirs["seq2seq"])
    with pytest.raises(ModelKindError) as err:
        load_model(ModelSpec(path, kind="causal"))
    assert path in err.value.message and "(t5)" in err.value.message
    assert "\n" not in err.value.message  # not transformers' list of every config class
    assert err.value.hint and "kind" in err.value.hint


def test_missing_folder(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelNotFoundError) as err:
        load_model(missing)
    assert missing in str(err.value)
    assert err.value.hint and "save_pretrained" in err.value.hint
    assert err.value.code == "model.not_found"


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, an id that is not in the local cache is not found; even with
    allow_download the hub is not asked (the message is the cache one, not a download
    failure), and the hint says what to pass or how to fetch it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "taskloop-tests/no-such-model"
    with pytest.raises(ModelNotFoundError) as err:
        load_model(ModelSpec(name, allow_download=True))
    assert name in str(err.value)
    assert "not in the Hugging Face cache" in str(err.value)
    hint = err.value.hint or ""
    assert "local folder" in hint and f"download {name}" in hint


def test_invalid_hub_id_names_it() -> None:
    with pytest.raises(ModelNotFoundError) as err:
        load_model("not/a/valid id")
    assert "'not/a/valid id'" in str(err.value)
    assert err.value.hint and "owner/name" in err.value.hint


def test_folder_without_config(tmp_path: Path) -> None:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(folder))
    assert "has no config.json" in str(err.value) and str(folder) in str(err.value)
    assert err.value.hint and "save_pretrained" in err.value.hint


def test_folder_with_broken_config(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_dirs["seq2seq"], folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(folder))
    assert "unreadable config" in str(err.value)
    assert err.value.hint


def test_folder_without_tokenizer_is_refused(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Config and weights but no tokenizer files: transformers would build an empty
    tokenizer (garbage out); the loader refuses with a hint instead."""
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(tiny_dirs["seq2seq"] / name, folder / name)
    with pytest.raises(ModelNotFoundError) as err:
        load_model(str(folder))
    assert "no usable tokenizer" in str(err.value)
    assert err.value.hint and "tokenizer" in err.value.hint


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_device_error(tiny_dirs: dict[str, Path], device: str) -> None:
    with pytest.raises(DeviceError) as err:
        load_model(ModelSpec(str(tiny_dirs["seq2seq"]), device=device))
    assert repr(device) in str(err.value)
    assert err.value.hint and "--device cpu" in err.value.hint


def test_float16_on_cpu_is_refused(tiny_dirs: dict[str, Path]) -> None:
    with pytest.raises(DeviceError) as err:
        load_model(ModelSpec(str(tiny_dirs["seq2seq"]), device="cpu", dtype="float16"))
    assert "float16" in str(err.value)
    assert err.value.hint and "bfloat16" in err.value.hint


def test_bfloat16_on_cpu_loads(tiny_dirs: dict[str, Path]) -> None:
    lm = load_model(ModelSpec(str(tiny_dirs["causal"]), device="cpu", dtype="bfloat16"))
    assert next(lm.model.parameters()).dtype == torch.bfloat16


def test_device_and_dtype_names() -> None:
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        pick_device("tpu")
    assert pick_dtype("auto", "cpu") is torch.float32
    assert pick_dtype("bfloat16", "cpu") is torch.bfloat16
    with pytest.raises(DeviceError, match="unknown dtype 'float8'"):
        pick_dtype("float8", "cpu")


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        (SimpleNamespace(is_encoder_decoder=True, architectures=["MarianMTModel"]), "seq2seq"),
        (SimpleNamespace(architectures=["GPT2LMHeadModel"]), "causal"),
        (SimpleNamespace(architectures=["LlamaForCausalLM"]), "causal"),
        (SimpleNamespace(architectures=["BertForQuestionAnswering"]), "qa"),
        (SimpleNamespace(architectures=["BertModel"]), "encoder"),
        (SimpleNamespace(architectures=["BertForMaskedLM"]), "encoder"),
        (SimpleNamespace(architectures=["DebertaV2ForSequenceClassification"]), "classify"),
        (SimpleNamespace(architectures=["LlamaForSequenceClassification"]), "classify"),
        (SimpleNamespace(architectures=None), "causal"),
    ],
)
def test_kind_from_config(config: SimpleNamespace, kind: str) -> None:
    assert _kind_from_config(config) == kind


@pytest.mark.parametrize(
    ("max_length", "config", "window"),
    [
        (512, SimpleNamespace(max_position_embeddings=1024), 512),  # the smaller wins
        (4096, SimpleNamespace(max_position_embeddings=1024), 1024),
        (int(1e30), SimpleNamespace(n_positions=2048), 2048),  # "no limit" tokenizer
        (int(1e30), SimpleNamespace(), 512),  # T5-style relative positions: the fallback
    ],
)
def test_window(max_length: int, config: SimpleNamespace, window: int) -> None:
    assert context_window(SimpleNamespace(model_max_length=max_length), config) == window


def test_a_folder_rewritten_after_loading_is_loaded_again(tmp_path: Path) -> None:
    """The cache keeps a model for the process, unless its folder changed since (a
    retraining saved into the same folder): then the next load reads the new weights."""
    folder = build_tiny_model(tmp_path / "m", "seq2seq", seed=1)
    first = load_model(ModelSpec(str(folder), device="cpu"))
    assert load_model(ModelSpec(str(folder), device="cpu")) is first  # unchanged: cached
    build_tiny_model(folder, "seq2seq", seed=2)
    second = load_model(ModelSpec(str(folder), device="cpu"))
    assert second is not first and second.version != first.version
    a = next(iter(first.model.parameters()))
    b = next(iter(second.model.parameters()))
    assert not torch.equal(a, b)
    assert load_model(ModelSpec(str(folder), device="cpu")) is second
