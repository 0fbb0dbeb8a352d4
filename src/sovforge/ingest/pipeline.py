"""`sovforge ingest INPUT... --out DIR`: documents → screened, deduplicated, classified corpus artifact.

    run_ingest(IngestConfig(inputs=[Path("../shared/corpus")], tokenizer=Path("runs/base")), Path("runs/corpus"))

Two datatrove pipelines of `PipelineStep` generators, run by datatrove's executors (`LocalPipelineExecutor` by
default; `SlurmPipelineExecutor` / `RayPipelineExecutor` with `executor: slurm|ray`):

    A (`tasks` shards, `workers` at once)       ExtractFiles → ReadableFilter → NormalizeStep → ScreenFilter
                                                 → LanguageFilter → QualityFilter → DedupSignature → JsonlWriter
    B (one task: needs every document)          MergedReader → DedupFilter → SplitAndCanaries → [PackTokens]
                                                 → CorpusWriter → CorpusStats

Every filter drops with a reason into a `QuarantineWriter`; B reads A's shards merged in source order, so the
kept documents, their ids and splits do not depend on the number of workers. The artifact is staged with
`build_artifact` (nothing half-written is ever left at DIR) and signed: kind "corpus", classification = the
highest level among kept documents, the input files and their sha256 in stats.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.jsonl import JsonlWriter

from sovforge.artifacts import MANIFEST, build_artifact, load_artifact
from sovforge.classification import Level, max_level
from sovforge.ingest.config import IngestConfig
from sovforge.ingest.corpus import CANARIES_FILE, DOCUMENTS_DIR, PACKED_DIR, QUARANTINE_DIR
from sovforge.ingest.dedup import DedupFilter, DedupSignature
from sovforge.ingest.extract import ExtractFiles, InputError, ReadableFilter, list_inputs
from sovforge.ingest.langid import LanguageFilter
from sovforge.ingest.normalize import NormalizeStep
from sovforge.ingest.quality import QualityFilter
from sovforge.ingest.quarantine import QuarantineWriter
from sovforge.ingest.readers import ReadLimits
from sovforge.ingest.screen import ScreenFilter
from sovforge.ingest.split import SplitAndCanaries, canary_plan
from sovforge.ingest.tokenize import PackTokens

# Metadata that steers the pipeline but is not part of a corpus document.
_INTERNAL = {"sort_key", "group", "screened", "error", "drop_detail", "filter_reason", "bytes", "file_path"}
_CONTRACT = ("id", "text", "source", "sha256", "lang", "classification", "redactions", "split", "title")


class IngestError(ValueError):
    """An ingest run that cannot produce a corpus; the message says why and what to change."""


# ------------------------------------------------------------------------------------------ global steps


class MergedReader(PipelineStep):
    """Reads stage A's shards back as one stream ordered by source (a k-way merge; nothing is loaded whole)."""

    type = "📖 - READER"
    name = "🔀 Merge shards"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        def documents(path: Path):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    yield Document(text=row.get("text", ""), id=row["id"], metadata=row.get("metadata", {}))

        streams = [documents(p) for p in sorted(Path(self.folder).glob("*.jsonl"))]
        for doc in heapq.merge(*streams, key=lambda d: d.metadata["sort_key"]):
            self.stat_update("documents")
            yield doc


def document_row(doc: Document) -> dict[str, Any]:
    """A kept document as the corpus contract spells it (corpus.py): contract fields first, then metadata."""
    meta = doc.metadata
    row = {"id": doc.id, "text": doc.text, "source": meta.get("source"), "sha256": meta.get("sha256"),
           "lang": meta.get("lang", "und"), "classification": meta.get("classification", "UNCLASSIFIED"),
           "redactions": meta.get("redactions", []), "split": meta.get("split", "train"),
           "title": meta.get("title"), "lang_share": meta.get("lang_share", {}), "format": meta.get("format"),
           "chars": len(doc.text)}
    row.update({k: v for k, v in meta.items() if k not in _INTERNAL and k not in row})
    return row


class CorpusWriter(JsonlWriter):
    """Writes kept documents to `documents/part-<rank>.jsonl` in the contract's shape."""

    name = "🐿 Corpus"

    def __init__(self, folder: str):
        super().__init__(folder, output_filename="part-${rank}.jsonl", compression=None)

    def _default_adapter(self, document: Document) -> dict[str, Any]:
        return document_row(document)


