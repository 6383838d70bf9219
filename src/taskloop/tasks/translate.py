"""Translation: seq2seq generation with language codes, long-input splitting, and checks.

prepare
    Resolve each example's language pair (the example's ``source_lang``/``target_lang``
    win over the file's), group examples by pair, map ISO codes to the model family's
    codes (M2M-100 ``de``, mBART-50 ``de_DE``, NLLB ``deu_Latn``; a code the model
    already knows passes through), check that the tokenizer can read the source
    (:mod:`taskloop.tasks.coverage`), and split sources longer than the model's window at
    sentence boundaries with no overlap.
generate
    One batched, cached :func:`~taskloop.models.generate.generate` call per language pair,
    with the tokenizer's ``src_lang`` set and the target language forced as the first
    decoder token for multilingual models. Marian models translate one pair each: their
    name's pair is compared with the examples' languages (a warning when they differ) and
    multi-target Marian models get their ``>>de<<`` prefix. Chunks are joined in order.
verify
    :func:`taskloop.tasks.glossary.translation_checks` on every translation.

With no model configured, every item is "skipped" with a reason that says what to pass;
nothing is ever made up in place of a translation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskloop.data.records import Check, Prediction, TranslateExample, status_from_checks
from taskloop.evaluate.metrics import bleu_chrf, sentence_chrf
from taskloop.log import step
from taskloop.models.errors import ModelError
from taskloop.models.generate import GenerationSettings, count_tokens, forced_bos_id, generate
from taskloop.models.loader import LoadedModel
from taskloop.tasks.chunking import split_to_fit
from taskloop.tasks.context import TaskContext
from taskloop.tasks.coverage import coverage_check, coverage_per_text, coverage_warnings
from taskloop.tasks.glossary import align, translation_checks

NO_MODEL_REASON = (
    "no translation model is configured: pass one with `--model translate=Helsinki-NLP/"
    'opus-mt-en-de` (or set "model" for this file in manifest.json) once it is in the '
    "Hugging Face cache, or a local folder saved with save_pretrained; a multilingual model "
    "such as facebook/m2m100_418M also needs source_lang/target_lang codes (e.g. en, de)"
)

# ISO 639-1 → the codes of mBART-50 and NLLB-200 (M2M-100 uses ISO 639-1 itself).
_MBART50 = {
    "ar": "ar_AR", "cs": "cs_CZ", "de": "de_DE", "en": "en_XX", "es": "es_XX", "et": "et_EE",
    "fi": "fi_FI", "fr": "fr_XX", "gu": "gu_IN", "hi": "hi_IN", "it": "it_IT", "ja": "ja_XX",
    "kk": "kk_KZ", "ko": "ko_KR", "lt": "lt_LT", "lv": "lv_LV", "my": "my_MM", "ne": "ne_NP",
    "nl": "nl_XX", "ro": "ro_RO", "ru": "ru_RU", "si": "si_LK", "tr": "tr_TR", "vi": "vi_VN",
    "zh": "zh_CN", "af": "af_ZA", "az": "az_AZ", "bn": "bn_IN", "fa": "fa_IR", "he": "he_IL",
    "hr": "hr_HR", "id": "id_ID", "ka": "ka_GE", "km": "km_KH", "mk": "mk_MK", "ml": "ml_IN",
    "mn": "mn_MN", "mr": "mr_IN", "pl": "pl_PL", "ps": "ps_AF", "pt": "pt_XX", "sv": "sv_SE",
    "sw": "sw_KE", "ta": "ta_IN", "te": "te_IN", "th": "th_TH", "tl": "tl_XX", "uk": "uk_UA",
    "ur": "ur_PK", "xh": "xh_ZA", "gl": "gl_ES", "sl": "sl_SI",
}  # fmt: skip
_NLLB = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "nl": "nld_Latn", "ru": "rus_Cyrl", "zh": "zho_Hans", "ja": "jpn_Jpan",
    "ko": "kor_Hang", "ar": "arb_Arab", "hi": "hin_Deva", "tr": "tur_Latn", "pl": "pol_Latn",
    "cs": "ces_Latn", "sv": "swe_Latn", "uk": "ukr_Cyrl", "el": "ell_Grek", "he": "heb_Hebr",
    "ro": "ron_Latn", "fi": "fin_Latn", "da": "dan_Latn", "hu": "hun_Latn", "vi": "vie_Latn",
    "id": "ind_Latn", "th": "tha_Thai", "bg": "bul_Cyrl", "fa": "pes_Arab", "bn": "ben_Beng",
    "ur": "urd_Arab", "sw": "swh_Latn", "nb": "nob_Latn", "et": "est_Latn", "lt": "lit_Latn",
}  # fmt: skip
_CODE_PATTERNS = {"mbart": r"[a-z]{2}_[A-Z]{2}", "nllb": r"[a-z]{3}_[A-Z][a-z]{3}"}
# T5 was trained with task prefixes for these languages only.
_T5_NAMES = {"en": "English", "de": "German", "fr": "French", "ro": "Romanian"}
_NO_SPACES = {"zh", "ja", "th"}  # chunk translations are joined without a space
MULTILINGUAL = ("m2m100", "mbart", "nllb")


class LanguageCodeError(ValueError):
    """A language the model family has no code for (the message says what to pass)."""


def iso(lang: str | None) -> str | None:
    """ISO 639-1 part of a code: "de-DE", "de_DE", "DE" → "de"; None stays None."""
    if not lang:
        return None
    return re.split(r"[-_]", lang.strip())[0].lower() or None


def model_family(lm: LoadedModel) -> str:
    """ "marian", "m2m100", "mbart", "nllb", "t5" or "plain", from tokenizer and config.

    A tokenizer with ``__xx__`` language tokens (the tiny test models) counts as M2M-100,
    whose codes are spelled that way.
    """
    tok_class = type(lm.tokenizer).__name__.lower()
    model_type = str(getattr(lm.model.config, "model_type", ""))
    if "nllb" in tok_class:
        return "nllb"
    if "marian" in tok_class or model_type == "marian":
        return "marian"
    if "mbart" in tok_class or model_type == "mbart":
        return "mbart"
    if "m2m100" in tok_class or model_type == "m2m_100":
        return "m2m100"
    if any(re.fullmatch(r"__[a-z]{2,3}(_[A-Za-z]+)?__", t) for t in lm.tokenizer.get_vocab()):
        return "m2m100"
    return "t5" if model_type == "t5" else "plain"


def model_lang_code(family: str, lang: str, vocab: set[str] | frozenset[str] = frozenset()) -> str:
    """The code ``family`` uses for ``lang`` (an ISO code, or the model's own code).

    Raises:
        LanguageCodeError: the family needs a code this table does not know.
    """
    if f"__{lang}__" in vocab or (lang in vocab and not re.fullmatch(r"[a-z]{2,3}", lang)):
        # The model's own code ("deu_Latn", "__de__"); a bare "de" may be an ordinary
        # subword of the vocabulary, so it always goes through the table.
        return lang
    pattern = _CODE_PATTERNS.get(family)
    if pattern and re.fullmatch(pattern, lang):
        return lang
    code = iso(lang) or lang
    if family == "m2m100":
        return code
    table = _MBART50 if family == "mbart" else _NLLB
    if code in table:
        return table[code]
    example = "de_DE" if family == "mbart" else "deu_Latn"
    raise LanguageCodeError(
        f"no {family} code known for language {lang!r}: give the model's own code "
        f"(e.g. {example}) as source_lang/target_lang"
    )


def marian_pair(name: str) -> tuple[str, str] | None:
    """The (source, target) of an ``opus-mt-xx-yy`` model name, or None for other names."""
    base = Path(name.rstrip("/")).name
    m = re.search(r"opus-mt-(?:tc-(?:big|base)-)?([A-Za-z_]+)-([A-Za-z_]+)$", base)
    return (m.group(1), m.group(2)) if m else None


def language_pair_check(
    name: str, source_lang: str | None, target_lang: str | None
) -> Check | None:
    """Warn when an ``opus-mt-xx-yy`` model's pair disagrees with the example's languages.

    Only ISO 639-1 sides are compared: group codes (``ROMANCE``, ``mul``) and languages
    the example does not give cannot disagree.
    """
    pair = marian_pair(name)
    if pair is None:
        return None
    wrong = []
    for side, model_side, lang in (
        ("source", pair[0], source_lang),
        ("target", pair[1], target_lang),
    ):
        options = set(model_side.split("_"))
        code = iso(lang)
        if code and all(re.fullmatch(r"[a-z]{2}", o) for o in options) and code not in options:
            wrong.append(f"{side} {lang!r} but the model translates {model_side}")
    detail = f"model {name!r} is {pair[0]}→{pair[1]}; " + (
        "; ".join(wrong) if wrong else f"examples are {source_lang}→{target_lang}"
    )
    return Check(name="model_language_pair", passed=not wrong, detail=detail, severity="warning")


@dataclass
class _Item:
    """One example being translated: its chunks, their outputs, what happened on the way."""

    index: int
    example: TranslateExample
    source_lang: str | None
    target_lang: str | None
    chunks: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    truncation: list[str] = field(default_factory=list)
    input_tokens: int = 0
    cached: bool = True
    checks: list[Check] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


def _prediction(item: _Item, ctx: TaskContext, **fields: object) -> Prediction:
    ex = item.example
    values: dict[str, object] = {
        "id": ex.id,
        "task": "translate",
        "where": ex.where,
        "output": None,
        "model": ctx.options.model,
        "truncation": item.truncation,
        "details": {"source_lang": item.source_lang, "target_lang": item.target_lang},
    }
    values.update(fields)
    return Prediction.model_validate(values)


def run(examples: Sequence[TranslateExample], ctx: TaskContext) -> list[Prediction]:
    """Translate every example; one prediction per example, in input order."""
    opts = ctx.options
    items = [
        _Item(i, ex, ex.source_lang or opts.source_lang, ex.target_lang or opts.target_lang)
        for i, ex in enumerate(examples)
    ]
    if not opts.model:
        return [_prediction(it, ctx, status="skipped", reason=NO_MODEL_REASON) for it in items]
    try:
        lm = ctx.resources.model(opts.model, kind="seq2seq")
    except ModelError as exc:
        reason = f"translation model unavailable: {exc}" + (f"; {exc.hint}" if exc.hint else "")
        return [_prediction(it, ctx, status="skipped", reason=reason) for it in items]
    except Exception as exc:  # damaged weights and the like: report, do not crash the run
        reason = f"translation model {opts.model!r} failed to load: {type(exc).__name__}: {exc}"
        return [_prediction(it, ctx, status="failed", reason=reason) for it in items]
    family = model_family(lm)
    pair = marian_pair(lm.name) if family == "marian" else None
    if pair is not None:
        # A one-pair Marian model names its languages: use them where the data is silent,
        # so that the checks read numbers and inflections the target language's way.
        src_default, tgt_default = (p if re.fullmatch(r"[a-z]{2}", p) else None for p in pair)
        for it in items:
            it.source_lang = it.source_lang or src_default
            it.target_lang = it.target_lang or tgt_default
    results: dict[int, Prediction] = {}
    groups: dict[tuple[str | None, str | None], list[_Item]] = {}
    for it in items:
        groups.setdefault((it.source_lang, it.target_lang), []).append(it)
    for (src, tgt), group in groups.items():
        _translate_group(lm, family, src, tgt, group, ctx, results)
    _verify(items, ctx, lm, results)
    return [results[it.index] for it in items]


def _group_settings(
    lm: LoadedModel, family: str, src: str | None, tgt: str | None, ctx: TaskContext, budget: int
) -> tuple[GenerationSettings, str | None, str | None]:
    """Settings for one language pair, with the model's codes (source, target)."""
    # Output about as long as the input, and a bit: German runs ~15% longer than English.
    settings = ctx.generation(
        max_new_tokens=min(512, budget * 3 // 2 + 8), num_beams=4, batch_size=16
    )
    vocab = set(lm.tokenizer.get_vocab())
    src_code = tgt_code = None
    if family in MULTILINGUAL:
        if not tgt:
            raise LanguageCodeError(
                f"{lm.name} is multilingual and needs the target language: set target_lang "
                'on the examples or for the file in manifest.json (e.g. "target_lang": "de")'
            )
        tgt_code = model_lang_code(family, tgt, vocab)
        forced_bos_id(lm, tgt_code)  # raises ModelKindError now, not inside generation
        src_code = model_lang_code(family, src, vocab) if src else None
        settings = dataclasses.replace(settings, forced_bos_token=tgt_code)
    elif family == "marian" and tgt and f">>{iso(tgt)}<<" in vocab:
        # Multi-target Marian models pick the output language from a source prefix.
        settings = dataclasses.replace(settings, prefix=f">>{iso(tgt)}<< " + settings.prefix)
    elif (
        family == "t5"
        and not ctx.options.prefix
        and iso(src) in _T5_NAMES
        and iso(tgt) in _T5_NAMES
    ):
        names = _T5_NAMES[iso(src) or ""], _T5_NAMES[iso(tgt) or ""]
        settings = dataclasses.replace(settings, prefix=f"translate {names[0]} to {names[1]}: ")
    return settings, src_code, tgt_code


def _translate_group(
    lm: LoadedModel,
    family: str,
    src: str | None,
    tgt: str | None,
    group: list[_Item],
    ctx: TaskContext,
    results: dict[int, Prediction],
) -> None:
    """Split, generate and join the translations of one language pair's items."""
    opts = ctx.options
    budget = min(lm.window, opts.max_input_tokens or lm.window)
    try:
        settings, src_code, tgt_code = _group_settings(lm, family, src, tgt, ctx, budget)
    except (LanguageCodeError, ModelError) as exc:
        hint = getattr(exc, "hint", None)
        reason = f"{exc}" + (f"; {hint}" if hint else "")
        for it in group:
            results[it.index] = _prediction(it, ctx, status="skipped", reason=reason)
        return
    tok = lm.tokenizer
    has_src_lang = src_code is not None and hasattr(tok, "src_lang")
    previous = getattr(tok, "src_lang", None)
    try:
        if has_src_lang:
            # The tokenizer prepends the source language token (M2M-100, mBART, NLLB).
            tok.src_lang = src_code
        with step("translate.prepare", items=len(group), source_lang=src, target_lang=tgt) as info:
            # Once per source language for the file's summary, then per item as a check.
            ctx.warnings.extend(
                coverage_warnings([it.example for it in group], lm, default_lang=src)
            )
            sources = [it.example.source for it in group]
            reports = coverage_per_text(sources, lm, src or "unknown")
            for it, report in zip(group, reports, strict=True):
                it.checks.append(coverage_check(report))
                _chunk(it, lm, settings, budget, opts.long_input)
            info.update(chunks=sum(len(it.chunks) for it in group))
        flat = [chunk for it in group for chunk in it.chunks]
        with step("translate.generate", items=len(group), chunks=len(flat)) as info:
            outs = generate(lm, flat, settings, cache=ctx.resources.cache)
            info.update(cached=sum(o.cached for o in outs))
    except Exception as exc:  # a failed batch must not lose the other groups' results
        reason = f"generation failed for {src}→{tgt}: {type(exc).__name__}: {exc}"
        for it in group:
            results[it.index] = _prediction(
                it, ctx, status="failed", reason=reason, model=lm.describe()
            )
        return
    finally:
        if has_src_lang:
            tok.src_lang = previous
    # The forced language token takes one of the max_new_tokens and is not in the text.
    limit = settings.max_new_tokens - (1 if settings.forced_bos_token else 0)
    pos = 0
    for it in group:
        gens = outs[pos : pos + len(it.chunks)]
        pos += len(it.chunks)
        it.outputs = [g.text for g in gens]
        it.cached = all(g.cached for g in gens)
        for n, g in enumerate(gens, start=1):
            if g.truncated and opts.long_input != "truncate":  # _chunk noted that cut
                it.truncation.append(
                    f"chunk {n} of {g.input_tokens} tokens was cut to the model window of "
                    f"{lm.window} tokens"
                )
            out_tokens = len(tok(g.text, add_special_tokens=False)["input_ids"]) if g.text else 0
            if out_tokens >= limit:
                it.truncation.append(
                    f"the translation of chunk {n} reached max_new_tokens={settings.max_new_tokens}"
                    " and may be cut short: raise max_new_tokens"
                )
        it.details.update(
            model_source_lang=src_code,
            model_target_lang=tgt_code,
            chunks=len(it.chunks),
            input_tokens=it.input_tokens,
            cached=it.cached,
        )
        pair = language_pair_check(lm.name, it.source_lang, it.target_lang)
        if pair is not None:
            it.checks.insert(0, pair)


def _chunk(
    it: _Item, lm: LoadedModel, settings: GenerationSettings, budget: int, mode: str
) -> None:
    """Fill ``it.chunks`` with the source, split at sentences when it exceeds the budget."""
    source = it.example.source

    def count(texts: Sequence[str]) -> list[int]:
        return count_tokens(lm, [settings.prefix + t for t in texts])

    it.input_tokens = count([source])[0]
    if mode == "truncate" or it.input_tokens <= budget:
        it.chunks = [source]
        if it.input_tokens > lm.window:
            it.truncation.append(
                f"input of {it.input_tokens} tokens cut to the model window of {lm.window} "
                "tokens (long_input=truncate): the end of the source is not translated"
            )
        return
    split = split_to_fit(source, budget, count, overlap=0)
    it.chunks = [c.text for c in split.chunks]
    it.truncation.extend(split.notes)


def _join(parts: Sequence[str], target_lang: str | None) -> str:
    sep = "" if iso(target_lang) in _NO_SPACES else " "
    return sep.join(p.strip() for p in parts if p.strip())


def _verify(
    items: list[_Item], ctx: TaskContext, lm: LoadedModel, results: dict[int, Prediction]
) -> None:
    """Checks and per-item scores for every item that got a translation."""
    done = [it for it in items if it.index not in results]
    outputs = {it.index: _join(it.outputs, it.target_lang) for it in done}
    ratios = [
        len(outputs[it.index]) / len(it.example.source.strip())
        for it in done
        if outputs[it.index] and it.example.source.strip()
    ]
    with step("translate.verify", items=len(done)) as info:
        flagged = 0
        for it in done:
            ex, output = it.example, outputs[it.index]
            if not output:
                results[it.index] = _prediction(
                    it,
                    ctx,
                    output="",
                    status="failed",
                    mode="generative",
                    model=lm.describe(),
                    checks=it.checks,
                    reason="the model produced an empty translation",
                    details={
                        "source_lang": it.source_lang,
                        "target_lang": it.target_lang,
                        **it.details,
                    },
                )
                continue
            checks = it.checks + translation_checks(
                ex.source,
                output,
                glossary=ctx.glossary,
                dictionary=ctx.dictionary,
                source_lang=it.source_lang,
                target_lang=it.target_lang,
                file_ratios=ratios,
            )
            scores: dict[str, float] = {}
            if ex.target:
                scores["chrf++"] = sentence_chrf(output, ex.target)
            if ctx.dictionary:
                coverage = align(ex.source, output, ctx.dictionary).coverage
                if coverage is not None:
                    scores["alignment_coverage"] = coverage
            status = status_from_checks(checks)
            flagged += status == "flagged"
            results[it.index] = _prediction(
                it,
                ctx,
                output=output,
                status=status,
                mode="generative",
                model=lm.describe(),
                checks=checks,
                scores=scores,
                details={
                    "source_lang": it.source_lang,
                    "target_lang": it.target_lang,
                    **it.details,
                },
            )
        info.update(flagged=flagged)


def score(
    examples: Sequence[TranslateExample], predictions: Sequence[Prediction]
) -> dict[str, float]:
    """Corpus BLEU and chrF++ over items with a reference ``target`` and a translation, the
    number of such items, and the share of translated items passing each check
    (``check.<name>``)."""
    by_id = {p.id: p for p in predictions}
    hyps: list[str] = []
    refs: list[str] = []
    for ex in examples:
        p = by_id.get(ex.id)
        if p is not None and p.output is not None and ex.target:
            hyps.append(p.output)
            refs.append(ex.target)
    out: dict[str, float] = {}
    if hyps:
        out.update(bleu_chrf(hyps, refs))
        out["references"] = float(len(hyps))
    passed: dict[str, list[bool]] = {}
    for p in predictions:
        if p.output is None:
            continue
        for c in p.checks:
            passed.setdefault(c.name, []).append(c.passed)
    for name, results in passed.items():
        out[f"check.{name}"] = sum(results) / len(results)
    return out
