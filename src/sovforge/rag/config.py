"""Config of the `rag` stage: `sovforge rag index CORPUS --out INDEX` / `sovforge run RECIPE` (section `rag`)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class RagConfig(StrictModel):
    """`sovforge rag index`: a retrieval index over a corpus artifact."""

    max_chunk_chars: int = 1200
    """Longest chunk; a longer article/section is split at paragraph boundaries."""

    min_chunk_chars: int = 60
    """A section shorter than this (e.g. a bare heading) is merged into the next one."""

    splits: list[str] = ["train", "validation"]
    """Corpus splits to index (retrieval serves the whole corpus, so both by default)."""

    min_score: float = 1.0
    """BM25 score below which a passage counts as not relevant (grounded chat refuses when none pass)."""
