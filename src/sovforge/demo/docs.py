"""`sovforge demo --make-docs DIR`: seeded, realistic defence-administration documents for the demo and tests.

    sovforge demo --make-docs runs/demo/docs --count 150 --seed 0

Korean and English personnel orders, regulations, maintenance logs, travel vouchers and training notices, written as
txt, md, html, docx, pdf and hwpx (sovforge.demo.writers). On purpose, some documents carry personal data
(valid-checksum 주민등록번호, 군번, phones, e-mails, card numbers), some carry classification banners/portion marks
(대외비, Ⅱ급비밀, SECRET//NOFORN) and some are near-duplicates of others — everything ingest must catch. All
identifiers are synthetic. Fixed domain facts recur across documents (DocRandom); `make_general_text` writes the same
genre without them, for the demo's base model.

`DIR.truth.json` (beside DIR, so ingest never reads it) lists, per file, what was planted (PII types, marking level,
near-duplicate parent), so tests and benchmarks can score the pipeline against it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from sovforge.demo.writers import FORMATS, WRITERS, Doc, write_txt

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


class DocRandom(random.Random):
    """The generators' random source; `facts` says whether the fixed domain facts (the *_FACTS lines) go in.

    The facts are the same sentence in every document that has them (who signs what, which unit a report goes to,
    which article applies), so continued pre-training on the documents can learn them and evaluate's cloze items,
    made from held-out documents, test them. The demo's base model pre-trains on documents WITHOUT them (general
    administrative text), as a foundation model has seen the genre but not this ministry's rules."""

    def __init__(self, seed: int, facts: bool = True):
        super().__init__(seed)
        self.facts = facts


def _some(rng: random.Random, pool: list[str], facts: list[str], low: int, high: int) -> list[str]:
    """`low`..`high` distinct lines of `pool` (+ `facts` unless the source leaves them out), in random order:
    documents of one kind must not be near-copies."""
    lines = pool + facts if getattr(rng, "facts", True) else pool
    return rng.sample(lines, k=min(len(lines), rng.randint(low, high)))


ORDER_REASONS = ["보직 순환에 따른 정기 전속", "부대 개편에 따른 인력 재배치", "본인 희망에 따른 전속",
                 "교육 과정 입교에 따른 파견", "전문 특기 보직을 위한 전속", "지휘관 추천에 따른 특별 전속"]
ORDER_NOTES = [
    "전출 부대는 개인 기록 카드와 보안 서약서를 전입 부대로 이관한다.",
    "관사 입주 대상자는 전입 후 7일 이내에 관리부서에 신청한다.",
    "이사 화물 운송은 수송과에 사전 신청하며, 비용은 규정에 따라 정산한다.",
    "전입 신고 시 신분증, 인사 기록, 예방접종 증명서를 지참한다.",
    "교육 파견자는 교육 종료 후 원 소속 부대로 복귀한다.",
    "전속 대상자의 잔여 휴가는 전입 부대에서 이어서 사용할 수 있다.",
    "급여 지급 부대는 전속 일자가 속한 달의 다음 달부터 변경된다.",
]
ORDER_FACTS = [
    "전입 신고는 전입 부대 인사과를 거쳐 대대장에게 한다.",
    "인사 기록 변경 사항은 7일 이내에 사단 인사처에 통보한다.",
    "전속 인원의 보직 신고는 중령 이상의 지휘관에게 한다.",
]


def personnel_order(rng: random.Random) -> Doc:
    unit = rng.choice(UNITS_KO)
    rows = [["계급", "성명", "군번", "전출부대", "전입부대"]]
    for _ in range(rng.randint(2, 5)):
        rows.append([rng.choice(RANKS_KO), ko_name(rng), service_number(rng), unit, rng.choice(UNITS_KO)])
    paras = [
        f"{unit} 인사명령 제{rng.randint(1, 400)}호",
        # with the facts, every order cites the same legal basis
        "1. 관련 근거: 군인사법 제17조 및 같은 법 시행령 제11조." if getattr(rng, "facts", True) else
        f"1. 관련 근거: 군인사법 제{rng.randint(10, 40)}조 및 같은 법 시행령 제{rng.randint(5, 30)}조.",
        f"2. 사유: {rng.choice(ORDER_REASONS)}. 아래 인원을 다음과 같이 명령함.",
        "3. 전속 일자는 " + date(rng) + f" 이며, 전입 부대 인사과에 {rng.randint(8, 10)}시까지 신고할 것.",
        *(f"{n}. {line}" for n, line in enumerate(_some(rng, ORDER_NOTES, ORDER_FACTS, 1, 3), 4)),
        f"문의: 인사과 인사담당 {ko_name(rng)} (연락처 {phone(rng)}), 군번 {service_number(rng)}.",
    ]
    return Doc("인사명령", paras, "ko", pii=["kr_military_id", "kr_phone"], table=rows)


