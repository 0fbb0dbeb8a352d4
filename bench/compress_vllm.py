"""GPU serving benchmark of compressed variants in vLLM:
`.venv/bin/python bench/compress_vllm.py --model LOCAL_1B_DIR --corpus CORPUS_ARTIFACT [--out DIR] [--variants bf16 w4a16 fp8]`

1. `sovforge compress` makes the variants of a local ~1B Llama/Qwen2 checkpoint (bf16 reference, GPTQ W4A16,
   FP8_DYNAMIC; calibration on the domain corpus), each a compressed-tensors checkpoint vLLM loads directly.
2. Each variant is served by vLLM's offline engine in its own subprocess (a fresh CUDA context each), same prompts,
   greedy, fixed output length; generated tokens/s (batch = all prompts at once) and single-stream decode tokens/s.
3. Prints the table with the ratio of every variant against bf16.

Needs a CUDA GPU and `pip install vllm` (not a sovforge dependency: it pins its own torch — install it in a separate
venv on the GPU machine). FP8 kernels need compute capability >= 8.9 (Ada/Hopper). On a machine without them this
script exits 2 with one line saying what is missing, before doing any work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_SERVE = r"""
import json, sys, time
from vllm import LLM, SamplingParams
spec = json.loads(sys.argv[1])
llm = LLM(model=spec["path"], dtype="auto", max_model_len=spec["max_model_len"], gpu_memory_utilization=0.85,
          enforce_eager=False)
params = SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"], min_tokens=spec["max_tokens"])
llm.generate(spec["prompts"][:2], params)  # warm-up / graph capture
start = time.perf_counter()
outputs = llm.generate(spec["prompts"], params)
batch_s = time.perf_counter() - start
generated = sum(len(o.outputs[0].token_ids) for o in outputs)
start = time.perf_counter()
single = llm.generate(spec["prompts"][:1], params)
single_s = time.perf_counter() - start
print(json.dumps({"batch_tok_s": generated / batch_s, "single_decode_tok_s":
                  len(single[0].outputs[0].token_ids) / single_s, "prompts": len(spec["prompts"])}))
"""


def missing_requirements(variants: list[str]) -> str | None:
    """One line naming what this machine lacks for the benchmark, or None."""
    import importlib.util

    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU: vLLM serving of W4A16/FP8 variants needs one (this machine is CPU-only)"
    if "fp8" in variants and torch.cuda.get_device_capability() < (8, 9):
        return f"FP8 needs compute capability >= 8.9, this GPU has {torch.cuda.get_device_capability()}"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm in the GPU machine's serving venv)"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="local ~1B HF checkpoint (Llama or Qwen2)")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus artifact for calibration / scoring")
    parser.add_argument("--out", type=Path, default=None, help="where the variants go (default: a temp dir)")
    parser.add_argument("--variants", nargs="+", default=["bf16", "w4a16", "fp8"])
    parser.add_argument("--prompts", type=int, default=64, help="prompts in the batched run")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-model-len", type=int, default=2048)
    args = parser.parse_args()
    problem = missing_requirements(args.variants)
    if problem:
        print(f"compress_vllm: {problem}", file=sys.stderr)
        return 2

    from sovforge.compress.config import CompressConfig
    from sovforge.compress.stage import compress_model

    out = args.out or Path(tempfile.mkdtemp(prefix="sovforge-vllm-"))
    cfg = CompressConfig.model_validate({"variants": args.variants, "calibration": {"samples": 256, "seq_len": 512},
                                         "measure": {"enabled": False}})
    compress_model(args.model, args.corpus, cfg, out)
    base = ["제1조(목적) 이 법은 군인의 복무에 관한 기본 사항을 규정함을 목적으로 한다. 다음 조문을 요약하시오:",
            "Summarise the duties of a platoon leader during counseling, coaching and mentoring:"]
    prompts = [base[i % len(base)] + f" ({i})" for i in range(args.prompts)]
    rows = {}
    for name in args.variants:
        spec = {"path": str(out / name), "prompts": prompts, "max_tokens": args.max_tokens,
                "max_model_len": args.max_model_len}
        done = subprocess.run([sys.executable, "-c", _SERVE, json.dumps(spec)], capture_output=True, text=True)
        if done.returncode:
            rows[name] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        else:
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = rows.get("bf16", {}).get("batch_tok_s")
    print("| variant | batched tok/s | single-stream decode tok/s | batched vs bf16 |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        if "error" in row:
            print(f"| {name} | error: {row['error']} | | |")
            continue
        ratio = f"{row['batch_tok_s'] / reference:.2f}x" if reference else "–"
        print(f"| {name} | {row['batch_tok_s']:.0f} | {row['single_decode_tok_s']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
