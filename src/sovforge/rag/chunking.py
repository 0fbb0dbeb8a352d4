"""Structure-aware chunking of corpus documents (used by `sovforge rag index`).

A chunk boundary is placed before each statute article (제N조, 제N조의M), 부칙 (addenda), numbered manual
paragraph (`3-35.`) and markdown heading, so a retrieved passage is a whole article/paragraph a user can cite.
Sections longer than `max_chars` are split at blank lines; sections shorter than `min_chars` (bare headings) are
merged into the following section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOUNDARY_RE = re.compile(
    r"^(?:#{1,6}\s+\S.*"                          # markdown heading (statute articles are '##### 제N조 (...)')
    r"|\s*제\d+조(?:의\d+)?\s*[(（].*"            # plain-text article heading 제12조(목적)
    r"|\s*부\s*칙.*"                               # addenda
    r"|\s*\d{1,2}-\d{1,3}\.\s+\S.*)$",            # FM numbered paragraph '3-35. ...'
    re.MULTILINE)
HEADING_TEXT_RE = re.compile(r"^#{1,6}\s+")


@dataclass
class Chunk:
    """One retrievable passage of a document; `span` is (start, end) character offsets in the document text."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    heading: str
    text: str
    span: tuple[int, int]
    position: int
    classification: str


def _sections(text: str) -> list[tuple[int, int, str]]:
    starts = sorted({0, *(m.start() for m in BOUNDARY_RE.finditer(text))})
    sections = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        first_line = text[start:end].strip().split("\n", 1)[0] if text[start:end].strip() else ""
        sections.append((start, end, HEADING_TEXT_RE.sub("", first_line)[:120]))
    return sections


def _split_long(start: int, end: int, text: str, max_chars: int) -> list[tuple[int, int]]:
    if end - start <= max_chars:
        return [(start, end)]
    pieces, piece_start, cursor = [], start, start
    for m in re.finditer(r"\n\s*\n", text[start:end]):
        boundary = start + m.end()
        if boundary - piece_start > max_chars and cursor > piece_start:
            pieces.append((piece_start, cursor))
            piece_start = cursor
        cursor = boundary
    pieces.append((piece_start, end))
    # A paragraph with no blank lines can still be too long: cut it on a hard window.
    out = []
    for s, e in pieces:
        while e - s > max_chars * 2:
            out.append((s, s + max_chars))
            s += max_chars
        out.append((s, e))
    return out


def chunk_document(doc: dict, *, max_chars: int = 1200, min_chars: int = 60) -> list[Chunk]:
    """Split one corpus document (contract fields id/text/source/classification/title) into chunks."""
    text = doc.get("text") or ""
    title = doc.get("title") or ""
    merged: list[tuple[int, int, str]] = []
    carry_start: int | None = None
    for start, end, heading in _sections(text):
        if carry_start is not None:
            start, carry_start = carry_start, None
        if len(text[start:end].strip()) < min_chars:
            carry_start = start
            continue
        merged.append((start, end, heading))
    if carry_start is not None:
        if merged:
            s, _, h = merged.pop()
            merged.append((s, len(text), h))
        elif text.strip():
            merged.append((carry_start, len(text), _sections(text)[0][2]))
    chunks = []
    for start, end, heading in merged:
        for s, e in _split_long(start, end, text, max_chars):
            body = text[s:e].strip()
            if not body:
                continue
            lead = len(text[s:e]) - len(text[s:e].lstrip())
            position = len(chunks)
            chunks.append(Chunk(chunk_id=f"{doc['id']}:{position}", doc_id=doc["id"], source=str(doc.get("source", "")),
                                title=title, heading=heading, text=body, span=(s + lead, s + lead + len(body)),
                                position=position, classification=str(doc.get("classification", "UNCLASSIFIED"))))
    return chunks
