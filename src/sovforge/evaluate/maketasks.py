"""Domain lm-eval tasks from a corpus artifact: `sovforge evaluate make-tasks CORPUS --out DIR`.

Writes, from the corpus's validation split, each as JSONL + lm-eval YAML that plain
`lm_eval --include_path DIR --tasks NAME` runs offline:

    sovforge_ppl     rolling log-likelihood: word and byte perplexity, bits per byte (compare tokenizers)
    sovforge_cloze   multiple choice: a key term of a sentence (article number, rank, unit, defined term,
                     manual reference; Korean and English) masked, 3 distractors of the same kind from
                     elsewhere in the corpus
    sovforge_recall  the same items as generation: greedy continuation, exact match of its first corpus term
                     (generation-only, so it also runs through chat endpoints without log-probabilities)

plus DIR/tasks.json: the corpus id, item counts and the sha256 of every file written.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from sovforge.ingest.corpus import CorpusError, iter_documents

PPL_TASK = "sovforge_ppl"
CLOZE_TASK = "sovforge_cloze"
RECALL_TASK = "sovforge_recall"
INDEX_FILE = "tasks.json"
MIN_CONTEXT_WORDS = 3

# Term kinds: each pattern finds maskable key terms; distractors come only from the same kind (a fair choice).
TERM_PATTERNS: dict[str, re.Pattern[str]] = {
    "kr_article": re.compile(r"제\d+조(?:의\d+)?"),
    # Korean terms start a word (no Hangul before): 대장 inside 중대장 is not the rank 대장.
    "kr_rank": re.compile(
        r"(?<![가-힣])(?:이등병|일병|상병|병장|하사|중사|상사|원사|소위|중위|대위|소령|중령|대령|준장|소장|중장|대장)"
    ),
    "kr_unit": re.compile(r"(?<![가-힣])(?:분대|소대|중대|대대|연대|여단|사단|군단|작전사령부)"),
    "kr_defined": re.compile(r"“([가-힣 ]{2,20})”이?란"),
    "en_rank": re.compile(r"\b(?:Private|Corporal|Sergeant|Lieutenant|Captain|Major|Colonel|General)\b"),
    "en_unit": re.compile(r"\b(?:squad|platoon|company|battalion|brigade|division|corps)\b"),
    "en_reference": re.compile(r"\b(?:FM|AR|ADP|ATP) \d+-\d+\b"),
}


# What sovforge_recall extracts from a generation: the first term of any kind (defined terms last: they are
# the loosest pattern). Non-capturing groups only, so lm-eval's regex filter returns the whole match.
RECALL_PATTERN = "|".join(
    [*(p.pattern for k, p in TERM_PATTERNS.items() if k != "kr_defined"), r"[가-힣 ]{2,20}(?=”)"]
)


class TaskDataError(ValueError):
    """The corpus cannot yield the requested task data (message names the files)."""


def iter_corpus_documents(corpus_dir: Path, split: str | None = None) -> Iterator[dict]:
    """Documents of a corpus artifact; a directory that is not one is a TaskDataError naming it."""
    try:
        yield from iter_documents(corpus_dir, split=split)
    except CorpusError as exc:
        raise TaskDataError(str(exc)) from None


def _sentences(text: str) -> list[str]:
    """Sentences of 20+ characters; table rows (cells joined by " | ") are records, not sentences: skipped."""
    return [s.strip() for s in re.split(r"(?<=[.!?。])\s+|\n+", text)
            if len(s.strip()) >= 20 and s.count(" | ") < 2]


def cloze_items(
    all_docs: list[dict],
    validation_docs: list[dict],
    *,
    n_choices: int = 4,
    max_items: int = 500,
    seed: int = 0,
) -> list[dict]:
    """Cloze items from validation sentences; distractor pool = same-kind terms anywhere in the corpus."""
    pool: dict[str, set[str]] = {kind: set() for kind in TERM_PATTERNS}
    for doc in all_docs:
        for kind, pattern in TERM_PATTERNS.items():
            pool[kind].update(
                m.group(1) if pattern.groups else m.group(0) for m in pattern.finditer(doc["text"])
            )
    rng = random.Random(seed)
    items: list[dict] = []
    seen: set[str] = set()
    for doc in validation_docs:
        for sentence in _sentences(doc["text"]):
            for kind, pattern in TERM_PATTERNS.items():
                match = pattern.search(sentence)
                if not match:
                    continue
                group = 1 if pattern.groups else 0
                answer = match.group(group)
                others = sorted(pool[kind] - {answer})
                # The context is the sentence up to the term: log-likelihood of each choice as its
                # continuation; a couple of words are too little to decide anything by.
                context = sentence[: match.start(group)].rstrip()
                if (
                    len(others) < n_choices - 1
                    or sentence in seen
                    or len(context.split()) < MIN_CONTEXT_WORDS
                ):
                    continue
                seen.add(sentence)
                choices = rng.sample(others, n_choices - 1) + [answer]
                rng.shuffle(choices)
                items.append(
                    {
                        "context": context,
                        "choices": [" " + c if not context.endswith(("“", "(")) else c for c in choices],
                        "label": choices.index(answer),
                        "kind": kind,
                        "doc_id": doc.get("id", ""),
                    }
                )
                break
            if len(items) >= max_items:
                return items
    return items


def _render(template: str, **values: str) -> str:
    return (
        resources.files("sovforge.evaluate.tasks")
        .joinpath(template)
        .read_text(encoding="utf-8")
        .format(**values)
    )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_tasks(corpus_dir: Path, out_dir: Path, *, max_items: int = 500, seed: int = 0) -> dict:
    """Write ppl + cloze + recall JSONL and YAML under out_dir; returns counts (TaskDataError: bad corpus)."""
    from sovforge.artifacts import LineageError, file_sha256, open_input

    all_docs = list(iter_corpus_documents(corpus_dir))
    validation = [d for d in all_docs if d.get("split") == "validation" and d.get("text", "").strip()]
    if not validation:
        raise TaskDataError(
            f"corpus {corpus_dir} has an empty validation split (documents/*.jsonl* with "
            f'"split": "validation"); re-ingest with a validation fraction > 0'
        )
    try:
        corpus_id = open_input(corpus_dir, kind="corpus").id
    except LineageError:
        corpus_id = None  # a bare documents/ directory: still usable, recorded as unidentified
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [
        out_dir / f"{t}.{ext}" for t in (PPL_TASK, CLOZE_TASK, RECALL_TASK) for ext in ("jsonl", "yaml")
    ]:
        stale.unlink(missing_ok=True)  # a rerun with fewer items must not leave an old task behind
    ppl_path = out_dir / f"{PPL_TASK}.jsonl"
    _write_jsonl(
        ppl_path, [{"text": d["text"], "id": d.get("id", ""), "lang": d.get("lang", "")} for d in validation]
    )
    (out_dir / f"{PPL_TASK}.yaml").write_text(
        _render("ppl.yaml", name=PPL_TASK, data=str(ppl_path.resolve()))
    )
    items = cloze_items(all_docs, validation, max_items=max_items, seed=seed)
    counts = {"ppl_documents": len(validation), "cloze_items": len(items), "recall_items": len(items)}
    if items:
        cloze_path, recall_path = out_dir / f"{CLOZE_TASK}.jsonl", out_dir / f"{RECALL_TASK}.jsonl"
        _write_jsonl(cloze_path, items)
        _write_jsonl(
            recall_path,
            [
                {
                    "context": i["context"],
                    "answer": i["choices"][i["label"]].strip(),
                    "kind": i["kind"],
                    "doc_id": i["doc_id"],
                }
                for i in items
            ],
        )
        (out_dir / f"{CLOZE_TASK}.yaml").write_text(
            _render("cloze.yaml", name=CLOZE_TASK, data=str(cloze_path.resolve()))
        )
        (out_dir / f"{RECALL_TASK}.yaml").write_text(
            _render(
                "recall.yaml",
                name=RECALL_TASK,
                data=str(recall_path.resolve()),
                pattern=json.dumps(RECALL_PATTERN),
            )
        )
    files = sorted(p.name for p in out_dir.iterdir() if p.suffix in (".jsonl", ".yaml"))
    (out_dir / INDEX_FILE).write_text(
        json.dumps(
            {
                "corpus": str(Path(corpus_dir).resolve()),
                "corpus_id": corpus_id,
                "seed": seed,
                "max_items": max_items,
                "counts": counts,
                "files": {f: file_sha256(out_dir / f) for f in files},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return counts
