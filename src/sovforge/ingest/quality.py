"""Quality filters that work for Korean: `QualityFilter(cfg)` in the ingest pipeline.

Word-based rules (too short, Gopher's repeated n-grams) count Kiwi morphemes for Korean, because whitespace
"words" (eojeol) glue particles and endings onto stems (`군인사법에`, `정한다`) and would make Korean look like
a language of few, long, rarely repeated words. English and other languages use letter/digit runs.

Rules, each a drop reason (thresholds in IngestConfig):
- `boilerplate`: short lines matching `boilerplate_patterns` (copyright, login, cookie banners) are removed first;
  a document that was mostly such lines is dropped.
- `too_short`: fewer than `min_words` words.
- `symbol_heavy`: digits and symbols above `max_symbol_digit_share` of the non-space characters (tables of numbers,
  dumps, OCR noise).
- Gopher repetition (Rae et al. 2021, table A1, via datatrove's helpers): `dup_para_frac`, `dup_para_char_frac`,
  `dup_line_frac`, `dup_line_char_frac`, `top_<n>_gram`, `dup_<n>_gram`; Korean n-gram sizes are scaled by
  `korean_ngram_scale` (an eojeol ≈ two morphemes).

Kiwi analyses ~20-50k characters per second, so word rules run on a `quality_sample_chars` sample (start, middle
and end of the document) and counts are scaled to the whole; line and paragraph repetition use the whole text.
The sample also keeps the n-gram rules length-independent: over a whole 140k-character statute the recurring legal
formulas (`대통령령으로 정하는 바에 따라`) push `dup_5_gram` past Gopher's web-page threshold (4 of the 12 shared
statutes), per 10k-character sample they do not.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)

# Kiwi tags of punctuation and symbols (Sejong tag set); foreign words (SL), hanja (SH) and numbers (SN) count.
_KIWI_SYMBOL_TAGS = {"SF", "SP", "SS", "SSO", "SSC", "SE", "SO", "SW", "SB", "W_EMOJI"}
_WORD = re.compile(r"[^\W_]+")
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


@lru_cache(maxsize=1)
def kiwi():
    from kiwipiepy import Kiwi

    # The typo and multi-word dictionaries serve spelling correction and proper-noun phrases, not morpheme counts;
    # skipping them halves start-up time in every worker.
    return Kiwi(load_typo_dict=False, load_multi_dict=False)


def korean_words(text: str) -> list[str]:
    """Kiwi morphemes of `text` without punctuation/symbol tokens."""
    return [token.form for token in kiwi().tokenize(text) if token.tag not in _KIWI_SYMBOL_TAGS]


def sample_text(text: str, budget: int) -> str:
    """Up to `budget` characters: start, middle and end windows cut at line breaks (the whole text if it fits)."""
    if budget <= 0 or len(text) <= budget:
        return text
    window = budget // 3
    pieces = []
    for start in (0, (len(text) - window) // 2, len(text) - window):
        piece = text[start:start + window]
        if start:
            piece = piece[piece.find("\n") + 1:] if "\n" in piece[: window // 4] else piece
        pieces.append(piece)
    return "\n".join(pieces)


def symbol_digit_share(text: str) -> float:
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 1.0
    return sum(1 for ch in chars if not unicodedata.category(ch).startswith("L")) / len(chars)


class QualityFilter(BaseFilter):
    """Drops documents that are too short, symbol-heavy, repetitive or boilerplate, each with its reason."""

    name = "🥇 Quality"

    def __init__(self, cfg, exclusion_writer=None):
        """`cfg`: the IngestConfig; its quality fields are the thresholds."""
        super().__init__(exclusion_writer)
        self.cfg = cfg
        self._boilerplate: re.Pattern[str] | None = None

    # ------------------------------------------------------------------ rules

    def remove_boilerplate(self, text: str) -> tuple[str, int]:
        if self._boilerplate is None:
            self._boilerplate = re.compile("|".join(f"(?:{p})" for p in self.cfg.boilerplate_patterns) or r"(?!)",
                                           re.IGNORECASE)
        kept, removed = [], 0
        for line in text.split("\n"):
            stripped = line.strip()
            if stripped and len(stripped) <= self.cfg.boilerplate_max_line_chars and self._boilerplate.search(stripped):
                removed += len(line) + 1
                continue
            kept.append(line)
        return "\n".join(kept).strip(), removed

    def repetition(self, text: str, words: list[str], sample: str, korean: bool) -> str | None:
        """The Gopher repetition rule `text` breaks, or None."""
        paragraphs = _PARAGRAPHS.split(text.strip())
        dup_paragraphs, dup_chars = find_duplicates(paragraphs)
        if self.cfg.dup_para_frac is not None and dup_paragraphs / len(paragraphs) > self.cfg.dup_para_frac:
            return "dup_para_frac"
        if self.cfg.dup_para_char_frac is not None and dup_chars / len(text) > self.cfg.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = _LINES.split(text)
        dup_lines, dup_chars = find_duplicates(lines)
        if self.cfg.dup_line_frac is not None and dup_lines / len(lines) > self.cfg.dup_line_frac:
            return "dup_line_frac"
        if self.cfg.dup_line_char_frac is not None and dup_chars / len(text) > self.cfg.dup_line_char_frac:
            return "dup_line_char_frac"
        scale = self.cfg.korean_ngram_scale if korean else 1
        for n, limit in sorted(self.cfg.top_ngram_fracs.items()):
            # datatrove joins an n-gram's words with spaces; Korean morphemes average ~1.5 characters, so for them
            # the joining spaces would count nearly as much as the text. Korean n-grams are joined without them.
            grams = ["".join(words[i:i + n * scale]) for i in range(len(words) - n * scale + 1)] if korean \
                else get_n_grams(words, n)
            if grams and find_top_duplicate(grams) / len(sample) > limit:
                return f"top_{n}_gram"
        for n, limit in sorted(self.cfg.dup_ngram_fracs.items()):
            if len(words) >= n * scale and find_all_duplicate(words, n * scale) / len(sample) > limit:
                return f"dup_{n}_gram"
        return None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        meta = doc.metadata
        text, removed = self.remove_boilerplate(doc.text)
        if removed:
            self.stat_update("boilerplate_chars", value=removed)
            if not text or removed / (len(doc.text) + 1) > self.cfg.max_boilerplate_share:
                meta["drop_detail"] = f"{removed} of {len(doc.text)} characters are boilerplate lines"
                return False, "boilerplate"
            doc.text = text
        korean = meta.get("lang_share", {}).get("ko", 0.0) >= 0.3
        sample = sample_text(text, self.cfg.quality_sample_chars)
        words = korean_words(sample) if korean else _WORD.findall(sample)
        estimated = round(len(words) * len(text) / max(len(sample), 1))
        meta["words"] = estimated
        if estimated < self.cfg.min_words:
            meta["drop_detail"] = f"{estimated} {'morphemes' if korean else 'words'} < min_words {self.cfg.min_words}"
            return False, "too_short"
        share = symbol_digit_share(sample)
        if share > self.cfg.max_symbol_digit_share:
            meta["drop_detail"] = f"{share:.0%} digits/symbols > {self.cfg.max_symbol_digit_share:.0%}"
            return False, "symbol_heavy"
        broken = self.repetition(text, words, sample, korean) if estimated >= self.cfg.repetition_min_words else None
        if broken is not None:
            meta["drop_detail"] = f"Gopher repetition rule {broken}"
            return False, broken
        return True
