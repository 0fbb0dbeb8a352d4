"""Config of the `rag` stage: `sovforge rag index CORPUS --out INDEX` / `sovforge run RECIPE` (section `rag`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

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

    embedding_model: Path | None = None
    """Local sentence-transformers model directory for dense retrieval (None = lexical only, BM25)."""

    embed_batch_size: int = Field(32, ge=1)
    """Chunks per embedding batch at index time."""

    candidates: int = Field(50, ge=1, le=1000)
    """How many passages each retriever (BM25, dense) proposes before reciprocal rank fusion."""

    fusion_k: int = Field(60, ge=1)
    """The k of reciprocal rank fusion, score = sum of 1/(k + rank); 60 is the value of Cormack et al. (2009)."""

    min_similarity: float = Field(0.5, ge=-1, le=1)
    """Cosine similarity at or above which a dense match counts as relevant (grounded chat)."""

    expand_terms: bool = True
    """Cross-lingual: add the other-language terms of the KO↔EN military glossary found in the query."""

    def required_paths(self) -> list[tuple[str, Path]]:
        """Local files `sovforge preflight` checks before a run (the embedding model, when dense is on)."""
        if self.embedding_model is None:
            return []
        return [("embedding model config", self.embedding_model / "config.json"),
                ("embedding model modules", self.embedding_model / "modules.json")]