class CorpusStats(PipelineStep):
    """Counts what was kept (splits, languages, levels, redactions, characters) into a JSON file."""

    type = "📊 - STATS"
    name = "📊 Corpus stats"

    def __init__(self, out_file: str):
        super().__init__()
        self.out_file = out_file

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts: dict[str, Counter] = {k: Counter() for k in ("splits", "languages", "classification", "redactions",
                                                           "formats")}
        documents = chars = canaries = 0
        for doc in data:
            meta = doc.metadata
            documents += 1
            chars += len(doc.text)
            canaries += meta.get("canaries", 0)
            counts["splits"][meta.get("split", "train")] += 1
            counts["languages"][meta.get("lang", "und")] += 1
            counts["classification"][meta.get("classification", "UNCLASSIFIED")] += 1
            counts["formats"][meta.get("format")] += 1
            for item in meta.get("redactions", []):
                counts["redactions"][item["type"]] += item["count"]
            yield doc
        summary = {"documents": documents, "chars": chars, "canaries_planted": canaries,
                   **{k: dict(sorted(v.items())) for k, v in counts.items()}}
        Path(self.out_file).write_text(json.dumps(summary), encoding="utf-8")


# -------------------------------------------------------------------------------------------- assembly


def stage_a(cfg: IngestConfig, files: list[dict[str, Any]], work: Path) -> list[PipelineStep]:
    def quarantine(stage: str) -> QuarantineWriter:
        return QuarantineWriter(str(work / "quarantine"), stage, cfg.quarantine_text)

    limits = ReadLimits.from_config(cfg)
    return [
        ExtractFiles(files, limits, int(cfg.max_file_mb * (1 << 20)), progress=cfg.progress,
                     files_folder=str(work / "files")),
        ReadableFilter(exclusion_writer=quarantine("read")),
        NormalizeStep(cfg.fold_width, tuple(cfg.join_lines)),
        ScreenFilter(cfg.max_classification, exclusion_writer=quarantine("screen")),
        LanguageFilter(cfg.languages, cfg.langid_chunk_chars, cfg.langid_max_chunks,
                       exclusion_writer=quarantine("language")),
        QualityFilter(cfg, exclusion_writer=quarantine("quality")),
        DedupSignature(str(work / "signatures"), cfg.minhash_num_perm if cfg.dedup_near else 0, cfg.shingle_chars),
        JsonlWriter(str(work / "docs"), output_filename="${rank}.jsonl", compression=None),
    ]


def stage_b(cfg: IngestConfig, staging: Path, work: Path, tokenizer: Path | None) -> list[PipelineStep]:
    steps: list[PipelineStep] = [
        MergedReader(str(work / "docs")),
        DedupFilter(str(work / "signatures"), str(work / "dedup.json"), exact=cfg.dedup_exact, near=cfg.dedup_near,
                    threshold=cfg.minhash_threshold, num_perm=cfg.minhash_num_perm,
                    exclusion_writer=QuarantineWriter(str(work / "quarantine"), "dedup", cfg.quarantine_text)),
        SplitAndCanaries(str(work / "signatures"), str(work / "dedup.json"), val_share=cfg.val_share,
                         min_validation=cfg.min_validation_documents, salt=cfg.split_salt, canaries=cfg.canaries,
                         canary_repeats=cfg.canary_repeats, canary_seed=cfg.canary_seed),
    ]
    if tokenizer is not None:
        steps.append(PackTokens(str(tokenizer), str(staging / PACKED_DIR)))
    steps += [CorpusWriter(str(staging / DOCUMENTS_DIR)), CorpusStats(str(work / "corpus.json"))]
    return steps


def make_executor(kind: str, pipeline: list, *, tasks: int, workers: int, logging_dir: Path,
                  options: dict[str, Any] | None = None, depends: Any = None, job_name: str = "ingest"):
    """The datatrove executor for `kind`, with `options` passed through to its constructor."""
    options = dict(options or {})
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                     skip_completed=False, depends=depends, **options)
    if kind == "slurm":
        if shutil.which("sbatch") is None:
            raise IngestError("executor slurm: no `sbatch` on PATH; run on a Slurm login node or use --executor local")
        missing = [key for key in ("partition", "time") if key not in options]
        if missing:
            raise IngestError(f"executor slurm needs executor_options {missing} (e.g. partition: cpu, time: "
                              "'04:00:00')")
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                     job_name=job_name, skip_completed=False, depends=depends, **options)
    if kind == "ray":
        try:
            import ray
        except ImportError:
            raise IngestError("executor ray needs Ray: pip install 'sovforge[dist]'") from None
        from datatrove.executor.ray import RayPipelineExecutor

        if not ray.is_initialized():
            # RAY_ADDRESS joins a running cluster; without it a private local one starts ("local" never attaches to
            # some other Ray instance that happens to run on this machine).
            ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False)
        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                   skip_completed=False, depends=depends, **options)
    raise IngestError(f"unknown executor {kind!r}; use local, slurm or ray")


