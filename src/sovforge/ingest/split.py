"""Train/validation split by document id, and canary planting (global stage of ingest).

A document's split depends only on its *group* — its file for parts of one long text (so parts of one statute
never straddle train and validation), its own id for a JSONL record: validation when
`sha256(split_salt, group)` maps below `val_share`. So a document lands in the same split however many workers ran
and whatever else was ingested with it. `min_validation_documents` tops up validation with the lowest-scoring
groups when a small corpus drew none (evaluate needs a validation split), and at least one group stays train.

Canaries (`canaries > 0`) are planted after screening — so no PII rule rewrites them — and only into training
documents, with `sovforge.evaluate.canary.make_canaries` / `plant_canaries`, the functions evaluate probes with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from sovforge.ingest.dedup import read_signatures


def split_score(group: str, salt: str = "") -> float:
    """A uniform number in [0, 1) determined by the group id."""
    return int(hashlib.sha256(f"{salt}\0{group}".encode()).hexdigest()[:15], 16) / 16**15


def assign_splits(groups: list[str], val_share: float, min_validation: int = 1, salt: str = "") -> dict[str, str]:
    """{group: "train" | "validation"}."""
    scores = {group: split_score(group, salt) for group in groups}
    validation = {group for group in groups if scores[group] < val_share}
    wanted = min(min_validation, len(groups) - 1) if val_share > 0 else 0
    for group in sorted(groups, key=lambda g: (scores[g], g)):
        if len(validation) >= wanted:
            break
        validation.add(group)
    if groups and len(validation) == len(groups):  # keep something to train on
        validation.discard(max(groups, key=lambda g: (scores[g], g)))
    return {group: "validation" if group in validation else "train" for group in groups}


def canary_plan(n_train: int, canaries: int, repeats: int, seed: int) -> tuple[list[str], list[str]]:
    """(canary strings, text to append to each of the n_train training documents, in source order)."""
    from sovforge.evaluate.canary import make_canaries, plant_canaries

    if canaries <= 0 or n_train == 0:
        return [], [""] * n_train
    strings = make_canaries(canaries, seed=seed)
    return strings, plant_canaries([""] * n_train, strings, repeats=repeats, seed=seed)


class SplitAndCanaries(PipelineStep):
    """Sets `split` on every surviving document and appends planted canaries to the chosen training documents."""

    type = "🔀 - SPLIT"
    name = "🔀 Split + canaries"

    def __init__(self, signature_folder: str, plan_file: str, *, val_share: float, min_validation: int = 1,
                 salt: str = "", canaries: int = 0, canary_repeats: int = 1, canary_seed: int = 0):
        super().__init__()
        self.signature_folder = signature_folder
        self.plan_file = plan_file
        self.val_share = val_share
        self.min_validation = min_validation
        self.salt = salt
        self.canaries = canaries
        self.canary_repeats = canary_repeats
        self.canary_seed = canary_seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        splits: dict[str, str] | None = None
        planted: dict[str, str] = {}
        for doc in data:
            if splits is None:  # the dedup plan exists once the first document has come through the dedup filter
                plan = json.loads(Path(self.plan_file).read_text(encoding="utf-8"))
                kept = [row for row in read_signatures(Path(self.signature_folder)) if row["id"] not in plan["drop"]]
                groups = list(dict.fromkeys(row["group"] for row in kept))
                splits = assign_splits(groups, self.val_share, self.min_validation, self.salt)
                train_ids = [row["id"] for row in kept if splits[row["group"]] == "train"]
                _, additions = canary_plan(len(train_ids), self.canaries, self.canary_repeats, self.canary_seed)
                planted = {doc_id: extra for doc_id, extra in zip(train_ids, additions) if extra}
            split = splits[doc.metadata["group"]]
            doc.metadata["split"] = split
            if doc.id in planted:
                added = planted[doc.id].strip("\n")
                doc.text = doc.text.rstrip("\n") + "\n" + added
                doc.metadata["canaries"] = added.count("\n") + 1
            self.stat_update(split)
            yield doc
