"""Plain text and Markdown, streamed: `read_text(Path("법률.md"), "md", ReadLimits())`.

The encoding is sniffed from the first 64 KiB (UTF-8, else CP949/EUC-KR, else charset-normalizer); the file is then
decoded incrementally in 1 MiB chunks and cut into parts of at most `max_document_chars` at paragraph boundaries,
so a 200 MB file never sits in memory whole.

Markdown keeps its headings and tables (retrieval chunks on `#` headings) but loses what is only markup: YAML front
matter (its `title`/`제목` becomes the title), emphasis, backslash escapes, link targets, images and inline HTML.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import (
    SAMPLE_BYTES,
    Extracted,
    ReadLimits,
    Unreadable,
    cut_point,
    detect_encoding,
    first_line_title,
)

CHUNK_BYTES = 1 << 20

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)
_FRONT_TITLE = re.compile(r"^(?:title|제목)\s*:\s*['\"]?(.+?)['\"]?\s*$", re.MULTILINE | re.IGNORECASE)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_INLINE_HTML = re.compile(r"</?(?:br|span|div|p|sup|sub|b|i|u|em|strong|font|a)\b[^>]*>", re.IGNORECASE)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$", re.MULTILINE)


def markdown_to_text(text: str) -> str:
    """Markdown with the markup that carries no words removed; headings and table rows stay."""
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _INLINE_HTML.sub(" ", text)
    text = _EMPHASIS.sub(lambda m: m.group(2) or m.group(3) or "", text)
    text = _TABLE_RULE.sub("", text)
    return _ESCAPE.sub(r"\1", text)


def split_front_matter(text: str) -> tuple[str, str | None]:
    """(text without YAML front matter, the title it declares or None)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return text, None
    title = _FRONT_TITLE.search(match.group(1))
    return text[match.end():], (title.group(1).strip() if title else None)


def _decoded_chunks(path: Path, encoding: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def read_text(path: Path, fmt: str, limits: ReadLimits) -> Iterator[Extracted]:
    """Parts of a .txt/.md file; each part is at most `limits.max_document_chars` characters."""
    with open(path, "rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    if not sample.strip():
        raise Unreadable("empty", "no text")
    encoding = detect_encoding(sample)
    meta = {"encoding": encoding}
    title: str | None = None
    buffer = ""
    part = 0

    def emit(piece: str) -> Extracted:
        nonlocal title
        if part == 0:
            if fmt == "md":
                piece, title = split_front_matter(piece)
                heading = _HEADING.search(piece)
                title = title or (heading.group(1).strip() if heading else None)
            title = title or first_line_title(piece)
        if fmt == "md":
            piece = markdown_to_text(piece)
        return Extracted(piece, title=title, part=part, meta=meta)

    for chunk in _decoded_chunks(path, encoding):
        buffer += chunk
        while len(buffer) > limits.max_document_chars:
            cut = cut_point(buffer, limits.max_document_chars)
            yield emit(buffer[:cut])
            part += 1
            buffer = buffer[cut:]
    if buffer.strip() or part == 0:
        yield emit(buffer)
