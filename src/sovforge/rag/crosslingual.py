"""Cross-lingual query expansion from a KO↔EN military terminology glossary (`glossary_ko_en.tsv`).

A Korean question about counselling should find FM 6-22's English paragraphs on counseling, and an English question
about promotion should find 군인사법's 진급 articles. Without a multilingual embedding model or a served model asked to
translate the query (`Index.search(..., translate=...)`), a terminology glossary is the dependable offline way: each
glossary term found in the query adds the search tokens of its other-language equivalents.

    expand("상담과 멘토링의 차이는?")  → tokens of "counseling", "mentoring"

The glossary is data (one `KO<TAB>EN|EN2` line per term); extend it with a unit's own terminology file via
`load_glossary(extra=...)` — no code change.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from sovforge.rag.analyzer import HANGUL_RE, analyze

GLOSSARY_FILE = "glossary_ko_en.tsv"


@lru_cache(maxsize=4)
def load_glossary(extra: str | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(korean term, english terms) pairs from the packaged glossary (+ an optional extra TSV file)."""
    texts = [resources.files("sovforge.rag").joinpath(GLOSSARY_FILE).read_text(encoding="utf-8")]
    if extra:
        texts.append(Path(extra).read_text(encoding="utf-8"))
    pairs = []
    for text in texts:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(f"glossary line {number}: expected 'KO<TAB>EN[|EN2...]', got {line!r}")
            pairs.append((parts[0].strip(), tuple(e.strip() for e in parts[1].split("|") if e.strip())))
    return tuple(pairs)


@lru_cache(maxsize=1)
def _english_terms() -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """(stemmed English term, its Korean terms), longer terms first so "leader development" wins over "leader"."""
    terms: dict[tuple[str, ...], list[str]] = {}
    for ko, ens in load_glossary():
        for en in ens:
            stems = tuple(analyze(en))
            if stems and ko not in terms.setdefault(stems, []):
                terms[stems].append(ko)
    return tuple(sorted(((k, tuple(v)) for k, v in terms.items()), key=lambda e: (-len(e[0]), e[0])))


def translations(text: str) -> list[str]:
    """Other-language glossary terms for the terms found in `text` (Korean → English and English → Korean).

    English is matched on Porter stems ("promoted" finds "promotion"), Korean by substring (compounds and
    particles: "상담하나요" contains "상담").
    """
    found: list[str] = []
    if HANGUL_RE.search(text):
        for ko, ens in load_glossary():
            if ko in text:
                found.extend(ens)
    stems = [t for t in analyze(text) if t.isascii()]  # the English (Porter-stemmed) tokens of the query
    for term, kos in _english_terms():
        n = len(term)
        for i in range(len(stems) - n + 1):
            if tuple(stems[i:i + n]) == term:
                found.extend(kos)
                stems[i:i + n] = ["\0"]  # a phrase, once matched, does not also count as its words
                break
    return list(dict.fromkeys(found))


def expand(text: str) -> list[str]:
    """Search tokens of the other-language equivalents of the glossary terms in `text` ([] when none)."""
    terms = translations(text)
    return analyze(" ".join(terms)) if terms else []
