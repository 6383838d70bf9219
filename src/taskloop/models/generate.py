"""Batched, cached text generation with any seq2seq or causal LM.

Inputs are sorted by token length so each batch pads little, run in batches of
``batch_size``, and put back in the caller's order. Each output is cached under the
normalised input, the model version and the settings; a repeated query costs a hash.
An input longer than the model's window is cut to fit, and the result says so
(callers split long inputs first, see :mod:`taskloop.tasks.chunking`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from taskloop import progress
from taskloop.log import step
from taskloop.models.cache import LRUCache, cache_key
from taskloop.models.errors import ModelKindError
from taskloop.models.loader import LoadedModel


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; all of them are part of the cache key.

    Args:
        forced_bos_token: a language token the decoder must start with (M2M-100, mBART,
            NLLB: ``__de__``, ``de_DE``, ``deu_Latn``); resolved with the tokenizer.
        prefix: text put before every input (T5-style "summarize: ").
    """

    max_new_tokens: int = 64
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    batch_size: int = 8
    seed: int = 0
    forced_bos_token: str | None = None
    prefix: str = ""

    def key(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out.pop("batch_size")  # batching never changes a greedy/beam result
        return out


@dataclass(frozen=True)
class Generated:
    """The outputs for one input."""

    texts: list[str]
    input_tokens: int
    truncated: bool  # the input was cut to the model's window
    cached: bool

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


def count_tokens(lm: LoadedModel, texts: Sequence[str]) -> list[int]:
    """Tokens each text takes with ``lm``'s tokenizer (special tokens included)."""
    if not texts:
        return []
    enc = lm.tokenizer(list(texts), add_special_tokens=True, truncation=False)
    return [len(ids) for ids in enc["input_ids"]]


def input_limit(lm: LoadedModel, settings: GenerationSettings) -> int:
    """Most input tokens ``lm`` reads: a causal LM's window also holds what it generates."""
    if lm.kind == "causal":
        return max(1, lm.window - settings.max_new_tokens)
    return lm.window


def forced_bos_id(lm: LoadedModel, token: str) -> int:
    """The id of a language token, however the tokenizer family spells it."""
    tok = lm.tokenizer
    getter = getattr(tok, "get_lang_id", None)
    if callable(getter):
        try:
            return int(getter(token))
        except (KeyError, ValueError):
            pass
    for candidate in (token, f"__{token}__"):
        ids = tok.convert_tokens_to_ids(candidate)
        if isinstance(ids, int) and ids != tok.unk_token_id:
            return ids
    raise ModelKindError(
        f"model {lm.name!r} has no language token {token!r}",
        hint="use the model's own language codes (e.g. de for M2M-100, de_DE for mBART, "
        "deu_Latn for NLLB)",
    )


def generate(
    lm: LoadedModel,
    inputs: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    cache: LRUCache | None = None,
) -> list[Generated]:
    """Generate for every input, batched by length and cached.

    Returns:
        One :class:`Generated` per input, in input order.
    """
    if lm.kind not in ("seq2seq", "causal"):
        raise ModelKindError(
            f"model {lm.name!r} is a {lm.kind} model and cannot generate text",
            hint="pass a seq2seq or causal LM for this task",
        )
    prompts = [settings.prefix + text for text in inputs]
    # The tokenizer's source language (M2M-100, mBART, NLLB) changes the encoded input.
    src_lang = getattr(lm.tokenizer, "src_lang", None)
    keys = [cache_key("generate", lm.version, settings.key(), src_lang, p) for p in prompts]
    results: list[Generated | None] = [None] * len(prompts)
    todo: list[int] = []
    first: dict[str, int] = {}  # equal inputs in one call are generated once
    repeats: list[tuple[int, int]] = []
    for i, key in enumerate(keys):
        if key in first:
            repeats.append((i, first[key]))
            continue
        first[key] = i
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            results[i] = Generated(
                texts=hit["texts"],
                input_tokens=hit["input_tokens"],
                truncated=hit["truncated"],
                cached=True,
            )
        else:
            todo.append(i)
    with step(
        "generate", model=lm.name, inputs=len(prompts), cached=len(prompts) - len(todo)
    ) as info:
        lengths = dict(zip(todo, count_tokens(lm, [prompts[i] for i in todo]), strict=True))
        order = sorted(todo, key=lambda i: -lengths[i])
        progress.start(f"generate {lm.name}", len(order), "items")
        out_tokens = 0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            texts = _run_batch(lm, [prompts[i] for i in batch], settings)
            for j, i in enumerate(batch):
                n = settings.num_return_sequences
                outs = texts[j * n : (j + 1) * n]
                out_tokens += sum(len(t) for t in outs)
                gen = Generated(
                    texts=outs,
                    input_tokens=lengths[i],
                    truncated=lengths[i] > input_limit(lm, settings),
                    cached=False,
                )
                results[i] = gen
                if cache is not None:
                    cache.put(
                        keys[i],
                        {
                            "texts": outs,
                            "input_tokens": gen.input_tokens,
                            "truncated": gen.truncated,
                        },
                    )
            progress.advance(len(batch))
        info.update(generated=len(order), out_chars=out_tokens)
    for i, j in repeats:
        done = results[j]
        assert done is not None
        results[i] = dataclasses.replace(done, cached=True)
    return [r for r in results if r is not None]


def _run_batch(lm: LoadedModel, prompts: list[str], settings: GenerationSettings) -> list[str]:
    import torch

    tok = lm.tokenizer
    limit = input_limit(lm, settings)
    enc = tok(prompts, return_tensors="pt", padding=True, truncation=True, max_length=limit).to(
        lm.device
    )
    kwargs: dict[str, object] = {
        "max_new_tokens": settings.max_new_tokens,
        "min_new_tokens": settings.min_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "num_return_sequences": settings.num_return_sequences,
        "repetition_penalty": settings.repetition_penalty,
        "pad_token_id": tok.pad_token_id,
    }
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    if settings.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = settings.no_repeat_ngram_size
    if settings.forced_bos_token:
        kwargs["forced_bos_token_id"] = forced_bos_id(lm, settings.forced_bos_token)
    with lm.lock, torch.inference_mode():
        if settings.do_sample:
            torch.manual_seed(settings.seed)
        out = lm.model.generate(**enc, **kwargs)
    if lm.kind == "causal":
        out = out[:, enc["input_ids"].shape[1] :]  # keep only the continuation
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
