"""`sovforge demo --make-docs DIR`: seeded, realistic defence-administration documents for the demo and tests.

    sovforge demo --make-docs runs/demo/docs --count 60 --seed 0

Korean and English personnel orders, regulations, maintenance logs, travel vouchers and training notices, written as
txt, md, html, docx, pdf and hwpx. On purpose, some documents carry personal data (valid-checksum 주민등록번호, 군번,
phones, e-mails, card numbers), some carry classification banners/portion marks (대외비, Ⅱ급비밀, SECRET//NOFORN) and
some are near-duplicates of others — everything ingest must catch. All identifiers are synthetic.

`DIR.truth.json` (beside DIR, so ingest never reads it) lists, per file, what was planted (PII types, marking level, near-duplicate parent), so tests
and benchmarks can score the pipeline against it.
"""

from __future__ import annotations

import html
import io
import json
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권"]
GIVEN = ["민준", "서준", "도윤", "예준", "시우", "하준", "지호", "주원", "지훈", "수빈", "서연", "지우", "하은", "민서"]
RANKS_KO = ["이병", "일병", "상병", "병장", "하사", "중사", "상사", "원사", "소위", "중위", "대위", "소령", "중령", "대령"]
UNITS_KO = ["제1보병사단", "제3기갑여단", "제7공병대대", "수도방위사령부", "제11전투비행단", "제2작전사령부 정비단",
            "국군수송사령부", "육군교육사령부", "해군작전사령부", "제5군수지원사령부"]
EN_FIRST = ["James", "Maria", "David", "Sarah", "Michael", "Jennifer", "Robert", "Linda", "Daniel", "Laura"]
EN_LAST = ["Miller", "Garcia", "Johnson", "Lee", "Brown", "Davis", "Wilson", "Martinez", "Taylor", "Clark"]
RANKS_EN = ["PVT", "SPC", "SGT", "SSG", "SFC", "2LT", "1LT", "CPT", "MAJ", "LTC", "COL"]
UNITS_EN = ["2nd Infantry Division", "8th Army Support Battalion", "501st Military Intelligence Brigade",
            "65th Medical Brigade", "35th Air Defense Artillery Brigade"]
VEHICLES = ["K-311 트럭", "K-511 카고", "KM-9 정비차량", "K200 장갑차", "K-9 자주포", "K1A2 전차"]
EN_VEHICLES = ["M1151 HMMWV", "LMTV cargo truck", "M88 recovery vehicle", "generator set MEP-803A"]
FORMATS = ["txt", "md", "html", "docx", "pdf", "hwpx"]


# ---------------------------------------------------------------------------------------------- identifiers


def rrn(rng: random.Random) -> str:
    """A syntactically valid 주민등록번호 of someone born 1970-2001 (pre-Oct-2020 checksum rule)."""
    year = rng.randint(1970, 2001)
    body = f"{year % 100:02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    gender = rng.choice("12") if year < 2000 else rng.choice("34")
    digits = body + gender + f"{rng.randint(0, 99999):05d}"
    weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights)) % 11) % 10
    return f"{digits[:6]}-{digits[6:]}{check}"


