"""Compression benchmarks: `.venv/bin/python bench/compress.py [speed] [quality] [--preset 0.2b] [--steps 300]`.

speed   — CPU decode/prefill tokens/s of one random-weight Llama shape (DESIGN.md §4b: speed does not depend on the
          weights), back to back in one process: transformers fp32 (the peer a user runs by default) vs the same
          model with torch dynamic int8 Linear layers (same runtime), and the GGUF files sovforge writes
          (F32 / F16 / Q8_0 / Q4_0) in llama.cpp via llama-cpp-python when installed (`pip install 'sovforge[llamacpp]'`).
          The measuring loop is `sovforge.compress.measure.torch_speed` / `llama_cpp_speed` (greedy, KV cache, batch 1).
quality — the must-shows on the demo-size `small` model (8 layers, hidden 256), pre-trained here on the train
          split of the shared Korean statutes: `sovforge compress` with fp16, W4A16 (GPTQ), 2:4 (SparseGPT),
          structured pruning, distillation of the pruned model vs the same student trained without the teacher,
          GGUF Q8_0; prints the comparison table and the checks (`--keep-base DIR` keeps the pre-trained base).
distill — on that base (`--base DIR`): a fresh 4-layer student (same tokenizer) trained with the teacher (KD)
          and without it (CE), same steps, same data order.

Nothing is downloaded; the shared corpus is read from ../shared/corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "corpus"
SHAPES = {
    # ~0.2B: decode on a 2-core CPU in seconds per variant.
    "0.2b": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=12,
                 num_attention_heads=16, num_key_value_heads=8),
    # ~0.5B for a bigger CPU.
    "0.5b": dict(vocab_size=32000, hidden_size=1536, intermediate_size=4096, num_hidden_layers=16,
                 num_attention_heads=16, num_key_value_heads=8),
}
PROMPTS = ["제1조(목적) 이 법은 군인의 복무에 관한 기본 사항을 규정함을 목적으로 한다. 제2조(정의) 이 법에서 사용하는 용어의 뜻은",
           "Leaders develop subordinates through counseling, coaching and mentoring. A leader who builds trust"]


def statute_texts() -> list[tuple[str, str]]:
    """(id, text) chunks of the 12 statutes, cut at article boundaries (제N조) into ~1500-character pieces."""
    chunks = []
    for path in sorted((SHARED / "ko-defense-law").glob("*.md")):
        piece = ""
        for article in re.split(r"(?=\n제\d+조)", path.read_text(encoding="utf-8")):
            if len(piece) + len(article) > 1500 and piece:
                chunks.append((f"{path.stem}#{len(chunks)}", piece.strip()))
                piece = ""
            piece += article
        if piece.strip():
            chunks.append((f"{path.stem}#{len(chunks)}", piece.strip()))
    return chunks


def write_corpus(out: Path, chunks: list[tuple[str, str]]) -> Path:
    """A corpus artifact: every 10th chunk is validation (held out from pre-training, distillation and calibration)."""
    from sovforge.artifacts import build_artifact

    with build_artifact(out, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        with open(staging.path / "documents" / "part-0.jsonl", "w", encoding="utf-8") as handle:
            for n, (doc_id, text) in enumerate(chunks):
                handle.write(json.dumps({"id": doc_id, "text": text, "source": doc_id.split("#")[0], "sha256": "0",
                                         "lang": "ko", "classification": "UNCLASSIFIED", "redactions": [],
                                         "split": "validation" if n % 10 == 9 else "train"}, ensure_ascii=False)
                             + "\n")
        staging.finish(inputs=[], config={"bench": "compress"}, stats={"documents": len(chunks)})
    return out


# ------------------------------------------------------------------------------------------------ speed

def speed(args: argparse.Namespace, work: Path) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    from sovforge.compress.export import export_gguf
    from sovforge.compress.measure import llama_cpp_available, llama_cpp_speed, torch_speed
    from sovforge.model.tokenizer import train_tokenizer

    torch.manual_seed(0)
    texts = [t for _, t in statute_texts()]
    tokenizer = train_tokenizer(texts, 8192, model_max_length=2048)
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    model_dir = work / f"llama-{args.preset}"
    config = LlamaConfig(max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, **SHAPES[args.preset])
    model = LlamaForCausalLM(config).eval()
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    kw = dict(new_tokens=args.new_tokens, repeats=args.repeats)
    rows = {"transformers fp32": torch_speed(model, prompts, **kw)}
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    rows["transformers + torch dynamic int8 (all Linear)"] = torch_speed(int8, prompts, **kw)
    del int8
    rows["transformers fp32 (again, drift check)"] = torch_speed(model, prompts, **kw)
    del model
    if llama_cpp_available():
        for qtype in ("F32", "F16", "Q8_0", "Q4_0"):
            path = work / f"{qtype}.gguf"
            export_gguf(model_dir, path, qtype)
            rows[f"llama.cpp GGUF {qtype} (sovforge export)"] = {
                **llama_cpp_speed(path, prompts, threads=torch.get_num_threads(), **kw),
                "file_mb": path.stat().st_size / 2**20}
            path.unlink()
    else:
        print("llama-cpp-python not installed: GGUF rows skipped (pip install 'sovforge[llamacpp]')", file=sys.stderr)
    fp32 = statistics.mean([rows["transformers fp32"]["decode_tok_s"],
                            rows["transformers fp32 (again, drift check)"]["decode_tok_s"]])
    print(f"\n{args.preset} Llama shape, {params / 1e6:.0f}M parameters, random weights, {torch.get_num_threads()} "
          f"threads, prompts {rows['transformers fp32']['prompt_tokens']} tokens, {args.new_tokens} new tokens\n")
    print("| runtime / weights | prefill tok/s | decode tok/s | decode vs transformers fp32 |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['prefill_tok_s']:.1f} | {row['decode_tok_s']:.2f} | {row['decode_tok_s'] / fp32:.2f}x |")
    if "llama.cpp GGUF F32 (sovforge export)" in rows:
        base = rows["llama.cpp GGUF F32 (sovforge export)"]["decode_tok_s"]
        for qtype in ("F16", "Q8_0", "Q4_0"):
            row = rows[f"llama.cpp GGUF {qtype} (sovforge export)"]
            print(f"llama.cpp {qtype} vs llama.cpp F32 (same runtime): decode {row['decode_tok_s'] / base:.2f}x")
    return {"params": params, "rows": rows}


# ---------------------------------------------------------------------------------------------- quality

def quality(args: argparse.Namespace, work: Path) -> dict:
    from sovforge.artifacts import load_artifact
    from sovforge.compress.config import CompressConfig
    from sovforge.compress.stage import compress_model
    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig

    chunks = statute_texts()
    corpus = write_corpus(work / "corpus", chunks)
    train_text = work / "train-text"
    train_text.mkdir()
    for n, (_, text) in enumerate(chunks):
        if n % 10 != 9:  # the teacher never sees the validation chunks
            (train_text / f"{n:05d}.txt").write_text(text, encoding="utf-8")
    started = time.perf_counter()
    if args.base:  # a base made by an earlier run of this script (same corpus chunks, same split)
        base = args.base
    else:
        base = init_base(BaseConfig(text=[train_text], preset="small", vocab_size=4096, pretrain_steps=args.steps,
                                    seq_len=128, batch_size=8, learning_rate=2e-3, max_position_embeddings=512),
                         work / "base")
        if args.keep_base:
            shutil.copytree(base, args.keep_base, dirs_exist_ok=True)
    print(f"base: preset small, {args.steps} pre-training steps in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    distill_train = {"max_steps": args.distill_steps, "learning_rate": 1e-3, "warmup_steps": 10, "progress": False}
    student = {"student": "pruned", "seq_len": args.distill_seq, "batch_size": 8, "train": distill_train}
    cfg = CompressConfig.model_validate({
        "calibration": {"samples": 64, "seq_len": 256},
        "variants": ["fp16", "w4a16", "sparse24",
                     {"name": "pruned", "structured": {"drop_layers": 2, "mlp_keep": 0.75}},
                     {"name": "distilled", "distill": {**student, "kd_weight": 1.0, "ce_weight": 0.0}},
                     {"name": "distilled-ce", "distill": {**student, "kd_weight": 0.0, "ce_weight": 1.0}},
                     {"name": "gguf-q8", "gguf": {"type": "Q8_0"}}],
        "measure": {"ppl_tokens": 8192, "ppl_seq_len": 256, "new_tokens": 32, "repeats": 2},
    })
    started = time.perf_counter()
    out = compress_model(base, corpus, cfg, work / "compressed")
    seconds = time.perf_counter() - started
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    print((out / "compare.md").read_text())
    sparse = load_artifact(out / "sparse24").stats["sparsity"]
    checks = {
        "w4a16 Linear bytes / fp16": rows["w4a16"]["linear_vs_fp16"],
        "w4a16 all weight files / fp16": rows["w4a16"]["size_vs_fp16"],
        "w4a16 ppl change %": rows["w4a16"]["ppl_change_pct"],
        "sparse24 layers all exactly 50% in 2:4": all(r["sparsity"] == 0.5 and r["pattern"] == "2:4"
                                                      for r in sparse["layers"].values()),
        "sparse24 layers": len(sparse["layers"]),
        "distilled params / parent": rows["distilled"]["parameters"] / rows["parent"]["parameters"],
        "distilled ppl (KD)": rows["distilled"]["ppl"], "distilled-ce ppl (no teacher)": rows["distilled-ce"]["ppl"],
        "pruned ppl (before training)": rows["pruned"]["ppl"], "parent ppl": rows["parent"]["ppl"],
        "KD beats CE-only": rows["distilled"]["ppl"] < rows["distilled-ce"]["ppl"],
        "compress seconds": round(seconds, 1),
    }
    print(json.dumps(checks, indent=2, ensure_ascii=False))
    return {"rows": rows, "checks": checks}


def distill(args: argparse.Namespace, work: Path) -> dict:
    """KD vs no-teacher for a fresh smaller student (same tokenizer, random init) on the quality base (`--base`)."""
    from sovforge.compress.config import CompressConfig
    from sovforge.compress.stage import compress_model

    if not args.base:
        raise SystemExit("distill: pass --base (a base kept by `quality --keep-base DIR`)")
    corpus = write_corpus(work / "corpus", statute_texts())
    train = {"max_steps": args.distill_steps, "learning_rate": 2e-3, "warmup_steps": 10, "progress": False}
    student = {"student_config": {"num_hidden_layers": 4, "intermediate_size": 512}, "seq_len": args.distill_seq,
               "batch_size": 8, "train": train}
    cfg = CompressConfig.model_validate({
        "variants": [{"name": "student-kd", "distill": {**student, "kd_weight": 1.0, "ce_weight": 0.0}},
                     {"name": "student-kd-ce", "distill": {**student, "kd_weight": 0.5, "ce_weight": 0.5}},
                     {"name": "student-ce", "distill": {**student, "kd_weight": 0.0, "ce_weight": 1.0}}],
        "measure": {"ppl_tokens": 8192, "ppl_seq_len": 256, "speed": False, "rss": False}})
    out = compress_model(args.base, corpus, cfg, work / "compressed")
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    print((out / "compare.md").read_text())
    checks = {"teacher ppl": rows["parent"]["ppl"], "student-kd ppl": rows["student-kd"]["ppl"],
              "student-kd-ce ppl": rows["student-kd-ce"]["ppl"], "student-ce ppl": rows["student-ce"]["ppl"],
              "student params / teacher": rows["student-kd"]["parameters"] / rows["parent"]["parameters"],
              "KD beats CE-only": rows["student-kd"]["ppl"] < rows["student-ce"]["ppl"]}
    print(json.dumps(checks, indent=2))
    return {"rows": rows, "checks": checks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["speed", "quality"], choices=["speed", "quality", "distill"])
    parser.add_argument("--preset", default="0.2b", choices=sorted(SHAPES))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="pre-training steps of the quality base model")
    parser.add_argument("--distill-steps", type=int, default=150)
    parser.add_argument("--distill-seq", type=int, default=128)
    parser.add_argument("--base", type=Path, help="quality: reuse this base (from --keep-base) instead of pre-training")
    parser.add_argument("--keep-base", type=Path, help="quality: copy the pre-trained base here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="sovforge-bench-compress-") as tmp:
        os.environ.setdefault("SOVFORGE_HOME", str(Path(tmp) / "home"))  # signing keys of this run only
        from sovforge.offline import enforce_offline

        enforce_offline()
        for part in args.parts:
            work = Path(tmp) / part
            work.mkdir()
            results[part] = {"speed": speed, "quality": quality, "distill": distill}[part](args, work)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
