"""The one training loop of sovforge (CPT, SFT, and the compress team's distillation): `sovforge adapt ...` calls it.

    from sovforge.adapt.trainer import train
    result = train(model, batches, TrainConfig(max_steps=100), out_dir=run_dir, loss_fn=None, eval_batches=val)

`batches` is a sequence of micro-batches (dicts of tensors; any `collections.abc.Sequence`, so CPT can hand in a
lazy view over a memory-mapped token stream). Each epoch visits them in an order derived from (seed, epoch) only,
so a resumed run sees exactly the batches the uninterrupted run would have seen. Under `accelerate launch` with N
processes, rank r takes position `cursor + r` of that order and the cursor advances by N: the data is sharded,
not repeated, and the effective batch is N x batch x grad_accum.

Checkpoints are safetensors (trainable weights + optimizer tensors) plus JSON (scheduler, RNG, data position):
nothing is pickled. Device placement and distributed wrapping come from accelerate's `Accelerator`, so the same
code runs single-process, under DDP (`accelerate launch --multi_gpu` or `torchrun`; on a machine without GPUs
that is gloo DDP on CPU, see `use_cpu`), FSDP or DeepSpeed. Resumable
checkpoints are written for single-process and DDP runs; under FSDP/DeepSpeed the optimizer state is sharded, so
periodic checkpoints are refused up front and the final full weights are gathered with
`accelerator.get_state_dict` (`TrainResult.state_dict`).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sovforge.adapt.config import TrainConfig

LossFn = Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]
EvalFn = Callable[[Any], Mapping[str, float]]

CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
# Test-only: SIGKILL this process right after the given optimizer step (and its checkpoint), to test resume.
CRASH_ENV = "SOVFORGE_TEST_KILL_AFTER_STEP"


class TrainingError(ValueError):
    """Bad input to the training loop, raised before any step runs."""


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    tokens: int
    elapsed_s: float
    tokens_per_s: float
    resumed_from: int | None = None
    processes: int = 1
    eval: dict[str, float] = field(default_factory=dict)
    metrics_path: Path | None = None
    checkpoint: Path | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """Full gathered weights, set only under FSDP/DeepSpeed on the main process (else save the model itself)."""

    def as_stats(self) -> dict[str, Any]:
        return {"steps": self.steps, "final_loss": self.final_loss, "tokens": self.tokens,
                "tokens_per_s": round(self.tokens_per_s, 1), "resumed_from": self.resumed_from,
                "processes": self.processes, **self.eval}


def use_cpu() -> bool:
    """Run accelerate on CPU when asked (`ACCELERATE_USE_CPU`) or when there is no GPU: then `accelerate launch
    --multi_gpu` / `torchrun` with N processes on a CPU machine is real gloo DDP, not N independent runs."""
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's per-process state (rank, world size), created the same way `train` creates its Accelerator."""
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


def default_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    # No KV cache while training: it only costs memory, and with a cache transformers ignores packed position_ids
    # (SFT packing) when it builds the attention mask.
    return model(**batch, use_cache=False).loss


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer step `step` (warm-up, then cosine/linear/constant)."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return factor


def _mixed_precision(precision: str) -> str:
    if precision == "fp32":
        return "no"
    if precision in ("bf16", "fp16"):
        return precision
    if torch.cuda.is_available():  # auto: CPU autocast is slower than fp32 on most CPUs, so only on GPU
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _batch_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens the model processes in this batch (for tokens/s): real tokens of a 2-D padding mask, else all."""
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    ids = batch["input_ids"] if "input_ids" in batch else next(iter(batch.values()))
    return int(ids.numel())


def _scored_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens a causal-LM loss is averaged over: labels != -100 after the one-token shift (SFT masks most)."""
    labels = batch.get("labels")
    if labels is None or labels.dim() != 2:
        return _batch_tokens(batch)
    return int((labels[:, 1:] != -100).sum())


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # CPU: peak resident set size of this process (Linux reports KiB)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- checkpoints (safetensors + JSON, no pickle)

