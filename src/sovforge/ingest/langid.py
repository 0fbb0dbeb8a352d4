"""Offline language identification with lingua: `language_shares("제1조 이 법은 ...", detector)` → {"ko": 1.0}.

lingua's models ship inside the wheel, so nothing is fetched. The detector only chooses among `languages`
(ko, en by default), which is both faster and more accurate than open-set detection. A document is cut into
paragraph chunks of ~`langid_chunk_chars`; at most `langid_max_chunks` of them, spread evenly, get a language, and
`lang_share` is each language's share of those characters — a Korean statute quoting English terms is still ko
with a small en share. The document's `lang` is the largest share, `und` when no chunk could be identified
(digits, symbols); a main language outside `languages` is dropped as `language:<code>`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

_LETTER = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=4)
def detector(codes: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    isos = [getattr(IsoCode639_1, code.upper()) for code in codes]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*isos) if len(isos) > 1 else None
    if builder is None:  # lingua needs two languages to choose between; add English as the foil
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(isos[0], IsoCode639_1.EN if codes[0] != "en"
                                                               else IsoCode639_1.KO)
    return builder.build()


def chunks(text: str, chunk_chars: int, max_chunks: int) -> list[str]:
    """Paragraph groups of about `chunk_chars` characters, at most `max_chunks`, spread over the text."""
    groups: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in text.split("\n"):
        if not _LETTER.search(paragraph):
            continue
        current.append(paragraph)
        size += len(paragraph)
        if size >= chunk_chars:
            groups.append("\n".join(current))
            current, size = [], 0
    if current:
        groups.append("\n".join(current))
    if len(groups) > max_chunks:
        step = len(groups) / max_chunks
        groups = [groups[int(i * step)] for i in range(max_chunks)]
    return groups


def language_shares(text: str, codes: tuple[str, ...], chunk_chars: int = 400,
                    max_chunks: int = 64) -> dict[str, float]:
    """{language code: share of the sampled characters}, largest first; {} when nothing could be identified."""
    pieces = chunks(text, chunk_chars, max_chunks)
    if not pieces:
        return {}
    found = detector(codes).detect_languages_in_parallel_of(pieces)
    totals: dict[str, int] = {}
    for piece, language in zip(pieces, found):
        if language is not None:
            code = language.iso_code_639_1.name.lower()
            totals[code] = totals.get(code, 0) + len(piece)
    counted = sum(totals.values())
    return {code: round(n / counted, 3) for code, n in sorted(totals.items(), key=lambda kv: -kv[1])}


class LanguageFilter(BaseFilter):
    """Tags `lang` and `lang_share`; drops documents whose main language is not one of `languages`."""

    name = "🌐 Language"

    def __init__(self, languages: list[str], chunk_chars: int = 400, max_chunks: int = 64, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.codes = tuple(languages)
        self.chunk_chars = chunk_chars
        self.max_chunks = max_chunks

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        shares = language_shares(doc.text, self.codes, self.chunk_chars, self.max_chunks)
        lang = next(iter(shares), "und")
        doc.metadata["lang"] = lang
        doc.metadata["lang_share"] = shares
        self.stat_update(f"lang_{lang}")
        if lang not in self.codes:
            doc.metadata["drop_detail"] = f"main language {lang}; allowed {list(self.codes)}"
            return False, f"language:{lang}"
        return True
