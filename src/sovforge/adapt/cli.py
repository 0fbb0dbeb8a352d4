"""`sovforge adapt cpt|merge ...`: adapt a base model to the corpus, merge LoRA adapters.

`adapt` is a group (subcommands `cpt`, `merge`) because it needs both training and merging verbs;
`--print-launch` on `cpt` prints the `accelerate launch` command for multi-GPU/multi-node instead of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

LAUNCH_CONFIGS = {"fsdp": "examples/accelerate/fsdp.yaml", "deepspeed": "examples/accelerate/deepspeed-zero3.yaml"}


def register(app: typer.Typer) -> None:
    adapt_app = typer.Typer(help="Adapt the base model: continued pre-training (cpt), LoRA merge.",
                            no_args_is_help=True)
    app.add_typer(adapt_app, name="adapt")

    @adapt_app.command("cpt")
    def cpt(
        base: Annotated[Path, typer.Option("--base", help="Base model artifact or local HF checkpoint.")],
        corpus: Annotated[Path, typer.Option("--corpus", help="Corpus artifact (from `sovforge ingest`).")],
        out: Annotated[Path, typer.Option("--out", help="Output artifact directory.")],
        method: Annotated[str, typer.Option(help="full or lora.")] = "lora",
        seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 512,
        batch_size: Annotated[int, typer.Option(help="Sequences per micro-batch.")] = 8,
        max_steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
        learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-4,
        warmup_steps: Annotated[int, typer.Option(help="Warm-up steps.")] = 0,
        grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
        replay_text: Annotated[Optional[list[Path]], typer.Option(help="General text for replay (repeatable).")] = None,
        replay_share: Annotated[float, typer.Option(help="Share of replay blocks (0-1).")] = 0.0,
        checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0 = end only).")] = 0,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        print_launch: Annotated[Optional[str], typer.Option(
            "--print-launch", help="Print the multi-GPU command (fsdp|deepspeed) and exit.")] = None,
        num_processes: Annotated[int, typer.Option(help="GPUs per node for --print-launch.")] = 8,
        num_machines: Annotated[int, typer.Option(help="Nodes for --print-launch.")] = 1,
    ) -> None:
        """Continued pre-training on the corpus text (LoRA adapter or full model)."""
        from pydantic import ValidationError

        from sovforge.adapt.config import AdaptConfig, TrainConfig
        from sovforge.cli import fail

        try:
            cfg = AdaptConfig(mode="cpt", method=method, seq_len=seq_len, batch_size=batch_size,
                              replay_text=replay_text or [], replay_share=replay_share,
                              train=TrainConfig(max_steps=max_steps, learning_rate=learning_rate,
                                                warmup_steps=warmup_steps, grad_accum=grad_accum,
                                                checkpoint_every=checkpoint_every, seed=seed))
        except ValidationError as exc:
            raise fail(f"invalid option: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        if print_launch:
            if print_launch not in LAUNCH_CONFIGS:
                raise fail(f"--print-launch must be one of {sorted(LAUNCH_CONFIGS)}")
            args = [f"--base {base}", f"--corpus {corpus}", f"--out {out}", f"--method {method}",
                    f"--seq-len {seq_len}", f"--batch-size {batch_size}", f"--max-steps {max_steps}",
                    f"--learning-rate {learning_rate}", f"--warmup-steps {warmup_steps}",
                    f"--grad-accum {grad_accum}", f"--replay-share {replay_share}",
                    f"--checkpoint-every {checkpoint_every}", f"--seed {seed}",
                    *(f"--replay-text {p}" for p in replay_text or [])]
            node = (" --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR --main_process_port 29500"
                    if num_machines > 1 else "")
            typer.echo(f"accelerate launch --config_file {LAUNCH_CONFIGS[print_launch]} "
                       f"--num_processes {num_processes * num_machines} --num_machines {num_machines}{node} "
                       f"-m sovforge.cli adapt cpt {' '.join(args)}")
            return
        from sovforge.adapt.cpt import run_cpt
        from sovforge.adapt.trainer import TrainingError
        from sovforge.artifacts import LineageError
        from sovforge.model.loading import ModelLoadError

        try:
            path = run_cpt(base, corpus, cfg, out)
        except (TrainingError, ModelLoadError, LineageError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        typer.echo(str(path))

    @adapt_app.command("merge")
    def merge(
        adapter: Annotated[Path, typer.Option("--adapter", help="LoRA adapter artifact.")],
        out: Annotated[Path, typer.Option("--out", help="Output model artifact directory.")],
        base: Annotated[Optional[Path], typer.Option("--base", help="Base model (default: the adapter's).")] = None,
    ) -> None:
        """Merge a LoRA adapter into its full-precision base → standard HF checkpoint artifact."""
        from sovforge.adapt.merge import merge_adapter
        from sovforge.adapt.trainer import TrainingError
        from sovforge.cli import fail
        from sovforge.artifacts import LineageError
        from sovforge.model.loading import ModelLoadError

        try:
            typer.echo(str(merge_adapter(adapter, out, base)))
        except (TrainingError, ModelLoadError, LineageError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
