"""Optional dense retrieval: `sovforge rag index CORPUS --out INDEX --embedding-model DIR`.

A local sentence-transformers model directory (never a hub name: loaded with `local_files_only`, safetensors only,
no custom code) embeds every chunk at index time; the unit-normalised vectors are stored beside the FTS5 table as
`embeddings.npy` (float32, (N, d)) with `embedding_rows.npy` (int64 chunk rowids, (N,)) and `embedding_levels.npy`
(int8 classification levels, (N,)). A query is embedded with the same model and compared against the vectors at
or below the caller's clearance only: the level mask is applied before any similarity is computed, so a passage
above the clearance is never scored (same rule as the lexical WHERE clause).

Without an embedding model the index is lexical only, and the manifest says so.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDINGS_FILE = "embeddings.npy"
ROWS_FILE = "embedding_rows.npy"
LEVELS_FILE = "embedding_levels.npy"
# SentenceTransformer.encode is not documented as thread-safe; serve searches from several threads.
_ENCODE_LOCK = threading.Lock()


class EmbeddingModelError(ValueError):
    """An embedding model directory that cannot be used; the message says why."""


def embedder_identity(model_path: Path) -> dict[str, str]:
    """What the manifest records about the embedding model: its path and the content id of its files."""
    from sovforge.artifacts import content_id, hash_files

    root = Path(model_path)
    return {"path": str(root.resolve()), "content_id": content_id(hash_files(root), root)}


@lru_cache(maxsize=4)
def load_embedder(model_path: str) -> Any:
    """A SentenceTransformer from a local directory, with the same safety rules as every model sovforge opens."""
    from sovforge.model.loading import ModelLoadError, model_dir

    root = Path(model_path)
    try:
        model_dir(root)  # local dir, config.json without auto_map, safetensors weights only
    except ModelLoadError as exc:
        raise EmbeddingModelError(f"embedding model: {exc}") from None
    if not (root / "modules.json").exists():
        raise EmbeddingModelError(f"{root}: not a sentence-transformers model directory (no modules.json)")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbeddingModelError("dense retrieval needs sentence-transformers: pip install 'sovforge[rag]'") from None
    return SentenceTransformer(str(root), device="cpu", trust_remote_code=False, local_files_only=True)


def encode(model: Any, texts: list[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Unit-normalised float32 embeddings, shape (len(texts), d)."""
    with _ENCODE_LOCK:
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=progress)
    return np.asarray(vectors, dtype=np.float32)


def write_embeddings(index_dir: Path, rows: list[int], levels: list[int], vectors: np.ndarray) -> None:
    """Append-or-create the vector files of an index (incremental add keeps the old rows first)."""
    index_dir = Path(index_dir)
    old = read_embeddings(index_dir)
    if old is not None:
        rows = list(old[0]) + list(rows)
        levels = list(old[1]) + list(levels)
        vectors = np.concatenate([old[2], vectors]) if len(vectors) else old[2]
    np.save(index_dir / ROWS_FILE, np.asarray(rows, dtype=np.int64), allow_pickle=False)
    np.save(index_dir / LEVELS_FILE, np.asarray(levels, dtype=np.int8), allow_pickle=False)
    np.save(index_dir / EMBEDDINGS_FILE, np.asarray(vectors, dtype=np.float32), allow_pickle=False)


def read_embeddings(index_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rowids (N,), levels (N,), vectors (N, d)) or None for a lexical-only index."""
    index_dir = Path(index_dir)
    if not (index_dir / EMBEDDINGS_FILE).exists():
        return None
    return (np.load(index_dir / ROWS_FILE, allow_pickle=False),
            np.load(index_dir / LEVELS_FILE, allow_pickle=False),
            np.load(index_dir / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False))


class DenseSearcher:
    """Cosine search over an index's vectors, restricted to a clearance before scoring."""

    def __init__(self, index_dir: Path, model_path: Path):
        stored = read_embeddings(index_dir)
        if stored is None:
            raise EmbeddingModelError(f"{index_dir} has no {EMBEDDINGS_FILE}: it was built without an embedding model")
        self.rows, self.levels, self.vectors = stored
        self.model = load_embedder(str(model_path))

    def search(self, query: str, level: int, n: int) -> list[tuple[int, float]]:
        """Top-n (rowid, cosine similarity) among chunks whose level ≤ `level`."""
        allowed = np.flatnonzero(self.levels <= level)  # (M,) positions the caller may see
        if len(allowed) == 0:
            return []
        q = encode(self.model, [query])[0]  # (d,)
        sims = np.asarray(self.vectors[allowed]) @ q  # (M,): only allowed vectors are ever scored
        top = np.argsort(-sims)[:n]
        return [(int(self.rows[allowed[i]]), float(sims[i])) for i in top]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60) -> dict[int, float]:
    """RRF (Cormack et al. 2009): score(d) = Σ 1 / (k + rank_r(d)), ranks from 1; rankings of ids, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return fused