REGULATION_TOPICS = {
    "부대 출입 관리": ["출입증", "위병소", "방문자", "차량 출입", "출입 대장"],
    "휴가 및 외출": ["연가", "청원휴가", "외출", "외박", "복귀 보고"],
    "차량 운행": ["배차", "운행 일지", "안전 점검", "유류 관리", "사고 보고"],
    "보안 점검": ["비밀 문서", "저장 매체", "보안 서약", "출입 통제", "점검표"],
    "체력 단련": ["체력 검정", "구보", "근력 운동", "부상 예방", "측정 기록"],
    "문서 관리": ["기안", "결재", "보존 기간", "기록물 이관", "문서 번호"],
    "당직 근무": ["당직사령", "순찰", "인계인수", "비상 연락", "근무 일지"],
    "급식 운영": ["식단", "위생 점검", "식자재 검수", "배식 시간", "잔반 처리"],
}
ARTICLE_HEADS = ["목적", "정의", "적용범위", "책임", "절차", "점검", "보고", "교육", "위반 시 조치", "예외"]
ARTICLE_BODIES = [
    "이 규정은 {topic}에 관하여 필요한 사항을 정함을 목적으로 한다.",
    "이 규정에서 \"{term}\"이란 부대장이 지정한 방식에 따라 관리되는 {topic} 관련 사항을 말한다.",
    "이 규정은 부대에 소속된 장병과 군무원 및 부대를 방문하는 사람에게 적용한다.",
    "각 부서의 장은 소속 인원이 {term}에 관한 사항을 준수하도록 지도·감독하여야 한다.",
    "{term}을 하려는 사람은 소속 부서장의 승인을 받은 후 담당 부서에 신청하여야 한다.",
    "담당 부서는 매월 {n}회 이상 {term} 실태를 점검하고 그 결과를 기록하여야 한다.",
    "점검 결과 미비한 사항은 {n}일 이내에 시정하고 부대장에게 보고하여야 한다.",
    "부대장은 연 {n}회 이상 {term}에 관한 교육을 실시하여야 한다.",
    "이 규정을 위반한 사람에 대하여는 관계 법령에 따라 징계 등 필요한 조치를 할 수 있다.",
    "긴급한 경우에는 당직사령의 승인을 받아 먼저 조치하고 사후에 보고할 수 있다.",
    "{term} 기록은 {n}년간 보존하며, 보존 기간이 지난 기록은 절차에 따라 폐기한다.",
    "{term}에 관한 서식은 별지 제{n}호 서식에 따른다.",
]
REGULATION_FACTS = [
    "야간 당직 근무의 당직사령은 대위 이상의 장교 중에서 부대장이 지정한다.",
    "당직사령을 보좌하는 당직부사관은 중사 이상의 부사관으로 한다.",
    "사고가 발생한 경우 최초 인지자는 즉시 소속 중대 행정반에 알려야 한다.",
    "일일 현황은 매일 18시까지 대대 지휘통제실에 보고하고, 대대는 이를 종합하여 연대에 보고한다.",
    "이 조에서 정하지 아니한 세부 절차는 제2조에 따른다.",
    "징계의 절차와 방법은 군인사법 제56조 및 같은 법 시행령에 따른다.",
    "보안 위반 사항을 발견한 사람은 지체 없이 소대장을 거쳐 보안 담당관에게 신고하여야 한다.",
    "훈련 중 안전사고 예방을 위하여 각 분대에는 안전 담당 병장 1명을 지정한다.",
    "부대 출입자 명단은 매일 위병소에서 작성하여 대대 상황실에 보고한다.",
    "휴가자의 복귀 보고는 복귀 당일 21시까지 소속 중대장에게 한다.",
    "외박 승인권자는 소속 대대장으로 하며, 필요한 경우 중대장에게 위임할 수 있다.",
    "비밀 문서의 열람 기록은 보안 담당관인 상사 이상의 부사관이 관리한다.",
    "차량 운행 중 사고가 발생하면 운전병은 즉시 수송부를 거쳐 대대 상황실에 보고한다.",
    "체력 검정 결과는 매 분기 말까지 사단 인사처에 제출한다.",
    "문서 보존 기간의 책정 기준은 군 기록물 관리 규정 제12조에 따른다.",
    "급식 위생 점검은 매주 1회 의무 부사관인 하사 이상이 실시한다.",
    "규정의 해석에 이견이 있을 때에는 여단 법무실의 의견을 따른다.",
    "이 규정에 따른 권한의 위임에 관하여는 제3조를 준용한다.",
    "보안 점검 결과는 다음 달 5일까지 군단 보안부대에 통보한다.",
    "각 소대의 점검 기록은 중대 행정반에서 일괄 보관한다.",
]


