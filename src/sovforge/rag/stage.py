"""`sovforge run RECIPE` stage `rag`: index the ingest stage's corpus artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovforge.rag.config import RagConfig
from sovforge.rag.index import build_index


def run_stage(cfg: RagConfig, ctx: Any) -> Path:
    return build_index(ctx.input("ingest"), ctx.out, cfg)
