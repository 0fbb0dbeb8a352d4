"""PII redaction and classification-marking detection: `from sovforge.screen import screen_text`.

One implementation shared by ingest (documents) and serve (prompts and answers):

    r = screen_text(text, redact=True)
    r.text, r.redactions, r.markings, r.level

The original PII value never leaves the input string: results carry placeholders, types and counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sovforge.classification import Level
from sovforge.screen.markings import Marking, detect_markings
from sovforge.screen.pii import PII_TYPES, find_pii, placeholder, redact_pii

__all__ = [
    "PII_TYPES",
    "Marking",
    "ScreenResult",
    "detect_markings",
    "find_pii",
    "placeholder",
    "redact_pii",
    "screen_text",
]


@dataclass(frozen=True)
class ScreenResult:
    """What screening found in one text."""

    text: str
    """The text with each PII value replaced by its typed placeholder (unchanged when redact=False)."""
    redactions: dict[str, int] = field(default_factory=dict)
    """PII type → number of values found, e.g. {"kr_rrn": 2, "email": 1}."""
    markings: list[Marking] = field(default_factory=list)
    """Banner and portion markings, in order of position."""
    level: Level = Level.UNCLASSIFIED
    """The highest marking found; UNCLASSIFIED when there is none."""


def screen_text(text: str, redact: bool = True) -> ScreenResult:
    """Find markings and PII in `text`; with `redact` the returned text has PII replaced by placeholders.

    With redact=False the text comes back unchanged but `redactions` still counts what would be redacted
    (serve uses this to refuse rather than rewrite).
    """
    if not isinstance(text, str):
        raise TypeError(f"screen_text expects str, got {type(text).__name__}")
    markings = detect_markings(text)
    level = max((marking.level for marking in markings), default=Level.UNCLASSIFIED)
    if redact:
        redacted, counts = redact_pii(text)
    else:
        redacted = text
        counts = {}
        for span in find_pii(text):
            counts[span.type] = counts.get(span.type, 0) + 1
    return ScreenResult(text=redacted, redactions=counts, markings=markings, level=level)