def card(rng: random.Random) -> str:
    """A Luhn-valid 16-digit payment card number (test BIN range 9410)."""
    digits = [9, 4, 1, 0] + [rng.randint(0, 9) for _ in range(11)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    s = "".join(map(str, digits))
    return f"{s[:4]}-{s[4:8]}-{s[8:12]}-{s[12:]}"


def phone(rng: random.Random) -> str:
    return f"010-{rng.randint(2000, 9999)}-{rng.randint(1000, 9999)}"


def service_number(rng: random.Random) -> str:
    return f"{rng.randint(10, 24)}-{rng.randint(70000000, 79999999)}"


def ko_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def en_name(rng: random.Random) -> str:
    return f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"


def date(rng: random.Random) -> str:
    return f"2026. {rng.randint(1, 12)}. {rng.randint(1, 28)}."


# ------------------------------------------------------------------------------------------------ documents


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


def personnel_order(rng: random.Random) -> Doc:
    unit = rng.choice(UNITS_KO)
    rows = [["계급", "성명", "군번", "전출부대", "전입부대"]]
    for _ in range(rng.randint(2, 4)):
        rows.append([rng.choice(RANKS_KO), ko_name(rng), service_number(rng), unit, rng.choice(UNITS_KO)])
    paras = [
        f"{unit} 인사명령 제{rng.randint(1, 400)}호",
        f"1. 관련 근거: 군인사법 제{rng.randint(10, 40)}조 및 같은 법 시행령 제{rng.randint(5, 30)}조.",
        "2. 아래 인원을 다음과 같이 전속 명령함.",
        "3. 전속 일자는 " + date(rng) + " 이며, 전입 부대 인사과에 09시까지 신고할 것.",
        f"4. 문의: 인사과 {ko_name(rng)} 중사 (연락처 {phone(rng)}), 군번 {service_number(rng)}.",
        "5. 본 명령은 발령일로부터 효력을 가진다.",
    ]
    return Doc("인사명령", paras, "ko", pii=["kr_military_id", "kr_phone"], table=rows)


def regulation(rng: random.Random) -> Doc:
    topic = rng.choice(["부대 출입 관리", "휴가 및 외출", "차량 운행", "보안 점검", "체력 단련", "문서 관리"])
    paras = [f"{topic} 규정"]
    for n in range(1, rng.randint(5, 8)):
        paras.append(
            f"제{n}조({rng.choice(['목적', '정의', '적용범위', '책임', '절차', '점검', '보고'])}) "
            f"{topic}에 관한 사항은 부대장이 정하며, 각 부서의 장은 소속 인원이 이 규정을 준수하도록 "
            f"지도·감독하여야 한다. 다만, 긴급한 경우에는 당직사령의 승인을 받아 먼저 조치할 수 있다."
        )
    paras.append("부칙 이 규정은 발령한 날부터 시행한다.")
    return Doc(f"{topic} 규정", paras, "ko")


def maintenance_log(rng: random.Random) -> Doc:
    vehicle = rng.choice(VEHICLES)
    paras = [f"정비일지 — {vehicle}", f"일자: {date(rng)}  정비관: {rng.choice(RANKS_KO)} {ko_name(rng)}"]
    for _ in range(rng.randint(3, 6)):
        paras.append(rng.choice([
            "엔진오일 및 필터 교환 완료, 누유 없음.", "타이어 공기압 점검 결과 좌측 후륜 보충.",
            "제동장치 패드 마모 40%, 다음 정기점검 시 교환 예정.", "냉각수 보충 및 라디에이터 호스 균열 확인, 부품 청구.",
            "축전지 전압 12.4V 정상, 단자 부식 제거.", "변속기 오일 점검 이상 없음.",
        ]))
    paras.append(f"누적 주행거리 {rng.randint(10000, 90000)}km. 다음 점검은 {rng.randint(3, 9)}00km 주행 후 실시한다.")
    return Doc(f"정비일지 {vehicle}", paras, "ko")


def travel_voucher(rng: random.Random) -> Doc:
    name = ko_name(rng)
    paras = [
        "출장 여비 정산서",
        f"출장자: {rng.choice(RANKS_KO)} {name} (주민등록번호 {rrn(rng)})",
        f"출장지: {rng.choice(['계룡대', '용산', '대전', '창원', '원주'])}  기간: {date(rng)} ~ {date(rng)}",
        f"교통비 {rng.randint(30, 200) * 1000:,}원, 숙박비 {rng.randint(50, 150) * 1000:,}원, 일비 25,000원.",
        f"법인카드 {card(rng)} 로 결제함. 영수증 첨부.",
        f"담당: 재정과 {ko_name(rng)} ({phone(rng)}, {rng.choice(['kim', 'lee', 'park'])}{rng.randint(1, 99)}@army.example.kr)",
    ]
    return Doc("출장 여비 정산서", paras, "ko", pii=["kr_rrn", "payment_card", "kr_phone", "email"])


def training_notice_ko(rng: random.Random) -> Doc:
    paras = [
        "교육훈련 공지",
        f"1. 일시: {date(rng)} 09:00 ~ 17:00, 장소: {rng.choice(['연병장', '대강당', '사격장', '교육관 2층'])}.",
        f"2. 대상: {rng.choice(UNITS_KO)} 전 장병 (당직 근무자 제외).",
        f"3. 내용: {rng.choice(['화생방 방호', '전투부상자 처치', '정신전력 교육', '사이버 보안', '야간 사격'])} 교육 및 평가.",
        "4. 준비물: 전투복, 방독면, 개인 화기, 수첩. 결석자는 사유서를 제출할 것.",
        "5. 교육 결과는 개인 평가에 반영하며, 불합격자는 재교육을 실시한다.",
    ]
    return Doc("교육훈련 공지", paras, "ko")


def training_notice_en(rng: random.Random) -> Doc:
    paras = [
        "MEMORANDUM FOR All Personnel, " + rng.choice(UNITS_EN),
        "SUBJECT: Mandatory Training Schedule",
        f"1. All personnel will complete {rng.choice(['weapons qualification', 'combat lifesaver', 'CBRN defense', 'cyber awareness'])} "
        f"training no later than {rng.randint(1, 28)} {rng.choice(['March', 'June', 'September', 'November'])} 2026.",
        f"2. Training will be conducted at Range {rng.randint(1, 12)} from 0700 to 1600. Transportation departs the motor pool at 0630.",
        "3. Leaders will ensure Soldiers bring their ACH, IOTV, weapon, and two canteens of water.",
        f"4. The point of contact for this memorandum is {rng.choice(RANKS_EN)} {en_name(rng)}, "
        f"DSN {rng.randint(300, 799)}-{rng.randint(1000, 9999)}.",
    ]
    return Doc("Training Schedule Memorandum", paras, "en")


def maintenance_log_en(rng: random.Random) -> Doc:
    item = rng.choice(EN_VEHICLES)
    paras = [f"Maintenance Log: {item}", f"Inspector: {rng.choice(RANKS_EN)} {en_name(rng)}"]
    for _ in range(rng.randint(3, 5)):
        paras.append(rng.choice([
            "Performed PMCS; no deficiencies noted on the 10-series checklist.",
            "Replaced fuel filter and bled the fuel system; engine idles within limits.",
            "Left rear tire pressure low; inflated to 50 PSI and checked for leaks.",
            "Ordered replacement brake pads through the supply support activity.",
            "Batteries load-tested at 12.6 volts; terminals cleaned and greased.",
        ]))
    return Doc(f"Maintenance Log {item}", paras, "en")


def secret_ops_en(rng: random.Random) -> Doc:
    paras = [
        f"(S//NF) {rng.choice(UNITS_EN)} will reposition two batteries to grid {rng.randint(1000, 9999)} "
        f"{rng.randint(1000, 9999)} NLT 0400 on D+{rng.randint(1, 5)}.",
        "(U) Logistics support will follow the standard resupply schedule.",
        f"(S//NF) Frequencies for the operation are listed in annex {rng.choice('ABCD')}.",
    ]
    return Doc("Operations Order Excerpt", paras, "en", marking="SECRET", banner="SECRET//NOFORN")


def secret_plan_ko(rng: random.Random) -> Doc:
    paras = [
        "작전 계획 요약",
        f"{rng.choice(UNITS_KO)}는 {date(rng)} 04시부로 예비 진지로 전환한다.",
        "세부 기동로 및 통신 계획은 별지 제2호를 따른다.",
    ]
    return Doc("작전 계획 요약", paras, "ko", marking="SECRET", banner="군사Ⅱ급비밀")


def restricted_ko(rng: random.Random) -> Doc:
    paras = [
        "부대 보안 점검 결과",
        f"{rng.choice(UNITS_KO)} 보안 점검 결과 {rng.randint(2, 6)}건의 지적 사항이 있었다.",
        "비밀번호 변경 주기 미준수 및 출입 대장 기록 누락은 즉시 시정한다.",
    ]
    return Doc("부대 보안 점검 결과", paras, "ko", marking="RESTRICTED", banner="대외비")


GENERATORS = [personnel_order, regulation, maintenance_log, travel_voucher, training_notice_ko,
              training_notice_en, maintenance_log_en, regulation, training_notice_ko]
CLASSIFIED = [secret_ops_en, secret_plan_ko, restricted_ko]


# --------------------------------------------------------------------------------------------------- writers


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
    from fpdf import FPDF

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


def _near_duplicate(doc: Doc, rng: random.Random, parent: str) -> Doc:
    """The same document re-issued with a small edit (a date or one sentence), as real archives are full of."""
    paras = list(doc.paragraphs)
    i = rng.randrange(len(paras))
    paras[i] = paras[i] + (" (수정)" if doc.lang == "ko" else " (revised)")
    return Doc(doc.title, paras, doc.lang, list(doc.pii), doc.marking, doc.banner, doc.table, near_duplicate_of=parent)


def truth_path(docs_dir: str | Path) -> Path:
    docs_dir = Path(docs_dir)
    return docs_dir.with_name(docs_dir.name + ".truth.json")


def make_documents(out: str | Path, count: int = 60, seed: int = 0) -> dict[str, dict]:
    """Write `count` documents (plus near-duplicates and classified ones) into `out`; return the truth table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    truth: dict[str, dict] = {}

    def emit(doc: Doc, index: int, fmt: str | None = None) -> str:
        fmt = fmt or FORMATS[index % len(FORMATS)]
        name = f"doc{index:03d}.{fmt}"
        if WRITERS[fmt](doc, out / name) is False:  # e.g. a Korean PDF without a Hangul font → fall back to docx
            fmt = "docx"
            name = f"doc{index:03d}.{fmt}"
            WRITERS[fmt](doc, out / name)
        truth[name] = {"title": doc.title, "lang": doc.lang, "format": fmt, "pii": sorted(set(doc.pii)),
                       "classification": doc.marking, "banner": doc.banner,
                       "near_duplicate_of": doc.near_duplicate_of}
        return name

    index = 0
    plain_names: list[tuple[str, Doc]] = []
    for _ in range(count):
        doc = rng.choice(GENERATORS)(rng)
        name = emit(doc, index)
        plain_names.append((name, doc))
        index += 1
    for maker in CLASSIFIED:  # one of each classified kind, in two formats
        for fmt in ("txt", "docx"):
            emit(maker(rng), index, fmt)
            index += 1
    for name, doc in rng.sample(plain_names, k=max(1, count // 10)):  # ~10% near-duplicates
        emit(_near_duplicate(doc, rng, name), index, "txt")
        index += 1
    truth_path(out).write_text(json.dumps(truth, ensure_ascii=False, indent=2), encoding="utf-8")
    return truth
