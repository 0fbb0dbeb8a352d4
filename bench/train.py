"""Training-loop overhead: `.venv/bin/python bench/train.py [--preset 0.1b] [--steps 8] [--seq 256] [--batch 2]`.

Same random-weight Llama (built here from a config, nothing downloaded), same batches, same AdamW + clipping:
`sovforge.adapt.trainer.train` (accelerate, schedule, metrics JSONL, progress bar, final checkpoint) against a
bare PyTorch loop. One instrument times both (a forward pre-hook stamping each step's start); on CPU the steady
figure is the median step (step 0 excluded), robust to other jobs' load spikes, plus the same from CPU time.
Runs A-B-B-A (`--rounds` times) so drift in machine load hits both loops alike.

On a GPU (`--preset 1b`, bf16 autocast in both loops) it also prints MFU = model FLOPs/s over the GPU's dense bf16
peak (`--peak-tflops`, default from the device name): FLOPs/token = 6·N + 12·layers·hidden·seq (attention).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

PRESETS = {
    # ~0.13B: what a 2-core CPU can step a few times in minutes (DESIGN.md §4b: 0.1-0.5B on CPU).
    "0.1b": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=12),
    # ~1.1B (TinyLlama shape) for a GPU machine.
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
               num_attention_heads=32, num_key_value_heads=4),
    # ~23M: overhead only (the old default).
    "tiny": dict(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                 num_attention_heads=8, num_key_value_heads=8),
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def make_model(preset: str, seq: int, seed: int, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(max_position_embeddings=max(seq, 512), tie_word_embeddings=False, **PRESETS[preset])
    return LlamaForCausalLM(config).float().to(device)


def autocast(device: str):
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepClock:
    """A forward pre-hook stamping the start of every training step (both loops run one forward per step), so the
    same instrument times both: a step = from one forward's start to the next (optimizer, logging, all of it)."""

    def __init__(self, model, device: str, steps: int):
        self.device, self.steps, self.wall, self.cpu = device, steps, [], []
        model.register_forward_pre_hook(self)

    def __call__(self, module, args) -> None:
        if not module.training:
            return
        if self.device == "cuda" and len(self.wall) in (1, self.steps - 1):
            torch.cuda.synchronize()  # only at the two ends of the timed window
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def tokens_per_s(self, tokens_per_step: int) -> tuple[float, float]:
        """(steady wall tokens/s, CPU-time tokens/s) over steps 1 .. steps-2 (step 0 is warm-up).

        CPU: the median step, robust to other jobs' load spikes on a shared box. GPU: the window's total time.
        """
        if self.device == "cuda":
            span = self.wall[self.steps - 1] - self.wall[1]
            return tokens_per_step * (self.steps - 2) / span, float("nan")
        wall = [b - a for a, b in zip(self.wall[1:-1], self.wall[2:])]
        cpu = [b - a for a, b in zip(self.cpu[1:-1], self.cpu[2:])]
        return tokens_per_step / statistics.median(wall), tokens_per_step / statistics.median(cpu)


def bare_loop(model, batches, steps: int, device: str) -> None:
    """The plainest correct loop: forward, backward, clip, AdamW step. `use_cache=False` as in sovforge's loss: the
    KV cache transformers builds by default costs ~7% on this CPU, and the comparison is of the loops, not that."""
    # The same hyper-parameters as TrainConfig's defaults (weight_decay 0: torch's 0.01 would add a pass over N).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[step % len(batches)].items()}
        with autocast(device):
            loss = model(**batch, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)


def ours(model, batches, steps: int, device: str) -> float:
    """sovforge's loop as `sovforge adapt` runs it (progress bar, metrics JSONL, final checkpoint); returns wall s."""
    from sovforge.adapt.config import TrainConfig
    from sovforge.adapt.trainer import train

    with tempfile.TemporaryDirectory() as run:
        cfg = TrainConfig(max_steps=steps, learning_rate=1e-4, progress=True, seed=0,
                          precision="bf16" if device == "cuda" else "fp32")
        start = time.perf_counter()
        train(model, batches, cfg, out_dir=run)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="0.1b")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="A-B-B-A rounds (each: 2 runs per loop)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak for MFU")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    vocab = PRESETS[args.preset]["vocab_size"]
    batches = [{"input_ids": ids, "labels": ids.clone()}
               for ids in torch.randint(0, vocab, (args.steps, args.batch, args.seq), generator=generator)]

    def fresh():
        model = make_model(args.preset, args.seq, 0, device)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        return model

    tokens_per_step = args.batch * args.seq
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "ours": []}
    walls, peaks = [], {}
    for name in ("bare", "ours", "ours", "bare") * args.rounds:  # A-B-B-A: drift in load hits both
        model = fresh()
        clock = StepClock(model, device, args.steps)
        if name == "bare":
            bare_loop(model, batches, args.steps, device)
        else:
            walls.append(ours(model, batches, args.steps, device))
        runs[name].append(clock.tokens_per_s(tokens_per_step))
        if device == "cuda":
            peaks[name] = torch.cuda.max_memory_allocated() / 2**30
        del model
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):  # count parameters without allocating them
        n_params = sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(**PRESETS[args.preset])).parameters())
    bare_tps = statistics.median(w for w, _ in runs["bare"])
    ours_tps = statistics.median(w for w, _ in runs["ours"])
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    for name in runs:
        print(f"runs {name} (wall tokens/s | cpu-time tokens/s): "
              + ", ".join(f"{w:.1f} | {c:.1f}" for w, c in runs[name]))
    print(f"model: Llama {args.preset} {n_params / 1e6:.1f}M params, batch {args.batch}x{args.seq}, "
          f"{args.steps} steps x {2 * args.rounds} runs each, {where}, "
          f"{'bf16 autocast' if device == 'cuda' else 'fp32'}")
    print(f"{'loop':<24}{'tokens/s (median of runs)':>28}{'cpu-time tokens/s':>20}")
    for label, name, tps in (("bare PyTorch AdamW", "bare", bare_tps), ("sovforge trainer", "ours", ours_tps)):
        print(f"{label:<24}{tps:>28.1f}{statistics.median(c for _, c in runs[name]):>20.1f}")
    cpu_ratio = statistics.median(c for _, c in runs["ours"]) / statistics.median(c for _, c in runs["bare"])
    print(f"ratio sovforge/bare = {ours_tps / bare_tps:.3f}  (overhead {100 * (1 - ours_tps / bare_tps):+.1f}%); "
          f"by CPU time {cpu_ratio:.3f}")
    print(f"sovforge train() wall incl. Accelerator setup + final checkpoint: {min(walls):.1f}s for {args.steps} steps")
    if device == "cuda":
        config = PRESETS[args.preset]
        flops_per_token = 6 * n_params + 12 * config["num_hidden_layers"] * config["hidden_size"] * args.seq
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in where), None)
        for name, tps in (("bare", bare_tps), ("sovforge", ours_tps)):
            mfu = f"MFU {100 * tps * flops_per_token / (peak * 1e12):.1f}%" if peak else "MFU: pass --peak-tflops"
            print(f"{name}: {tps * flops_per_token / 1e12:.1f} TFLOP/s, {mfu}")
        print(f"peak memory GiB: {', '.join(f'{k} {v:.1f}' for k, v in peaks.items())}")


if __name__ == "__main__":
    main()
