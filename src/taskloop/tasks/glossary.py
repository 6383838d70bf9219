"""Checks of a translation against its source: glossary, copies, numbers, names, length,
dictionary alignment; and the loaders for glossaries and bilingual dictionaries.

Every check is a pure function ``(source, output, ...) -> Check``; none needs a model, so
they run on any translation (a model's, or a human reference when measuring false
positives). Each check's ``detail`` says what it found, so a reader can see why it held.
German is the language the inflection and number rules know best (en→de is the use case
that the defaults were tuned on, with Multi30k reference translations); other target
languages get the language-neutral part of each rule.
"""

from __future__ import annotations

import gzip
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

from taskloop.data.records import Check
from taskloop.errors import ExitStatus, TaskloopError
from taskloop.tasks.text import STOPWORDS, names, words


class GlossaryError(TaskloopError):
    """A glossary or dictionary file has a malformed line (the message names file and line)."""

    code = "translate.glossary"
    exit_status = ExitStatus.CORRUPT


# --- loading ---------------------------------------------------------------------------

_HEADERS = {("source", "target"), ("term", "translation"), ("english", "german")}


def _read_lines(
    path_or_lines: str | Path | Iterable[str], name: str | None
) -> tuple[str, list[str]]:
    if isinstance(path_or_lines, str | Path):
        path = Path(path_or_lines)
        try:
            if path.suffix == ".gz":
                with gzip.open(path, "rt", encoding="utf-8") as fh:
                    text = fh.read()
            else:
                text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise GlossaryError(
                f"{path}: cannot read: {exc}", hint="pass a UTF-8 TSV file: source<TAB>target"
            ) from None
        return name or str(path), text.splitlines()
    return name or "<lines>", [line.rstrip("\r\n") for line in path_or_lines]


def _pairs(
    path_or_lines: str | Path | Iterable[str], name: str | None
) -> list[tuple[int, str, str]]:
    """(line number, source, target) for each entry; blank and ``#`` lines are skipped."""
    label, lines = _read_lines(path_or_lines, name)
    out: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.lstrip("\ufeff") if lineno == 1 else raw
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise GlossaryError(
                f"{label}:{lineno}: expected 'source<TAB>target', got "
                f"{len(fields)} field(s){' with an empty side' if len(fields) == 2 else ''}: "
                f"{line[:80]!r}",
                hint="one entry per line, source and target separated by a single tab",
            )
        src, tgt = (" ".join(f.split()) for f in fields)
        if not out and (src.lower(), tgt.lower()) in _HEADERS:
            continue  # a header row
        out.append((lineno, src, tgt))
    return out


def load_glossary(
    path_or_lines: str | Path | Iterable[str], *, name: str | None = None
) -> dict[str, str]:
    """Read a glossary, ``source<TAB>target`` per line (a path, ``.gz`` allowed, or lines).

    Args:
        path_or_lines: a file path, or the lines of a file read from an archive.
        name: the file name used in error messages when lines are given.

    Returns:
        Source term → required target term, source terms as written.

    Raises:
        GlossaryError: a line without exactly one tab, an empty side, or one source term
            with two different targets (both line numbers are named).
    """
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    label = name or (str(path_or_lines) if isinstance(path_or_lines, str | Path) else "<lines>")
    for lineno, src, tgt in _pairs(path_or_lines, name):
        key = src.lower()
        if key in first_line and out[_find_key(out, key)].lower() != tgt.lower():
            raise GlossaryError(
                f"{label}:{lineno}: term {src!r} already maps to "
                f"{out[_find_key(out, key)]!r} (line {first_line[key]}), not {tgt!r}",
                hint="a glossary term needs exactly one required translation",
            )
        if key not in first_line:
            first_line[key] = lineno
            out[src] = tgt
    return out


def _find_key(glossary: Mapping[str, str], lower: str) -> str:
    return next(k for k in glossary if k.lower() == lower)


