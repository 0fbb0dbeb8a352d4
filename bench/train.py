"""Training-loop overhead: `.venv/bin/python bench/train.py [--steps 12] [--seq 128] [--batch 4]`.

Same random-weight ~23M-param Llama, same batches: sovforge.adapt.trainer.train (accelerate, AdamW, schedule,
clipping, metrics JSONL) versus a bare PyTorch AdamW loop. Steady-state tokens/s excludes the first step (warm-up);
the trainer's final checkpoint write is timed separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def make_model(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=8192, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).float()


def bare_loop(model, batches, steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    times = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    from sovforge.adapt.config import TrainConfig
    from sovforge.adapt.trainer import train

    torch.set_num_threads(max(1, torch.get_num_threads()))
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": ids, "labels": ids.clone()}
               for ids in torch.randint(0, 8192, (args.steps, args.batch, args.seq), generator=generator)]
    tokens_per_step = args.batch * args.seq

    def run_bare() -> float:
        times = bare_loop(make_model(0), batches, args.steps, 1e-4)
        return tokens_per_step / statistics.mean(times[1:])

    def run_ours() -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as run:
            cfg = TrainConfig(max_steps=args.steps, learning_rate=1e-4, progress=False, precision="fp32", seed=0)
            start = time.perf_counter()
            train(make_model(0), batches, cfg, out_dir=run)
            wall = time.perf_counter() - start
            lines = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
        return statistics.mean(r["tokens_per_s"] for r in lines[1:]), wall

    n_params = sum(p.numel() for p in make_model(0).parameters())
    # A-B-B-A order so drift in machine load (shared cores) hits both loops equally; best of two each.
    bare_a = run_bare()
    ours_a, wall_a = run_ours()
    ours_b, wall_b = run_ours()
    bare_b = run_bare()
    bare_tps, ours_tps = max(bare_a, bare_b), max(ours_a, ours_b)
    total = min(wall_a, wall_b)
    print(f"runs (tokens/s): bare {bare_a:.1f}, {bare_b:.1f}; sovforge {ours_a:.1f}, {ours_b:.1f}")
    print(f"model: Llama {n_params / 1e6:.1f}M params, batch {args.batch}x{args.seq}, {args.steps} steps, "
          f"threads {torch.get_num_threads()}, device cpu fp32")
    print(f"{'loop':<28}{'tokens/s (steady)':>20}")
    print(f"{'bare PyTorch AdamW':<28}{bare_tps:>20.1f}")
    print(f"{'sovforge trainer':<28}{ours_tps:>20.1f}")
    print(f"ratio sovforge/bare = {ours_tps / bare_tps:.3f}  (overhead {100 * (1 - ours_tps / bare_tps):+.1f}%)")
    print(f"sovforge train() wall incl. Accelerator setup + final checkpoint: {total:.1f}s for {args.steps} steps")


if __name__ == "__main__":
    main()
