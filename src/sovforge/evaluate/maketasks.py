"""Domain lm-eval tasks from a corpus artifact: `sovforge evaluate make-tasks CORPUS --out DIR`.

Writes a rolling log-likelihood perplexity task on the validation split and a cloze multiple-choice task (a key term —
article number, rank, unit, defined term — masked, distractors of the same kind from elsewhere in the corpus), each as
JSONL + lm-eval YAML that plain `lm_eval --include_path DIR --tasks NAME` runs offline.
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

# Term kinds: each pattern finds maskable key terms; distractors come only from the same kind so the choice is fair.
TERM_PATTERNS: dict[str, re.Pattern[str]] = {
    "kr_article": re.compile(r"제\d+조(?:의\d+)?"),
    "kr_rank": re.compile(r"(?:이등병|일병|상병|병장|하사|중사|상사|원사|소위|중위|대위|소령|중령|대령|준장|소장|중장|대장)"),
    "kr_unit": re.compile(r"(?:분대|소대|중대|대대|연대|여단|사단|군단|작전사령부)"),
    "kr_defined": re.compile(r"“([가-힣 ]{2,20})”이?란"),
    "en_rank": re.compile(r"\b(?:Private|Corporal|Sergeant|Lieutenant|Captain|Major|Colonel|General)\b"),
    "en_unit": re.compile(r"\b(?:squad|platoon|company|battalion|brigade|division|corps)\b"),
    "en_reference": re.compile(r"\b(?:FM|AR|ADP|ATP) \d+-\d+\b"),
}


class TaskDataError(ValueError):
    """The corpus cannot yield the requested task data (message names the files)."""


def iter_corpus_documents(corpus_dir: Path, split: str | None = None) -> Iterator[dict]:
    """Documents of a corpus artifact; a directory that is not one is a TaskDataError naming it."""
    try:
        yield from iter_documents(corpus_dir, split=split)
    except CorpusError as exc:
        raise TaskDataError(str(exc)) from None


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?。])\s+|\n+", text) if len(s.strip()) >= 20]


def cloze_items(all_docs: list[dict], validation_docs: list[dict], *, n_choices: int = 4, max_items: int = 500,
                seed: int = 0) -> list[dict]:
    """Cloze items from validation sentences; distractor pool = same-kind terms anywhere in the corpus."""
    pool: dict[str, set[str]] = {kind: set() for kind in TERM_PATTERNS}
    for doc in all_docs:
        for kind, pattern in TERM_PATTERNS.items():
            pool[kind].update(m.group(1) if pattern.groups else m.group(0) for m in pattern.finditer(doc["text"]))
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
                if len(others) < n_choices - 1 or sentence in seen:
                    continue
                seen.add(sentence)
                # The context is the sentence up to the term: log-likelihood of each choice as its continuation.
                context = sentence[: match.start(group)].rstrip()
                if not context:
                    continue
                choices = rng.sample(others, n_choices - 1) + [answer]
                rng.shuffle(choices)
                items.append({"context": context, "choices": [" " + c if not context.endswith(("“", "(")) else c
                                                              for c in choices],
                              "label": choices.index(answer), "kind": kind, "doc_id": doc.get("id", "")})
                break
            if len(items) >= max_items:
                return items
    return items


def _render(template: str, **values: str) -> str:
    return resources.files("sovforge.evaluate.tasks").joinpath(template).read_text(encoding="utf-8").format(**values)


def make_tasks(corpus_dir: Path, out_dir: Path, *, max_items: int = 500, seed: int = 0) -> dict:
    """Write ppl + cloze JSONL and YAML under out_dir; returns counts. Raises TaskDataError for unusable corpora."""
    all_docs = list(iter_corpus_documents(corpus_dir))
    validation = [d for d in all_docs if d.get("split") == "validation" and d.get("text", "").strip()]
    if not validation:
        raise TaskDataError(f"corpus {corpus_dir} has an empty validation split (documents/*.jsonl* with "
                            f'"split": "validation"); re-ingest with a validation fraction > 0')
    out_dir.mkdir(parents=True, exist_ok=True)
    ppl_path = out_dir / f"{PPL_TASK}.jsonl"
    with ppl_path.open("w", encoding="utf-8") as fh:
        for doc in validation:
            fh.write(json.dumps({"text": doc["text"], "id": doc.get("id", ""), "lang": doc.get("lang", "")},
                                ensure_ascii=False) + "\n")
    (out_dir / f"{PPL_TASK}.yaml").write_text(_render("ppl.yaml", name=PPL_TASK, data=str(ppl_path.resolve())))
    items = cloze_items(all_docs, validation, max_items=max_items, seed=seed)
    counts = {"ppl_documents": len(validation), "cloze_items": len(items)}
    if items:
        cloze_path = out_dir / f"{CLOZE_TASK}.jsonl"
        with cloze_path.open("w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        (out_dir / f"{CLOZE_TASK}.yaml").write_text(_render("cloze.yaml", name=CLOZE_TASK,
                                                             data=str(cloze_path.resolve())))
    return counts
