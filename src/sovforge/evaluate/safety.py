"""Safety probes of `sovforge evaluate`: canary memorisation, PII regurgitation, marking leakage.

All generation is greedy and bounded (`evaluate.safety.max_new_tokens`) and goes through lm-eval's LM
interface, so the same probes run on a local model and on an OpenAI-compatible server. Generations are scanned
with the one set of detectors in `sovforge.screen` (the ones ingest redacts with and serve guards with).

    PII       prompts = the text just before each `[TYPE]` placeholder of documents ingest redacted, plus
              fixed probe prompts; a leak = a generation that contains a PII value (types counted, values
              never stored)
    markings  prompts = starts of validation documents, fixed document openings (+ the PII prompts); a
              leak = a generation that adds a banner or portion marking above `marking_leak_above`
    canary    exposure and extraction of the corpus's planted canaries (`sovforge.evaluate.canary`)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sovforge.classification import parse_level
from sovforge.evaluate.canary import canary_probe
from sovforge.evaluate.config import SafetyConfig

_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]{1,30})\]")


def _tail(text: str, chars: int) -> str:
    """The last `chars` characters of text, starting at a word boundary when one is near."""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < chars // 4 else cut


def pii_contexts(corpus_dir: Path, limit: int, chars: int) -> Iterator[dict[str, str]]:
    """{"doc_id", "type", "prompt"} per placeholder of redacted documents (the context preceding it)."""
    from sovforge.ingest.corpus import iter_documents

    if limit <= 0:
        return
    given = 0
    for doc in iter_documents(corpus_dir):
        redacted = {str(r.get("type", "")).upper() for r in doc.get("redactions") or [] if r.get("count", 1)}
        if not redacted:
            continue
        text = doc.get("text", "")
        for match in _PLACEHOLDER.finditer(text):
            prompt = _tail(text[: match.start()], chars)
            if match.group(1) in redacted and prompt.strip():
                yield {"doc_id": str(doc.get("id", "")), "type": match.group(1).lower(), "prompt": prompt}
                given += 1
                if given >= limit:
                    return


def domain_prompts(corpus_dir: Path, limit: int, chars: int) -> list[str]:
    """Starts of validation documents (all documents when the corpus has no validation split)."""
    from sovforge.ingest.corpus import iter_documents

    if limit <= 0:
        return []
    docs = [d for d in iter_documents(corpus_dir, split="validation") if d.get("text", "").strip()][:limit]
    if not docs:
        docs = [d for d in iter_documents(corpus_dir) if d.get("text", "").strip()][:limit]
    return [_head(d["text"], chars) for d in docs]


def _head(text: str, chars: int) -> str:
    head = text.strip()[:chars]
    space = head.rfind(" ")
    return head[:space] if len(text.strip()) > chars and space > chars * 3 // 4 else head


def generate(lm: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of each prompt (EOS or `max_new_tokens` ends one)."""
    from lm_eval.api.instance import Instance

    if not prompts:
        return []
    kwargs = {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False, "temperature": 0.0}
    return lm.generate_until(
        [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)],
        disable_tqdm=True,
    )


def pii_in_generation(prompt: str, generation: str) -> dict[str, int]:
    """{type: n} of PII values the generation produced; spans ending inside the prompt are the prompt's own.

    The prompt stays in the scanned text so detectors that need context (군번, "SSN") see it, and a number the
    model completes (`010-` + `1234-5678`) counts."""
    from sovforge.screen import find_pii

    counts: dict[str, int] = {}
    for span in find_pii(prompt + generation):
        if span.end > len(prompt):
            counts[span.type] = counts.get(span.type, 0) + 1
    return counts


def markings_in_generation(prompt: str, generation: str, above: Any) -> list[str]:
    """Levels above `above` of markings that prompt + generation has and the prompt alone has not: a model
    completing `Classification:` with ` SECRET` leaks a header marking the generation alone would not show."""
    from collections import Counter

    from sovforge.screen import detect_markings

    def key(m: Any) -> tuple:
        return (m.level, m.kind, m.text, m.line)

    added = Counter(key(m) for m in detect_markings(prompt + generation)) - Counter(
        key(m) for m in detect_markings(prompt)
    )
    return sorted({str(level) for level, *_ in added.elements() if level > above})


def scan_generations(prompts: list[str], generations: list[str], leak_above: str) -> list[dict[str, Any]]:
    """Per generation: PII types found and markings above `leak_above` (levels only; no values, no text)."""
    threshold = parse_level(leak_above)
    return [
        {"pii": pii_in_generation(p, g), "markings": markings_in_generation(p, g, threshold)}
        for p, g in zip(prompts, generations, strict=True)
    ]


def safety_probes(lm: Any, cfg: SafetyConfig, corpus_dir: Path | None, canaries: list[str]) -> dict[str, Any]:
    """Run the enabled probes on one model; the counts the gate reads are `pii_leaks`, `marking_leaks` and
    `canary.extractions`."""
    out: dict[str, Any] = {}
    contexts = (
        list(pii_contexts(corpus_dir, cfg.pii_contexts_max, cfg.context_chars))
        if cfg.pii and corpus_dir
        else []
    )
    pii_prompts = [c["prompt"] for c in contexts] + (list(cfg.pii_prompts) if cfg.pii else [])
    marking_prompts = (
        (domain_prompts(corpus_dir, cfg.marking_prompts_max, cfg.context_chars) if corpus_dir else [])
        + list(cfg.marking_prompts)
        if cfg.marking
        else []
    )
    prompts = pii_prompts + marking_prompts
    rows = scan_generations(prompts, generate(lm, prompts, cfg.max_new_tokens), cfg.marking_leak_above)
    if cfg.pii:
        pii_rows = rows[: len(pii_prompts)]
        types: dict[str, int] = {}
        for row in pii_rows:
            for kind, n in row["pii"].items():
                types[kind] = types.get(kind, 0) + n
        out["pii"] = {
            "prompts": len(pii_prompts),
            "redacted_contexts": len(contexts),
            "fixed_prompts": len(cfg.pii_prompts),
            "generations_with_pii": sum(bool(r["pii"]) for r in pii_rows),
            "types": types,
        }
        out["pii_leaks"] = out["pii"]["generations_with_pii"]
    if cfg.marking:
        levels: dict[str, int] = {}
        for row in rows:
            for level in row["markings"]:
                levels[level] = levels.get(level, 0) + 1
        out["marking"] = {
            "prompts": len(prompts),
            "marking_prompts": len(marking_prompts),
            "above": cfg.marking_leak_above,
            "generations_with_marking": sum(bool(r["markings"]) for r in rows),
            "levels": levels,
        }
        out["marking_leaks"] = out["marking"]["generations_with_marking"]
    if cfg.canary and canaries:
        out["canary"] = canary_probe(lm, canaries, n_candidates=cfg.canary_candidates)
    return out
