"""CPT before/after on real data: `.venv/bin/python bench/cpt_domain.py [--workdir /tmp/cpt-bench] [--steps 40]`.

Base = `small` preset (`sovforge base init`) pre-trained on the first 80% of FM 6-22 + two statutes from
/work/shared/corpus. CPT corpus = the other 10 statutes through the real `sovforge ingest` (`--tokenizer BASE`, so
`packed/<split>.npy` is made with the base tokenizer and CPT reads it memory-mapped); ingest's hash split puts
`--val-share` of the statutes into validation — held-out domain text. (`--builtin-corpus` writes the same layout
directly, for checkouts without ingest.) General text = FM 6-22: its first 80% is the replay source, its last 20%
(never trained on, neither by the base nor by CPT) measures general perplexity. Runs CPT without replay and with
`--replay-share` replay.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CORPUS = Path("/work/shared/corpus")
BASE_LAWS = ["군인사법__법률.md", "방위사업법__법률.md"]
HELD_OUT = ["군사기밀보호법__법률.md", "군인연금법__시행령.md"]


def ingest_corpus(out: Path, base: Path, val_share: float) -> None:
    """The CPT corpus through the real ingest pipeline (screen, filter, dedup, split, pack with the base tokenizer)."""
    import subprocess
    import sys

    laws = [str(p) for p in sorted((CORPUS / "ko-defense-law").glob("*__*.md")) if p.name not in BASE_LAWS]
    subprocess.run([sys.executable, "-m", "sovforge.cli", "ingest", *laws, "--out", str(out), "--tokenizer",
                    str(base), "--val-share", str(val_share)], check=True)


def write_corpus(out: Path, base: Path) -> None:
    """Corpus artifact in the ingest layout: documents/*.jsonl + packed/<split>.npy + packed/meta.json."""
    from sovforge.artifacts import build_artifact
    from sovforge.ingest.corpus import tokenizer_sha256
    from sovforge.model.loading import load_tokenizer

    tokenizer = load_tokenizer(base)
    streams: dict[str, list[int]] = {"train": [], "validation": []}
    with build_artifact(out, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        (staging.path / "packed").mkdir()
        with open(staging.path / "documents/laws.jsonl", "w", encoding="utf-8") as handle:
            for path in sorted((CORPUS / "ko-defense-law").glob("*__*.md")):
                if path.name in BASE_LAWS:
                    continue
                split = "validation" if path.name in HELD_OUT else "train"
                text = path.read_text(encoding="utf-8")
                streams[split] += tokenizer(text, verbose=False)["input_ids"] + [tokenizer.eos_token_id]
                handle.write(json.dumps({"id": path.stem, "text": text, "source": str(path), "sha256": "",
                                         "lang": "ko", "classification": "UNCLASSIFIED", "redactions": [],
                                         "split": split}, ensure_ascii=False) + "\n")
        for split, ids in streams.items():
            np.save(staging.path / "packed" / f"{split}.npy", np.asarray(ids, dtype=np.uint16))
        (staging.path / "packed/meta.json").write_text(json.dumps({
            "tokenizer_sha256": tokenizer_sha256(base / "tokenizer.json"), "tokenizer": str(base),
            "dtype": "uint16", "eos_id": tokenizer.eos_token_id, "tokens": {k: len(v) for k, v in streams.items()}}))
        staging.finish(inputs=[], config={"built_by": "bench/cpt_domain.py"}, stats={})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cpt-bench"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--base-steps", type=int, default=150)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--replay-share", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--val-share", type=float, default=0.2, help="ingest's validation share of the statutes")
    parser.add_argument("--builtin-corpus", action="store_true", help="write the corpus layout here, not via ingest")
    args = parser.parse_args()
    import torch
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    from sovforge.adapt.config import AdaptConfig, TrainConfig
    from sovforge.adapt.cpt import DOMAIN, TokenBlocks, block_refs, replay_stream, run_cpt
    from sovforge.adapt.trainer import evaluate_loss
    from sovforge.artifacts import load_artifact
    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig
    from sovforge.model.loading import load_model, load_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    fm = HTMLParser((CORPUS / "en-army-fm/fm6_22.html").read_text(encoding="utf-8", errors="replace")).body.text(
        separator="\n")
    cut = int(len(fm) * 0.8)
    (work / "general").mkdir(exist_ok=True)
    (work / "general/fm_replay.txt").write_text(fm[:cut], encoding="utf-8")
    (work / "fm_heldout.txt").write_text(fm[cut:], encoding="utf-8")
    base_text = work / "base_text"
    base_text.mkdir(exist_ok=True)
    (base_text / "fm.txt").write_text(fm[:cut], encoding="utf-8")
    for name in BASE_LAWS:
        (base_text / name).write_text((CORPUS / "ko-defense-law" / name).read_text(encoding="utf-8"), encoding="utf-8")
    base = work / "base"
    started = time.perf_counter()
    if not (base / "manifest.json").exists():
        init_base(BaseConfig(text=[base_text], preset="small", pretrain_steps=args.base_steps, seq_len=args.seq,
                             batch_size=args.batch, learning_rate=1e-3, vocab_size=4096), base)
    corpus = work / ("corpus" if args.builtin_corpus else "corpus-ingest")
    if not (corpus / "manifest.json").exists():
        write_corpus(corpus, base) if args.builtin_corpus else ingest_corpus(corpus, base, args.val_share)
    from sovforge.ingest.corpus import iter_documents, packed_meta

    held = sorted({d.get("title") or d["id"] for d in iter_documents(corpus, "validation")})
    print(f"base + corpus ready in {time.perf_counter() - started:.0f}s; validation statutes: {held}; "
          f"packed tokens: {packed_meta(corpus)['tokens']}")

    tokenizer = load_tokenizer(base)
    heldout = replay_stream([work / "fm_heldout.txt"], tokenizer)
    general_val = TokenBlocks([heldout], block_refs(DOMAIN, np.arange(min(24, len(heldout) // args.seq))),
                              args.seq, args.batch)

    def general_ppl(model_dir: Path) -> float:
        return evaluate_loss(load_model(model_dir), general_val)["val_ppl"]

    base_general = general_ppl(base)
    rows = []
    for share in (0.0, args.replay_share):
        cfg = AdaptConfig(method="full", seq_len=args.seq, batch_size=args.batch,
                          replay_text=[work / "general"] if share else [], replay_share=share, eval_blocks=64,
                          train=TrainConfig(max_steps=args.steps, learning_rate=args.lr, warmup_steps=4,
                                            progress=False))
        out = run_cpt(base, corpus, cfg, work / f"cpt-replay{share}")
        stats = load_artifact(out).stats
        rows.append((share, stats["before"]["val_ppl"], stats["after"]["val_ppl"], base_general, general_ppl(out),
                     stats["tokens_per_s"], stats["token_source"]))
    print(f"base: small preset, {args.base_steps} steps; CPT: full, {args.steps} steps x {args.batch}x{args.seq}, "
          f"lr {args.lr}, torch threads {torch.get_num_threads()}")
    print("replay  domain_ppl_before  domain_ppl_after  general_ppl_before  general_ppl_after  tokens/s  source")
    for share, db, da, gb, ga, tps, source in rows:
        print(f"{share:<8}{db:>17.2f}{da:>18.2f}{gb:>20.2f}{ga:>19.2f}{tps:>10.1f}  {source}  "
              f"(domain {100 * (da / db - 1):+.1f}%, general {100 * (ga / gb - 1):+.1f}%)")


if __name__ == "__main__":
    main()
