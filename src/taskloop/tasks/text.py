"""Plain-text helpers shared by the tasks: sentences, words, numbers, names.

Rule-based on purpose: they run on any text with no model and no download, and every
task check that uses them says what it found, so a reader can see why it passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Abbreviations after which a full stop does not end a sentence.
_ABBREV = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "fig",
    "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "u.s", "u.k", "approx", "dept", "est", "mt", "ca", "z.b", "bzw", "usw",
}  # fmt: skip
_SENT_END = re.compile(r"([.!?…。！？]+[\"'”’)\]]*)(\s+)(?=\S)")
_SPEAKER = re.compile(r"^\s*(#?[\w .-]{1,40}#?)\s*:\s", re.UNICODE)

STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as prose
        "a an the and or but if then else of to in on at by for with from as is are was were be "
        "been being it its this that these those there here he she they we you i me him her them "
        "us my your his their our not no nor so too very can could will would shall should may "
        "might must do does did done have has had having what which who whom whose when where why "
        "how all any both each few more most other some such only own same than into over under "
        "again further once about above below up down out off just also s t don now"
    ).split()
)


@dataclass(frozen=True)
class Sentence:
    """A sentence and its character span in the text it came from."""

    text: str
    start: int
    end: int


def split_sentences(text: str) -> list[Sentence]:
    """Sentences with their spans; line breaks end sentences (dialogue turns, lists)."""
    out: list[Sentence] = []
    pos = 0
    for line in re.finditer(r"[^\n]+", text):
        base = line.start()
        chunk = line.group()
        last = 0
        for m in _SENT_END.finditer(chunk):
            before = chunk[last : m.start(1)]
            word = re.findall(r"[\w.]+$", before)
            abbrev = word[0].lower().rstrip(".") if word else ""
            # "No." is an abbreviation only before a number ("No. 5"); in dialogue it is
            # a whole sentence ("No. I'm busy.").
            is_abbrev = abbrev in _ABBREV and (abbrev != "no" or chunk[m.end()].isdigit())
            if m.group(1) == "." and is_abbrev:
                continue
            if m.group(1) == "." and word and len(word[0]) == 1 and word[0].isupper():
                continue  # an initial: "J. Smith"
            end = m.end(1)
            _add(out, text, base + last, base + end)
            last = m.end()
        _add(out, text, base + last, base + len(chunk))
        pos = line.end()
    del pos
    return out


def _add(out: list[Sentence], text: str, start: int, end: int) -> None:
    span = text[start:end]
    stripped = span.strip()
    if stripped:
        lead = len(span) - len(span.lstrip())
        out.append(Sentence(stripped, start + lead, start + lead + len(stripped)))


_WORD = re.compile(r"\w+(?:[-'’]\w+)*", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,.]*(?:\s?%)?")


def words(text: str) -> list[str]:
    """Word tokens (letters, digits, inner hyphens and apostrophes), as written."""
    return _WORD.findall(text)


def content_words(text: str) -> list[str]:
    """Lower-cased words that are not stop words and longer than one character."""
    return [w.lower() for w in words(text) if w.lower() not in STOPWORDS and len(w) > 1]


_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "hundred": 100,
    "thousand": 1000, "million": 1_000_000,
}  # fmt: skip


def numbers(text: str) -> list[str]:
    """Numbers as canonical strings: "4.5", "12", "1000" (from "1,000"), "50%" → "50"."""
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group().rstrip(".,% ").replace(" ", "")
        if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", raw):
            raw = raw.replace(",", "")
        raw = raw.replace(",", ".") if re.fullmatch(r"[-+]?\d+,\d+", raw) else raw
        try:
            value = float(raw)
        except ValueError:
            continue
        out.append(_canon(value))
    for w in words(text):
        if w.lower() in _NUMBER_WORDS:
            out.append(_canon(float(_NUMBER_WORDS[w.lower()])))
    return out


def names(text: str) -> list[str]:
    """Capitalised word runs not at a sentence start (a cheap named-entity finder)."""
    found: list[str] = []
    for sent in split_sentences(text):
        body = _SPEAKER.sub("", sent.text)
        toks = list(_WORD.finditer(body))
        run: list[str] = []
        for i, tok in enumerate(toks):
            w = tok.group()
            is_cap = (w[:1].isupper() and not w.isupper()) or (w.isupper() and len(w) > 1)
            if is_cap and (i > 0 or (w.lower() not in STOPWORDS and len(toks) > 1 and i > 0)):
                run.append(w)
            else:
                if run:
                    found.append(" ".join(run))
                run = []
        if run:
            found.append(" ".join(run))
    return found


def _canon(value: float) -> str:
    # repr is the shortest string that round-trips ("4.5", "12345.67"); :g kept only six
    # significant digits and turned 12345.67 into 12345.7.
    return str(int(value)) if value.is_integer() else repr(value)
