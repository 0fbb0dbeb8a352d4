"""SFT rows from a corpus artifact: `sovforge adapt make-sft CORPUS --out FILE.jsonl [--max-rows N]`.

Deterministic and honest: every answer is text of the corpus itself — quoted, never paraphrased or invented — so
the rows teach the model to cite the regulations it was adapted on, not to make things up. Three kinds:

- `article_quote`: Korean statute articles (`제N조(제목)` / `##### 제N조 (제목)` at a line start; 부칙 excluded):
  "「법령」 제N조(제목)의 내용을 인용하시오." → the article text;
- `article_locate`: "「법령」에서 '제목'에 관하여 규정한 조문은 무엇인가?" → "「법령」 제N조(제목)입니다." + the text;
- `paragraph_quote`: numbered field-manual paragraphs (`3-35.` at a line start, e.g. FM 6-22) →
  "What does paragraph 3-35 of FM 6-22 say?" → the paragraph text.

Rows keep the document's `source` and `classification`, so an SFT run on them inherits the level.
Run `sovforge adapt sft --corpus CORPUS` to also record the corpus in the model's lineage.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sovforge.ingest.corpus import iter_documents

ARTICLE = re.compile(r"^[ \t]*(?:#+[ \t]*)?제(\d+)조(?:의(\d+))?[ \t]*\(([^)\n]{1,60})\)[ \t]*(.*)$", re.M)
ADDENDA = re.compile(r"^[ \t]*(?:#+[ \t]*)?부[ \t]*칙", re.M)
PARAGRAPH = re.compile(r"^[ \t]*(\d{1,2}-\d{1,3})\.[ \t]+", re.M)
CAPS_HEADING = re.compile(r"^[ \t]*[A-Z][A-Z0-9 ,'&/-]{3,}$", re.M)  # "LEADERSHIP REQUIREMENTS" ends a paragraph
TOC_ENTRY = re.compile(r"\b\d{1,2}-\d{1,3}\s+(?:Table|Figure)\b")
FRONT_TITLE = re.compile(r"^제목:[ \t]*(.+)$", re.M)
MD_TITLE = re.compile(r"^#[ \t]+(.+)$", re.M)


def clean(text: str) -> str:
    """Markdown escapes and indentation removed, runs of blank lines collapsed."""
    text = re.sub(r"\\([.\-*_()\[\]#])", r"\1", text)
    text = text.replace("**", "")
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def document_title(doc: dict[str, Any]) -> str:
    text = doc.get("text", "")
    for candidate in (doc.get("title"), *(m.group(1) for m in (FRONT_TITLE.search(text), MD_TITLE.search(text)) if m)):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return Path(str(doc.get("source") or doc.get("id") or "document")).stem.split("__")[0]


def articles(text: str) -> Iterator[tuple[str, str, str]]:
    """(number label like "제11조의2", title, body) of each article before the addenda."""
    end = ADDENDA.search(text)
    body_text = text[: end.start()] if end else text
    heads = list(ARTICLE.finditer(body_text))
    for head, following in zip(heads, [*heads[1:], None]):
        stop = following.start() if following else len(body_text)
        body = clean(head.group(4) + "\n" + body_text[head.end():stop])
        label = f"제{head.group(1)}조" + (f"의{head.group(2)}" if head.group(2) else "")
        yield label, head.group(3).strip(), body


def paragraphs(text: str) -> Iterator[tuple[str, str]]:
    """(number like "3-35", text) of numbered manual paragraphs; table-of-contents runs are skipped and the first
    remaining occurrence of a number wins."""
    heads = list(PARAGRAPH.finditer(text))
    seen = set()
    for head, following in zip(heads, [*heads[1:], None]):
        chunk = text[head.end(): following.start() if following else len(text)]
        cut = CAPS_HEADING.search(chunk)
        body = " ".join(chunk[: cut.start() if cut else len(chunk)].split())
        if len(TOC_ENTRY.findall(body)) >= 2:  # "... 1-4 Table 1-2. ..." is a list of tables, not a paragraph
            continue
        if head.group(1) not in seen:
            seen.add(head.group(1))
            yield head.group(1), body


def sft_rows(corpus_dir: str | Path, *, min_chars: int = 20, max_chars: int = 1500) -> Iterator[dict[str, Any]]:
    """Instruction rows from the corpus's training split (validation documents stay unseen), in document order."""
    for doc in iter_documents(corpus_dir, split="train"):
        text, title = doc.get("text", ""), document_title(doc)
        common = {"source": doc.get("source"), "doc_id": doc.get("id"),
                  "classification": doc.get("classification") or "UNCLASSIFIED"}
        for label, heading, body in articles(text):
            if not min_chars <= len(body) <= max_chars or body.startswith("삭제"):
                continue
            citation = f"「{title}」 {label}({heading})"
            yield {"instruction": f"{citation}의 내용을 인용하시오.", "output": body, "kind": "article_quote",
                   "ref": citation, **common}
            yield {"instruction": f"「{title}」에서 '{heading}'에 관하여 규정한 조문은 무엇인가?",
                   "output": f"{citation}입니다.\n\n{body}", "kind": "article_locate", "ref": citation, **common}
        for number, body in paragraphs(text):
            if min_chars * 4 <= len(body) <= max_chars:
                yield {"instruction": f"What does paragraph {number} of {title} say?", "output": body,
                       "kind": "paragraph_quote", "ref": f"{title} {number}", **common}


def write_sft_rows(corpus_dir: str | Path, out: str | Path, *, max_rows: int | None = None,
                   max_chars: int = 1500) -> dict[str, int]:
    """Write the rows to `out` (atomically: a temp file renamed into place); returns counts per kind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for n, row in enumerate(sft_rows(corpus_dir, max_chars=max_chars)):
                if max_rows is not None and n >= max_rows:
                    break
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts[row["kind"]] = counts.get(row["kind"], 0) + 1
        if not counts:
            raise ValueError(f"{corpus_dir}: no statute articles or numbered paragraphs found to make SFT rows from")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return counts
