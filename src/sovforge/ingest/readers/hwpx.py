"""HWPX (OWPML, KS X 6101 — the Korean government's document format) via lxml: `read_hwpx(Path("a.hwpx"), ...)`.

An HWPX file is a zip: `Contents/section0.xml`, `section1.xml`, ... hold the body as `<hp:p>` paragraphs whose runs
carry `<hp:t>` text; tables are `<hp:tbl>` → `<hp:tr>` → `<hp:tc>` → `<hp:subList>` → paragraphs. Page headers
and footers (`<hp:header>`, `<hp:footer>`) go to `marking_text` (screened for banners, not kept as text);
footnotes become blocks of their own after the paragraph that cites them. The
title comes from `Contents/content.hpf` metadata when present. Elements are matched by local name, so both the
2011 and 2016 namespaces read; the XML parser resolves no entities and loads no DTDs (no XXE, no entity bombs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import Extracted, ReadLimits, Unreadable, open_zip_checked

_SECTION = re.compile(r"^Contents/section(\d+)\.xml$")
FURNITURE = {"header", "footer"}
NOTES = {"footNote", "endNote"}  # content, but their own blocks: not glued into the sentence that cites them


def _local(element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _run_text(element) -> str:
    """Text of a `<hp:t>`: its own text plus the tails of inline children such as `<hp:tab/>`."""
    return "".join(element.itertext())


def _cell_text(cell) -> str:
    parts = [_run_text(t) for t in cell.iter() if _local(t) == "t"]
    return " ".join(" ".join(parts).split())


def _table(tbl) -> str:
    rows = []
    for tr in (el for el in tbl if _local(el) == "tr"):  # rows are direct children; nested tables stay in cells
        cells = [_cell_text(tc) for tc in tr if _local(tc) == "tc"]
        cells = [c for c in cells if c]
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


NESTED = {"tbl", *FURNITURE, *NOTES}


def section_blocks(root) -> tuple[list[str], list[str]]:
    """(body blocks, header/footer lines) of one section, in document order (iterative: no recursion limit)."""
    blocks: list[str] = []
    furniture: list[str] = []
    stack = [root]
    while stack:
        element = stack.pop()
        name = _local(element)
        if name in FURNITURE:
            furniture.extend(t for t in (_run_text(x).strip() for x in element.iter() if _local(x) == "t") if t)
            continue
        if name == "tbl":
            table = _table(element)
            if table:
                blocks.append(table)
            continue
        if name == "p":
            # The paragraph's own runs; a table or header inside a run becomes its own block right after it.
            texts, nested = [], []
            inner = list(element)[::-1]
            while inner:
                child = inner.pop()
                child_name = _local(child)
                if child_name in NESTED:
                    nested.append(child)
                elif child_name == "t":
                    texts.append(_run_text(child))
                else:
                    inner.extend(reversed(list(child)))
            text = "".join(texts).strip()
            if text:
                blocks.append(text)
            stack.extend(reversed(nested))
            continue
        stack.extend(reversed(list(element)))
    return blocks, furniture


def read_hwpx(path: Path, limits: ReadLimits) -> Iterator[Extracted]:
    from lxml import etree

    archive = open_zip_checked(path, limits)
    with archive:
        sections = sorted((int(m.group(1)), name) for name in archive.namelist() if (m := _SECTION.match(name)))
        if not sections:
            raise Unreadable("missing_part", "no Contents/sectionN.xml: not an HWPX document")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        blocks: list[str] = []
        furniture: list[str] = []
        title = None
        try:
            for _, name in sections:
                body, extra = section_blocks(etree.fromstring(archive.read(name), parser))
                blocks.extend(body)
                furniture.extend(extra)
            if "Contents/content.hpf" in archive.namelist():
                package = etree.fromstring(archive.read("Contents/content.hpf"), parser)
                title = next((("".join(el.itertext())).strip() for el in package.iter() if _local(el) == "title"),
                             None) or None
        except etree.XMLSyntaxError as exc:
            raise Unreadable("xml_error", f"malformed XML ({exc.__class__.__name__})") from None
    yield Extracted("\n\n".join(blocks), title=title, marking_text="\n".join(furniture),
                    meta={"sections": len(sections)})
