"""Batched, cached generation on tiny random models.

The models are noise: these tests assert structure (order, batching invariance,
cache behaviour, what is counted and reported), never the quality of an output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from taskloop import progress
from taskloop.models.cache import LRUCache
from taskloop.models.errors import ModelKindError
from taskloop.models.generate import (
    GenerationSettings,
    count_tokens,
    forced_bos_id,
    generate,
    input_limit,
)
from taskloop.models.loader import LoadedModel, load_model
from taskloop.models.tiny import BUILTIN_CORPUS, build_tiny_model

WINDOW = 32
CORPUS = [
    *BUILTIN_CORPUS,
    "Vienna lies on the Danube , the second longest river in Europe .",
    "Please check the glossary before you translate the report .",
]
# Different lengths, so that the length sort reorders them and an order mix-up shows.
# Tokens are words and punctuation (+1 for </s> with the seq2seq tokenizer).
INPUTS = [
    "A dog is running .",  # 5
    "The model runs on a single GPU and answers questions about short documents .",  # 14
    "Vienna lies on the Danube , in Europe",  # 8
    "seven",  # 1
    "Please check the glossary before you translate the report .",  # 10
]
GREEDY = GenerationSettings(max_new_tokens=5, min_new_tokens=5, batch_size=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    root = tmp_path_factory.mktemp("generate-models")
    s2s = build_tiny_model(
        root / "s2s", "seq2seq", texts=CORPUS, lang_tokens=["__de__"], max_length=WINDOW
    )
    causal = build_tiny_model(root / "causal", "causal", texts=CORPUS, max_length=WINDOW)
    return {"seq2seq": load_model(str(s2s)), "causal": load_model(str(causal))}


@pytest.fixture(params=["seq2seq", "causal"])
def lm(request: pytest.FixtureRequest, models: dict[str, LoadedModel]) -> LoadedModel:
    return models[request.param]


@dataclasses.dataclass
class Calls:
    """Rows per ``model.generate`` call, and the keyword arguments of the last one."""

    rows: list[int] = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: list[Any] = dataclasses.field(default_factory=list)


@pytest.fixture
def calls(lm: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Count calls through ``lm.model.generate`` (the seam to the model), then restore."""
    seen = Calls()
    real = lm.model.generate

    def counting(**kwargs: Any) -> Any:
        seen.rows.append(int(kwargs["input_ids"].shape[0]))
        seen.kwargs = kwargs
        out = real(**kwargs)
        seen.outputs.append(out)
        return out

    monkeypatch.setattr(lm.model, "generate", counting)
    yield seen


def test_count_tokens(models: dict[str, LoadedModel]) -> None:
    """Word-level tokenizer: words and punctuation are tokens; the seq2seq tokenizer
    appends </s> (T5 style), the causal one does not (a prompt must not end there).

    "A dog is running ." = A, dog, is, running, . = 5 (+1 </s> for seq2seq)
    "Vienna lies on the Danube , in Europe" = 7 words + "," = 8 (+1)
    "Zebras unknown" = 2 (<unk> <unk>: unknown words still count)
    """
    texts = [INPUTS[0], INPUTS[2], "Zebras unknown"]
    assert count_tokens(models["seq2seq"], texts) == [6, 9, 3]
    assert count_tokens(models["causal"], texts) == [5, 8, 2]
    assert count_tokens(models["seq2seq"], []) == []


def test_outputs_in_input_order(lm: LoadedModel) -> None:
    """Inputs are generated longest first, but result i belongs to input i: each equals
    what the input gives on its own, and input_tokens matches its own count."""
    batched = generate(lm, INPUTS, GREEDY)
    alone = [generate(lm, [text], GREEDY)[0] for text in INPUTS]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.input_tokens for g in batched] == count_tokens(lm, INPUTS)
    assert len(set(count_tokens(lm, INPUTS))) >= 4  # the sort really reorders
    assert all(not g.cached and not g.truncated for g in batched)


def test_batch_size_does_not_change_greedy_outputs(lm: LoadedModel, calls: Calls) -> None:
    """Padding is masked, so batch size 1 and 4 give the same greedy texts; 5 inputs
    take 5 calls of 1 row, then 2 calls of 4 + 1 rows (longest first)."""
    one = generate(lm, INPUTS, dataclasses.replace(GREEDY, batch_size=1))
    four = generate(lm, INPUTS, dataclasses.replace(GREEDY, batch_size=4))
    assert [g.text for g in one] == [g.text for g in four]
    assert calls.rows == [1, 1, 1, 1, 1, 4, 1]


