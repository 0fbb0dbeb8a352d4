"""`sovforge adapt cpt|sft|merge|make-sft ...`: adapt a base model to the corpus, merge LoRA adapters.

`adapt` is a group because it needs training, merging and data verbs. `--print-launch fsdp|deepspeed|ddp` on `cpt`
and `sft` prints the `accelerate launch` command that runs the same verb on many GPUs / nodes instead of training.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

LAUNCH_CONFIGS = {"fsdp": "examples/accelerate/fsdp.yaml", "deepspeed": "examples/accelerate/deepspeed-zero3.yaml",
                  "ddp": None}
LAUNCH_OPTIONS = ("print_launch", "num_processes", "num_machines")

PrintLaunch = Annotated[Optional[str], typer.Option(
    "--print-launch", help="Print the multi-GPU/multi-node `accelerate launch` command (fsdp|deepspeed|ddp) and exit.")]
NumProcesses = Annotated[int, typer.Option(help="GPUs per node for --print-launch.")]
NumMachines = Annotated[int, typer.Option(help="Nodes for --print-launch.")]
Method = Annotated[str, typer.Option(help="full, lora or qlora (4-bit base, CUDA only).")]
Targets = Annotated[Optional[list[str]], typer.Option(
    "--target-modules", help="Module names that get LoRA (repeatable); default: the architecture's.")]
Precision = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16, fp16.")]
QloraFallback = Annotated[bool, typer.Option(
    "--qlora-cpu-fallback", help="With --method qlora and no CUDA GPU: train plain LoRA and record that.")]
# Options cpt and sft share, defined once so their help and defaults cannot drift apart.
BaseModel = Annotated[Path, typer.Option("--base", help="Base model artifact or local HF checkpoint.")]
OutDir = Annotated[Path, typer.Option("--out", help="Output artifact directory.")]
BatchSize = Annotated[int, typer.Option(help="Sequences per micro-batch.")]
MaxSteps = Annotated[int, typer.Option(help="Optimizer steps.")]
LearningRate = Annotated[float, typer.Option(help="Peak learning rate.")]
Schedule = Annotated[str, typer.Option(help="cosine, linear or constant after warm-up.")]
WarmupSteps = Annotated[int, typer.Option(help="Warm-up steps.")]
GradAccum = Annotated[int, typer.Option(help="Micro-batches per optimizer step.")]
GradCheckpointing = Annotated[bool, typer.Option(help="Recompute activations to save memory.")]
LoraRank = Annotated[int, typer.Option(help="LoRA rank.")]
LoraAlpha = Annotated[int, typer.Option(help="LoRA alpha.")]
CheckpointEvery = Annotated[int, typer.Option(help="Checkpoint every N steps (0 = end only).")]
KeepCheckpoints = Annotated[int, typer.Option(help="Keep the newest K checkpoints.")]
EvalEvery = Annotated[int, typer.Option(help="Validation every N steps (0 = end only).")]
Seed = Annotated[int, typer.Option(help="Random seed.")]


def launch_command(ctx: typer.Context, verb: str, flavour: str, num_processes: int, num_machines: int) -> str:
    """The `accelerate launch` line that reruns this very command (its non-default options) on N processes."""
    args = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in LAUNCH_OPTIONS or value is None or value == param.default or value == []:
            continue
        flag = max(param.opts, key=len)
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            values = value if isinstance(value, (list, tuple)) else [value]
            args.extend(f"{flag} {shlex.quote(str(v))}" for v in values)
    config = LAUNCH_CONFIGS[flavour]
    head = f"accelerate launch --config_file {config}" if config else "accelerate launch --multi_gpu"
    node = (" --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR --main_process_port 29500"
            if num_machines > 1 else "")
    return (f"{head} --num_processes {num_processes * num_machines} --num_machines {num_machines}{node} "
            f"-m sovforge.cli adapt {verb} {' '.join(args)}").rstrip()


def _errors() -> tuple[type[BaseException], ...]:
    from sovforge.adapt.trainer import TrainingError
    from sovforge.artifacts import LineageError
    from sovforge.ingest.corpus import CorpusError
    from sovforge.model.loading import ModelLoadError

    return TrainingError, ModelLoadError, LineageError, CorpusError, FileNotFoundError


def _printed_launch(ctx: typer.Context, verb: str, flavour: Optional[str], num_processes: int,
                    num_machines: int) -> bool:
    """With --print-launch: print the multi-GPU command instead of training (True); otherwise False."""
    from sovforge.cli import fail

    if not flavour:
        return False
    if flavour not in LAUNCH_CONFIGS:
        raise fail(f"--print-launch must be one of {sorted(LAUNCH_CONFIGS)}")
    typer.echo(launch_command(ctx, verb, flavour, num_processes, num_machines))
    return True


def _train(run: Any) -> None:
    """Run a training call and print the artifact path; a known failure is a clear CLI error, not a traceback."""
    from sovforge.cli import fail

    try:
        typer.echo(str(run()))
    except _errors() as exc:
        raise fail(str(exc)) from None


def _config(**fields: Any) -> Any:
    from pydantic import ValidationError

    from sovforge.adapt.config import AdaptConfig, TrainConfig
    from sovforge.cli import fail

    train_keys = set(TrainConfig.model_fields)
    try:
        return AdaptConfig(**{k: v for k, v in fields.items() if k not in train_keys},
                           train=TrainConfig(**{k: v for k, v in fields.items() if k in train_keys}))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise fail(f"invalid option {'.'.join(map(str, error['loc']))}: {error['msg']}") from None


def register(app: typer.Typer) -> None:
    adapt_app = typer.Typer(help="Adapt the base model: continued pre-training (cpt), SFT, LoRA merge, SFT data.",
                            no_args_is_help=True)
    app.add_typer(adapt_app, name="adapt")

    @adapt_app.command("cpt")
    def cpt(
        ctx: typer.Context,
        base: BaseModel,
        corpus: Annotated[Path, typer.Option("--corpus", help="Corpus artifact (from `sovforge ingest`).")],
        out: OutDir,
        method: Method = "lora",
        qlora_cpu_fallback: QloraFallback = False,
        seq_len: Annotated[int, typer.Option(help="Tokens per sequence.")] = 512,
        batch_size: BatchSize = 8,
        max_steps: MaxSteps = 100,
        learning_rate: LearningRate = 2e-4,
        schedule: Schedule = "cosine",
        warmup_steps: WarmupSteps = 0,
        grad_accum: GradAccum = 1,
        precision: Precision = "auto",
        gradient_checkpointing: GradCheckpointing = False,
        replay_text: Annotated[Optional[list[Path]], typer.Option(help="General text for replay (repeatable).")] = None,
        replay_share: Annotated[float, typer.Option(help="Share of replay blocks (0-1).")] = 0.0,
        lora_r: LoraRank = 16,
        lora_alpha: LoraAlpha = 32,
        target_modules: Targets = None,
        checkpoint_every: CheckpointEvery = 0,
        keep_checkpoints: KeepCheckpoints = 2,
        eval_every: EvalEvery = 0,
        seed: Seed = 0,
        print_launch: PrintLaunch = None,
        num_processes: NumProcesses = 8,
        num_machines: NumMachines = 1,
    ) -> None:
        """Continued pre-training on the corpus's packed tokens (LoRA/QLoRA adapter or full model)."""
        cfg = _config(mode="cpt", method=method, qlora_cpu_fallback=qlora_cpu_fallback, seq_len=seq_len,
                      batch_size=batch_size, replay_text=replay_text or [], replay_share=replay_share,
                      lora_r=lora_r, lora_alpha=lora_alpha, target_modules=target_modules or None,
                      max_steps=max_steps, learning_rate=learning_rate,
                      schedule=schedule, warmup_steps=warmup_steps, grad_accum=grad_accum, precision=precision,
                      gradient_checkpointing=gradient_checkpointing, checkpoint_every=checkpoint_every,
                      keep_checkpoints=keep_checkpoints, eval_every=eval_every, seed=seed)
        if not _printed_launch(ctx, "cpt", print_launch, num_processes, num_machines):
            from sovforge.adapt.cpt import run_cpt

            _train(lambda: run_cpt(base, corpus, cfg, out))

    @adapt_app.command("sft")
    def sft(
        ctx: typer.Context,
        base: BaseModel,
        data: Annotated[list[Path], typer.Option("--data", help="Chat or instruction JSONL file (repeatable).")],
        out: OutDir,
        corpus: Annotated[Optional[Path], typer.Option(
            "--corpus", help="Corpus artifact the data was made from (recorded in the lineage).")] = None,
        method: Method = "lora",
        qlora_cpu_fallback: QloraFallback = False,
        seq_len: Annotated[int, typer.Option(help="Longest example (or packed row) in tokens.")] = 512,
        batch_size: BatchSize = 8,
        packing: Annotated[bool, typer.Option(help="Pack several examples per sequence (no cross-attention).")] = False,
        val_share: Annotated[float, typer.Option(help="Share of rows held out for validation.")] = 0.05,
        data_max_classification: Annotated[str, typer.Option(
            help="Highest marking a row may carry; above it the row is refused.")] = "UNCLASSIFIED",
        max_steps: MaxSteps = 100,
        learning_rate: LearningRate = 2e-4,
        schedule: Schedule = "cosine",
        warmup_steps: WarmupSteps = 0,
        grad_accum: GradAccum = 1,
        precision: Precision = "auto",
        gradient_checkpointing: GradCheckpointing = False,
        lora_r: LoraRank = 16,
        lora_alpha: LoraAlpha = 32,
        target_modules: Targets = None,
        checkpoint_every: CheckpointEvery = 0,
        keep_checkpoints: KeepCheckpoints = 2,
        eval_every: EvalEvery = 0,
        seed: Seed = 0,
        print_launch: PrintLaunch = None,
        num_processes: NumProcesses = 8,
        num_machines: NumMachines = 1,
    ) -> None:
        """Supervised fine-tuning on chat/instruction JSONL, loss on assistant tokens only."""
        cfg = _config(mode="sft", method=method, qlora_cpu_fallback=qlora_cpu_fallback, seq_len=seq_len,
                      batch_size=batch_size, sft_data=data, sft_packing=packing, sft_val_share=val_share,
                      data_max_classification=data_max_classification, lora_r=lora_r, lora_alpha=lora_alpha,
                      target_modules=target_modules or None,
                      max_steps=max_steps, learning_rate=learning_rate, schedule=schedule, warmup_steps=warmup_steps,
                      grad_accum=grad_accum, precision=precision, gradient_checkpointing=gradient_checkpointing,
                      checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, eval_every=eval_every,
                      seed=seed)
        if not _printed_launch(ctx, "sft", print_launch, num_processes, num_machines):
            from sovforge.adapt.sft import run_sft

            _train(lambda: run_sft(base, cfg.sft_data, cfg, out, corpus_path=corpus))

    @adapt_app.command("merge")
    def merge(
        adapter: Annotated[Path, typer.Option("--adapter", help="LoRA adapter artifact.")],
        out: Annotated[Path, typer.Option("--out", help="Output model artifact directory.")],
        base: Annotated[Optional[Path], typer.Option("--base", help="Base model (default: the adapter's).")] = None,
    ) -> None:
        """Merge a LoRA adapter into its full-precision base → standard HF checkpoint artifact."""
        from sovforge.adapt.merge import merge_adapter
        from sovforge.cli import fail

        try:
            typer.echo(str(merge_adapter(adapter, out, base)))
        except _errors() as exc:
            raise fail(str(exc)) from None

    @adapt_app.command("make-sft")
    def make_sft(
        corpus: Annotated[Path, typer.Argument(help="Corpus artifact (statutes, field manuals).")],
        out: Annotated[Path, typer.Option("--out", help="Output JSONL file of instruction rows.")],
        max_rows: Annotated[Optional[int], typer.Option(help="Stop after N rows (default: all).")] = None,
        max_chars: Annotated[int, typer.Option(help="Skip articles/paragraphs longer than this.")] = 1500,
    ) -> None:
        """Deterministic instruction rows quoting the corpus (statute articles, numbered FM paragraphs)."""
        from sovforge.adapt.make_sft import write_sft_rows
        from sovforge.cli import fail

        try:
            counts = write_sft_rows(corpus, out, max_rows=max_rows, max_chars=max_chars)
        except (*_errors(), ValueError) as exc:
            raise fail(str(exc)) from None
        typer.echo(f"{out}: {sum(counts.values())} rows ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
