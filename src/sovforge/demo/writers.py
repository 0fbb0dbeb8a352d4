"""Writers of the demo documents in the six formats ingest reads: txt, md, html, docx, pdf (fpdf2, a Hangul font
when the system has one) and hwpx (zipped OWPML). Byte-stable for a given document (fixed zip timestamps), so the
demo's artifacts reproduce."""

from __future__ import annotations

import html
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ["txt", "md", "html", "docx", "pdf", "hwpx"]


@dataclass
class Doc:
    title: str
    paragraphs: list[str]
    lang: str
    pii: list[str] = field(default_factory=list)
    marking: str = "UNCLASSIFIED"
    banner: str | None = None
    table: list[list[str]] | None = None
    near_duplicate_of: str | None = None


def _lines(doc: Doc) -> list[str]:
    lines = [doc.banner] if doc.banner else []
    lines += doc.paragraphs
    if doc.table:
        lines += [" | ".join(row) for row in doc.table]
    if doc.banner:
        lines.append(doc.banner)  # banners repeat at the bottom, as on real marked documents
    return lines


def write_txt(doc: Doc, path: Path) -> None:
    path.write_text("\n\n".join(_lines(doc)) + "\n", encoding="utf-8")


def write_md(doc: Doc, path: Path) -> None:
    body = [doc.banner] if doc.banner else []
    body += [f"# {doc.title}"] + doc.paragraphs
    if doc.table:
        body.append("| " + " | ".join(doc.table[0]) + " |")
        body.append("|" + "---|" * len(doc.table[0]))
        body += ["| " + " | ".join(r) + " |" for r in doc.table[1:]]
    if doc.banner:
        body.append(doc.banner)
    path.write_text("\n\n".join(body) + "\n", encoding="utf-8")


