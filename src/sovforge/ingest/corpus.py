"""Reading a corpus artifact — the one reader every later stage uses (adapt, evaluate, rag, compress).

A corpus artifact (written by `sovforge ingest INPUT... --out DIR`, DESIGN.md §3) holds:

    documents/*.jsonl[.gz]   one kept document per line: id, text, source, sha256, lang, classification,
                             redactions, split ("train" | "validation"), title, plus reader metadata
    quarantine/*.jsonl[.gz]  held-back documents: source, reason (text only where policy allows)
    packed/meta.json         {"tokenizer_sha256", "tokenizer", "dtype", "eos_id", "tokens": {split: n}}
    packed/<split>.npy       that split's documents tokenised and concatenated (each followed by eos), 1-D array
    canaries.json            only when canaries were planted: {"canaries": [...], "repeats": n}
    stats.json, manifest.json

    for doc in iter_documents(corpus_dir, split="validation"): ...
    ids = packed_tokens(corpus_dir, "train", tokenizer_json=base / "tokenizer.json")  # np.memmap or None
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCUMENTS_DIR = "documents"
QUARANTINE_DIR = "quarantine"
PACKED_DIR = "packed"
CANARIES_FILE = "canaries.json"
SPLITS = ("train", "validation")


class CorpusError(ValueError):
    """A directory that is not a readable corpus artifact; the message names the path."""


def _jsonl_files(root: Path, sub: str) -> list[Path]:
    return sorted(p for p in (Path(root) / sub).glob("*.jsonl*") if p.suffix in (".jsonl", ".gz"))


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{number}: not a JSON line ({exc.msg})") from None


def iter_documents(corpus_dir: str | Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Kept documents of a corpus, in file order; `split` keeps only that split (documents without one are train)."""
    root = Path(corpus_dir)
    files = _jsonl_files(root, DOCUMENTS_DIR)
    if not files:
        raise CorpusError(f"{root}: no {DOCUMENTS_DIR}/*.jsonl[.gz] — not a corpus artifact (make one with "
                          f"`sovforge ingest INPUT... --out DIR`)")
    for path in files:
        for doc in _read_jsonl(path):
            if split is None or doc.get("split", "train") == split:
                yield doc


def iter_quarantine(corpus_dir: str | Path) -> Iterator[dict[str, Any]]:
    """Quarantined records (source, reason, …) of a corpus."""
    for path in _jsonl_files(Path(corpus_dir), QUARANTINE_DIR):
        yield from _read_jsonl(path)


def tokenizer_sha256(tokenizer_json: str | Path) -> str:
    """Identity of a tokenizer: sha256 of its tokenizer.json (what packed/meta.json records)."""
    return hashlib.sha256(Path(tokenizer_json).read_bytes()).hexdigest()


def packed_meta(corpus_dir: str | Path) -> dict[str, Any] | None:
    path = Path(corpus_dir) / PACKED_DIR / "meta.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def packed_tokens(corpus_dir: str | Path, split: str, *, tokenizer_json: str | Path | None = None) -> Any | None:
    """The split's packed token stream as a read-only memmap, or None when absent or made by another tokenizer.

    Memory-mapped so a multi-GB stream is not read into RAM; callers slice it into blocks.
    """
    import numpy as np

    meta = packed_meta(corpus_dir)
    path = Path(corpus_dir) / PACKED_DIR / f"{split}.npy"
    if meta is None or not path.exists():
        return None
    if tokenizer_json is not None:
        if not Path(tokenizer_json).exists() or meta.get("tokenizer_sha256") != tokenizer_sha256(tokenizer_json):
            return None
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_canaries(corpus_dir: str | Path) -> list[str]:
    """Canary strings planted into this corpus at ingest (`ingest.canaries`), [] when none were."""
    path = Path(corpus_dir) / CANARIES_FILE
    if not path.exists():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("canaries", []))
