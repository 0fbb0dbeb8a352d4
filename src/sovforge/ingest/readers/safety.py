"""What every reader shares: the result type, the limits, and the defences against hostile files.

- `open_zip_checked`: DOCX and HWPX are zip containers; a zip bomb (a few KB that declare GBs) is refused from the
  central directory before anything is inflated. Python's zipfile never inflates a member beyond its declared size,
  so checking the declared sizes bounds the work.
- `detect_encoding`: UTF-8 first, then CP949 (a superset of EUC-KR, the legacy Korean code page), then
  charset-normalizer; NUL bytes or control-character noise mean binary, not text.
- `split_parts`: a text longer than `max_document_chars` becomes several documents, cut at paragraph boundaries.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Unreadable(Exception):
    """A file that cannot be read; quarantined as `unreadable:<reason>` with `detail` (never document text)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Extracted:
    """One document's worth of text from a file (a file may yield several: JSONL records, parts of a big text)."""

    text: str
    title: str | None = None
    """Document title or heading when the format says so; the extract step falls back to the first line/stem."""
    marking_text: str = ""
    """Text screened for classification markings but not kept (DOCX headers/footers, HWPX page headers)."""
    part: int = 0
    """Index of this part within its file (a split text, or a JSONL line number)."""
    record: bool = False
    """True for JSONL records: each is its own document (own split group), not a part of one."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Reader metadata kept with the document (encoding, pages, declared classification, ...)."""
    error: tuple[str, str] | None = None
    """(reason, detail) when this record could not be read; its text is empty."""


@dataclass(frozen=True)
class ReadLimits:
    """The reader-facing slice of IngestConfig."""

    max_document_chars: int = 1_000_000
    max_unzipped_bytes: int = 256 << 20
    max_zip_ratio: float = 200.0
    jsonl_text_field: str = "text"
    jsonl_title_field: str = "title"
    jsonl_classification_field: str = "classification"

    @classmethod
    def from_config(cls, cfg: Any) -> ReadLimits:
        return cls(max_document_chars=cfg.max_document_chars, max_unzipped_bytes=int(cfg.max_unzipped_mb * (1 << 20)),
                   max_zip_ratio=cfg.max_zip_ratio, jsonl_text_field=cfg.jsonl_text_field,
                   jsonl_title_field=cfg.jsonl_title_field, jsonl_classification_field=cfg.jsonl_classification_field)


# ------------------------------------------------------------------------------------------------ zip


def open_zip_checked(path: Path, limits: ReadLimits, required: tuple[str, ...] = ()) -> zipfile.ZipFile:
    """Open a zip container after checking it is not a bomb and holds the `required` members."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise Unreadable("not_a_zip", f"not a zip container ({exc})") from None
    except OSError as exc:
        raise Unreadable("io_error", type(exc).__name__) from None
    total = 0
    for info in archive.infolist():
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_zip_ratio and info.file_size > 1 << 20:
            archive.close()
            raise Unreadable("zip_bomb", f"member {info.filename!r} inflates {ratio:.0f}x "
                                         f"(max_zip_ratio {limits.max_zip_ratio:g})")
        if total > limits.max_unzipped_bytes:
            archive.close()
            raise Unreadable("zip_bomb", f"declares over {limits.max_unzipped_bytes >> 20} MiB uncompressed "
                                         "(max_unzipped_mb)")
    names = set(archive.namelist())
    missing = [name for name in required if name not in names]
    if missing:
        archive.close()
        raise Unreadable("missing_part", f"no {missing[0]} in the container")
    return archive


# ------------------------------------------------------------------------------------------- encoding

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
SAMPLE_BYTES = 64 << 10


def _decodes(sample: bytes, encoding: str) -> str | None:
    """The sample decoded strictly, ignoring a multi-byte character cut at its end; None when it does not decode."""
    try:
        return codecs.getincrementaldecoder(encoding)(errors="strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return None


def detect_encoding(sample: bytes) -> str:
    """The text encoding of a file from its first bytes; raises Unreadable("binary") for non-text."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise Unreadable("binary", "NUL bytes: not a text file")
    decoded = _decodes(sample, "utf-8")
    encoding = "utf-8"
    if decoded is None:
        decoded = _decodes(sample, "cp949")  # EUC-KR is a subset of CP949
        encoding = "cp949"
        if decoded is not None:
            non_ascii = sum(1 for ch in decoded if ord(ch) > 127)
            if non_ascii and len(_HANGUL.findall(decoded)) / non_ascii < 0.5:
                decoded = None  # decodes, but as hanja/symbol soup: probably another code page
    if decoded is None:
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
        if best is None or best.encoding is None or best.chaos > 0.3:
            raise Unreadable("binary", "no text encoding fits (binary data?)")
        encoding = best.encoding
        decoded = str(best)
    if decoded and len(_CONTROL.findall(decoded)) / len(decoded) > 0.02:
        raise Unreadable("binary", "control characters: not a text file")
    return encoding


def sniff_text_encoding(path: Path) -> str:
    with open(path, "rb") as fh:
        return detect_encoding(fh.read(SAMPLE_BYTES))


# -------------------------------------------------------------------------------------------- parts


def cut_point(text: str, limit: int) -> int:
    """Where to cut `text` so the first piece is at most `limit` chars: a blank line, else a newline, else hard."""
    for separator in ("\n\n", "\n", ". ", " "):
        cut = text.rfind(separator, limit // 2, limit)
        if cut != -1:
            return cut + len(separator)
    return limit


def split_parts(text: str, limit: int) -> Iterator[str]:
    """`text` in pieces of at most `limit` characters, cut at paragraph boundaries where possible."""
    while len(text) > limit:
        cut = cut_point(text, limit)
        yield text[:cut]
        text = text[cut:]
    yield text


def first_line_title(text: str, max_chars: int = 80) -> str | None:
    """The first non-empty line when it is short enough to be a heading (and not a bare marking banner)."""
    from sovforge.screen import detect_markings

    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if not line:
            continue
        if detect_markings(line):
            continue  # a banner such as SECRET//NOFORN or 대외비 is not the title
        return line if len(line) <= max_chars else None
    return None
