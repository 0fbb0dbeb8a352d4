"""Speed and size of one model in a report, measured with compress's code (`sovforge.compress.measure`),
so both stages report the same numbers the same way. Same prompts for every model, same machine, one run.

    prefill_tok_s   prompt tokens / one forward over the prompt (KV cache on), median over prompts x repeats
    decode_tok_s    new tokens / the single-token forwards that follow (prefill excluded)
    ttft_s          time to the first generated token = the prefill forward (the first token is the argmax
                    of its last logits); median over prompts
    peak_rss_mb     high-water RSS of a fresh process that loads this model and runs a forward (per model:
                    the evaluating process has held every model so far); the interpreter's imports dominate
                    it for a small model, so also
    load_rss_mb     that process's resident memory after the load minus before it: what the model itself costs
                    (an adapter is measured as its base, which has the same shapes once the adapter is merged)
    disk_mb         bytes on disk of the weights directory (+ the adapter directory)
"""

from __future__ import annotations

import statistics
from typing import Any

from sovforge.evaluate.config import SpeedConfig
from sovforge.evaluate.models import EvalModel


def measure_speed(subject: EvalModel, model: Any, tokenizer: Any, cfg: SpeedConfig) -> dict[str, Any]:
    """Speed/size of an already loaded model (timed in-process; peak RSS from its own fresh process)."""
    import torch

    from sovforge.compress.measure import load_rss, torch_speed, weight_sizes

    if next(model.parameters()).device.type != "cpu":
        return {
            "skipped": "speed is timed on CPU only (sovforge.compress.measure.torch_speed feeds CPU tensors)"
        }
    limit = getattr(model.config, "max_position_embeddings", 2048) - cfg.new_tokens - 1
    prompts = [tokenizer(p * cfg.prompt_repeat)["input_ids"][-limit:] for p in cfg.prompts]
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        runs = [torch_speed(model, [ids], new_tokens=cfg.new_tokens, repeats=cfg.repeats) for ids in prompts]
    finally:
        torch.set_num_threads(threads)
    sizes = weight_sizes(subject.weights)
    disk = sizes["disk_bytes"] + (weight_sizes(subject.adapter)["disk_bytes"] if subject.adapter else 0)
    out = {
        "prefill_tok_s": statistics.median(r["prefill_tok_s"] for r in runs),
        "decode_tok_s": statistics.median(r["decode_tok_s"] for r in runs),
        "ttft_s": statistics.median(
            len(ids) / r["prefill_tok_s"] for ids, r in zip(prompts, runs, strict=True)
        ),
        "prompt_tokens": [len(ids) for ids in prompts],
        "new_tokens": cfg.new_tokens,
        "runtime": runs[0]["runtime"],
        "threads": runs[0]["threads"],
        "disk_mb": disk / 2**20,
        "weight_mb": sizes["weight_bytes"] / 2**20,
    }
    if cfg.rss:
        rss = load_rss(subject.weights, timeout=cfg.timeout_s)
        out.update({k: v for k, v in rss.items() if k in ("peak_rss_mb", "load_rss_mb")})
        if "error" in rss:
            out["rss_error"] = rss["error"]
        if subject.adapter:
            out["rss_note"] = "measured as the base (same shapes once the adapter is merged)"
    return out