def test_equal_inputs_are_generated_once(lm: LoadedModel, calls: Calls) -> None:
    """After NFC and whitespace normalisation these three are one input: one row goes to
    the model; the repeats are marked cached and carry the first one's output."""
    composed = "Vienna lies on the Danube caf\u00e9"
    decomposed = "Vienna  lies on the\tDanube cafe\u0301 "
    out = generate(lm, [composed, decomposed, f"  {composed}\n"], GREEDY)
    assert calls.rows == [1]
    assert [g.cached for g in out] == [False, True, True]
    assert len({g.text for g in out}) == 1
    assert len({g.input_tokens for g in out}) == 1


def test_second_call_is_all_cache_hits(lm: LoadedModel, calls: Calls) -> None:
    cache = LRUCache()
    first = generate(lm, INPUTS, GREEDY, cache=cache)
    assert calls.rows == [4, 1]
    assert cache.stats.misses == len(INPUTS) and cache.stats.hits == 0
    second = generate(lm, INPUTS, GREEDY, cache=cache)
    assert calls.rows == [4, 1]  # the model was not called again
    assert cache.stats.hits == len(INPUTS)
    assert all(g.cached for g in second)
    assert [g.texts for g in second] == [g.texts for g in first]
    assert [g.input_tokens for g in second] == [g.input_tokens for g in first]


def test_a_partly_cached_call_generates_only_the_misses(lm: LoadedModel, calls: Calls) -> None:
    cache = LRUCache()
    generate(lm, INPUTS[:2], GREEDY, cache=cache)
    out = generate(lm, INPUTS, GREEDY, cache=cache)
    assert calls.rows == [2, 3]
    assert [g.cached for g in out] == [True, True, False, False, False]


def test_settings_and_model_version_are_part_of_the_key(lm: LoadedModel, calls: Calls) -> None:
    """Any decoding setting or a new model version misses; batch_size alone does not
    (it never changes a greedy result)."""
    cache = LRUCache()
    text = [INPUTS[1]]
    generate(lm, text, GREEDY, cache=cache)
    assert generate(lm, text, dataclasses.replace(GREEDY, batch_size=32), cache=cache)[0].cached
    for changed in (
        dataclasses.replace(GREEDY, max_new_tokens=6),
        dataclasses.replace(GREEDY, num_beams=2),
        dataclasses.replace(GREEDY, prefix="summarize: "),
        dataclasses.replace(GREEDY, repetition_penalty=1.2),
    ):
        assert not generate(lm, text, changed, cache=cache)[0].cached
    retrained = dataclasses.replace(lm, version="0" * 64)  # same weights, new version id
    assert not generate(retrained, text, GREEDY, cache=cache)[0].cached
    assert len(calls.rows) == 6


def test_only_new_tokens_come_back(lm: LoadedModel, calls: Calls) -> None:
    """min = max = 5 new tokens: the output is exactly 5 tokens, whatever the prompt's
    length (a causal LM's echo of the prompt is cut off)."""
    prompt = INPUTS[1]  # 13 words and a full stop
    out = generate(lm, [prompt], GREEDY)[0]
    tokens = lm.tokenizer(out.text, add_special_tokens=False)["input_ids"]
    assert len(tokens) == 5
    raw = calls.outputs[0][0].tolist()
    if lm.kind == "causal":
        # The model's own output starts with the prompt; generate() returned the rest.
        prompt_ids = calls.kwargs["input_ids"][0].tolist()
        assert raw[: len(prompt_ids)] == prompt_ids
        rest = lm.tokenizer.decode(raw[len(prompt_ids) :], skip_special_tokens=True)
        assert rest.strip() == out.text
    else:
        assert lm.tokenizer.decode(raw, skip_special_tokens=True).strip() == out.text


def test_prefix_is_put_before_every_input(models: dict[str, LoadedModel]) -> None:
    """input_tokens counts the prefix: "translate" "the" ":" are three more tokens."""
    lm = models["seq2seq"]
    plain = generate(lm, [INPUTS[0]], GREEDY)[0]
    prefixed = generate(lm, [INPUTS[0]], dataclasses.replace(GREEDY, prefix="translate the: "))[0]
    assert prefixed.input_tokens == plain.input_tokens + 3


def test_too_long_input_is_reported_truncated(lm: LoadedModel, calls: Calls) -> None:
    """A seq2seq model reads up to its window (32); a causal LM's window also holds the
    new tokens, so it reads at most 32 - 5 = 27. Inputs over that are cut and say so."""
    limit = input_limit(lm, GREEDY)
    assert limit == (WINDOW if lm.kind == "seq2seq" else WINDOW - GREEDY.max_new_tokens)
    eos = 1 if lm.kind == "seq2seq" else 0
    fits = " ".join(["dog"] * (limit - eos))
    over = " ".join(["dog"] * (limit - eos + 1))
    long = " ".join(["dog"] * 100)
    out = generate(lm, [fits, over, long], GREEDY)
    assert [g.input_tokens for g in out] == [limit, limit + 1, 100 + eos]
    assert [g.truncated for g in out] == [False, True, True]
    assert calls.kwargs["input_ids"].shape[1] == limit  # what the model saw


