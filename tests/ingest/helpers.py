"""Builders of test documents (DOCX with tables, HWPX with a page header, PDFs, zip bombs) shared by ingest tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

KOREAN = "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다.\n\n제2조(정의) 이 법에서 사용하는 용어의 뜻은 다음과 같다."

# Varied statute-like Korean (no repeated sentences), long enough for every quality rule to apply.
STATUTE_A = "\n\n".join([
    "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다.",
    "제2조(적용 범위) 이 법은 현역 군인과 사관생도에게 적용하며, 병역의무를 마친 사람에게는 적용하지 아니한다.",
    "제3조(계급) 장교는 원수, 대장, 중장, 소장, 준장, 대령, 중령, 소령, 대위, 중위 및 소위로 구분한다.",
    "제4조(임용) 장교는 사관학교를 졸업한 사람 중에서 임용하되, 필요한 경우 학군사관후보생 과정을 거친 사람을 임용할 수 있다.",
    "제5조(복무) 군인은 국가에 대한 충성과 성실의 의무를 지며, 상관의 정당한 명령에 복종하여야 한다.",
    "제6조(휴가) 휴가의 종류와 기간은 대통령령으로 정하고, 부대의 임무 수행에 지장이 없는 범위에서 허가한다.",
    "부칙 이 법은 공포 후 6개월이 경과한 날부터 시행한다."])
STATUTE_B = "\n\n".join([
    "제1조(목적) 이 영은 군무원의 채용, 보직, 교육훈련 및 보수에 관하여 필요한 사항을 정함을 목적으로 한다.",
    "제2조(채용 시험) 군무원의 공개경쟁채용시험은 필기시험과 면접시험으로 실시하며, 국방부장관이 시험 일정을 공고한다.",
    "제3조(보직) 임용권자는 군무원의 전공 분야와 경력을 고려하여 적합한 직위에 보직하여야 한다.",
    "제4조(교육훈련) 각 군 참모총장은 소속 군무원에게 직무 수행에 필요한 교육훈련을 매년 실시하여야 한다.",
    "제5조(보수) 군무원의 봉급과 수당은 공무원보수규정을 준용하되, 특수 근무지에 근무하는 사람에게는 가산금을 지급한다.",
    "제6조(징계) 징계위원회는 위원장 1명을 포함한 5명 이상 7명 이하의 위원으로 구성한다.",
    "부칙 이 영은 공포한 날부터 시행한다."])

PDF_LINES = ["Maintenance Log", "Performed PMCS on the generator set; no deficiencies were noted on the checklist, and "
             "the operator signed the leadership development record before the convoy departed the motor pool at 0630."]


def make_docx(path: Path, banner: str | None = None) -> Path:
    import docx

    document = docx.Document()
    if banner:
        document.sections[0].header.paragraphs[0].text = banner
    document.add_heading("인사명령", level=1)
    document.add_paragraph("1. 아래 인원을 전속 명령함.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["계급", "성명", "군번"], ["대위", "김민준", "12-71234567"], ["중사", "이서연", "15-70000001"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = document.add_table(rows=1, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "병합"
    merged.cell(0, 2).text = "끝"
    document.add_paragraph("2. 본 명령은 발령일부터 효력을 가진다.")
    document.save(str(path))
    return path


def make_hwpx(path: Path, header: str | None = None) -> Path:
    from sovforge.demo.writers import Doc, write_hwpx

    doc = Doc("정비 계획", ["정비 계획", "1. 차량 정비 일정을 다음과 같이 정한다."], "ko",
              table=[["차량", "일자"], ["K-311", "2026. 3. 2."], ["K-511", "2026. 3. 9."]])
    write_hwpx(doc, path)
    if header:  # add a page header the way Hancom stores it: inside a run's control
        with zipfile.ZipFile(path) as zf:
            files = {name: zf.read(name) for name in zf.namelist()}
        section = files["Contents/section0.xml"].decode()
        section = section.replace("<hp:p><hp:run><hp:t>정비 계획", f"<hp:p><hp:run><hp:ctrl><hp:header><hp:subList><hp:p>"
                                  f"<hp:run><hp:t>{header}</hp:t></hp:run></hp:p></hp:subList></hp:header></hp:ctrl>"
                                  "<hp:t>정비 계획", 1)
        files["Contents/section0.xml"] = section.encode()
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    return path


def make_zip_bomb(path: Path, member: str, mb: int = 64) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open(member, "w") as fh:
            zero = bytes(1 << 20)
            for _ in range(mb):
                fh.write(zero)
    return path


def make_pdf(path: Path, lines: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in lines:
        pdf.multi_cell(0, 6, line)
        pdf.ln(2)
    pdf.output(str(path))
    return path
