"""Domain-adaptive pretraining: continue pretraining on the user's unlabeled text.

Seq2seq models learn T5's span corruption: about ``noise_density`` of each text's
tokens, in spans of mean length ``mean_span``, are replaced by sentinel tokens
(``<extra_id_0>``, ``<extra_id_1>`` …) in the input, and the target lists each sentinel
followed by the tokens it hid. Causal models learn next-token prediction on the text.
Tokenizers without sentinels get them added (and the embeddings resized).

Runs through the same loop as fine-tuning (:class:`taskloop.train.loop.Loop`), as a
stage before it (``pretrain.steps`` in the training config) or alone
(``taskloop pretrain``); the adapted model is saved to ``OUT/pretrained``.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taskloop.log import step as log_step
from taskloop.train.batching import Encoded
from taskloop.train.config import TrainConfig
from taskloop.train.errors import TrainDataError

logger = logging.getLogger("taskloop.train")
SENTINELS = 100


def read_text(paths: Sequence[str]) -> list[str]:
    """Non-empty lines of plain-text files; JSONL rows give their ``text`` field."""
    texts: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise TrainDataError(
                f"pretraining text {raw!r} does not exist",
                hint="pretrain.text takes plain-text files (a passage per line) "
                "or JSONL with a text field",
            )
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            jsonl = ".jsonl" in path.name
            for n, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if jsonl:
                    try:
                        line = str(json.loads(line).get("text") or "").strip()
                    except (json.JSONDecodeError, AttributeError):
                        logger.warning(
                            "%s:%d: not a JSON object with a text field; skipped", raw, n
                        )
                        continue
                if line:
                    texts.append(line)
    if not texts:
        raise TrainDataError(f"no text found in {', '.join(paths)}")
    return texts


def ensure_sentinels(model: Any, tokenizer: Any, count: int = SENTINELS) -> list[int]:
    """Ids of ``<extra_id_0..count-1>``, added to the tokenizer and model when missing."""
    names = [f"<extra_id_{i}>" for i in range(count)]
    vocab = tokenizer.get_vocab()
    missing = [n for n in names if n not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
        model.resize_token_embeddings(len(tokenizer))
    return [int(tokenizer.convert_tokens_to_ids(n)) for n in names]


def span_corrupt(
    ids: Sequence[int],
    sentinels: Sequence[int],
    *,
    noise_density: float,
    mean_span: float,
    eos: int,
    rng: np.random.Generator,
) -> tuple[list[int], list[int]]:
    """(input, target) for one token sequence, T5 style.

    The number of noise tokens is round(len·density) (at least 1), split into
    round(noise/mean_span) spans (at least 1) of random lengths, placed between
    random-length kept runs.
    """
    n = len(ids)
    if n < 2:
        return [*ids, eos], [sentinels[0], eos]
    noise = min(max(1, round(n * noise_density)), n - 1)
    spans = min(max(1, round(noise / mean_span)), noise, n - noise, len(sentinels))

    def split(total: int, parts: int) -> list[int]:
        cuts: list[int] = []
        if parts > 1:
            cuts = sorted(int(c) for c in rng.choice(np.arange(1, total), parts - 1, replace=False))
        edges = [0, *cuts, total]
        return [b - a for a, b in itertools.pairwise(edges)]

    noise_lens, keep_lens = split(noise, spans), split(n - noise, spans)
    src: list[int] = []
    tgt: list[int] = []
    pos = 0
    for k in range(spans):
        src.extend(ids[pos : pos + keep_lens[k]])
        pos += keep_lens[k]
        src.append(sentinels[k])
        tgt.append(sentinels[k])
        tgt.extend(ids[pos : pos + noise_lens[k]])
        pos += noise_lens[k]
    return [*src, eos], [*tgt, eos]


def build_encoded(
    texts: Sequence[str], tokenizer: Any, kind: str, cfg: TrainConfig, model: Any
) -> Encoded:
    """The pretraining examples as token ids (span-corrupted, or plain text for causal)."""
    limit = cfg.data.max_source_tokens
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if kind == "causal":
        kept = [t[: limit - 1] for t in ids if t]
        return Encoded("pretrain", [[] for _ in kept], kept)
    sentinels = ensure_sentinels(model, tokenizer)
    rng = np.random.default_rng(cfg.run.seed)
    src, tgt = [], []
    for t in ids:
        if not t:
            continue
        s, g = span_corrupt(
            t[: limit - 1], sentinels, noise_density=cfg.pretrain.noise_density,
            mean_span=cfg.pretrain.mean_span, eos=eos, rng=rng,
        )  # fmt: skip
        src.append(s)
        tgt.append(g[: cfg.data.max_target_tokens])
    return Encoded("pretrain", src, tgt)


def domain_pretrain(
    cfg: TrainConfig,
    model: Any,
    tokenizer: Any,
    kind: str,
    rt: Any,
    out: Path,
    *,
    on_step: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``cfg.pretrain.steps`` steps of domain pretraining; returns the adapted model.

    A finished stage (``OUT/pretrained`` exists) is reused rather than run again.
    """
    from taskloop.train.loop import Loop
    from taskloop.train.prepare import load_for_training

    done = out / "pretrained"
    if (done / "config.json").is_file():
        logger.info("domain pretraining already done: using %s", done)
        adapted, new_tok, _ = load_for_training(str(done), kind)
        # The caller's tokenizer gets the tokens the stage added (sentinels), in id order.
        known = tokenizer.get_vocab()
        added = sorted((i, t) for t, i in new_tok.get_vocab().items() if t not in known)
        if added:
            tokenizer.add_special_tokens({"additional_special_tokens": [t for _, t in added]})
        return adapted
    texts = read_text(cfg.pretrain.text)
    enc = build_encoded(texts, tokenizer, kind, cfg, model)
    with log_step("train.pretrain", texts=len(texts), steps=cfg.pretrain.steps) as info:
        loop = Loop(
            cfg, out, model, tokenizer, kind, rt, [enc], [], [],
            max_steps=cfg.pretrain.steps, lr=cfg.pretrain.lr or cfg.optim.lr,
            save_checkpoints=False, evaluate=False, curriculum=False, on_step=on_step,
        )  # fmt: skip
        loop.run()
        info.update(loss=round(loop.last_loss, 4))
    model = loop._unwrapped()
    model.save_pretrained(done)
    tokenizer.save_pretrained(done)
    return model
