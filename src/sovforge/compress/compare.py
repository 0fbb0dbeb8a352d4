"""The comparison of `sovforge compress`: the parent and every variant measured in one run, on the same prompts and
the same validation tokens, written as compare.json + compare.md + compare.png (size vs perplexity vs speed).

    rows = measure_all(parent_dir, {"w4a16": OUT / "w4a16", ...}, {"w4a16": "compressed-tensors", ...}, corpus, cfg)
    write_comparison(rows, OUT)

HF variants are loaded with plain `AutoModelForCausalLM` (through `sovforge.model.loading`, fp32 on CPU:
compressed-tensors checkpoints are decompressed at load, so their CPU speed is the dense speed); GGUF variants are
scored on their dequantised weights in the same torch runtime and timed in llama.cpp when it is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sovforge.compress.config import MeasureConfig

COLUMNS = [("name", "variant"), ("format", "format"), ("weight_mb", "weights MB"), ("size_vs_fp16", "size / fp16"),
           ("linear_vs_fp16", "Linear / fp16"), ("parameters", "params"), ("nonzero_parameters", "non-zero"),
           ("peak_rss_mb", "peak RSS MB"), ("load_rss_mb", "load RSS MB"), ("prefill_tok_s", "prefill tok/s"), ("decode_tok_s", "decode tok/s"),
           ("decode_speedup", "decode x"), ("ppl", "ppl"), ("ppl_change_pct", "Δppl %"),
           ("top1_agreement", "top-1 agree"), ("kl_mean", "KL"), ("runtime", "runtime")]


def _row(name: str, path: Path, fmt: str, model: Any, reference: Any, prompts: list[list[int]], cfg: MeasureConfig,
         baseline: dict[str, int]) -> dict[str, Any]:
    from sovforge.compress import measure

    row: dict[str, Any] = {"name": name, "format": fmt, "path": str(path.name if name != "parent" else path)}
    sizes = measure.weight_sizes(path)
    row.update(weight_mb=sizes["weight_bytes"] / 2**20, disk_mb=sizes["disk_bytes"] / 2**20,
               linear_mb=sizes["linear_bytes"] / 2**20,
               size_vs_fp16=sizes["weight_bytes"] / baseline["fp16_bytes"] if baseline["fp16_bytes"] else None,
               linear_vs_fp16=sizes["linear_bytes"] / baseline["linear_fp16_bytes"]
               if baseline["linear_fp16_bytes"] else None)
    row.update(measure.parameter_counts(model))
    errors: dict[str, str] = {}
    if reference is not None:
        try:
            row.update(reference.score(model))
        except Exception as exc:  # a variant that cannot run here: say so in its row, keep the others
            errors["scores"] = f"{type(exc).__name__}: {exc}"
    if cfg.rss:
        rss = measure.load_rss(path)
        if "error" in rss:
            errors["rss"] = rss["error"]
        row.update({k: v for k, v in rss.items() if k != "error"})
    if cfg.speed:
        try:
            if fmt == "gguf":
                if not measure.llama_cpp_available():
                    raise RuntimeError("llama-cpp-python not installed (pip install 'sovforge[llamacpp]')")
                speed = measure.llama_cpp_speed(next(path.glob("*.gguf")), prompts, new_tokens=cfg.new_tokens,
                                                repeats=cfg.repeats, threads=cfg.threads)
            else:
                speed = measure.torch_speed(model, prompts, new_tokens=cfg.new_tokens, repeats=cfg.repeats)
            row.update({k: v for k, v in speed.items() if k != "prompt_tokens"})
        except Exception as exc:
            errors["speed"] = f"{type(exc).__name__}: {exc}"
    if errors:
        row["errors"] = errors
    return row


def measure_all(parent_dir: Path, variants: dict[str, Path], formats: dict[str, str], corpus_dir: Path,
                cfg: MeasureConfig) -> list[dict[str, Any]]:
    """One row for the parent, then one per variant (in build order)."""
    import gc

    import torch

    from sovforge.compress.data import split_blocks
    from sovforge.compress.export import gguf_as_hf_model
    from sovforge.compress.measure import Reference, fp16_sizes, machine
    from sovforge.model.loading import load_model, load_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = load_tokenizer(parent_dir)
    prompts = [tokenizer(p)["input_ids"] for p in cfg.prompts]
    blocks = split_blocks(corpus_dir, parent_dir, tokenizer, "validation", cfg.ppl_seq_len, max_tokens=cfg.ppl_tokens)
    baseline = fp16_sizes(parent_dir)
    parent = load_model(parent_dir)
    reference = Reference.of(parent, blocks) if len(blocks) else None
    rows = [_row("parent", parent_dir, "hf", parent, reference, prompts, cfg, baseline)]
    del parent
    for name, path in variants.items():
        if formats[name] == "gguf":
            model = gguf_as_hf_model(next(path.glob("*.gguf")))
        else:
            model = load_model(path)
        rows.append(_row(name, path, formats[name], model, reference, prompts, cfg, baseline))
        del model
        gc.collect()
    base = rows[0]
    for row in rows:
        if row.get("decode_tok_s") and base.get("decode_tok_s"):
            row["decode_speedup"] = row["decode_tok_s"] / base["decode_tok_s"]
        if row.get("ppl") and base.get("ppl"):
            row["ppl_change_pct"] = 100 * (row["ppl"] / base["ppl"] - 1)
    rows[0]["machine"] = machine()
    if reference is None:
        rows[0].setdefault("errors", {})["scores"] = "the corpus has no validation split to score on"
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
    notes = [f"- {row['name']}: {what}: {why}" for row in rows for what, why in row.get("errors", {}).items()]
    machine = rows[0].get("machine", {}) if rows else {}
    text = ("\n".join(lines) + "\n\nSizes: weight files on disk; `size / fp16` against the parent's tensors stored as "
            "fp16; `Linear / fp16` counts only the decoder-block Linear weights (q/k/v/o, gate/up/down, with their "
            "scales and zero points) — what GPTQ/SparseGPT target — against the same in fp16. `decode x` is against "
            "the parent. compressed-tensors variants run in transformers on CPU by dequantising per forward, so "
            "their CPU speed is not their serving speed (vLLM on a GPU: bench/compress_vllm.py). "
            f"Machine: {json.dumps(machine)}.\n")
    return text + ("\nNot measured:\n" + "\n".join(notes) + "\n" if notes else "")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Weights MB (x) vs perplexity (y), marker area ∝ decode tokens/s, one labelled point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("ppl") is not None and r.get("weight_mb")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fastest = max((r.get("decode_tok_s") or 0 for r in points), default=0) or 1
    for r in points:
        speed = r.get("decode_tok_s") or 0
        ax.scatter(r["weight_mb"], r["ppl"], s=40 + 400 * speed / fastest, alpha=0.6)
        ax.annotate(f"{r['name']}\n{speed:.0f} tok/s" if speed else r["name"], (r["weight_mb"], r["ppl"]),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("weights on disk (MB)")
    ax.set_ylabel("validation perplexity")
    ax.set_title("size vs perplexity (marker area ∝ decode tokens/s)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_comparison(rows: list[dict[str, Any]], out_dir: Path) -> None:
    (out_dir / "compare.json").write_text(json.dumps({"rows": rows}, indent=2, ensure_ascii=False, default=str),
                                          encoding="utf-8")
    (out_dir / "compare.md").write_text(markdown(rows), encoding="utf-8")
    plot(rows, out_dir / "compare.png")
