"""Config of the `ingest` stage (issue 3 fills this in)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sovforge._config_base import StrictModel


class IngestConfig(StrictModel):
    """`sovforge ingest`: documents → screened, deduplicated, classified corpus."""

    inputs: list[Path] = Field(default_factory=list)
    """Files or directories to ingest."""
    max_classification: str = "UNCLASSIFIED"
    """Documents marked above this level are quarantined, never trained on."""
