"""Ingest benchmark: `.venv/bin/python bench/ingest.py [--corpus ../shared/corpus] [--docs 200]`.

1. Throughput on the same files, each variant in a fresh process (so every one pays its own Kiwi/lingua start-up),
   back to back:
   - sovforge ingest (defaults: Kiwi on a 10k-character sample per document), workers 1 and 2;
   - sovforge ingest with `quality_sample_chars: 0` (Kiwi over every character);
   - a datatrove-only pipeline: datatrove's disk-reader machinery (a raw-file `BaseDiskReader`, since datatrove
     ships no reader for loose .md/.html files), its Trafilatura extractor for the HTML, its GopherRepetition +
     GopherQuality filters and its JsonlWriter. Its word tokenizer for Korean is its own KiwiTokenizer — whose default
     `model_type="sbg"` is not in the kiwipiepy_model wheel, so the bench switches it to "cong"; the same tokenizer
     handles the English file (datatrove's English tokenizer needs spaCy, which is not installed).
   Prints wall seconds, docs/s, MB/s, documents kept, statutes kept and the ratio to the datatrove-only run.
2. Near-duplicate recall/precision on a planted set (`sovforge demo --make-docs`): every file is extracted and
   normalised as ingest does, signed (`DedupSignature`'s MinHash) and planned (`plan_dedup`). The dropped set is
   scored against the same keep-first rule computed with exact Jaccard of the shingle sets (what MinHash LSH
   approximates) and against the planted edited copies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"


# ------------------------------------------------------------------------------------------ variants


def run_sovforge(inputs: list[str], out: str, options: dict) -> dict:
    from sovforge.ingest.config import IngestConfig
    from sovforge.ingest.pipeline import run_ingest

    started = time.perf_counter()
    path = run_ingest(IngestConfig(inputs=[Path(p) for p in inputs], progress=False, **options), Path(out))
    seconds = time.perf_counter() - started
    stats = json.loads((path / "stats.json").read_text())
    kept = [json.loads(line) for f in sorted((path / "documents").glob("*.jsonl")) for line in open(f)]
    return {"seconds": seconds, "kept": len(kept), "statutes": sum(d["source"].endswith(
        ("법률.md", "시행령.md", "대통령령.md")) for d in kept), "read": stats["input"]["documents_read"]}


def run_datatrove(inputs: list[str], out: str, options: dict) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers.base import BaseDiskReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils import word_tokenizers
    from datatrove.utils.typeshelper import Languages

    word_tokenizers.KiwiTokenizer.__init__.__defaults__ = ("cong",)  # "sbg" is not shipped; see module docstring

    class RawFileReader(BaseDiskReader):
        """One document per file, the file's text as is."""

        name = "raw files"

        def read_file(self, filepath: str):
            with self.data_folder.open(filepath, "rt", encoding="utf-8", errors="replace") as fh:
                document = self.get_document_from_dict({"text": fh.read()}, filepath, 0)
            if document:
                yield document

    steps = []
    for root in inputs:
        steps += [RawFileReader(root, glob_pattern="**/*.html"), Trafilatura(timeout=600, favour_precision=True),
                  RawFileReader(root, glob_pattern="**/*.md")]
    steps += [GopherRepetitionFilter(language=Languages.korean), GopherQualityFilter(language=Languages.korean),
              JsonlWriter(f"{out}/documents", compression=None)]
    started = time.perf_counter()
    LocalPipelineExecutor(steps, tasks=1, workers=1, logging_dir=f"{out}/logs").run()
    seconds = time.perf_counter() - started
    kept = [json.loads(line) for f in sorted(Path(out, "documents").glob("*.jsonl")) for line in open(f)]
    return {"seconds": seconds, "kept": len(kept), "read": None,
            "statutes": sum(d["metadata"]["file_path"].endswith(("법률.md", "시행령.md", "대통령령.md")) for d in kept)}


VARIANTS = {
    "sovforge ingest, workers 1": ("sovforge", {}),
    "sovforge ingest, workers 2": ("sovforge", {"workers": 2}),
    "sovforge ingest, Kiwi on whole text": ("sovforge", {"quality_sample_chars": 0}),
    "datatrove-only (reader + Trafilatura + Gopher×2 + JsonlWriter)": ("datatrove", {}),
}


def child(variant: str, inputs: list[str], out: str) -> None:
    os.environ.setdefault("SOVFORGE_HOME", str(Path(out).parent / "home"))
    kind, options = VARIANTS[variant]
    result = (run_sovforge if kind == "sovforge" else run_datatrove)(inputs, out, options)
    print("RESULT " + json.dumps(result))


