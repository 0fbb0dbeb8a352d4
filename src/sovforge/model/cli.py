"""`sovforge base ...`: build the tiny/small local base model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sovforge.model.config import BaseConfig


def register(app: typer.Typer) -> None:
    base_app = typer.Typer(help="Build a small local base model (tokenizer + Llama) from text.", no_args_is_help=True)
    app.add_typer(base_app, name="base")

    @base_app.command("init")
    def init(
        text: Annotated[list[Path], typer.Option("--text", help="Text files/directories (repeatable).")],
        out: Annotated[Path, typer.Option("--out", help="Output artifact directory.")],
        preset: Annotated[str, typer.Option(help="tiny (2 layers, hidden 64) or small (~10M params).")] = "tiny",
        vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 4096,
        pretrain_steps: Annotated[int, typer.Option(help="Pre-training steps on the text (0 = random init).")] = 0,
        seq_len: Annotated[int, typer.Option(help="Pre-training sequence length.")] = 256,
        batch_size: Annotated[int, typer.Option(help="Pre-training batch size.")] = 8,
        learning_rate: Annotated[float, typer.Option(help="Peak pre-training learning rate.")] = 1e-3,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        max_position_embeddings: Annotated[Optional[int], typer.Option(help="Longest sequence.")] = 1024,
    ) -> None:
        """Train a Korean+English byte-level BPE tokenizer and create a Llama model saved as safetensors."""
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.model.base import init_base

        try:
            cfg = BaseConfig(text=text, preset=preset, vocab_size=vocab_size, pretrain_steps=pretrain_steps,
                             seq_len=seq_len, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                             max_position_embeddings=max_position_embeddings)
            path = init_base(cfg, out)
        except (ValidationError, ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        typer.echo(str(path))
