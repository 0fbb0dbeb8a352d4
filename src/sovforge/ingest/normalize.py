"""Text normalisation: `normalize_text("ＡＢＣ  가\u200b나", fmt="txt")` → "ABC 가나".

1. Unicode NFC (Hangul as precomposed syllables, whatever the source produced).
2. Width folding where it is safe: full-width ASCII (ＡＢＣ１２３（）) and half-width Hangul/Katakana to their usual
   forms. Not NFKC: that would also rewrite ①, Ⅱ and ㎞, which statutes and classification markings rely on.
3. Invisible and control characters dropped (zero-width spaces, soft hyphens, BOMs, C0/C1 controls).
4. Whitespace: every kind of space → one ASCII space, lines stripped, at most one blank line in a row.
5. For PDF-converted text (`join_lines` formats): wrapped lines re-joined into paragraphs and end-of-line
   hyphenation undone. A hyphen is kept when the document itself writes the compound with one ("decision-making")
   or the second half is a word of its own; "lead-/ership" becomes "leadership".
"""

from __future__ import annotations

import re
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep


def _width_table() -> dict[int, str]:
    """Each <wide>/<narrow> compatibility character → its usual form, per the Unicode data (ＡＢＣ → ABC, ﾡ → ㄱ)."""
    table = {}
    for cp in [*range(0xFF01, 0xFF5F), *range(0xFF61, 0xFFDD), *range(0xFFE0, 0xFFEF)]:
        tag, _, target = unicodedata.decomposition(chr(cp)).partition(" ")
        if tag in ("<wide>", "<narrow>") and target:
            table[cp] = chr(int(target.split()[0], 16))
    table[0x3000] = " "  # ideographic space
    return table


WIDTH_TABLE = _width_table()
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\u00ad\ufeff\u180e]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")

# A line that starts a new block even when the previous line did not end a sentence.
LIST_START = re.compile(
    r"^(?:[-•·*▪●○■□◦‣⁃]\s|\(?\d{1,3}[.)]\s|\(?[a-zA-Z가-힣][.)]\s|\d{1,2}-\d{1,3}\.\s|제\s?\d+\s?(?:조|장|절|편)"
    r"|[①-⑳]|부\s?칙|#|[A-Z][A-Z \-]{3,}$|[A-Z][A-Za-z]{1,20}(?: [A-Za-z]{1,20}){0,2}:\s)")
_TERMINAL = re.compile(r"[.!?。:;\"”’)\]」』…]$")
_WORDS = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
_BROKEN_WORD = re.compile(r"[A-Za-z]+-[ \t]*\n\s*[a-z]+")
_LAST_WORD = re.compile(r"([A-Za-z]+)-$")
_FIRST_WORD = re.compile(r"^([a-z]+)")


def fold_width(text: str) -> str:
    return text.translate(WIDTH_TABLE)


def clean_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


class Vocabulary:
    """The words and hyphenated compounds a document uses, to decide what a line-end hyphen was."""

    def __init__(self, text: str):
        self.words: set[str] = set()
        self.compounds: set[str] = set()
        # The halves of a word broken at a line end ("garri-/son") are not words the document uses.
        for word in _WORDS.findall(_BROKEN_WORD.sub(" ", text)):
            word = word.lower()
            (self.compounds if "-" in word else self.words).add(word)
            self.words.update(word.split("-"))

    def keep_hyphen(self, left: str, right: str) -> bool:
        left, right = left.lower(), right.lower()
        if f"{left}-{right}" in self.compounds:
            return True
        if left + right in self.words:
            return False
        return right in self.words and len(right) > 2


def join_pieces(left: str, right: str, vocab: Vocabulary) -> str:
    """`left` + `right` across a wrap: undo end-of-line hyphenation, else join with one space."""
    hyphen = _LAST_WORD.search(left)
    first = _FIRST_WORD.match(right)
    if hyphen and first:
        if vocab.keep_hyphen(hyphen.group(1), first.group(1)):
            return left + right
        return left[:-1] + right
    return f"{left} {right}"


def join_wrapped_lines(text: str) -> str:
    """PDF text (one visual line per line) → one paragraph per block, separated by blank lines."""
    lines = text.split("\n")
    lengths = sorted(len(line) for line in lines if line.strip())
    if not lengths:
        return text
    full_width = lengths[int(len(lengths) * 0.8)]  # most lines of running text are full lines
    vocab = Vocabulary(text)
    paragraphs: list[str] = []
    current, last_line = "", ""
    for line in lines:
        line = line.strip()
        if not line:
            if current:
                paragraphs.append(current)
            current, last_line = "", ""
            continue
        ends_paragraph = (len(last_line) < 0.7 * full_width and _TERMINAL.search(last_line)) or (
            len(last_line) < 0.5 * full_width)
        if current and not ends_paragraph and not LIST_START.match(line):
            current = join_pieces(current, line, vocab)
        else:
            if current:
                paragraphs.append(current)
            current = line
        last_line = line
    if current:
        paragraphs.append(current)
    return "\n\n".join(paragraphs)


def join_split_paragraphs(text: str) -> str:
    """HTML converted from PDF splits sentences over `<p>`s: re-join a block that stops mid-sentence with the next
    one when that continues in lower case ("a wise investment of" + "a professional Soldier's time.")."""
    blocks = text.split("\n\n")
    vocab = Vocabulary(text)
    out: list[str] = []
    for block in blocks:
        if out:
            previous_last = out[-1].rsplit("\n", 1)[-1]
            if (block[:1].islower() and block[:1].isascii() and not _TERMINAL.search(previous_last)
                    and " | " not in previous_last and not LIST_START.match(block)):
                out[-1] = join_pieces(out[-1], block, vocab)
                continue
        out.append(block)
    return "\n\n".join(out)


def normalize_text(text: str, fmt: str = "txt", *, width: bool = True, join_formats: tuple[str, ...] = ()) -> str:
    if width:
        text = fold_width(text)
    text = unicodedata.normalize("NFC", text)  # after folding: ｶﾞ folds to カ + ゙, which NFC composes to ガ
    text = _CONTROL.sub("", _INVISIBLE.sub("", text.replace("\t", " ")))
    text = clean_whitespace(text)
    if fmt in join_formats:
        text = join_wrapped_lines(text) if fmt == "pdf" else join_split_paragraphs(text)
    return text


def normalize_inline(text: str, width: bool = True) -> str:
    """A one-line field (a title): normalised, all whitespace collapsed."""
    return " ".join(normalize_text(text, width=width).split())


class NormalizeStep(PipelineStep):
    """Normalises each document's text (and title) in place."""

    type = "✂️ - FORMAT"
    name = "🧹 Normalize"

    def __init__(self, fold: bool = True, join_formats: tuple[str, ...] = ("pdf", "html")):
        super().__init__()
        self.fold = fold
        self.join_formats = tuple(join_formats)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                before = len(doc.text)
                doc.text = normalize_text(doc.text, doc.metadata.get("format", "txt"), width=self.fold,
                                          join_formats=self.join_formats)
                if doc.metadata.get("title"):
                    doc.metadata["title"] = normalize_inline(doc.metadata["title"], self.fold)
                self.stat_update("chars_removed", value=before - len(doc.text))
            yield doc