def _wait_for_slurm(logging_dir: Path, poll_seconds: float = 15.0) -> None:
    """Block until the final Slurm task has written its completion marker (datatrove's own bookkeeping)."""
    import subprocess

    marker = logging_dir / "completions" / "00000"
    while not marker.exists():
        time.sleep(poll_seconds)
        queue = subprocess.run(["squeue", "--me", "--noheader", "--name", "ingest-global"], capture_output=True,
                               text=True)
        if queue.returncode == 0 and not queue.stdout.strip() and not marker.exists():
            raise IngestError(f"the Slurm ingest jobs ended without finishing; see {logging_dir}/logs")


def run_pipelines(cfg: IngestConfig, files: list[dict[str, Any]], staging: Path, work: Path,
                  tokenizer: Path | None) -> None:
    tasks = cfg.tasks or cfg.workers
    options = dict(cfg.executor_options)
    poll = float(options.pop("poll_seconds", 15.0))
    first = make_executor(cfg.executor, stage_a(cfg, files, work), tasks=tasks, workers=cfg.workers,
                          logging_dir=work / "logs-a", options=options, job_name="ingest-shards")
    if cfg.executor == "slurm":  # one submission: the global job waits on the shard job array
        second = make_executor("slurm", stage_b(cfg, staging, work, tokenizer), tasks=1, workers=1,
                               logging_dir=work / "logs-b", options=options, depends=first, job_name="ingest-global")
        second.run()
        _wait_for_slurm(work / "logs-b", poll)
        return
    first.run()
    second = make_executor(cfg.executor, stage_b(cfg, staging, work, tokenizer), tasks=1, workers=1,
                           logging_dir=work / "logs-b", options=options)
    second.run()


# -------------------------------------------------------------------------------------------- results


