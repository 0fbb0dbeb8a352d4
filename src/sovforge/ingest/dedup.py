"""Deduplication: exact (normalised-text hash) and near-duplicate (MinHash LSH over character shingles).

Two halves, like datatrove's own MinHash stages:
- `DedupSignature` runs in every worker: for each document it writes one line to `signatures/<rank>.jsonl` —
  the sha1 of its text with case, spacing and punctuation folded, and a datasketch MinHash of its character
  `shingle_chars`-grams (character shingles need no word segmentation, so Korean works as is).
- `DedupFilter` runs once, in the global stage: it reads every signature in source order and drops a document
  whose hash equals a kept one's, or whose MinHash `MinHashLSH` finds close to a kept one (confirmed by estimated
  Jaccard ≥ `minhash_threshold`); the first in source order is kept, so the same inputs keep the same documents
  whatever the number of workers. Drops are quarantined as `duplicate:exact` / `duplicate:near`, naming the kept
  document they duplicate; clusters (kept document + its duplicates) go to stats.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

_NOT_WORD = re.compile(r"[\W_]+")
_BATCH = 20_000  # shingles hashed per datasketch batch: bounds the (batch, num_perm) uint64 matrix to ~20 MB


def simplify(text: str) -> str:
    """Text with case, width, punctuation and spacing folded: what 'the same text' means for dedup."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_hash(text: str) -> str:
    return hashlib.sha1(simplify(text).replace(" ", "").encode()).hexdigest()


def minhash_of(text: str, num_perm: int, shingle_chars: int):
    """datasketch MinHash of the set of character n-grams of the simplified text."""
    import xxhash
    from datasketch import MinHash

    simple = simplify(text)
    shingles = {simple[i:i + shingle_chars] for i in range(max(1, len(simple) - shingle_chars + 1))}
    signature = MinHash(num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)
    shingles_list = [s.encode() for s in shingles]
    for start in range(0, len(shingles_list), _BATCH):
        signature.update_batch(shingles_list[start:start + _BATCH])
    return signature


class DedupSignature(PipelineStep):
    """Writes each document's exact hash and MinHash to `<folder>/<rank>.jsonl`; passes documents through."""

    type = "🫂 - DEDUP"
    name = "🔏 Dedup signature"

    def __init__(self, folder: str, num_perm: int = 128, shingle_chars: int = 5):
        """`num_perm=0` writes only the exact hash (near-duplicate detection off)."""
        super().__init__()
        self.folder = folder
        self.num_perm = num_perm
        self.shingle_chars = shingle_chars

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        with open(Path(self.folder) / f"{rank:05d}.jsonl", "w", encoding="utf-8") as out:
            for doc in data:
                with self.track_time():
                    minhash = (minhash_of(doc.text, self.num_perm, self.shingle_chars).hashvalues.tolist()
                               if self.num_perm else [])
                    out.write(json.dumps({"id": doc.id, "group": doc.metadata["group"],
                                          "sort_key": doc.metadata["sort_key"], "source": doc.metadata["source"],
                                          "hash": exact_hash(doc.text), "minhash": minhash}) + "\n")
                self.stat_update("signed")
                yield doc


def read_signatures(folder: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return sorted(rows, key=lambda row: row["sort_key"])


def plan_dedup(rows: list[dict[str, Any]], *, exact: bool, near: bool, threshold: float,
               num_perm: int) -> dict[str, Any]:
    """{"drop": {id: (reason, kept id)}, "clusters": [[kept id, dup ids...], ...]} for signatures in source order.

    Greedy against what is kept: a document is dropped when it duplicates an earlier *kept* one, and only kept
    documents enter the LSH index. So every "duplicate of X" is a direct match to X, and a chain of small edits
    (A≈B≈C with A≉C) cannot drop C through B.
    """
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    drop: dict[str, tuple[str, str]] = {}
    clusters: dict[str, list[str]] = {}
    kept_by_hash: dict[str, str] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm) if near else None
    signatures: dict[str, Any] = {}
    position: dict[str, int] = {}
    for row in rows:
        doc_id = row["id"]
        if exact and row["hash"] in kept_by_hash:
            keeper = kept_by_hash[row["hash"]]
            drop[doc_id] = ("duplicate:exact", keeper)
            clusters.setdefault(keeper, [keeper]).append(doc_id)
            continue
        if lsh is not None:
            signature = MinHash(num_perm=num_perm, seed=1, hashvalues=np.array(row["minhash"], dtype=np.uint64),
                                scheme="affine32")
            # the most similar kept candidate, ties to the earliest (LSH returns a set: its order is not stable)
            best = max(((signatures[c].jaccard(signature), -position[c], c) for c in lsh.query(signature)),
                       default=None)
            if best is not None and best[0] >= threshold:
                keeper = best[2]
                drop[doc_id] = ("duplicate:near", keeper)
                clusters.setdefault(keeper, [keeper]).append(doc_id)
                continue
            position[doc_id] = len(position)
            lsh.insert(doc_id, signature)
            signatures[doc_id] = signature
        kept_by_hash.setdefault(row["hash"], doc_id)
    return {"drop": drop, "clusters": list(clusters.values())}


class DedupFilter(BaseFilter):
    """Global step: plans dedup from all signatures on first use, then drops every non-keeper of a cluster."""

    name = "🫂 Dedup"

    def __init__(self, signature_folder: str, plan_file: str, *, exact: bool = True, near: bool = True,
                 threshold: float = 0.7, num_perm: int = 128, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.signature_folder = signature_folder
        self.plan_file = plan_file
        self.exact = exact
        self.near = near
        self.threshold = threshold
        self.num_perm = num_perm
        self._drop: dict[str, tuple[str, str]] | None = None

    def plan(self) -> dict[str, tuple[str, str]]:
        if self._drop is None:
            rows = read_signatures(Path(self.signature_folder))
            with self.track_time("plan"):
                plan = plan_dedup(rows, exact=self.exact, near=self.near, threshold=self.threshold,
                                  num_perm=self.num_perm)
            sources = {row["id"]: row["source"] for row in rows}
            summary = {"signed": len(rows), "dropped": len(plan["drop"]), "drop": plan["drop"],
                       "clusters": len(plan["clusters"]),
                       "cluster_members": [[{"id": i, "source": sources[i]} for i in ids] for ids in plan["clusters"]]}
            Path(self.plan_file).write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
            self._drop = plan["drop"]
        return self._drop

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        hit = self.plan().get(doc.id)
        if hit is None:
            return True
        reason, kept = hit
        doc.metadata["drop_detail"] = f"duplicate of {kept}"
        return False, reason