def load_dictionary(
    path_or_lines: str | Path | Iterable[str], *, name: str | None = None
) -> dict[str, set[str]]:
    """Read a bilingual dictionary, ``source<TAB>target`` per line, many targets per word.

    Keys and values keep their case (``Monday`` → ``Montag`` is a proper-noun entry; a
    lower-case key marks a common word); lookups try the lower-case and capitalised forms.

    Raises:
        GlossaryError: a malformed line, naming the file and line.
    """
    out: dict[str, set[str]] = {}
    for _, src, tgt in _pairs(path_or_lines, name):
        out.setdefault(src, set()).add(tgt)
    return out


# --- shared helpers --------------------------------------------------------------------

_FOLD = str.maketrans({"ä": "a", "ö": "o", "ü": "u", "ß": "ss", "é": "e", "è": "e", "à": "a"})


def _fold(word: str) -> str:
    """Lower case with umlauts folded, so "schläft" meets "schlafen" on a common prefix."""
    return word.lower().translate(_FOLD)


def _lang(code: str | None) -> str | None:
    """ISO 639-1 part of a language code: "de_DE" → "de", "deu_Latn" → "deu"."""
    if not code:
        return None
    return re.split(r"[-_]", code.strip())[0].lower() or None


_GERMAN = {"de", "deu", "ger"}
# Languages whose names are written in another script: names are transliterated there.
NON_LATIN = {
    "ru", "uk", "bg", "be", "sr", "mk", "el", "zh", "ja", "ko", "ar", "fa", "ur", "he", "hi",
    "mr", "ne", "bn", "ta", "te", "th", "ka", "hy", "am", "rus", "ukr", "zho", "jpn", "kor",
    "arb", "heb", "hin", "ell", "tha",
}  # fmt: skip

# English inflected forms the dictionary does not list; enough for caption-style text.
_IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "sat": "sit", "ran": "run",
    "ate": "eat", "went": "go", "gone": "go", "was": "be", "were": "be", "has": "have",
    "held": "hold", "stood": "stand", "wore": "wear", "worn": "wear", "rode": "ride",
    "lying": "lie", "dying": "die", "leaves": "leaf", "knives": "knife", "wives": "wife",
}  # fmt: skip