def _read_jsonl_rows(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def _total(value: Any) -> float:
    """A datatrove metric as saved: a bare number, or {"total": ..., "mean": ...}."""
    return value.get("total", 0) if isinstance(value, dict) else value


def step_stats(*logging_dirs: Path) -> dict[str, dict[str, Any]]:
    """Per pipeline step: documents in/out and drops by reason, summed over every task's datatrove stats file."""
    sums: dict[str, Counter] = {}
    for logging_dir in logging_dirs:
        for path in sorted((logging_dir / "stats").glob("*.json")):
            for step in json.loads(path.read_text(encoding="utf-8")):
                name = step["name"].split(": ", 1)[-1]  # datatrove names steps "<type>: <name>"
                counter = sums.setdefault(name, Counter())
                counter["seconds"] += _total(step.get("time_stats", 0))
                for key, value in step.get("stats", {}).items():
                    counter[key] += _total(value)
    merged: dict[str, dict[str, Any]] = {}
    for name, counter in sums.items():
        entry: dict[str, Any] = {"seconds": round(counter.pop("seconds"), 3)}
        if "total" in counter:
            entry.update(documents_in=counter.pop("total"), documents_out=counter.pop("forwarded", 0))
            counter.pop("dropped", None)
        drops = {k.removeprefix("dropped_"): v for k, v in counter.items() if k.startswith("dropped_")}
        if drops:
            entry["dropped"] = dict(sorted(drops.items()))
        entry.update({k: v for k, v in sorted(counter.items()) if not k.startswith("dropped_") and k != "doc_len"})
        merged[name] = entry
    return merged


def write_quarantine(work: Path, staging: Path) -> Counter:
    """Merge the filters' quarantine shards into `quarantine/part-00000.jsonl`, in source order; count reasons."""
    rows = sorted(_read_jsonl_rows(work / "quarantine"), key=lambda r: (r.get("sort_key", ""), r["reason"]))
    (staging / QUARANTINE_DIR).mkdir(exist_ok=True)
    reasons: Counter = Counter()
    with open(staging / QUARANTINE_DIR / "part-00000.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            row.pop("sort_key", None)
            reasons[row["reason"]] += 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return reasons


def resolve_tokenizer(path: Path | None) -> Path | None:
    if path is None:
        return None
    from sovforge.model.loading import ModelLoadError, tokenizer_dir

    try:
        return tokenizer_dir(path).resolve()
    except ModelLoadError as exc:
        raise IngestError(f"--tokenizer {path}: {exc}") from None


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an --out that would destroy something that is not a corpus, or that lies inside an input."""
    resolved = out.resolve()
    for root in inputs:
        root = Path(root).resolve()
        if root.is_dir() and resolved.is_relative_to(root):
            raise IngestError(f"--out {out} is inside the input {root}; a rerun would ingest its own output")
    if out.exists():
        if not out.is_dir() or not (out / MANIFEST).exists():
            raise IngestError(f"--out {out} exists and is not an artifact; choose a new directory")
        if load_artifact(out).kind != "corpus":
            raise IngestError(f"--out {out} is a {load_artifact(out).kind} artifact, not a corpus; not replacing it")


def collect_stats(cfg: IngestConfig, files: list[dict[str, Any]], skipped: dict[str, int], kept: dict[str, Any],
                  reasons: Counter, work: Path, packed: dict | None, seconds: float) -> dict[str, Any]:
    """stats.json: what was kept, every drop by reason, dedup clusters, per-step counts, throughput, inputs."""
    dedup = json.loads((work / "dedup.json").read_text(encoding="utf-8"))
    stages = step_stats(work / "logs-a", work / "logs-b")
    documents_read = stages.get(ExtractFiles.name, {}).get("documents", 0)
    input_bytes = sum(f["bytes"] for f in files)
    return {
        **kept,
        "quarantined": sum(reasons.values()),
        "drops": dict(sorted(reasons.items())),
        "dedup": {"exact": reasons.get("duplicate:exact", 0), "near": reasons.get("duplicate:near", 0),
                  "clusters": dedup["clusters"], "cluster_members": dedup["cluster_members"]},
        "stages": stages,
        "input": {"files": len(files), "bytes": input_bytes, "documents_read": documents_read, "skipped": skipped},
        "throughput": {"seconds": round(seconds, 3), "workers": cfg.workers, "executor": cfg.executor,
                       "docs_per_s": round(documents_read / seconds, 2),
                       "mb_per_s": round(input_bytes / 2**20 / seconds, 3)},
        "tokens": packed["tokens"] if packed else None,
        "input_files": sorted(_read_jsonl_rows(work / "files"), key=lambda r: r["path"]),
    }


def run_ingest(cfg: IngestConfig, out: str | Path) -> Path:
    """Ingest `cfg.inputs` into a corpus artifact at `out`; returns `out`."""
    started = time.perf_counter()
    out = Path(out)
    try:
        files, skipped = list_inputs(cfg.inputs)
    except InputError as exc:
        raise IngestError(str(exc)) from None
    check_output(out, cfg.inputs)
    tokenizer = resolve_tokenizer(cfg.tokenizer)
    with build_artifact(out, kind="corpus") as staging:
        # Scratch space inside the staging dir: with slurm it must sit on a filesystem the nodes share.
        work = staging.path / ".work"
        work.mkdir()
        run_pipelines(cfg, files, staging.path, work, tokenizer)
        reasons = write_quarantine(work, staging.path)
        corpus_file = work / "corpus.json"
        kept = json.loads(corpus_file.read_text(encoding="utf-8")) if corpus_file.exists() else {"documents": 0}
        if kept["documents"] == 0:
            summary = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()) or "no documents read"
            raise IngestError(f"no document survived ingest ({summary}); nothing written to {out}")
        canaries, _ = canary_plan(kept["splits"].get("train", 0), cfg.canaries, cfg.canary_repeats, cfg.canary_seed)
        if canaries:
            (staging.path / CANARIES_FILE).write_text(
                json.dumps({"canaries": canaries, "repeats": cfg.canary_repeats}, indent=2) + "\n", encoding="utf-8")
        packed = json.loads((staging.path / PACKED_DIR / "meta.json").read_text()) if tokenizer else None
        stats = collect_stats(cfg, files, skipped, kept, reasons, work, packed, time.perf_counter() - started)
        shutil.rmtree(work)  # logs, shards and signatures are not part of the artifact
        # Timings vary run to run; they go to the manifest only, so the same inputs give the same artifact id
        # (a stage run under `sovforge jobs` on Ray must reproduce the local id).
        timings = {"throughput": stats.pop("throughput"),
                   "stage_seconds": {name: entry.pop("seconds") for name, entry in stats["stages"].items()
                                     if "seconds" in entry}}
        (staging.path / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        level = max_level(kept["classification"]) if kept.get("classification") else Level.UNCLASSIFIED
        config = {**cfg.model_dump(mode="json"), "tokenizer": str(tokenizer) if tokenizer else None}
        # The manifest names every input file with its sha256 (raw files have no artifact ids); a huge list is
        # summarised by its hash — the full list is in stats.json, which the manifest signs.
        input_files = stats["input_files"]
        listed = input_files if len(input_files) <= 1000 else {
            "count": len(input_files), "sha256": hashlib.sha256(json.dumps(input_files).encode()).hexdigest()}
        staging.finish(inputs=[], config=config, classification=level,
                       stats={k: v for k, v in stats.items() if k not in ("input_files", "stages")}
                       | {"input_files": listed} | timings)
    return out