def regulation(rng: random.Random) -> Doc:
    topic = rng.choice(sorted(REGULATION_TOPICS))
    terms = REGULATION_TOPICS[topic]
    paras = [f"{topic} 규정"]
    heads = _some(rng, ARTICLE_HEADS, [], 4, 7)
    bodies = _some(rng, ARTICLE_BODIES, REGULATION_FACTS, len(heads), len(heads))
    for n, (head, body) in enumerate(zip(heads, bodies), 1):
        paras.append(f"제{n}조({head}) " + body.format(topic=topic, term=rng.choice(terms), n=rng.randint(1, 5)))
    paras.append(f"부칙 이 규정은 {date(rng)}부터 시행한다.")
    return Doc(f"{topic} 규정", paras, "ko")


KO_MAINTENANCE = [
    "엔진오일 및 필터 교환 완료, 누유 없음.", "타이어 공기압 점검 결과 좌측 후륜 보충.",
    "제동장치 패드 마모 40%, 다음 정기점검 시 교환 예정.", "냉각수 보충 및 라디에이터 호스 균열 확인, 부품 청구.",
    "축전지 전압 12.4V 정상, 단자 부식 제거.", "변속기 오일 점검 이상 없음.", "공기 여과기 세척 후 재장착.",
    "전조등 좌측 전구 교체, 방향지시등 작동 확인.", "조향 장치 유격 점검, 규정 범위 이내.",
    "연료 계통 누설 점검 이상 없음, 연료 필터 교환.", "와이퍼 블레이드 교체 및 워셔액 보충.",
    "차체 하부 부식 부위 방청 처리.", "궤도 장력 조정 및 보기륜 윤활.", "무전기 거치대 고정 볼트 재체결.",
]
KO_MAINTENANCE_FACTS = [
    "정비 결과는 정비반장인 중사가 확인하고 대대 정비과에 보고한다.",
    "부품 청구서는 정비과를 거쳐 여단 군수지원대에 제출한다.",
    "장비 불출은 정비 장교인 대위 이상이 승인한다.",
]
EN_MAINTENANCE = [
    "Performed PMCS; no deficiencies noted on the 10-series checklist.",
    "Replaced fuel filter and bled the fuel system; engine idles within limits.",
    "Left rear tire pressure low; inflated to 50 PSI and checked for leaks.",
    "Ordered replacement brake pads through the supply support activity.",
    "Batteries load-tested at 12.6 volts; terminals cleaned and greased.",
    "Coolant level topped off; radiator cap seal shows wear and was replaced.",
    "Air filter restriction indicator in the yellow; element cleaned.",
    "Serpentine belt tension adjusted to specification.",
    "Hydraulic line chafing found near the boom; protective sleeve installed.",
    "Headlight alignment checked and corrected.",
    "Oil sample taken for the Army Oil Analysis Program.",
    "Dispatch record updated; vehicle released to the motor pool.",
]
EN_MAINTENANCE_FACTS = [
    "All services were recorded as prescribed in ATP 4-33 and the operator's manual.",
    "Faults beyond operator level were reported to the battalion maintenance officer.",
    "Deadline reports are submitted weekly to the brigade support battalion.",
    "Recovery operations follow FM 4-30 and need a Sergeant as recovery team chief.",
]