def english_forms(word: str) -> list[str]:
    """``word`` and the base forms it may be an inflection of: "running" → run, "dogs" → dog."""
    w = word.lower()
    out = [w]
    if w in _IRREGULAR:
        out.append(_IRREGULAR[w])
    if w.endswith("ies") and len(w) > 4:
        out.append(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        out.append(w[:-2])
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        out.append(w[:-1])
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            base = w[: -len(suffix)]
            out += [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2]:
                out.append(base[:-1])  # running → run, stopped → stop
            if suffix == "ed" and base.endswith("i"):
                out.append(base[:-1] + "y")  # carried → carry
    return list(dict.fromkeys(out))


def lookup(dictionary: Mapping[str, set[str]], word: str) -> set[str]:
    """Translations of ``word`` in any of its cases and English base forms."""
    found: set[str] = set()
    for form in english_forms(word):
        for key in (form, form.capitalize(), word):
            found |= dictionary.get(key, set())
    return found


def _word_matches(translation: str, target_word: str) -> bool:
    """A folded dictionary word ``translation`` occurs as ``target_word`` or an inflected
    or compounded form of it (the "light prefix match")."""
    t, w = translation, target_word
    if w == t:
        return True
    if len(t) >= 3 and w.startswith(t) and (len(t) >= 4 or len(w) - len(t) <= 3):
        return True  # grün → grünen; Eis → Eisfischerhütte
    if len(t) >= 4 and t in w:
        return True  # Hütte closing a compound: Eisfischerhütte
    common = len(_common_prefix(t, w))
    return common >= max(4, len(t) - 2)  # stem changes: schlafen / schläft, rennen / rennt


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _translation_present(translation: str, target_words: Sequence[str]) -> bool:
    parts = [_fold(p) for p in re.split(r"[\W_]+", translation) if p]
    parts = [p for p in parts if len(p) >= 3] or parts
    return bool(parts) and all(any(_word_matches(p, w) for w in target_words) for p in parts)


# --- checks ----------------------------------------------------------------------------


def _term_pattern(term: str, *, endings: str, allow_compound: bool) -> re.Pattern[str]:
    """Case-insensitive pattern for ``term``: words on word boundaries, optional ``endings``
    on the last one; with ``allow_compound`` a term of 4+ letters may also open or close
    a compound word (German "Straßenecke", "Fachglossar")."""
    parts = [re.escape(p) for p in term.split()]
    body = r"\s+".join(parts)
    if allow_compound and len(term) >= 4:
        return re.compile(body, re.IGNORECASE)
    return re.compile(f"(?<!\\w){body}(?:{endings})?(?!\\w)", re.IGNORECASE)


_GERMAN_ENDINGS = "e|en|er|es|s|n|ern"


def glossary_terms(
    source: str, output: str, glossary: Mapping[str, str], *, target_lang: str | None = "de"
) -> Check:
    """Every glossary term found in the source has its required translation in the output.

    Source terms match case-insensitively on word boundaries (multi-word terms across any
    whitespace; an English plural -s/-es counts). The target term matches
    case-insensitively; for German it may carry an inflection ending (-e, -en, -er, -es,
    -s, -n) on its last word, and a term of four or more letters may open or close a
    compound ("Straßenecke", "Fachglossar").
    """
    if not glossary:
        return Check(name="glossary_terms", passed=True, detail="no glossary given")
    german = _lang(target_lang) in _GERMAN
    found: list[str] = []
    missing: list[str] = []
    for src, tgt in glossary.items():
        if not _term_pattern(src, endings="s|es", allow_compound=False).search(source):
            continue
        pattern = _term_pattern(
            tgt, endings=_GERMAN_ENDINGS if german else "", allow_compound=german
        )
        (found if pattern.search(output) else missing).append(f"{src!r} → {tgt!r}")
    if missing:
        return Check(
            name="glossary_terms",
            passed=False,
            detail=f"missing {len(missing)} of {len(found) + len(missing)} glossary term(s): "
            + "; ".join(missing),
        )
    if not found:
        return Check(name="glossary_terms", passed=True, detail="no glossary term in the source")
    return Check(
        name="glossary_terms",
        passed=True,
        detail=f"all {len(found)} term(s) present: " + "; ".join(found),
    )


def _names_words(text: str) -> set[str]:
    return {w.lower() for run in names(text) for w in run.split()}


def untranslated_copy(
    source: str,
    output: str,
    *,
    glossary: Mapping[str, str] | None = None,
    dictionary: Mapping[str, set[str]] | None = None,
    min_run: int = 4,
    min_share: float = 0.5,
) -> Check:
    """The output is not the source, and no long run of source content words is copied.

    A run counts the source content words (not stop words, names, numbers, acronyms, or
    words a glossary or the dictionary keeps as they are) inside one stretch of words that
    the output repeats verbatim (case-insensitive). It fails at ``min_run`` words, or when
    a run of at least two such words is ``min_share`` of all of them.
    """
    keep = _names_words(source)
    for src, tgt in (glossary or {}).items():
        if src.lower() == tgt.lower():
            keep |= {w.lower() for w in src.split()}
    src_tokens = words(source)
    for tok in src_tokens:
        if (tok.isupper() and len(tok) > 1) or any(c.isdigit() for c in tok):
            keep.add(tok.lower())
        elif dictionary and any(t.lower() == tok.lower() for t in lookup(dictionary, tok)):
            keep.add(tok.lower())  # the dictionary says it is spelled the same: "Hotel"
    src_words = [t.lower() for t in src_tokens]
    out_words = [t.lower() for t in words(output)]
    content = [w not in STOPWORDS and len(w) > 1 and w not in keep for w in src_words]
    total = sum(content)
    if total == 0:
        return Check(name="untranslated_copy", passed=True, detail="no content words to compare")
    if src_words == out_words:
        return Check(
            name="untranslated_copy",
            passed=False,
            detail=f"the output repeats the source word for word ({total} content words)",
        )
    matcher = SequenceMatcher(None, src_words, out_words, autojunk=False)
    best, best_words = 0, ""
    for block in matcher.get_matching_blocks():
        run = sum(content[block.a : block.a + block.size])
        if run > best:
            best, best_words = run, " ".join(src_tokens[block.a : block.a + block.size])
    share = best / total
    copied = best >= min_run or (best >= 2 and share >= min_share)
    detail = f"longest copied run: {best} of {total} content words ({share:.0%})" + (
        f": {best_words!r}" if best else ""
    )
    return Check(name="untranslated_copy", passed=not copied, detail=detail)


_DECIMAL_COMMA = {
    "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "cs", "sk", "sv", "da", "nb", "no", "fi",
    "tr", "ro", "hu", "uk", "el", "bg", "hr", "sl", "sr", "lt", "lv", "et", "id", "ca",
    "deu", "fra", "spa", "ita", "por", "nld", "rus", "pol", "ces", "swe", "ukr", "tur",
}  # fmt: skip
_NUMBER_TOKEN = re.compile(r"(?<![\w])\d+(?:[.,\u00a0\u202f]\d+)*")
# "one"/"ein" are left out on purpose: in both languages they are also articles/pronouns.
_NUMBER_WORDS = {
    "en": {
        "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
        "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
        "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
        "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
        "thousand": 1000, "million": 1_000_000, "dozen": 12, "zero": 0,
    },
    "de": {
        "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8,
        "neun": 9, "zehn": 10, "elf": 11, "zwölf": 12, "dreizehn": 13, "vierzehn": 14,
        "fünfzehn": 15, "sechzehn": 16, "siebzehn": 17, "achtzehn": 18, "neunzehn": 19,
        "zwanzig": 20, "dreißig": 30, "vierzig": 40, "fünfzig": 50, "hundert": 100,
        "tausend": 1000, "million": 1_000_000, "millionen": 1_000_000, "dutzend": 12,
        "null": 0,
    },
}  # fmt: skip


def _canon(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _number_words(lang: str | None) -> dict[str, int]:
    code = _lang(lang)
    if code in _GERMAN:
        return _NUMBER_WORDS["de"]
    return _NUMBER_WORDS["en"] if code in (None, "en", "eng") else {}


def parse_numbers(text: str, lang: str | None = None, *, decimal: str | None = None) -> list[str]:
    """Numbers in ``text`` as canonical strings, read with the language's conventions.

    English writes "1,000.5", German "1.000,5"; a token that is not a well-formed number in
    the convention (a date "3.5.2020", a time "10:30") is read as its separate parts.
    Number words of English and German count ("two", "zwei"); "one"/"ein" do not.

    Args:
        lang: the text's language; decides the decimal mark unless ``decimal`` is given.
        decimal: "." or "," to force the convention.
    """
    digits, spelled = _parse_numbers(text, lang, decimal)
    return digits + spelled


def _parse_numbers(text: str, lang: str | None, decimal: str | None) -> tuple[list[str], list[str]]:
    code = _lang(lang)
    dec = decimal or ("," if code in _DECIMAL_COMMA else ".")
    group = "." if dec == "," else ","
    grouped = re.compile(
        rf"\d{{1,3}}(?:[{re.escape(group)}\u00a0\u202f]\d{{3}})+(?:{re.escape(dec)}\d+)?"
    )
    plain = re.compile(rf"\d+(?:{re.escape(dec)}\d+)?")
    out: list[str] = []
    for m in _NUMBER_TOKEN.finditer(text):
        token = m.group()
        if grouped.fullmatch(token) or plain.fullmatch(token):
            clean = re.sub(rf"[{re.escape(group)}\u00a0\u202f]", "", token).replace(dec, ".")
            out.append(_canon(float(clean)))
        else:
            out += [_canon(float(p)) for p in re.split(r"[.,\u00a0\u202f]", token) if p]
    table = _number_words(lang)
    spelled = [_canon(float(table[w.lower()])) for w in words(text) if w.lower() in table]
    return out, spelled


# Words that say a small number without being one: "a couple of hikers" → "zwei Wanderer",
# "1 from Germany" → "eine aus Deutschland". They excuse a mismatch; they never count.
_SOFT_NUMBERS = {
    "en": {
        "a": "1", "an": "1", "single": "1", "pair": "2", "couple": "2", "both": "2",
        "twins": "2", "trio": "3",
    },
    "de": {
        "ein": "1", "eine": "1", "einer": "1", "einem": "1", "einen": "1", "eines": "1",
        "paar": "2", "pärchen": "2", "beide": "2", "beiden": "2", "beider": "2",
        "zwillinge": "2", "trio": "3",
    },
}  # fmt: skip


def _said_softly(text: str, value: str, lang: str | None) -> bool:
    code = _lang(lang)
    table = _SOFT_NUMBERS["de" if code in _GERMAN else "en" if code in (None, "en") else ""]
    return any(table.get(w.lower()) == value for w in words(text)) if table else False


def _spelled_inside(text: str, value: str, lang: str | None) -> bool:
    """``text`` has ``value``'s number word at the start of a longer word or hyphen part:
    "Drei-Mann-Band", "zweijährige", "two-year-old" (which the word counts skip)."""
    names_ = [w for w, v in _number_words(lang).items() if _canon(float(v)) == value]
    for token in words(text):
        low = token.lower()
        parts = low.split("-")
        if any((low.startswith(n) and low != n) or n in parts[1:] for n in names_):
            return True
    return False


def numbers_preserved(
    source: str, output: str, *, source_lang: str | None = "en", target_lang: str | None = "de"
) -> Check:
    """The output has the same multiset of numbers as the source.

    Each side is read with its own language's decimal mark (English 4.5 = German 4,5). An
    output that matches only when read with the source's convention ("4.5" kept in a
    German sentence) passes with a note: the value is right, the format is not localised.
    A mismatch is excused where the number is inside a compound on the other side
    ("Drei-Mann-Band") or said there without a number word ("a couple" → "zwei", "1 from
    Germany" → "eine aus Deutschland").
    """
    src = Counter(parse_numbers(source, source_lang))
    tgt = Counter(parse_numbers(output, target_lang))
    if src == tgt:
        shown = ", ".join(sorted(src.elements())) or "none"
        return Check(name="numbers_preserved", passed=True, detail=f"numbers match: {shown}")
    src_dec = "," if _lang(source_lang) in _DECIMAL_COMMA else "."
    if Counter(parse_numbers(output, target_lang, decimal=src_dec)) == src:
        return Check(
            name="numbers_preserved",
            passed=True,
            detail=f"numbers match when the output is read with {src_dec!r} as decimal mark "
            f"(not localised for {target_lang})",
        )
    # A spelled-out number may sit inside a compound on the other side ("three man band" →
    # "Drei-Mann-Band") where no word count sees it, or be said without a number word
    # ("a couple" → "zwei"): forgive those.
    src_spelled = set(_parse_numbers(source, source_lang, None)[1])
    tgt_spelled = set(_parse_numbers(output, target_lang, None)[1])
    missing = sorted(
        v
        for v in (src - tgt).elements()
        if not (v in src_spelled and _spelled_inside(output, v, target_lang))
        and not _said_softly(output, v, target_lang)
    )
    extra = sorted(
        v
        for v in (tgt - src).elements()
        if not (v in tgt_spelled and _spelled_inside(source, v, source_lang))
        and not _said_softly(source, v, source_lang)
    )
    if not missing and not extra:
        return Check(
            name="numbers_preserved",
            passed=True,
            detail="numbers match (a number is part of a compound word or said without "
            "a number word on one side)",
        )
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"not in the source {', '.join(extra)}")
    return Check(name="numbers_preserved", passed=False, detail="; ".join(parts))


# Capitalised English words that are translated, not kept: titles, days, months, languages.
_TRANSLATED_CAPITALS = {
    "mr", "mrs", "ms", "dr", "prof", "sir", "madam", "lady", "lord", "saint", "st", "king",
    "queen", "prince", "princess", "president", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december", "english", "german",
    "french", "spanish", "italian", "american", "british", "european", "african", "asian",
    "chinese", "japanese", "indian", "russian", "mexican", "christmas", "easter", "god",
}  # fmt: skip


def _name_key(word: str) -> str:
    return _fold(word).replace("ph", "f").replace("c", "k")


def _respelled(name: str, out_words: Sequence[str], min_ratio: float = 0.8) -> bool:
    """A name of 6+ letters written the target language's way: California → Kalifornien,
    Antarctica → Antarktis (similarity of c→k, ph→f folded spellings ≥ ``min_ratio``;
    short names must match exactly, so Tom → Tim is still a rename)."""
    if len(name) < 6:
        return False
    key = _name_key(name)
    return any(
        SequenceMatcher(None, key, _name_key(w)).ratio() >= min_ratio
        for w in out_words
        if abs(len(w) - len(key)) <= 3
    )


def names_preserved(
    source: str,
    output: str,
    *,
    dictionary: Mapping[str, set[str]] | None = None,
    target_lang: str | None = "de",
) -> Check:
    """Names of the source (capitalised words not at a sentence start) appear in the output.

    A name word passes when it occurs in the output (case-insensitive, a genitive -s
    allowed), inside a compound, spelled the target's way (names of 6+ letters:
    California → Kalifornien), when a dictionary translation of it does (Munich →
    München), or when it is a common word after all: a lower-case dictionary entry, a
    stop word, or a title, day, month or nationality (translated, not kept). German
    capitalises every noun, so only the English side decides what is a name. Not checked
    for targets in other scripts.
    """
    if _lang(target_lang) in NON_LATIN:
        return Check(
            name="names_preserved",
            passed=True,
            detail=f"not checked: names are transliterated into {target_lang}",
        )
    out_words = [_fold(w) for w in words(output)]
    required: list[str] = []
    missing: list[str] = []
    for run in names(source):
        for raw in run.split():
            word = re.sub(r"['’]s$", "", raw)  # Anna's → Anna (German: Annas)
            low = word.lower()
            if low in STOPWORDS or low in _TRANSLATED_CAPITALS or len(word) < 2:
                continue
            if dictionary and low in dictionary and word != low:
                continue  # a common word capitalised (a title, a sign), not a name
            required.append(word)
            pattern = rf"(?<!\w){re.escape(word)}(?:s|'s|’s|es|n)?(?!\w)"
            if re.search(pattern, output, re.IGNORECASE):
                continue
            joined = _fold(word.replace("-", ""))
            if len(joined) >= 4 and any(joined in w.replace("-", "") for w in out_words):
                continue  # inside a compound: Spider-Man → Spidermananzug
            alternatives = dictionary.get(word, set()) if dictionary else set()
            if any(_translation_present(t, out_words) for t in alternatives):
                continue
            if _respelled(word, out_words):
                continue
            missing.append(word)
    required, missing = list(dict.fromkeys(required)), list(dict.fromkeys(missing))
    if missing:
        return Check(
            name="names_preserved",
            passed=False,
            detail=f"name(s) of the source not in the output: {', '.join(missing)}",
        )
    if not required:
        return Check(name="names_preserved", passed=True, detail="no names in the source")
    return Check(name="names_preserved", passed=True, detail=f"names kept: {', '.join(required)}")


def length_ratio(
    source: str,
    output: str,
    *,
    low: float = 0.5,
    high: float = 2.0,
    file_ratios: Sequence[float] | None = None,
    max_z: float = 3.5,
    min_chars: int = 20,
) -> Check:
    """Output/source character ratio is plausible (severity warning).

    With ``file_ratios`` (the ratios of every item of the file) of at least 10 items, an
    item fails when the z-score of its log ratio against the file's log ratios exceeds
    ``max_z`` (the file's own language pair and style set the band); otherwise it fails
    outside ``[low, high]``. Sources shorter than ``min_chars`` are not judged.
    """
    n_src, n_out = len(source.strip()), len(output.strip())
    if n_src < min_chars:
        return Check(
            name="length_ratio",
            passed=True,
            detail=f"source of {n_src} chars is too short to judge",
            severity="warning",
        )
    ratio = n_out / n_src
    logs = [math.log(r) for r in (file_ratios or []) if r > 0]
    if len(logs) >= 10 and ratio > 0:
        mean = sum(logs) / len(logs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
        if sd > 1e-9:
            z = (math.log(ratio) - mean) / sd
            return Check(
                name="length_ratio",
                passed=abs(z) <= max_z,
                detail=f"ratio {ratio:.2f}, z = {z:+.1f} against the file's "
                f"{len(logs)} ratios (geometric mean {math.exp(mean):.2f}, limit ±{max_z})",
                severity="warning",
            )
    return Check(
        name="length_ratio",
        passed=low <= ratio <= high,
        detail=f"ratio {ratio:.2f} (band {low}–{high})",
        severity="warning",
    )


@dataclass(frozen=True)
class Alignment:
    """How many source content words have a dictionary translation in the output."""

    known: int  # source content words the dictionary has
    aligned: int  # of those, how many have a translation in the output
    unaligned: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float | None:
        return self.aligned / self.known if self.known else None


def align(source: str, output: str, dictionary: Mapping[str, set[str]]) -> Alignment:
    """Count source content words (distinct, lower-case) with a dictionary translation
    present in the output (umlaut-folded; inflected and compounded forms match)."""
    out_words = [_fold(w) for w in words(output)]
    known = aligned = 0
    unaligned: list[str] = []
    seen: set[str] = set()
    for tok in words(source):
        w = tok.lower()
        if w in seen or w in STOPWORDS or len(w) < 2 or w.isdigit():
            continue
        seen.add(w)
        translations = lookup(dictionary, tok)
        if not translations:
            continue
        known += 1
        if any(_translation_present(t, out_words) for t in translations):
            aligned += 1
        else:
            unaligned.append(w)
    return Alignment(known, aligned, unaligned)


def alignment_coverage(
    source: str,
    output: str,
    dictionary: Mapping[str, set[str]],
    *,
    threshold: float = 0.25,
    min_known: int = 3,
) -> Check:
    """Enough source words have their dictionary translation in the output.

    Flags when at least ``min_known`` source content words are in the dictionary and the
    share with a translation present is below ``threshold``; ``detail`` gives the
    coverage and the unaligned words.
    """
    if not dictionary:
        return Check(
            name="alignment_coverage", passed=True, detail="not checked: no dictionary given"
        )
    a = align(source, output, dictionary)
    if a.coverage is None or a.known < min_known:
        return Check(
            name="alignment_coverage",
            passed=True,
            detail=f"only {a.known} source word(s) in the dictionary (need {min_known} to judge)",
        )
    detail = f"coverage {a.coverage:.2f} ({a.aligned}/{a.known} dictionary words aligned)"
    if a.unaligned:
        detail += "; unaligned: " + ", ".join(a.unaligned[:12])
    return Check(name="alignment_coverage", passed=a.coverage >= threshold, detail=detail)


def translation_checks(
    source: str,
    output: str,
    *,
    glossary: Mapping[str, str] | None = None,
    dictionary: Mapping[str, set[str]] | None = None,
    source_lang: str | None = "en",
    target_lang: str | None = "de",
    file_ratios: Sequence[float] | None = None,
) -> list[Check]:
    """All the checks above, in a fixed order, for one translation."""
    glossary = glossary or {}
    dictionary = dictionary or {}
    return [
        glossary_terms(source, output, glossary, target_lang=target_lang),
        untranslated_copy(source, output, glossary=glossary, dictionary=dictionary),
        numbers_preserved(source, output, source_lang=source_lang, target_lang=target_lang),
        names_preserved(source, output, dictionary=dictionary, target_lang=target_lang),
        length_ratio(source, output, file_ratios=file_ratios),
        alignment_coverage(source, output, dictionary),
    ]
