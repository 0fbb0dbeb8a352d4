"""PDF via pypdf: `read_pdf(Path("fm.pdf"), ReadLimits())`.

A PDF ends with `%%EOF`; one without it in its last 2 KiB was cut short (a failed copy or download) and is
quarantined as `unreadable:pdf_truncated` rather than half-read. Encrypted PDFs that do not open with an empty
password and PDFs without extractable text (scans: OCR them first) are quarantined too. Line joining and
de-hyphenation of the wrapped lines happen in the normalise step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import Extracted, ReadLimits, Unreadable


def read_pdf(path: Path, limits: ReadLimits) -> Iterator[Extracted]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
        fh.seek(max(0, size - 2048))
        tail = fh.read()
    if b"%PDF-" not in head:
        raise Unreadable("not_a_pdf", "no %PDF- header")
    if b"%%EOF" not in tail:
        raise Unreadable("pdf_truncated", "no %%EOF marker at the end: the file was cut short")

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every odd xref; the reason below is enough
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("pdf_encrypted", "encrypted; decrypt it before ingesting")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except Unreadable:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise Unreadable("pdf_error", type(exc).__name__) from None
    text = "\n".join(pages)
    if not text.strip():
        raise Unreadable("no_text", f"{len(pages)} page(s) without extractable text (a scan? OCR it first)")
    yield Extracted(text, title=str(title).strip() if title else None, meta={"pages": len(pages)})
