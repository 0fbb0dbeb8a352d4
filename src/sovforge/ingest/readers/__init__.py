"""Readers: one module per file format, each `read(path, limits) -> Iterator[Extracted]`.

    from sovforge.ingest.readers import read_file, format_of
    for part in read_file(Path("a.hwpx"), "hwpx", ReadLimits()): print(part.title, part.text[:80])

A reader raises `Unreadable(reason, detail)` for a file it cannot read (the extract step quarantines it as
`unreadable:<reason>`), or yields an `Extracted` with `error` set for one bad record of a multi-record file (JSONL)
so the rest of the file is still read. Readers import their libraries lazily: this package is imported by the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import Extracted, ReadLimits, Unreadable

# file suffix → format name
SUFFIX_FORMATS: dict[str, str] = {
    ".txt": "txt", ".text": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".hwpx": "hwpx",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}
FORMAT_NAMES = frozenset(SUFFIX_FORMATS.values())
# Formats we recognise but cannot read, with what to do instead.
UNSUPPORTED_HINTS = {
    ".hwp": "binary HWP 5.0; save it as HWPX in Hancom Office",
    ".doc": "legacy Word 97-2003; save it as DOCX",
    ".rtf": "save it as DOCX",
    ".odt": "save it as DOCX",
}

__all__ = ["Extracted", "FORMAT_NAMES", "ReadLimits", "SUFFIX_FORMATS", "Unreadable", "format_of", "read_file"]


def format_of(path: Path) -> str | None:
    """The format name of a file by its suffix, or None when no reader handles it."""
    return SUFFIX_FORMATS.get(path.suffix.lower())


def read_file(path: Path, fmt: str, limits: ReadLimits) -> Iterator[Extracted]:
    """Dispatch to the format's reader."""
    if fmt in ("txt", "md"):
        from sovforge.ingest.readers.text import read_text

        return read_text(path, fmt, limits)
    if fmt == "html":
        from sovforge.ingest.readers.html import read_html

        return read_html(path, limits)
    if fmt == "pdf":
        from sovforge.ingest.readers.pdf import read_pdf

        return read_pdf(path, limits)
    if fmt == "docx":
        from sovforge.ingest.readers.docx import read_docx

        return read_docx(path, limits)
    if fmt == "hwpx":
        from sovforge.ingest.readers.hwpx import read_hwpx

        return read_hwpx(path, limits)
    if fmt == "jsonl":
        from sovforge.ingest.readers.jsonl import read_jsonl

        return read_jsonl(path, limits)
    raise Unreadable("unsupported_format", f"no reader for format {fmt!r}")
