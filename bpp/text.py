"""Languages and text matching: what a shopper types against what merchants wrote.

The network speaks French (the default), English, Spanish and German. Search folds both sides
the same way: accents dropped, case folded (so "ß" matches "ss"), punctuation turned into spaces.
A query word matches the start of a word in the folded text, so "igname" finds "Ignames" and
"thon" does not find "python"; a final plural "s" (or German "n") is dropped from query words,
which makes "bananes" find "banane plantain" and "Kochbananen" find "Kochbanane".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

LANGUAGES: tuple[str, ...] = ("fr", "en", "es", "de")
DEFAULT_LANGUAGE = "fr"

_NON_WORD = re.compile(r"[^0-9a-z]+")
# Words too common to narrow a search; dropped from queries only (they are harmless in stored text).
_STOP_WORDS = frozenset({
    "a", "au", "aux", "de", "des", "du", "d", "en", "et", "l", "la", "le", "les", "un", "une",
    "the", "of", "and", "an", "some",
    "el", "los", "las", "y", "del", "con", "unos", "unas",
    "der", "die", "das", "und", "ein", "eine", "mit", "von",
})


def fold(text: str) -> str:
    """Lower case, no accents, words separated by single spaces: "Plátano macho" -> "platano macho"."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # casefold after stripping accents: it turns "ß" into "ss" and "œ" stays "œ", hence the replace.
    lowered = stripped.casefold().replace("œ", "oe").replace("æ", "ae")
    return _NON_WORD.sub(" ", lowered).strip()


def search_terms(query: str) -> list[str]:
    """The significant, folded words of a query, plural "s" dropped, in order, without repeats."""
    terms: list[str] = []
    for word in fold(query).split():
        if word in _STOP_WORDS:
            continue
        # Plurals: French, English and Spanish add an "s", German often an "n" ("Kochbananen").
        # The stem is matched as a word start, so "saumon" -> "saumo" still finds only salmon.
        if len(word) > 3 and word.endswith("s") or len(word) > 4 and word.endswith("n"):
            word = word[:-1]
        if word not in terms:
            terms.append(word)
    return terms


def indexed_text(texts: Iterable[str | None]) -> str:
    """The stored side of a match: all texts folded, wrapped in spaces so that a word-start match is
    `LIKE '% term%'` in SQL."""
    words = " ".join(fold(text) for text in texts if text)
    return f" {words} "


def matches(terms: Iterable[str], text: str) -> bool:
    """True when every term starts a word of `text` (an `indexed_text`)."""
    return all(f" {term}" in text for term in terms)


def descriptor_texts(descriptor: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every name and short description of a multilingual descriptor, in every language."""
    out: list[str] = []
    for language in descriptor.values():
        for key in ("name", "short_desc"):
            value = language.get(key)
            if isinstance(value, str):
                out.append(value)
    return out


def localised(descriptor: Mapping[str, Mapping[str, Any]], lang: str) -> dict[str, Any]:
    """The descriptor in `lang`, falling back to French, then to any language present."""
    for candidate in (lang, DEFAULT_LANGUAGE, *descriptor.keys()):
        value = descriptor.get(candidate)
        if value:
            return dict(value)
    return {}


def pick_language(value: str | None) -> str:
    """A supported language code from a `lang` tag value ("EN", "es-ES", "de_DE"...); French otherwise."""
    if not value:
        return DEFAULT_LANGUAGE
    primary = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE
