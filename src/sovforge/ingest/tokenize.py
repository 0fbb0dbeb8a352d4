"""Tokenise and pack the corpus for training: `packed/<split>.npy` + `packed/meta.json` (global stage of ingest).

Each document is encoded exactly as adapt's fallback path would (`tokenizer(text)["input_ids"]`, then eos), and
the split's documents are concatenated into one 1-D array — uint16 when the vocabulary fits, else uint32 — that
`sovforge.ingest.corpus.packed_tokens` memory-maps. Tokens stream to a raw file as they come and become an .npy
at the end, so a corpus larger than RAM packs in bounded memory.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from sovforge.artifacts import MANIFEST, load_artifact
from sovforge.ingest.corpus import SPLITS, tokenizer_sha256

_BATCH = 64
_COPY = 1 << 22  # tokens per copy chunk when turning the raw stream into an .npy


def tokenizer_identity(tokenizer_dir: Path) -> tuple[Path, str]:
    """(the file that identifies the tokenizer, its sha256) — tokenizer.json when present, as corpus.py expects."""
    for name in ("tokenizer.json", "tokenizer.model", "vocab.json"):
        if (tokenizer_dir / name).exists():
            return tokenizer_dir / name, tokenizer_sha256(tokenizer_dir / name)
    raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer.json / tokenizer.model / vocab.json")


def raw_to_npy(raw: Path, npy: Path, dtype, count: int) -> None:
    import numpy as np

    out = np.lib.format.open_memmap(npy, mode="w+", dtype=dtype, shape=(count,))
    source = np.memmap(raw, dtype=dtype, mode="r", shape=(count,)) if count else np.zeros(0, dtype=dtype)
    for start in range(0, count, _COPY):
        out[start:start + _COPY] = source[start:start + _COPY]
    out.flush()
    del out, source
    raw.unlink()


class PackTokens(PipelineStep):
    """Encodes each document into its split's token stream; writes the .npy files and meta.json at the end."""

    type = "🔢 - TOKENIZER"
    name = "🔢 Pack tokens"

    def __init__(self, tokenizer_dir: str, out_dir: str):
        super().__init__()
        self.tokenizer_dir = tokenizer_dir
        self.out_dir = out_dir

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import numpy as np

        from sovforge.model.loading import load_tokenizer

        tokenizer = load_tokenizer(self.tokenizer_dir)
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{self.tokenizer_dir}: the tokenizer has no eos token; packing needs one between "
                             "documents")
        dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        raw_files = {split: open(out / f"{split}.raw", "wb") for split in SPLITS}
        counts = dict.fromkeys(SPLITS, 0)
        batch: list = []

        def flush() -> list:
            encoded = tokenizer([doc.text for doc in batch])["input_ids"]
            for doc, ids in zip(batch, encoded):
                array = np.asarray([*ids, eos], dtype=dtype)
                split = doc.metadata.get("split", "train")
                raw_files[split].write(array.tobytes())
                counts[split] += len(array)
                doc.metadata["tokens"] = len(array)
                self.stat_update("tokens", value=len(array))
            done = list(batch)
            batch.clear()
            return done

        try:
            for doc in data:
                batch.append(doc)
                if len(batch) == _BATCH:
                    with self.track_time("batch"):
                        done = flush()
                    yield from done
            if batch:
                yield from flush()
        finally:
            for handle in raw_files.values():
                handle.close()
        for split in SPLITS:
            raw_to_npy(out / f"{split}.raw", out / f"{split}.npy", dtype, counts[split])
        identity, sha = tokenizer_identity(Path(self.tokenizer_dir))
        # Name the tokenizer by content (its artifact id, else its directory name), never by absolute path: the
        # same inputs must give the same corpus id in any workdir (the path is in the manifest's config).
        source = Path(self.tokenizer_dir)
        name = load_artifact(source).id if (source / MANIFEST).exists() else source.name
        meta = {"tokenizer_sha256": sha, "tokenizer": name, "tokenizer_file": identity.name,
                "dtype": np.dtype(dtype).name, "eos_id": int(eos), "tokens": counts}
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
