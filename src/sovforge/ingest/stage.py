"""The ingest stage of `sovforge run RECIPE`: the recipe's `ingest:` section → `WORKDIR/ingest` corpus artifact.

When the recipe has a `base` stage and `ingest.tokenizer` is unset, the corpus is packed with the base model's
tokenizer, so adapt can train on `packed/<split>.npy` directly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sovforge.ingest.config import IngestConfig


def run_stage(cfg: IngestConfig, ctx: Any) -> Path:
    from sovforge.ingest.pipeline import run_ingest

    if cfg.tokenizer is None and ctx.artifacts.get("base") is not None:
        cfg = cfg.model_copy(update={"tokenizer": Path(ctx.artifacts["base"])})
    return run_ingest(cfg, ctx.out)


def input_fingerprint(cfg: IngestConfig) -> str:
    """A cheap identity of the raw inputs (every file's name, size and mtime).

    Raw files are not artifacts, so a pipeline cache key built from the config and input artifact ids alone does
    not change when a document is added or edited; mixing this in does.
    """
    from sovforge.ingest.extract import list_inputs

    digest = hashlib.sha256()
    files, _ = list_inputs(cfg.inputs)
    for entry in files:
        stat = Path(entry["path"]).stat()
        digest.update(f"{entry['name']}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
