"""A model built from scratch: a BPE tokenizer trained on the data and a random model.

Used when the training config has ``model.init`` (e.g. a small Transformer trained on
Multi30k). The tokenizer is shared between source and target (one joint vocabulary),
which lets the model tie its encoder, decoder and output embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from taskloop.train.config import ModelInit

SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0..3, the order Marian and T5 use


def train_tokenizer(
    texts: Iterable[str], *, vocab_size: int, max_length: int, append_eos: bool
) -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE (``▁`` marks word starts) over ``texts``.

    ``append_eos`` ends every encoding with ``</s>`` (encoder-decoder inputs and labels);
    a causal model's prompts must not end with it.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))  # noqa: S106 - a token, not a password
    core.normalizer = normalizers.NFKC()
    # Punctuation splits off so "something." and "something" share a token.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()]
    )
    core.decoder = decoders.Metaspace()
    trainer = BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2, show_progress=False
    )
    core.train_from_iterator(texts, trainer=trainer)
    if append_eos:
        core.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        model_max_length=max_length,
        pad_token="<pad>",  # noqa: S106
        eos_token="</s>",  # noqa: S106
        unk_token="<unk>",  # noqa: S106
        bos_token="<s>",  # noqa: S106
    )


def build_model(init: ModelInit, tokenizer: Any) -> Any:
    """A randomly initialised model of ``init.arch`` sized for ``tokenizer``."""
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        MarianConfig,
        MarianMTModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    vocab = len(tokenizer)
    config: Any
    dec_layers = init.decoder_layers or init.layers
    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    if init.arch == "marian":
        config = MarianConfig(
            vocab_size=vocab, decoder_vocab_size=vocab, d_model=init.d_model,
            encoder_layers=init.layers, decoder_layers=dec_layers,
            encoder_attention_heads=init.heads, decoder_attention_heads=init.heads,
            encoder_ffn_dim=init.ffn, decoder_ffn_dim=init.ffn, dropout=init.dropout,
            attention_dropout=init.attention_dropout, activation_dropout=init.attention_dropout,
            max_position_embeddings=init.max_positions, scale_embedding=True,
            share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
            decoder_start_token_id=tokenizer.pad_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
            **ids,
        )  # fmt: skip
        return MarianMTModel(config)
    if init.arch == "bart":
        config = BartConfig(
            vocab_size=vocab, d_model=init.d_model,
            encoder_layers=init.layers, decoder_layers=dec_layers,
            encoder_attention_heads=init.heads, decoder_attention_heads=init.heads,
            encoder_ffn_dim=init.ffn, decoder_ffn_dim=init.ffn, dropout=init.dropout,
            attention_dropout=init.attention_dropout, max_position_embeddings=init.max_positions,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=tokenizer.eos_token_id,
            **ids,
        )  # fmt: skip
        return BartForConditionalGeneration(config)
    if init.arch == "t5":
        config = T5Config(
            vocab_size=vocab, d_model=init.d_model, d_kv=init.d_model // init.heads,
            d_ff=init.ffn, num_layers=init.layers, num_decoder_layers=dec_layers,
            num_heads=init.heads, dropout_rate=init.dropout,
            **{"decoder_start_token_id": tokenizer.pad_token_id}, **ids,
        )  # fmt: skip
        return T5ForConditionalGeneration(config)
    config = GPT2Config(
        vocab_size=vocab, n_embd=init.d_model, n_layer=init.layers, n_head=init.heads,
        n_inner=init.ffn, n_positions=init.max_positions, resid_pdrop=init.dropout,
        embd_pdrop=init.dropout, attn_pdrop=init.attention_dropout, **ids,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def build_from_scratch(init: ModelInit, texts: list[str], out_dir: Path) -> Path:
    """Train the tokenizer on ``texts``, build the model, save both to ``out_dir``."""
    from transformers import AutoTokenizer

    seq2seq = init.arch != "gpt2"
    if init.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(init.tokenizer)
    else:
        tokenizer = train_tokenizer(
            texts, vocab_size=init.vocab_size, max_length=init.max_positions, append_eos=seq2seq
        )
    model = build_model(init, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