def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    # clone: tied/shared tensors cannot be written by safetensors; named_parameters already de-duplicates ties.
    return {name: p.detach().to("cpu").clone().contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), np_state[2], np_state[3], np_state[4]]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = meta["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under `out_dir`, oldest first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / "state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(out_dir: Path, *, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                    step: int, position: dict[str, int], keep: int) -> Path:
    from safetensors.torch import save_file

    root = Path(out_dir) / CHECKPOINT_DIR
    final = root / f"step-{step:07d}"
    staging = root / f".tmp-step-{step:07d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(_trainable_state(model), str(staging / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(staging / "optimizer.safetensors"))
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, str(staging / "rng.safetensors"))
    # state.json is written last: its presence marks the checkpoint complete.
    (staging / "state.json").write_text(json.dumps({
        "step": step, "position": position, "scheduler": scheduler.state_dict(),
        "optimizer": opt_meta, "rng": rng_meta}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, *, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "model.safetensors"))
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise TrainingError(f"checkpoint {path} does not match this model (unknown weights: {unknown[:3]})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / "optimizer.safetensors")),
                                                   state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    _restore_rng(load_file(str(path / "rng.safetensors")), state["rng"])
    return state


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_loss(model: Any, batches: Sequence[dict[str, torch.Tensor]], *, loss_fn: LossFn | None = None,
                  device: torch.device | None = None, accelerator: Any = None) -> dict[str, float]:
    """Token-weighted mean loss and perplexity over `batches` (model put in eval mode, then restored).

    With an `accelerator` of several processes each rank scores every N-th batch and the sums are all-reduced.
    """
    loss_fn = loss_fn or default_loss
    was_training = model.training
    model.eval()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    total, tokens = 0.0, 0
    for index in range(rank, len(batches), world):
        batch = batches[index]
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        n = _scored_tokens(batch)
        if n:
            total += float(loss_fn(model, batch)) * n
            tokens += n
    model.train(was_training)
    if world > 1:
        sums = accelerator.reduce(torch.tensor([total, float(tokens)], device=accelerator.device), "sum")
        total, tokens = float(sums[0]), int(sums[1])
    if not tokens:
        raise TrainingError("validation data is empty")
    loss = total / tokens
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}


# ---------------------------------------------------------------- the loop

