"""The adapt stage of `sovforge run RECIPE`: CPT of `ctx.input("base")` on `ctx.input("ingest")`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovforge.adapt.config import AdaptConfig


def run_stage(cfg: AdaptConfig, ctx: Any) -> Path:
    from sovforge.adapt.cpt import run_cpt

    if cfg.mode != "cpt":
        raise NotImplementedError("adapt mode 'sft' is not built yet; use mode: cpt")
    return run_cpt(ctx.input("base"), ctx.input("ingest"), cfg, ctx.out)