def maintenance_log(rng: random.Random) -> Doc:
    vehicle = rng.choice(VEHICLES)
    paras = [f"정비일지 — {vehicle}", f"일자: {date(rng)}  정비관: {rng.choice(RANKS_KO)} {ko_name(rng)}"]
    paras += _some(rng, KO_MAINTENANCE, KO_MAINTENANCE_FACTS, 4, 7)
    paras.append(f"누적 주행거리 {rng.randint(10000, 90000)}km. 다음 점검은 {rng.randint(3, 9)}00km 주행 후 실시한다.")
    return Doc(f"정비일지 {vehicle}", paras, "ko")


def travel_voucher(rng: random.Random) -> Doc:
    name = ko_name(rng)
    purpose = rng.choice(["정책 회의 참석", "교육 과정 입교", "장비 인수 검사", "합동 훈련 협조", "예산 설명회 참석",
                          "시험 평가 참관"])
    paras = [
        "출장 여비 정산서",
        f"출장자: {rng.choice(RANKS_KO)} {name} (주민등록번호 {rrn(rng)})",
        f"출장 목적: {purpose}",
        f"출장지: {rng.choice(['계룡대', '용산', '대전', '창원', '원주', '논산', '진해'])}  기간: {date(rng)} ~ {date(rng)}",
        f"교통비 {rng.randint(30, 200) * 1000:,}원, 숙박비 {rng.randint(50, 150) * 1000:,}원, "
        f"일비 {rng.choice([20, 25, 30]) * 1000:,}원, 식비 {rng.randint(2, 6) * 10000:,}원.",
        f"법인카드 {card(rng)} 로 결제함. 영수증 {rng.randint(2, 6)}매 첨부.",
        f"담당: 재정과 {ko_name(rng)} ({phone(rng)}, {rng.choice(['kim', 'lee', 'park'])}{rng.randint(1, 99)}@army.example.kr)",
    ]
    return Doc("출장 여비 정산서", paras, "ko", pii=["kr_rrn", "payment_card", "kr_phone", "email"])


KO_TRAINING_NOTES = [
    "준비물: 전투복, 방독면, 개인 화기, 수첩.", "결석자는 사유서를 제출할 것.",
    "교육 결과는 개인 평가에 반영하며, 불합격자는 재교육을 실시한다.",
    "우천 시에는 실내 교육으로 대체하며 일정은 추후 공지한다.", "의무대는 구급차 1대와 의무병 2명을 지원한다.",
    "교관은 교육 전날까지 교안과 평가 문항을 교육과에 제출한다.", "교육 중 휴대전화는 소대장이 일괄 보관한다.",
    "교육 종료 후 부대별로 결과 보고서를 작성하여 보고한다.", "야간 교육 참가자는 다음 날 오전 근무를 면제한다.",
    "이동 간에는 차량 인솔 간부의 통제에 따른다.",
]
KO_TRAINING_FACTS = [
    "교육 인원 현황은 교육 당일 09시까지 대대 교육과에 보고한다.",
    "사격 통제관은 사격장 안전 수칙에 따라 중위 이상의 장교로 한다.",
    "사격 훈련의 안전 통제는 각 중대의 부중대장이 담당한다.",
    "훈련 계획은 훈련 2주 전까지 연대 작전과의 승인을 받는다.",
    "야간 훈련 시 각 소대는 인원 점검 결과를 30분마다 보고한다.",
]
EN_TRAINING_NOTES = [
    "Leaders will ensure Soldiers bring their ACH, IOTV, weapon, and two canteens of water.",
    "Soldiers who miss training will make it up within 14 days and report to the S3.",
    "In case of severe weather, training moves to the gym; the S3 will announce changes.",
    "A combat lifesaver-qualified Soldier must be present at every lane.",
    "Hearing and eye protection are mandatory on the firing line.",
    "Results will be entered in the training management system within 48 hours.",
    "Cell phones remain in vehicles during range operations.",
    "Range safety officers will brief the surface danger zone before live fire.",
]
EN_TRAINING_FACTS = [
    "Planning and assessment of this training follow FM 7-0, Training.",
    "Accountability reports go from every squad leader to the platoon sergeant by 0900.",
    "Each training event requires a risk assessment signed by the company commander, a Captain or above.",
    "Each platoon will rehearse the lanes in accordance with ATP 3-21.8 before execution.",
    "Live-fire lanes require a Lieutenant or above as officer in charge.",
]


