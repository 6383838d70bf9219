"""Tiny Hugging Face models built from config, for tests and offline smoke runs.

Nothing here downloads anything: a word-level tokenizer is trained on the texts given
(or a small built-in corpus), a 1–2 layer model is built from a config with random
weights, and both are saved with ``save_pretrained`` so that the normal loader
(:func:`taskloop.models.loader.load_model`) opens them like any hub checkpoint. Their
outputs are noise; they exist to exercise the code paths (batching, caching, long-input
splitting, language codes), never to produce answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<s>"]
BUILTIN_CORPUS = [
    "The model runs on a single GPU and answers questions about short documents.",
    "Das Modell läuft auf einer einzigen GPU und beantwortet Fragen zu kurzen Texten.",
    "A dog is running across the green meadow while children play in the park.",
    "Ein Hund rennt über die grüne Wiese, während Kinder im Park spielen.",
    "def add(a, b): return a + b  # the sum of two numbers 0 1 2 3 4 5 6 7 8 9",
    "The council voted seven to two to build twelve kilometres of cycling lanes.",
]

Kind = Literal["seq2seq", "causal"]


def _words(texts: Iterable[str]) -> list[str]:
    return [w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)]


def build_tokenizer(
    texts: Iterable[str],
    *,
    extra_tokens: Iterable[str] = (),
    max_length: int = 64,
    append_eos: bool = True,
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over the words of ``texts`` plus ``extra_tokens``.

    ``append_eos`` ends every encoded input with ``</s>`` (what T5-style encoders expect;
    a causal LM's prompt must not end with it).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *extra_tokens, *_words(texts)]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))  # noqa: S106 - a token, not a password
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    if append_eos:
        core.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
    roles = dict(
        zip(("pad_token", "eos_token", "unk_token", "bos_token"), SPECIAL_TOKENS, strict=True)
    )
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, model_max_length=max_length, **roles
    )
    extra = list(extra_tokens)
    if extra:
        tok.add_special_tokens({"additional_special_tokens": extra})
    return tok


def build_tiny_model(
    out_dir: str | Path,
    kind: Kind = "seq2seq",
    *,
    texts: Iterable[str] = BUILTIN_CORPUS,
    lang_tokens: Iterable[str] = (),
    max_length: int = 64,
    layers: int = 1,
    width: int = 32,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random ``kind`` model with its tokenizer in ``out_dir``.

    Args:
        out_dir: folder to write (created).
        kind: "seq2seq" (a T5 encoder-decoder) or "causal" (a GPT-2 decoder).
        texts: words of these texts form the vocabulary.
        lang_tokens: extra tokens such as ``__de__`` for forced-BOS language codes.
        max_length: the model's context window (``model_max_length`` and positions).
        layers, width: model size; 1 layer of width 32 loads in milliseconds.
        seed: weights are reproducible for a seed.

    Returns:
        The folder, loadable with ``from_pretrained``.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(
        texts, extra_tokens=list(lang_tokens), max_length=max_length, append_eos=kind == "seq2seq"
    )
    torch.manual_seed(seed)
    model: torch.nn.Module
    config: Any
    if kind == "seq2seq":
        config = T5Config(
            vocab_size=len(tok),
            d_model=width,
            d_kv=max(width // 4, 4),
            d_ff=width * 2,
            num_layers=layers,
            num_decoder_layers=layers,
            num_heads=4,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            **{"decoder_start_token_id": tok.pad_token_id, "n_positions": max_length},
        )
        model = T5ForConditionalGeneration(config)
    elif kind == "causal":
        config = GPT2Config(
            vocab_size=len(tok),
            n_embd=width,
            n_layer=layers,
            n_head=4,
            n_positions=max_length,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"kind must be 'seq2seq' or 'causal', not {kind!r}")
    model.generation_config.max_new_tokens = 8
    # Random weights favour <pad>; suppressing the non-word specials makes the noise visible.
    model.generation_config.suppress_tokens = [
        tok.pad_token_id,
        tok.unk_token_id,
        tok.bos_token_id,
    ]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_encoder(
    out_dir: str | Path,
    *,
    texts: Iterable[str] = BUILTIN_CORPUS,
    labels: int | dict[int, str] | None = None,
    max_length: int = 64,
    append_eos: bool = False,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random BERT (1 layer, width 32) with a word-level tokenizer
    over ``texts``: an encoder (``labels`` None) or a sequence classifier with that many
    labels (1: a reward model's single logit) or those label names.

    Returns:
        The folder, loadable with ``from_pretrained`` and taskloop's loader.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(texts, max_length=max_length, append_eos=append_eos)
    names: dict[str, Any] = {}
    if isinstance(labels, dict):
        names = {
            "num_labels": len(labels),
            "id2label": dict(labels),
            "label2id": {v: k for k, v in labels.items()},
        }
    elif labels is not None:
        names = {"num_labels": labels}
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_length,
        pad_token_id=tok.pad_token_id,
        **names,
    )
    torch.manual_seed(seed)
    model = BertModel(config) if labels is None else BertForSequenceClassification(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_marian_tokenizer(
    out_dir: str | Path,
    *,
    texts: Iterable[str] = BUILTIN_CORPUS,
    extra_tokens: Iterable[str] = (),
    vocab_size: int = 100,
    max_length: int = 64,
) -> Any:
    """A slow ``MarianTokenizer`` over a SentencePiece model trained on ``texts``.

    Characters absent from ``texts`` are unknown to it (what coverage tests need), and
    ``extra_tokens`` (such as ``>>de<<``) are appended to its vocabulary. The files
    (``sp.model``, ``vocab.json``) stay in ``out_dir``.
    """
    import json
    import warnings

    import sentencepiece
    from transformers import MarianTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(list(texts) * 3), encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "sp"), vocab_size=vocab_size,
        character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip
    sp = sentencepiece.SentencePieceProcessor(model_file=str(out / "sp.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    for token in extra_tokens:
        vocab.setdefault(token, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    spm = str(out / "sp.model")
    with warnings.catch_warnings():  # "Recommended: pip install sacremoses"
        warnings.simplefilter("ignore", UserWarning)
        return MarianTokenizer(
            source_spm=spm,
            target_spm=spm,
            vocab=str(out / "vocab.json"),
            model_max_length=max_length,
        )