def throughput(inputs: list[str]) -> None:
    files = [p for root in inputs for p in Path(root).rglob("*") if p.is_file()]
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    print(f"\n## throughput: {len(files)} files, {megabytes:.2f} MB ({', '.join(inputs)})")
    print("| pipeline | seconds | files/s | MB/s | kept | statutes kept | vs datatrove-only |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, variant in enumerate(VARIANTS):
            proc = subprocess.run([sys.executable, __file__, "--child", variant, "--out", f"{tmp}/run{i}", *inputs],
                                  capture_output=True, text=True, cwd=REPO)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"| {variant} | failed: {proc.stderr.strip().splitlines()[-1:]} |")
                continue
            results[variant] = json.loads(line[7:])
    peer = next((r for v, r in results.items() if v.startswith("datatrove")), None)
    for variant, r in results.items():
        ratio = f"{peer['seconds'] / r['seconds']:.2f}x faster" if peer else "-"
        print(f"| {variant} | {r['seconds']:.1f} | {len(files) / r['seconds']:.2f} | {megabytes / r['seconds']:.3f} | "
              f"{r['kept']} | {r['statutes']} | {ratio} |")


# ------------------------------------------------------------------------------------------- dedup


def dedup_quality(count: int, seed: int, threshold: float) -> None:
    from sovforge.demo.docs import make_documents
    from sovforge.ingest.dedup import exact_hash, minhash_of, plan_dedup, simplify
    from sovforge.ingest.normalize import normalize_text
    from sovforge.ingest.readers import ReadLimits, format_of, read_file
    from sovforge.ingest.readers.safety import Unreadable

    with tempfile.TemporaryDirectory() as tmp:
        truth = make_documents(Path(tmp) / "docs", count=count, seed=seed)
        texts = {}
        for name in sorted(truth):
            path = Path(tmp) / "docs" / name
            try:
                texts[name] = "\n\n".join(normalize_text(p.text, format_of(path), join_formats=("pdf", "html"))
                                          for p in read_file(path, format_of(path), ReadLimits()))
            except Unreadable:
                continue
    started = time.perf_counter()
    rows = [{"id": name, "sort_key": name, "hash": exact_hash(text),
             "minhash": minhash_of(text, 128, 5).hashvalues.tolist()} for name, text in texts.items()]
    plan = plan_dedup(rows, exact=True, near=True, threshold=threshold, num_perm=128)
    seconds = time.perf_counter() - started
    dropped = set(plan["drop"])

    def shingles(text: str) -> set[str]:
        simple = simplify(text)
        return {simple[i:i + 5] for i in range(max(1, len(simple) - 4))}

    sets = {name: shingles(text) for name, text in texts.items()}
    names = sorted(sets)
    jaccard = {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for i, a in enumerate(names)
               for b in names[i + 1:]}  # exact, every pair
    similar = {pair for pair, value in jaccard.items() if value >= threshold}
    planted = {(t["near_duplicate_of"], child) for child, t in truth.items()
               if t["near_duplicate_of"] and child in texts and t["near_duplicate_of"] in texts}
    kept = set(texts) - dropped

    def remaining(pairs: set) -> int:
        return sum(1 for a, b in pairs if a in kept and b in kept)

    partners = {name: set() for name in names}
    for a, b in similar:
        partners[a].add(b)
        partners[b].add(a)
    justified = sum(1 for name in dropped if partners[name] & kept)
    print(f"\n## near-duplicates: {len(texts)} documents (count={count}, seed={seed}), threshold {threshold}, "
          f"128 perms, 5-char shingles; sign + plan {seconds:.2f} s; dropped {len(dropped)}")
    print("| pairs (exact shingle Jaccard, all pairs) | before | both still kept after | pair recall |")
    print("|---|---|---|---|")
    print(f"| planted edited copy + its parent | {len(planted)} | {remaining(planted)} | "
          f"{1 - remaining(planted) / max(len(planted), 1):.3f} |")
    print(f"| any two documents with Jaccard ≥ {threshold} | {len(similar)} | {remaining(similar)} | "
          f"{1 - remaining(similar) / max(len(similar), 1):.3f} |")
    left = sorted(jaccard[pair] for pair in similar if pair[0] in kept and pair[1] in kept)
    if left:
        print(f"pairs still kept have exact Jaccard {left[0]:.3f}..{left[-1]:.3f} (median {left[len(left) // 2]:.3f})")
    print(f"precision: {justified}/{len(dropped)} = {justified / max(len(dropped), 1):.3f} of dropped documents have "
          f"exact Jaccard ≥ {threshold} with a kept one; {len(planted)} planted copies, the other drops are the "
          "generator's template clones (same notice, other date/unit).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", default=[str(CORPUS)])
    parser.add_argument("--docs", type=int, default=200, help="planted documents for the dedup part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.inputs, args.out)
        return
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at start")
    if not args.skip_throughput:
        throughput(args.inputs)
    dedup_quality(args.docs, args.seed, args.threshold)


if __name__ == "__main__":
    main()
