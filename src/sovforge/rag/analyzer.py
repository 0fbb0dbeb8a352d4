"""Search tokens for Korean and English text (used by `sovforge rag index` and `sovforge rag query`).

Korean: kiwipiepy morphemes, keeping content parts of speech (nouns, verb/adjective stems, roots, numbers, foreign
words, hanja). English: lower-cased words stemmed with nltk's PorterStemmer (pure code, no data download). Article
references such as 제12조 / 제3조의2 are kept as whole tokens, because users ask by article number.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

# Content POS tags of Kiwi (Sejong tag set): general/proper nouns, numerals, verb/adjective stems, roots,
# foreign (SL), hanja (SH), numbers (SN).
CONTENT_TAGS = {"NNG", "NNP", "NR", "SN", "SL", "SH", "XR", "VV", "VA", "VV-R", "VV-I", "VA-R", "VA-I"}
ARTICLE_RE = re.compile(r"제\s?(\d+)\s?조(?:\s?의\s?(\d+))?")
LATIN_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'-]*|\d+(?:-\d+)*")
HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
SEARCHABLE_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\u4e00-\u9fffA-Za-z0-9]")
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were will with what which "
    "who whom how when where why do does did can should must may not no".split())
TOKENIZER_NAME = "kiwipiepy-content-morphemes+porter-stem-v1"
# serve answers requests on several threads; one shared Kiwi instance is used under this lock.
_KIWI_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


def has_searchable_text(text: str) -> bool:
    """True when the text holds any Hangul, Latin, digit or CJK character this analyzer can index."""
    return SEARCHABLE_RE.search(text) is not None


def _article_tokens(text: str) -> list[str]:
    return [f"제{m.group(1)}조" + (f"의{m.group(2)}" if m.group(2) else "") for m in ARTICLE_RE.finditer(text)]


def _english_tokens(text: str) -> list[str]:
    stem = _stemmer().stem
    out = []
    for word in LATIN_WORD_RE.findall(text):
        lowered = word.lower().removesuffix("'s").strip("'-")  # possessive: "subordinate's" → subordinate
        if not lowered or lowered in ENGLISH_STOPWORDS:
            continue
        # Paragraph numbers like 3-35 stay whole (FTS5's unicode61 would split on '-', so join with '_' not '-').
        out.append(lowered.replace("-", "_") if lowered[0].isdigit() else stem(lowered))
    return out


def _korean_tokens(text: str) -> list[str]:
    out = []
    with _KIWI_LOCK:
        morphemes = _kiwi().tokenize(text)
    for token in morphemes:
        if token.tag in CONTENT_TAGS and token.tag not in ("SL", "SN"):
            out.append(token.form)
    return out


def analyze(text: str) -> list[str]:
    """Return the search tokens of `text` (order kept, duplicates kept so BM25 sees term frequency)."""
    tokens = _article_tokens(text)
    if HANGUL_RE.search(text):
        tokens += _korean_tokens(text)
    # Latin words and numbers go through the English path whether or not Korean is present (mixed text is common).
    tokens += _english_tokens(text)
    return [t for t in tokens if t]
