"""CPT before/after on real data: `.venv/bin/python bench/cpt_domain.py [--workdir /tmp/cpt-bench] [--steps 40]`.

Base = `small` preset pre-trained on FM 6-22 + two statutes from /work/shared/corpus. CPT corpus = 8 other statutes
(train) and 2 held-out statutes (validation). General text = FM 6-22: its first 80% is the replay source, its last
20% (never trained on during CPT) measures general perplexity. Runs CPT without and with 25% replay.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CORPUS = Path("/work/shared/corpus")
BASE_LAWS = ["군인사법__법률.md", "방위사업법__법률.md"]
HELD_OUT = ["군사기밀보호법__법률.md", "군인연금법__시행령.md"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cpt-bench"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--base-steps", type=int, default=150)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    from sovforge.adapt.config import AdaptConfig, TrainConfig
    from sovforge.adapt.cpt import batches_of, blocks, replay_tokens, run_cpt
    from sovforge.adapt.trainer import evaluate_loss
    from sovforge.artifacts import build_artifact, load_artifact
    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig
    from sovforge.model.loading import load_model, load_tokenizer

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
    if not (base / "manifest.json").exists():
        init_base(BaseConfig(text=[base_text], preset="small", pretrain_steps=args.base_steps, seq_len=args.seq,
                             batch_size=args.batch, learning_rate=1e-3, vocab_size=4096), base)

    corpus = work / "corpus"
    if not (corpus / "manifest.json").exists():
        with build_artifact(corpus, kind="corpus") as staging:
            (staging.path / "documents").mkdir()
            with open(staging.path / "documents/laws.jsonl", "w", encoding="utf-8") as handle:
                for path in sorted((CORPUS / "ko-defense-law").glob("*__*.md")):
                    if path.name in BASE_LAWS:
                        continue
                    split = "validation" if path.name in HELD_OUT else "train"
                    handle.write(json.dumps({"id": path.stem, "text": path.read_text(encoding="utf-8"),
                                             "source": str(path), "sha256": "", "lang": "ko",
                                             "classification": "UNCLASSIFIED", "redactions": [], "split": split},
                                            ensure_ascii=False) + "\n")
            staging.finish(inputs=[], config={}, stats={})

    tokenizer = load_tokenizer(base)
    general_val = batches_of(blocks(replay_tokens([work / "fm_heldout.txt"], tokenizer), args.seq)[:24], args.batch)

    def general_ppl(model_dir: Path) -> float:
        return evaluate_loss(load_model(model_dir), general_val)["val_ppl"]

    base_general = general_ppl(base)
    rows = []
    for share in (0.0, 0.25):
        cfg = AdaptConfig(method="full", seq_len=args.seq, batch_size=args.batch, replay_text=[work / "general"] if share else [],
                          replay_share=share,
                          train=TrainConfig(max_steps=args.steps, learning_rate=5e-4, warmup_steps=4, progress=False))
        out = run_cpt(base, corpus, cfg, work / f"cpt-replay{share}")
        stats = load_artifact(out).stats
        rows.append((share, stats["before"]["val_ppl"], stats["after"]["val_ppl"], base_general,
                     general_ppl(out),
                     stats["tokens_per_s"]))
    print("replay  domain_ppl_before  domain_ppl_after  general_ppl_before  general_ppl_after  tokens/s")
    for share, db, da, gb, ga, tps in rows:
        print(f"{share:<8}{db:>17.2f}{da:>18.2f}{gb:>20.2f}{ga:>19.2f}{tps:>10.1f}  (general +{100 * (ga / gb - 1):.1f}%)")


if __name__ == "__main__":
    main()
