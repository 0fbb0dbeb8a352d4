"""Finding the input files and turning each into documents: the first steps of `sovforge ingest`.

`list_inputs` walks the INPUT paths once, in the main process, into a sorted list of files with stable ids, so
every worker agrees on what exists. `ExtractFiles` (a datatrove reader step) takes its shard of that list and
yields one `Document` per text (several for a JSONL file or a text cut into parts). A file that cannot be read
yields a placeholder document carrying the reason; `ReadableFilter` right after drops it into quarantine, so every
drop — unreadable or not — goes through a filter and is counted by reason.

Document ids: `sha256("<input dir name>/<relative path>")[:16]`, `-pNNNN` for part N>0 of a long text and
`-lNNNNNN` for JSONL line N. They depend on names, not on the number of workers, so splits are deterministic.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from loguru import logger

from sovforge.artifacts import file_sha256
from sovforge.ingest.readers import UNSUPPORTED_HINTS, ReadLimits, Unreadable, format_of, read_file
from sovforge.ingest.readers.safety import first_line_title, split_parts

if os.environ.get("SOVFORGE_DATATROVE_LOGS") != "1":
    # datatrove logs every task's launch, pipeline and stats at INFO; ingest prints its own summary. Done at import
    # so worker processes, which import this module to unpickle their steps, are quiet too.
    logger.disable("datatrove")


class InputError(ValueError):
    """An INPUT path that does not exist or holds nothing to ingest."""


def list_inputs(inputs: list[Path]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """([file entries sorted by source], {skipped kind: count}) for the given files and directories."""
    if not inputs:
        raise InputError("no INPUT given: pass files or directories to ingest")
    entries: dict[str, dict[str, Any]] = {}
    skipped: dict[str, int] = {}
    for root in inputs:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such file or directory")
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
            label = root.resolve().name
        else:
            candidates, label = [root], ""
        for path in candidates:
            rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
            if any(part.startswith(".") for part in Path(rel).parts):
                skipped["hidden"] = skipped.get("hidden", 0) + 1
                continue
            if path.is_symlink() and root.is_dir():
                skipped["symlink"] = skipped.get("symlink", 0) + 1  # links could point outside the input tree
                continue
            name = f"{label}/{rel}" if label else rel
            while name in entries:  # the same relative name under two inputs: keep both, distinctly
                name += "#"
            entries[name] = {"path": str(path), "source": str(path), "name": name, "format": format_of(path),
                             "bytes": path.stat().st_size,
                             "file_id": hashlib.sha256(name.encode()).hexdigest()[:16]}
    if not entries:
        raise InputError(f"nothing to ingest in {', '.join(map(str, inputs))} (no files)")
    return sorted(entries.values(), key=lambda e: e["source"]), skipped


def assign_shards(files: list[dict[str, Any]], world_size: int) -> list[list[dict[str, Any]]]:
    """Balance files over ranks by size (largest first onto the lightest rank); each shard stays in source order."""
    shards: list[list[dict[str, Any]]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    for entry in sorted(files, key=lambda e: (-e["bytes"], e["source"])):
        lightest = loads.index(min(loads))
        shards[lightest].append(entry)
        loads[lightest] += entry["bytes"]
    return [sorted(shard, key=lambda e: e["source"]) for shard in shards]


def sort_key(source: str, record: int, part: int) -> str:
    return f"{source}\0{record:08d}\0{part:06d}"


class ExtractFiles(PipelineStep):
    """Reader step: this rank's share of the input files → documents (or placeholders carrying the reason)."""

    type = "📖 - READER"
    name = "📄 Extract"

    def __init__(self, files: list[dict[str, Any]], limits: ReadLimits, max_file_bytes: int, progress: bool = True,
                 files_folder: str | None = None):
        super().__init__()
        self.files = files
        self.limits = limits
        self.max_file_bytes = max_file_bytes
        self.progress = progress
        self.files_folder = files_folder  # where each rank lists the files it read with their sha256
        self._hashes: dict[str, str | None] = {}

    def _failed(self, entry: dict[str, Any], sha: str | None, reason: str, detail: str, record: int = 0) -> Document:
        doc_id = entry["file_id"] + (f"-l{record:06d}" if record else "")
        self.stat_update(reason.split(":", 1)[0])
        return Document(text="", id=doc_id, metadata={
            "source": entry["source"], "sha256": sha, "format": entry["format"], "part": 0, "error": reason,
            "drop_detail": detail, "sort_key": sort_key(entry["source"], record, 0)})

    def read_entry(self, entry: dict[str, Any]) -> Iterator[Document]:
        path = Path(entry["path"])
        fmt = entry["format"]
        try:
            sha = file_sha256(path)
        except OSError as exc:
            self._hashes[entry["source"]] = None
            yield self._failed(entry, None, "unreadable:io_error", type(exc).__name__)
            return
        self._hashes[entry["source"]] = sha
        if fmt is None:
            hint = UNSUPPORTED_HINTS.get(path.suffix.lower(), "no reader for this file type")
            yield self._failed(entry, sha, "unsupported_format", f"{path.suffix or 'no suffix'}: {hint}")
            return
        if entry["bytes"] > self.max_file_bytes:
            yield self._failed(entry, sha, "too_large", f"{entry['bytes'] / 2**20:.1f} MB > max_file_mb "
                                                        f"{self.max_file_bytes / 2**20:g} (raise it to stream the "
                                                        "file in parts)")
            return
        parts = 0
        try:
            for extracted in read_file(path, fmt, self.limits):
                record = extracted.part if extracted.record else 0
                if extracted.error is not None:
                    yield self._failed(entry, sha, f"unreadable:{extracted.error[0]}", extracted.error[1], record)
                    continue
                base_id = entry["file_id"] + (f"-l{record:06d}" if record else "")
                for index, piece in enumerate(split_parts(extracted.text, self.limits.max_document_chars)):
                    part = index if extracted.record else extracted.part + index
                    doc_id = base_id + (f"-p{part:04d}" if part else "")
                    title = extracted.title or first_line_title(piece) or path.stem
                    metadata = {"source": entry["source"], "sha256": sha, "format": fmt, "part": part,
                                "group": base_id, "title": title, "bytes": entry["bytes"],
                                "sort_key": sort_key(entry["source"], record, part), **extracted.meta}
                    if extracted.marking_text:
                        metadata["marking_text"] = extracted.marking_text
                    parts += 1
                    self.stat_update("documents")
                    yield Document(text=piece, id=doc_id, metadata=metadata)
        except Unreadable as exc:
            yield self._failed(entry, sha, f"unreadable:{exc.reason}", exc.detail)
        except MemoryError:
            yield self._failed(entry, sha, "unreadable:out_of_memory", f"after {parts} part(s)")
        except Exception as exc:  # a reader library choking on a malformed file must not stop the run
            yield self._failed(entry, sha, f"unreadable:{fmt}_error", f"{type(exc).__name__} after {parts} part(s)")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from tqdm import tqdm

        from sovforge.offline import enforce_offline

        # Workers may be fresh processes (forkserver, Slurm, Ray): the air-gap guard goes up in each of them too.
        enforce_offline(allow_network=os.environ.get("SOVFORGE_ALLOW_NETWORK") == "1")
        if data:
            yield from data
        shard = assign_shards(self.files, world_size)[rank]
        for entry in tqdm(shard, desc=f"ingest [{rank}]" if world_size > 1 else "ingest", unit="file",
                          disable=not self.progress or not shard, position=rank, leave=world_size == 1):
            self.stat_update("input_files")
            self.stat_update("input_bytes", value=entry["bytes"])
            yield from self.read_entry(entry)
        if self.files_folder is not None:
            Path(self.files_folder).mkdir(parents=True, exist_ok=True)
            with open(Path(self.files_folder) / f"{rank:05d}.jsonl", "w", encoding="utf-8") as out:
                for entry in shard:
                    out.write(json.dumps({"path": entry["source"], "sha256": self._hashes.get(entry["source"]),
                                          "bytes": entry["bytes"], "format": entry["format"]}) + "\n")


class ReadableFilter(BaseFilter):
    """Drops the placeholders of files (or records) that could not be read, with their reason."""

    name = "🧯 Readable"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = doc.metadata.get("error")
        if reason:
            return False, reason
        if not doc.text.strip():
            doc.metadata["drop_detail"] = "no text after extraction"
            return False, "empty"
        return True