def train(model: Any, train_batches: Sequence[dict[str, torch.Tensor]], cfg: TrainConfig, *, out_dir: str | Path,
          loss_fn: LossFn | None = None, eval_fn: EvalFn | None = None,
          eval_batches: Sequence[dict[str, torch.Tensor]] | None = None,
          accelerator: Any = None) -> TrainResult:
    """Train `model` in place for `cfg.max_steps` optimizer steps; resumable from `out_dir/checkpoints`.

    `loss_fn(model, batch) -> scalar Tensor` defaults to `model(**batch).loss` (distillation passes its own).
    `eval_fn(model) -> {name: value}` replaces the default validation loss/ppl over `eval_batches`.
    Metrics go to `out_dir/metrics.jsonl` (one JSON line per logged step / evaluation).
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    from tqdm.auto import tqdm

    if not isinstance(train_batches, Sequence) or len(train_batches) == 0:
        raise TrainingError("no training batches: the training data is empty")
    for key in ("input_ids",):
        if key not in train_batches[0] and loss_fn is None:
            raise TrainingError(f"training batches lack {key!r}")
    loss_fn = loss_fn or default_loss
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    accelerator = accelerator or Accelerator(mixed_precision=_mixed_precision(cfg.precision), cpu=use_cpu())
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if sharded and cfg.checkpoint_every:
        raise TrainingError(f"checkpoint_every={cfg.checkpoint_every}: resumable checkpoints need a single process or "
                            f"DDP; under {accelerator.distributed_type} the optimizer state is sharded (set 0)")
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        if cfg.grad_accum != 1:
            raise TrainingError("under DeepSpeed set grad_accum 1 (DeepSpeed steps inside backward); raise "
                                "batch_size or the number of processes instead")
        # No dataloader goes through prepare(), so DeepSpeed must be told the micro-batch size.
        ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
        ds_config["train_micro_batch_size_per_gpu"] = int(next(iter(train_batches[0].values())).shape[0])
    world, rank = accelerator.num_processes, accelerator.process_index
    if len(train_batches) < world:
        raise TrainingError(f"{len(train_batches)} training batches cannot feed {world} processes")
    if cfg.gradient_checkpointing:
        if not hasattr(model, "gradient_checkpointing_enable"):
            raise TrainingError("this model does not support gradient checkpointing")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):  # needed when embeddings are frozen (LoRA)
            model.enable_input_require_grads()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay)
    unwrapped = model
    model, optimizer = accelerator.prepare(model, optimizer)
    # FSDP2 swaps parameters for sharded ones inside prepare(): clip what the wrapped model holds now.
    trainable = [p for p in model.parameters() if p.requires_grad]
    # The scheduler is stepped once per optimizer step by us (not wrapped, so accelerate does not rescale it).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))

    step, epoch, cursor, resumed_from = 0, 0, 0, None
    existing = checkpoints(out_dir) if cfg.resume and not sharded else []
    if existing:
        state = load_checkpoint(existing[-1], model=accelerator.unwrap_model(model), optimizer=optimizer,
                                scheduler=scheduler)
        step, epoch, cursor = state["step"], state["position"]["epoch"], state["position"]["cursor"]
        resumed_from = step
    metrics_path = out_dir / METRICS_FILE
    crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)

    n_batches = len(train_batches)
    order = _epoch_order(n_batches, cfg.seed, epoch)

    def next_batch() -> tuple[dict[str, torch.Tensor], int]:
        # `cursor` is global: every rank advances it by `world` and takes its own slot, so ranks see disjoint data.
        nonlocal epoch, cursor, order
        if cursor + world > n_batches:  # drop the epoch's remainder rather than give ranks unequal work
            epoch, cursor = epoch + 1, 0
            order = _epoch_order(n_batches, cfg.seed, epoch)
        batch = train_batches[order[cursor + rank]]
        cursor += world
        # Tokens are counted on the host copy, so counting never waits for the GPU.
        return {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}, _batch_tokens(batch)

    def run_eval() -> dict[str, float]:
        if eval_fn is not None:
            return dict(eval_fn(model))
        if eval_batches:
            return evaluate_loss(model, eval_batches, loss_fn=loss_fn, device=accelerator.device,
                                 accelerator=accelerator)
        return {}

    def global_count(n: int) -> int:
        if world == 1:
            return n
        return int(accelerator.reduce(torch.tensor(n, device=accelerator.device), "sum"))

    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (cfg.progress and accelerator.is_main_process),
               desc="train", unit="step")
    tokens_total, started, last_loss, last_eval = 0, time.perf_counter(), float("nan"), {}
    window_tokens, window_start = 0, time.perf_counter()
    metrics_file = open(metrics_path, "a", encoding="utf-8") if accelerator.is_main_process else None
    try:
        while step < cfg.max_steps:
            loss_sum = torch.zeros((), device=accelerator.device)
            for micro in range(cfg.grad_accum):
                batch, n = next_batch()
                # Skip the gradient all-reduce on all but the last micro-batch of an accumulation window.
                context = accelerator.no_sync(model) if micro < cfg.grad_accum - 1 else _null()
                with context, accelerator.autocast():
                    loss = loss_fn(model, batch)
                accelerator.backward(loss / cfg.grad_accum)
                loss_sum += loss.detach().float() / cfg.grad_accum
                tokens_total += n
                window_tokens += n
            step_loss = float(loss_sum)  # the step's one host-device sync
            if not math.isfinite(step_loss):
                raise TrainingError(f"loss became {step_loss} at step {step + 1}; lower the learning rate")
            grad_norm = None
            if cfg.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:  # report the mean over ranks, not rank 0's share
                step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "mean"))
            step += 1
            last_loss = step_loss
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            record: dict[str, Any] = {}
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                window_tokens = global_count(window_tokens)
                now = time.perf_counter()
                record = {"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0],
                          "grad_norm": None if grad_norm is None else float(grad_norm),
                          "tokens_per_s": window_tokens / max(now - window_start, 1e-9),
                          "peak_memory_mb": round(_peak_memory_mb(accelerator.device), 1), "epoch": epoch}
                window_tokens, window_start = 0, now
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps:
                last_eval = run_eval()
                record = {"step": step, **record, **last_eval}
            if record and metrics_file:
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            due = (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.max_steps
            if due and not sharded:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    save_checkpoint(out_dir, model=unwrapped, optimizer=optimizer,
                                    scheduler=scheduler, step=step, position={"epoch": epoch, "cursor": cursor},
                                    keep=cfg.keep_checkpoints)
            if crash_after and step == crash_after:
                if metrics_file:
                    metrics_file.close()
                os.kill(os.getpid(), signal.SIGKILL)
    finally:
        bar.close()
        if metrics_file and not metrics_file.closed:
            metrics_file.close()
    elapsed = time.perf_counter() - started
    tokens_total = global_count(tokens_total)
    # Under FSDP/DeepSpeed the weights are sharded across ranks: gather the full state (a collective, all ranks).
    state_dict = accelerator.get_state_dict(model) if sharded else None
    accelerator.wait_for_everyone()
    final = checkpoints(out_dir)
    return TrainResult(steps=step, final_loss=last_loss, tokens=tokens_total, elapsed_s=elapsed,
                       tokens_per_s=tokens_total / max(elapsed, 1e-9), resumed_from=resumed_from,
                       processes=world, eval=last_eval, metrics_path=metrics_path,
                       checkpoint=final[-1] if final else None,
                       state_dict=state_dict if accelerator.is_main_process else None)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
