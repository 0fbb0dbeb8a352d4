"""The adapt stage of `sovforge run RECIPE`: CPT or SFT of `ctx.input("base")`, with `ctx.input("ingest")`.

    adapt: {mode: cpt, method: lora, seq_len: 256, train: {max_steps: 100}}
    adapt: {mode: sft, sft_data: [data/admin-qa.jsonl], sft_from_corpus: true}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovforge.adapt.config import AdaptConfig


def run_stage(cfg: AdaptConfig, ctx: Any) -> Path:
    if cfg.mode == "cpt":
        from sovforge.adapt.cpt import run_cpt

        return run_cpt(ctx.input("base"), ctx.input("ingest"), cfg, ctx.out)
    from sovforge.adapt.make_sft import write_sft_rows
    from sovforge.adapt.sft import run_sft
    from sovforge.config import RecipeError

    try:
        corpus = ctx.input("ingest")
    except RecipeError:
        if cfg.sft_from_corpus:
            raise
        corpus = None  # SFT on given files alone: the corpus is lineage, not data
    data = list(cfg.sft_data)
    if cfg.sft_from_corpus:
        generated = Path(ctx.out).parent / f"{Path(ctx.out).name}-sft-from-corpus.jsonl"
        write_sft_rows(corpus, generated)
        data.append(generated)
    return run_sft(ctx.input("base"), data, cfg, ctx.out, corpus_path=corpus)


def input_fingerprint(cfg: AdaptConfig) -> str:
    """SFT data and replay text are raw files, not artifacts: an edited file must rerun the stage (`sovforge run`)."""
    from sovforge.pipeline import files_fingerprint

    return files_fingerprint([*cfg.sft_data, *cfg.replay_text])
