"""The ingest stage of `sovforge run RECIPE`: the recipe's `ingest:` section → `WORKDIR/ingest` corpus artifact.

When the recipe has a `base` stage and `ingest.tokenizer` is unset, the corpus is packed with the base model's
tokenizer, so adapt can train on `packed/<split>.npy` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovforge.ingest.config import IngestConfig


def run_stage(cfg: IngestConfig, ctx: Any) -> Path:
    from sovforge.ingest.pipeline import run_ingest

    if cfg.tokenizer is None and ctx.artifacts.get("base") is not None:
        cfg = cfg.model_copy(update={"tokenizer": Path(ctx.artifacts["base"])})
    return run_ingest(cfg, ctx.out)


def input_fingerprint(cfg: IngestConfig) -> str:
    """A cheap identity of the raw inputs (every file's path, size and mtime).

    Raw files are not artifacts, so a pipeline cache key built from the config and input artifact ids alone does
    not change when a document is added or edited; mixing this in does.
    """
    from sovforge.pipeline import files_fingerprint

    return files_fingerprint(list(cfg.inputs))
