"""JSON Lines, one document per record, streamed: `read_jsonl(Path("export.jsonl"), ReadLimits())`.

The text is in `jsonl_text_field` (default `text`), an optional title in `jsonl_title_field` and an optional
declared classification in `jsonl_classification_field` (screening takes the higher of it and any marking).
A line that is not a JSON object with text is quarantined on its own (`unreadable:jsonl_record`); the other
records of the file are still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import Extracted, ReadLimits, Unreadable, sniff_text_encoding


def read_jsonl(path: Path, limits: ReadLimits) -> Iterator[Extracted]:
    encoding = sniff_text_encoding(path)
    records = 0
    with open(path, encoding=encoding, errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            records += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Extracted("", part=number, record=True,
                                error=("jsonl_record", f"line {number}: not JSON ({exc.msg})"))
                continue
            text = record.get(limits.jsonl_text_field) if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                yield Extracted("", part=number, record=True,
                                error=("jsonl_record", f"line {number}: no text in field "
                                                       f"{limits.jsonl_text_field!r}"))
                continue
            title = record.get(limits.jsonl_title_field)
            meta = {"line": number}
            declared = record.get(limits.jsonl_classification_field)
            if isinstance(declared, str) and declared.strip():
                meta["declared_classification"] = declared
            yield Extracted(text, title=str(title) if title else None, part=number, record=True, meta=meta)
    if records == 0:
        raise Unreadable("empty", "no records")
