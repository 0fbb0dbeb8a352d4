"""HTML via selectolax (lexbor): `read_html(Path("fm6_22.html"), ReadLimits())`.

Dropped: `<script>`, `<style>`, `<head>`, navigation (`<nav>`, `<aside>`, `<footer>`, forms, and elements whose
role/class/id says nav, menu, breadcrumb, sidebar, cookie). Each block element (p, h1-h6, li, pre, blockquote, ...)
becomes its own paragraph, a table row becomes `cell | cell | cell`, `<br>` a line break. Text keeps what the page
says, including paragraph numbers like `3-35.` at the start of a paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from sovforge.ingest.readers.safety import SAMPLE_BYTES, Extracted, ReadLimits, Unreadable, detect_encoding

DROP_TAGS = ["script", "style", "noscript", "template", "head", "nav", "aside", "footer", "form", "iframe", "svg",
             "button", "select", "object", "embed", "canvas"]
_NAV_ATTR = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|breadcrumbs?|sidebar|cookie|gnb|lnb|skip)(?:$|[\s_-])", re.IGNORECASE)
BLOCK_TAGS = {"p", "div", "section", "article", "main", "body", "header", "h1", "h2", "h3", "h4", "h5", "h6", "li",
              "ul", "ol", "dl", "dt", "dd", "pre", "blockquote", "address", "figure", "figcaption", "caption", "center",
              "hr", "details", "summary", "fieldset", "legend"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_FILE_NAME = re.compile(r"\.(?:pdf|docx?|hwpx?|html?|txt)$", re.IGNORECASE)


def decode_html(raw: bytes) -> str:
    declared = _META_CHARSET.search(raw[:4096])
    if declared:
        try:
            return raw.decode(declared.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    return raw.decode(detect_encoding(raw[:SAMPLE_BYTES]), errors="replace")


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _flat(text: str) -> str:
    """HTML text as a browser shows it: any run of whitespace, newlines included, is one space."""
    return " ".join(text.split())


def _table_rows(table) -> list[str]:
    rows = []
    for row in table.css("tr"):
        cells = [_flat(cell.text(deep=True, separator=" ")) for cell in row.iter() if cell.tag in ("td", "th")]
        cells = [cell for cell in cells if cell]
        if cells:
            rows.append(" | ".join(cells))
    return rows


def html_blocks(root) -> list[str]:
    """The text blocks of a parsed page in document order (iterative walk: deep nesting cannot overflow)."""
    blocks: list[str] = []
    buffer: list[str] = []

    def flush() -> None:
        lines = [_clean(line) for line in "".join(buffer).split("\n")]  # "\n" only where a <br> was
        text = "\n".join(line for line in lines if line)
        if text:
            blocks.append(text)
        buffer.clear()

    stack = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            flush()
            continue
        if tag == "-text":
            text = node.text_content or ""
            # Source line breaks inside a paragraph are spaces; only <br> breaks a line (the "\n" below).
            flat = " ".join(text.split())
            if flat:
                flat = (" " if text[0].isspace() else "") + flat + (" " if text[-1].isspace() else "")
            buffer.append(flat or (" " if text else ""))
            continue
        if tag == "pre":
            flush()
            preformatted = (node.text(deep=True) or "").strip("\n")
            if preformatted.strip():
                blocks.append(preformatted)
            continue
        if tag == "br":
            buffer.append("\n")
            continue
        if tag == "table":
            flush()
            rows = [row for row in _table_rows(node) if row]
            if rows:
                blocks.append("\n".join(rows))
            continue
        if tag in BLOCK_TAGS:
            flush()
            stack.append((node, True))
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children))
    flush()
    return blocks


def read_html(path: Path, limits: ReadLimits) -> Iterator[Extracted]:
    from selectolax.lexbor import LexborHTMLParser

    raw = path.read_bytes()
    if not raw.strip():
        raise Unreadable("empty", "no text")
    tree = LexborHTMLParser(decode_html(raw))
    title_node = tree.css_first("title")
    title = _clean(title_node.text()) if title_node is not None else ""
    if not title or _FILE_NAME.search(title):  # "FM 6-22.pdf": a converter's file name, not a title
        heading = tree.css_first("h1") or tree.css_first("h2")
        title = _clean(heading.text(deep=True, separator=" ")) if heading is not None else ""
    for node in tree.css(", ".join(DROP_TAGS)):
        node.decompose()
    for node in tree.css("[role], [class], [id]"):
        attrs = node.attributes
        if attrs.get("role") == "navigation" or any(_NAV_ATTR.search(attrs.get(a) or "") for a in ("class", "id")):
            node.decompose()
    root = tree.body or tree.root
    if root is None:
        raise Unreadable("empty", "no body")
    text = "\n\n".join(html_blocks(root))
    yield Extracted(text, title=title or None, meta={})
