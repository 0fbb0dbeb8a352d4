"""The screening step of ingest: PII redaction and the classification ceiling, using `sovforge.screen`.

`sovforge.screen.screen_text` (shared with serve) replaces each PII value with a typed placeholder (`[KR_RRN]`) and
finds classification markings — banner lines and portion marks, not words in prose, so the Military Secrets
Protection Act that *defines* 군사Ⅱ급비밀 stays UNCLASSIFIED. A document's level is the highest of its markings,
the markings in its headers/footers (`marking_text`) and a level its JSONL record declares. Above
`max_classification` it is quarantined as `classification:<LEVEL>` — no text, no title kept; at or below, it is
labelled with its level. This step runs before every step that can keep text, so nothing downstream sees raw PII.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from sovforge.classification import Level, parse_level


class ScreenFilter(BaseFilter):
    """Redacts PII in text and title, labels the classification, drops documents above the ceiling."""

    name = "🛡 Screen"

    def __init__(self, max_classification: str, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.ceiling = parse_level(max_classification)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        from sovforge.screen import detect_markings, screen_text

        meta = doc.metadata
        levels = [Level.UNCLASSIFIED]
        declared = meta.pop("declared_classification", None)
        if declared is not None:
            try:
                levels.append(parse_level(declared))
            except ValueError:
                meta["drop_detail"] = f"declares an unknown classification {declared!r}"
                return False, "classification:unknown"
        marking_text = meta.pop("marking_text", "")
        furniture = detect_markings(marking_text) if marking_text else []
        result = screen_text(doc.text, redact=True)
        markings = [*furniture, *result.markings]
        levels += [marking.level for marking in markings]
        level = max(levels)
        if level > self.ceiling:
            where = next((m for m in markings if m.level == level), None)
            meta["drop_detail"] = (f"marked {level} ({where.kind} on line {where.line})" if where is not None
                                   else f"declared {level}") + f", above max_classification {self.ceiling}"
            meta.pop("title", None)
            doc.text = ""  # nothing of a document above the ceiling travels further, not even to quarantine
            return False, f"classification:{level}"
        doc.text = result.text
        if meta.get("title"):
            meta["title"] = screen_text(meta["title"], redact=True).text
        meta["classification"] = str(level)
        meta["redactions"] = [{"type": kind, "count": count} for kind, count in sorted(result.redactions.items())]
        meta["markings"] = [{"level": str(m.level), "kind": m.kind, "line": m.line} for m in result.markings]
        meta["screened"] = True
        for kind, count in result.redactions.items():
            self.stat_update(f"redacted_{kind}", value=count)
        self.stat_update(f"level_{level}")
        return True
