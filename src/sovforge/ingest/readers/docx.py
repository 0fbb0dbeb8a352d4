"""DOCX via python-docx: `read_docx(Path("명령.docx"), ReadLimits())`.

Body paragraphs and tables in document order; a table row becomes `cell | cell | cell` (a merged cell once).
Headers and footers are not document text (they repeat on every page) but they are where a classification banner
lives, so they go to `marking_text` and are screened. The container is checked for zip bombs first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import Extracted, ReadLimits, Unreadable, open_zip_checked


def _table_lines(table) -> list[str]:
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a horizontally merged cell is returned once per grid column
                continue
            seen.add(id(cell._tc))
            text = " ".join(cell.text.split())
            if text:
                cells.append(text)
        if cells:
            lines.append(" | ".join(cells))
    return lines


def read_docx(path: Path, limits: ReadLimits) -> Iterator[Extracted]:
    open_zip_checked(path, limits, required=("word/document.xml",)).close()
    import docx
    from docx.table import Table

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises many types for a damaged package
        raise Unreadable("docx_error", type(exc).__name__) from None
    blocks: list[str] = []
    title = document.core_properties.title or None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = _table_lines(item)
            if rows:
                blocks.append("\n".join(rows))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        if title is None and (style == "Title" or style.startswith("Heading")):
            title = text
        blocks.append(text)
    furniture = []
    for section in document.sections:
        for part in (section.header, section.footer, section.first_page_header, section.first_page_footer):
            if part.is_linked_to_previous and section is not document.sections[0]:
                continue
            furniture.extend(p.text for p in part.paragraphs if p.text.strip())
    yield Extracted("\n\n".join(blocks), title=title, marking_text="\n".join(furniture), meta={})