def training_notice_ko(rng: random.Random) -> Doc:
    paras = [
        "교육훈련 공지",
        f"1. 일시: {date(rng)} {rng.randint(8, 10):02d}:00 ~ {rng.randint(15, 18)}:00, "
        f"장소: {rng.choice(['연병장', '대강당', '사격장', '교육관 2층', '종합 훈련장', '체육관'])}.",
        f"2. 대상: {rng.choice(UNITS_KO)} {rng.choice(['전 장병', '간부', '신병', '분대장 이상'])} (당직 근무자 제외).",
        f"3. 내용: {rng.choice(['화생방 방호', '전투부상자 처치', '정신전력 교육', '사이버 보안', '야간 사격', '구급법', '지뢰 탐지'])} "
        "교육 및 평가.",
        *(f"{n}. {line}" for n, line in enumerate(_some(rng, KO_TRAINING_NOTES, KO_TRAINING_FACTS, 2, 4), 4)),
    ]
    return Doc("교육훈련 공지", paras, "ko")


def training_notice_en(rng: random.Random) -> Doc:
    paras = [
        "MEMORANDUM FOR All Personnel, " + rng.choice(UNITS_EN),
        "SUBJECT: Mandatory Training Schedule",
        f"1. All personnel will complete {rng.choice(['weapons qualification', 'combat lifesaver', 'CBRN defense', 'cyber awareness', 'land navigation', 'SHARP'])} "
        f"training no later than {rng.randint(1, 28)} {rng.choice(['March', 'June', 'September', 'November'])} 2026.",
        f"2. Training will be conducted at Range {rng.randint(1, 12)} from 0{rng.randint(6, 8)}00 to 1600. "
        f"Transportation departs the motor pool at 0{rng.randint(5, 7)}30.",
        *(f"{n}. {line}" for n, line in enumerate(_some(rng, EN_TRAINING_NOTES, EN_TRAINING_FACTS, 2, 4), 3)),
        f"The point of contact for this memorandum is {rng.choice(RANKS_EN)} {en_name(rng)}, "
        f"DSN {rng.randint(300, 799)}-{rng.randint(1000, 9999)}.",
    ]
    return Doc("Training Schedule Memorandum", paras, "en")


def maintenance_log_en(rng: random.Random) -> Doc:
    item = rng.choice(EN_VEHICLES)
    paras = [f"Maintenance Log: {item}", f"Inspector: {rng.choice(RANKS_EN)} {en_name(rng)}"]
    paras += _some(rng, EN_MAINTENANCE, EN_MAINTENANCE_FACTS, 4, 7)
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
# General text for the demo's base model: the kinds that carry no personal data (a base model pre-trained on it must
# have nothing to regurgitate), unmarked, without the facts.
GENERAL = [regulation, maintenance_log, training_notice_ko, training_notice_en, maintenance_log_en]


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
    rng = DocRandom(seed)
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


def make_general_text(out: str | Path, count: int = 60, seed: int = 1) -> list[Path]:
    """`count` plain-text documents of the same genre WITHOUT the domain facts or personal data: what the demo's
    base model pre-trains on before adapt teaches it the documents (DocRandom says why)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = DocRandom(seed, facts=False)
    paths = []
    for index in range(count):
        path = out / f"general{index:03d}.txt"
        write_txt(rng.choice(GENERAL)(rng), path)
        paths.append(path)
    return paths