def write_html(doc: Doc, path: Path) -> None:
    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>{esc(doc.title)}</title>",
             "<style>body{font-family:sans-serif} .nav{color:#888}</style>",
             "<script>window.dataLayer=[];function track(){}</script></head><body>",
             "<nav class='nav'><a href='/'>홈</a> | <a href='/board'>게시판</a></nav>"]
    if doc.banner:
        parts.append(f"<div class='banner'>{esc(doc.banner)}</div>")
    parts.append(f"<h1>{esc(doc.title)}</h1>")
    parts += [f"<p>{esc(p)}</p>" for p in doc.paragraphs]
    if doc.table:
        parts.append("<table>" + "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in doc.table) + "</table>")
    if doc.banner:
        parts.append(f"<div class='banner'>{esc(doc.banner)}</div>")
    parts.append("<footer>Copyright 2026. 국방부. All rights reserved.</footer></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


def write_docx(doc: Doc, path: Path) -> None:
    import docx

    document = docx.Document()
    if doc.banner:
        document.sections[0].header.paragraphs[0].text = doc.banner
        document.add_paragraph(doc.banner)
    document.add_heading(doc.title, level=1)
    for para in doc.paragraphs:
        document.add_paragraph(para)
    if doc.table:
        table = document.add_table(rows=len(doc.table), cols=len(doc.table[0]))
        for r, row in enumerate(doc.table):
            for c, cell in enumerate(row):
                table.cell(r, c).text = cell
    if doc.banner:
        document.add_paragraph(doc.banner)
    # Fixed core properties: the same seed must give byte-identical files (dedup and lineage tests rely on it).
    import datetime as dt

    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    document.core_properties.created = stamp
    document.core_properties.modified = stamp
    document.core_properties.author = "sovforge demo"
    buffer = io.BytesIO()
    document.save(buffer)
    # python-docx stamps every zip entry with the current time; rewrite them with a fixed one.
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(zipfile.ZipInfo(item.filename, date_time=(2026, 1, 1, 0, 0, 0)), src.read(item.filename),
                         compress_type=zipfile.ZIP_DEFLATED)


KOREAN_FONTS = ["/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
                "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"]


def write_pdf(doc: Doc, path: Path) -> bool:
    """PDF via fpdf2. Korean needs a Hangul TTF font; without one only English documents become PDFs."""
    import logging

    from fpdf import FPDF

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # font subsetting chatter, one line per table
    font = next((f for f in KOREAN_FONTS if Path(f).exists()), None)
    if doc.lang != "en" and font is None:
        return False
    pdf = FPDF()
    pdf.set_creation_date(__import__("datetime").datetime(2026, 1, 1))
    pdf.add_page()
    if font:
        pdf.add_font("kr", fname=font)
        pdf.set_font("kr", size=11)
    else:
        pdf.set_font("Helvetica", size=11)
    for line in _lines(doc):
        pdf.multi_cell(0, 6, line.encode("latin-1", "replace").decode("latin-1") if not font else line)
        pdf.ln(2)
    pdf.output(str(path))
    return True


def write_hwpx(doc: Doc, path: Path) -> None:
    """A minimal valid HWPX (OWPML): zip with mimetype first, container, manifest, header and one section."""
    esc = html.escape
    hp = "http://www.hancom.co.kr/hwpml/2011/paragraph"
    hs = "http://www.hancom.co.kr/hwpml/2011/section"

    def para(text: str) -> str:
        return f"<hp:p><hp:run><hp:t>{esc(text)}</hp:t></hp:run></hp:p>"

    body = [para(doc.banner)] if doc.banner else []
    body += [para(doc.title)] + [para(p) for p in doc.paragraphs]
    if doc.table:
        rows = "".join("<hp:tr>" + "".join(f"<hp:tc><hp:subList>{para(c)}</hp:subList></hp:tc>" for c in row)
                       + "</hp:tr>" for row in doc.table)
        body.append(f"<hp:p><hp:run><hp:tbl>{rows}</hp:tbl></hp:run></hp:p>")
    if doc.banner:
        body.append(para(doc.banner))
    section = f'<?xml version="1.0" encoding="UTF-8"?><hs:sec xmlns:hs="{hs}" xmlns:hp="{hp}">{"".join(body)}</hs:sec>'
    files = {
        "version.xml": '<?xml version="1.0" encoding="UTF-8"?><hv:HCFVersion xmlns:hv="http://www.hancom.co.kr/hwpml/2011/version" major="5" minor="1"/>',
        "META-INF/container.xml": '<?xml version="1.0" encoding="UTF-8"?><ocf:container xmlns:ocf="urn:oasis:names:tc:opendocument:xmlns:container"><ocf:rootfiles><ocf:rootfile full-path="Contents/content.hpf" media-type="application/hwpml-package+xml"/></ocf:rootfiles></ocf:container>',
        "Contents/content.hpf": '<?xml version="1.0" encoding="UTF-8"?><opf:package xmlns:opf="http://www.idpf.org/2007/opf/"><opf:manifest><opf:item id="header" href="Contents/header.xml" media-type="application/xml"/><opf:item id="section0" href="Contents/section0.xml" media-type="application/xml"/></opf:manifest><opf:spine><opf:itemref idref="section0"/></opf:spine></opf:package>',
        "Contents/header.xml": '<?xml version="1.0" encoding="UTF-8"?><hh:head xmlns:hh="http://www.hancom.co.kr/hwpml/2011/head" version="1.1" secCnt="1"/>',
        "Contents/section0.xml": section,
    }
    with zipfile.ZipFile(path, "w") as zf:
        # mimetype first and stored uncompressed, as OCF containers require
        zf.writestr(zipfile.ZipInfo("mimetype", date_time=(2026, 1, 1, 0, 0, 0)), "application/hwp+zip",
                    compress_type=zipfile.ZIP_STORED)
        for name, content in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), content,
                        compress_type=zipfile.ZIP_DEFLATED)


WRITERS = {"txt": write_txt, "md": write_md, "html": write_html, "docx": write_docx, "pdf": write_pdf,
           "hwpx": write_hwpx}
