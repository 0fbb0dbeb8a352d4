"""Quarantine rows: what every dropping step writes, through datatrove's exclusion-writer mechanism.

Each filter is a datatrove `BaseFilter` whose `filter()` returns `(False, reason)`; `BaseFilter.run` counts
`dropped_<reason>` in the step's stats and hands the document to its `exclusion_writer` — a `QuarantineWriter`,
which turns it into a row `{"source", "sha256", "id", "reason", "detail", "stage", "format", ...}`.

The text is kept only where policy allows: never for a document above the classification ceiling and never for
a file that could not be read; for quality/language/duplicate drops only when `quarantine_text` is on (and then it
is the screened text, PII already replaced — screening runs before any step that can keep text).
"""

from __future__ import annotations

from typing import Any

from datatrove.data import Document
from datatrove.pipeline.writers.jsonl import JsonlWriter

# Reasons whose documents never keep their text in quarantine.
NO_TEXT_REASONS = ("classification:", "unreadable:", "too_large", "unsupported_format")


def text_allowed(reason: str) -> bool:
    return not reason.startswith(NO_TEXT_REASONS)


def quarantine_row(doc: Document, stage: str, keep_text: bool) -> dict[str, Any]:
    meta = doc.metadata
    reason = meta.get("filter_reason") or "dropped"
    row: dict[str, Any] = {
        "source": meta.get("source"),
        "sha256": meta.get("sha256"),
        "id": doc.id,
        "reason": reason,
        "detail": meta.get("drop_detail", ""),
        "stage": stage,
        "format": meta.get("format"),
        "part": meta.get("part", 0),
        "sort_key": meta.get("sort_key", ""),
    }
    if keep_text and text_allowed(reason) and meta.get("screened"):
        row.update(title=meta.get("title"), classification=meta.get("classification"),
                   redactions=meta.get("redactions", []), lang=meta.get("lang"), text=doc.text)
    return row


class QuarantineWriter(JsonlWriter):
    """Writes the documents a filter drops to `<folder>/<stage>-<rank>.jsonl` as quarantine rows."""

    name = "🚧 Quarantine"

    def __init__(self, folder: str, stage: str, keep_text: bool):
        super().__init__(folder, output_filename=f"{stage}-${{rank}}.jsonl", compression=None)
        self.stage = stage
        self.keep_text = keep_text

    def _default_adapter(self, document: Document) -> dict[str, Any]:
        return quarantine_row(document, self.stage, self.keep_text)
