"""Token blocks from a corpus artifact for the compress stage: calibration, training (distillation), measurement.

Calibration remembers which documents each block came from, so every variant's lineage names its calibration
data (document ids). Training and measurement blocks reuse the adapt stage's corpus reader
(`sovforge.adapt.cpt.corpus_stream`: the corpus's packed stream when it was made with this tokenizer).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovforge.compress.config import CalibrationConfig, CompressError
from sovforge.ingest.corpus import iter_documents


@dataclass
class Calibration:
    """`samples` token blocks of `seq_len` and the ids of the documents they were cut from."""

    blocks: Any  # LongTensor (samples, seq_len)
    document_ids: list[str] = field(default_factory=list)
    corpus_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What a variant's lineage says about its calibration data (calibration.json)."""
        return {"corpus_id": self.corpus_id, **self.config, "documents": self.document_ids,
                "documents_sha256": hashlib.sha256("\n".join(self.document_ids).encode()).hexdigest()}

    def dataset(self) -> Any:
        """A pre-tokenised `datasets.Dataset` (input_ids, attention_mask): what llm-compressor's oneshot takes."""
        from datasets import Dataset

        ids = self.blocks.tolist()
        return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]})


def calibration_blocks(corpus_dir: str | Path, corpus_id: str, tokenizer: Any, cfg: CalibrationConfig) -> Calibration:
    """Visit the split's documents in a seeded random order, tokenise until 2x the needed tokens, pick blocks.

    Raises CompressError naming the counts when the split holds fewer than `cfg.samples` blocks.
    """
    import torch

    documents = [(doc.get("id") or doc.get("sha256") or str(n), doc.get("text", ""))
                 for n, doc in enumerate(iter_documents(corpus_dir, cfg.split))]
    random.Random(cfg.seed).shuffle(documents)
    wanted = 2 * cfg.samples * cfg.seq_len  # a pool twice the size, so the pick is a sample, not a prefix
    ids: list[int] = []
    owner: list[int] = []  # owner[i] = index into `documents` of token i
    for index, (_, text) in enumerate(documents):
        tokens = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        ids.extend(tokens)
        owner.extend([index] * len(tokens))
        if len(ids) >= wanted:
            break
    available = len(ids) // cfg.seq_len
    if available < cfg.samples:
        raise CompressError(
            f"calibration.samples {cfg.samples} is more than the corpus holds: its {cfg.split} split "
            f"({len(documents)} documents, {len(ids)} tokens) gives only {available} blocks of {cfg.seq_len} tokens; "
            f"lower calibration.samples or calibration.seq_len")
    pick = sorted(random.Random(cfg.seed + 1).sample(range(available), cfg.samples))
    blocks = torch.tensor([ids[b * cfg.seq_len:(b + 1) * cfg.seq_len] for b in pick], dtype=torch.long)
    used = sorted({owner[i] for b in pick for i in range(b * cfg.seq_len, (b + 1) * cfg.seq_len)})
    return Calibration(blocks=blocks, document_ids=[documents[i][0] for i in used], corpus_id=corpus_id,
                       config=cfg.model_dump(mode="json"))


def split_stream(corpus_dir: str | Path, model_dir: Path, tokenizer: Any, split: str) -> Any:
    """The split's token stream (1-D int array), read by the adapt stage's reader (packed memmap or tokenised)."""
    from sovforge.adapt.cpt import corpus_stream

    return corpus_stream(Path(corpus_dir), model_dir, tokenizer, split)[0]


def split_blocks(corpus_dir: str | Path, model_dir: Path, tokenizer: Any, split: str, seq_len: int,
                 max_tokens: int | None = None) -> Any:
    """LongTensor (n, seq_len): the first blocks of the split's token stream, at most `max_tokens` tokens."""
    import numpy as np
    import torch

    stream = split_stream(corpus_dir, model_dir, tokenizer, split)
    n = len(stream) // seq_len
    if max_tokens is not None:
        n = min(n, max(1, max_tokens // seq_len))
    return torch.from_numpy(np.asarray(stream[: n * seq_len], dtype=np.int64).reshape(n, seq_len))