def test_causal_window_leaves_room_for_new_tokens(models: dict[str, LoadedModel]) -> None:
    """Regression: a prompt filling a GPT-2's whole window used to overrun its position
    table (IndexError) once generation started."""
    lm = models["causal"]
    out = generate(lm, [" ".join(["dog"] * WINDOW)], GenerationSettings(max_new_tokens=8))[0]
    assert out.truncated and out.texts


def test_sampling_returns_n_reproducible_samples(models: dict[str, LoadedModel]) -> None:
    lm = models["seq2seq"]
    settings = dataclasses.replace(GREEDY, do_sample=True, num_return_sequences=3, seed=7)
    first = generate(lm, INPUTS[:2], settings)
    again = generate(lm, INPUTS[:2], settings)
    assert [len(g.texts) for g in first] == [3, 3]
    assert [g.texts for g in first] == [g.texts for g in again]  # same seed, same samples
    assert first[0].text == first[0].texts[0]


def test_forced_bos_resolves_language_codes(models: dict[str, LoadedModel]) -> None:
    """``de`` and ``__de__`` (M2M-100 spelling) name the same added token."""
    lm = models["seq2seq"]
    de = lm.tokenizer.convert_tokens_to_ids("__de__")
    assert de not in (None, lm.tokenizer.unk_token_id)
    assert forced_bos_id(lm, "de") == de
    assert forced_bos_id(lm, "__de__") == de


def test_unknown_language_code_is_a_kind_error(models: dict[str, LoadedModel]) -> None:
    lm = models["seq2seq"]
    with pytest.raises(ModelKindError) as err:
        forced_bos_id(lm, "xx")
    assert "'xx'" in str(err.value) and lm.name in str(err.value)
    assert err.value.hint and "language codes" in err.value.hint
    with pytest.raises(ModelKindError):
        generate(lm, [INPUTS[0]], dataclasses.replace(GREEDY, forced_bos_token="xx"))


@pytest.mark.parametrize("lm", ["seq2seq"], indirect=True)
def test_forced_bos_starts_every_output(lm: LoadedModel, calls: Calls) -> None:
    """The decoder starts with <pad> (T5's start token), then the forced language token."""
    settings = dataclasses.replace(GREEDY, forced_bos_token="de")
    generate(lm, INPUTS[:3], settings)
    de = lm.tokenizer.convert_tokens_to_ids("__de__")
    assert calls.kwargs["forced_bos_token_id"] == de
    for out in calls.outputs:
        assert out[:, 1].tolist() == [de] * out.shape[0]


def test_a_non_generating_model_is_refused(models: dict[str, LoadedModel]) -> None:
    encoder = dataclasses.replace(models["seq2seq"], kind="encoder")
    with pytest.raises(ModelKindError) as err:
        generate(encoder, ["x"])
    assert "encoder" in str(err.value)
    assert err.value.hint and "seq2seq or causal" in err.value.hint


def test_progress_counts_generated_items(models: dict[str, LoadedModel]) -> None:
    """The progress phase counts items (not bytes), and only those the model runs on:
    5 inputs, 2 already cached → a phase of 3 items, advanced by 3."""
    lm = models["seq2seq"]
    cache = LRUCache()
    generate(lm, INPUTS[:2], GREEDY, cache=cache)

    class Recorder:
        def __init__(self) -> None:
            self.phases: list[tuple[str, int, str]] = []
            self.done = 0

        def start(self, phase: str, total: int, unit: str = "bytes") -> None:
            self.phases.append((phase, total, unit))

        def advance(self, n: int) -> None:
            self.done += n

    recorder = Recorder()
    with progress.reporting(recorder):
        generate(lm, INPUTS, GREEDY, cache=cache)
    assert recorder.phases == [(f"generate {lm.name}", 3, "items")]
    assert recorder.done == 3


def test_no_inputs(models: dict[str, LoadedModel]) -> None:
    assert generate(models["seq2seq"], [], GREEDY) == []


def test_settings_key_leaves_out_batch_size() -> None:
    key = GenerationSettings(batch_size=3).key()
    assert "batch_size" not in key
    assert key["max_new_tokens"] == 64 and key["forced_bos_token"] is None
