"""Screen benchmark: `.venv/bin/python bench/screen.py [--seed 7] [--per-type 60]`.

1. Builds a labelled set (seeded generator + hand-written hard negatives): planted PII of every type, valid
   checksums, look-alikes with invalid checksums / missing context, classification banners and portion marks,
   and prose that mentions levels. Prints recall and precision per detector and for markings.
2. Measures scanning throughput (MB/s) on /work/shared/corpus: `screen_text` side by side with a naive peer:
   one combined regex with no validation and no context (what a quick script would do), and the ratio.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from sovforge.classification import Level
from sovforge.screen import PII_TYPES, detect_markings, find_pii, screen_text

CORPUS = Path("/work/shared/corpus")
_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)


# ---------------------------------------------------------------- generators (each returns the value)


def _check_digit(first12: str, foreign: bool) -> str:
    total = sum(int(d) * w for d, w in zip(first12, _RRN_WEIGHTS, strict=True))
    return str(((13 if foreign else 11) - total % 11) % 10)


def _birth(rng: random.Random, post2020: bool) -> tuple[str, int]:
    if post2020:
        year, month = rng.choice([2020, 2021, 2022, 2023, 2024]), rng.randint(1, 12)
        if year == 2020:
            month = rng.randint(10, 12)
    else:
        year, month = rng.randint(1940, 2019), rng.randint(1, 12)
    return f"{year % 100:02d}{month:02d}{rng.randint(1, 28):02d}", year


def gen_registration(rng: random.Random, foreign: bool, valid: bool = True) -> str:
    post2020 = rng.random() < 0.25
    date, year = _birth(rng, post2020 and valid)
    if foreign:
        gender = rng.choice("56") if year < 2000 else rng.choice("78")
    else:
        gender = rng.choice("12") if year < 2000 else rng.choice("34")
    first12 = date + gender + "".join(rng.choice("0123456789") for _ in range(5))
    check = _check_digit(first12, foreign)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    sep = rng.choice(["-", "-", "-", ""])
    return f"{first12[:6]}{sep}{first12[6:]}{check}"


def luhn_complete(prefix_and_body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(prefix_and_body)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return prefix_and_body + str((10 - total % 10) % 10)


def gen_card(rng: random.Random, valid: bool = True) -> str:
    if rng.random() < 0.2:
        number = luhn_complete("3" + rng.choice("47") + "".join(rng.choice("0123456789") for _ in range(12)))
        if not valid:
            number = number[:-1] + str((int(number[-1]) + 1) % 10)
        sep = rng.choice(["", " ", "-"])
        return f"{number[:4]}{sep}{number[4:10]}{sep}{number[10:]}"
    prefix = rng.choice(["4", "51", "55", "2221", "6011", "35"])
    number = luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(15 - len(prefix))))
    if not valid:
        number = number[:-1] + str((int(number[-1]) + 1) % 10)
    sep = rng.choice(["", " ", "-"])
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def gen_ssn(rng: random.Random, valid: bool = True) -> str:
    if valid:
        area = rng.choice([a for a in range(1, 900) if a != 666])
        return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    area, group, serial = rng.choice(
        [("000", rng.randint(1, 99), rng.randint(1, 9999)), ("666", 12, 3456),
         (str(rng.randint(900, 999)), 12, 3456), (f"{rng.randint(1, 899):03d}", 0, 1234),
         (f"{rng.randint(1, 899):03d}", 45, 0)]
    )
    return f"{area}-{group:02d}-{serial:04d}"


def gen_phone(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return f"010-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    if form == 1:
        return f"02-{rng.randint(100, 9999)}-{rng.randint(1000, 9999)}"
    if form == 2:
        area = rng.choice(["31", "32", "42", "51", "62"])
        return f"0{area}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    return f"+82 10 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def gen_email(rng: random.Random) -> str:
    user = rng.choice(["kim", "lee.s", "park_j", "hong+ops", "j.doe", "ops-ctr"]) + str(rng.randint(1, 999))
    return f"{user}@{rng.choice(['army.mil', 'mnd.go.kr', 'example.co.kr', 'mail.example.com'])}"


PII_TEMPLATES: dict[str, tuple[list[str], object]] = {
    "kr_rrn": (
        ["주민등록번호 {v} 확인", "본인 {v}입니다.", "RRN: {v}", "신청인({v})은"],
        lambda r: gen_registration(r, False),
    ),
    "kr_frn": (["외국인등록번호 {v}", "등록번호: {v} (외국인)", "{v} 소지자"], lambda r: gen_registration(r, True)),
    "kr_military_id": (
        ["군번: {v}", "군번 {v} 병장", "군 번 {v}", "service number {v}"],
        lambda r: f"{r.choice(['21', '22', '23', '12', '18'])}-{r.randint(10**6, 10**8 - 1):07d}",
    ),
    "kr_phone": (["연락처 {v}", "Tel. {v}", "휴대폰({v})으로 연락", "call {v} now"], gen_phone),
    "email": (["메일 {v} 로 회신", "contact: {v}.", "<{v}>"], gen_email),
    "passport": (
        ["여권번호 {v}", "passport no. {v}", "{v} 여권 소지", "Passport: {v}"],
        lambda r: r.choice(["M", "S", "R"]) + f"{r.randint(10**7, 10**8 - 1)}" if r.random() < 0.7
        else f"M{r.randint(100, 999)}{r.choice('ABCDEFGH')}{r.randint(1000, 9999)}",
    ),
    "us_ssn": (["SSN {v}", "social security number: {v}", "SSN: {v}."], gen_ssn),
    "payment_card": (["카드번호 {v}", "card {v} exp 12/27", "paid with {v}"], gen_card),
    "dod_id": (["DoD ID: {v}", "EDIPI {v}", "DoD ID no. {v}"], lambda r: f"{r.randint(10**9, 10**10 - 1)}"),
}


def pii_negatives(rng: random.Random, count: int) -> list[str]:
    """Look-alikes that must not be flagged: bad checksums, no context, statute/date/ISBN/order numbers."""
    fixed = [
        "법률 제12345호", "제12조의3 제2항", "2024-01-01 시행", "2024. 3. 15.", "ISBN 978-89-1234-567-8",
        "ISBN 9788912345670", "주문번호 2023-1234-5678", "접수번호 20230101-0001", "NSN 5820-01-234-5678",
        "Secretary of Defense", "비밀번호를 변경하십시오", "1234567890 units", "21-12345678 (lot)",
        "version 10.0.19045.1234", "좌표 37.5665, 126.9780", "FM 6-22, 2022-10", "paragraph 3-35.",
        "대통령령 제33002호", "M1A2 tank, M16 rifle", "1-800-555-0199 (US toll free)",
    ]
    makers = [
        lambda: f"번호 {gen_registration(rng, False, valid=False)}",
        lambda: f"번호 {gen_registration(rng, True, valid=False)}",
        lambda: f"card {gen_card(rng, valid=False)}",
        lambda: f"SSN {gen_ssn(rng, valid=False)}",
        lambda: f"batch {rng.randint(10, 99)}-{rng.randint(10**7, 10**8 - 1)}",  # 군번 shape, no context
        lambda: f"tracking {rng.randint(10**9, 10**10 - 1)}",  # DoD ID shape, no context
        lambda: f"serial S{rng.randint(10**7, 10**8 - 1)} unit",  # passport shape (not M), no context
        lambda: f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"제{rng.randint(1, 300)}조의{rng.randint(2, 9)}",
        lambda: f"법률 제{rng.randint(10000, 20000)}호",
        lambda: f"주문 {rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
    ]
    out = list(fixed)
    while len(out) < count:
        out.append(rng.choice(makers)())
    return out


MARKING_POSITIVES: list[tuple[str, Level]] = [
    ("SECRET//NOFORN", Level.SECRET), ("TOP SECRET//SI//REL TO USA, FVEY", Level.TOP_SECRET),
    ("CONFIDENTIAL", Level.CONFIDENTIAL), ("UNCLASSIFIED//FOR OFFICIAL USE ONLY", Level.RESTRICTED),
    ("CUI", Level.RESTRICTED), ("Ⅱ급비밀", Level.SECRET), ("군사Ⅱ급비밀", Level.SECRET), ("대외비", Level.RESTRICTED),
    ("Ⅲ급비밀", Level.CONFIDENTIAL), ("[대외비]", Level.RESTRICTED), ("비밀등급: Ⅱ급비밀", Level.SECRET),
    ("군사Ⅰ급비밀", Level.TOP_SECRET), ("SECRET//REL TO USA, KOR", Level.SECRET),
    ("TOP SECRET//NOFORN", Level.TOP_SECRET),
    ("보안등급: 대외비", Level.RESTRICTED), ("CLASSIFICATION: CONFIDENTIAL", Level.CONFIDENTIAL),
    ("(S//NF) The battalion moves at 0400.", Level.SECRET), ("(TS//SI) Source details.", Level.TOP_SECRET),
    ("(C) Readiness is degraded.", Level.CONFIDENTIAL), ("(CUI) Contract figures.", Level.RESTRICTED),
    ("(U//FOUO) Internal guidance.", Level.RESTRICTED), ("(S) 작전 계획 개요.", Level.SECRET),
]
MARKING_NEGATIVES = [
    "The Secretary of Defense approved the plan.", "비밀번호를 입력하십시오.", "He was a Confidential informant.",
    "(C) 2024 Acme Corp. All rights reserved.", "(B) first\n(C) second\n(D) third",
    "(R) one\n(S) two\n(T) three",
    "군사기밀은 Ⅰ급비밀, Ⅱ급비밀, Ⅲ급비밀로 등급을 구분한다.", "이 문서는 대외비로 분류될 수 있다.",
    "Secret\nTitle case heading.", "the SECRET//NOFORN caveat mentioned mid-sentence", "(a) item\n(b) item",
    "Keep it confidential.", "Top secret recipes for kimchi.", "대외비 문서의 관리 절차는 다음과 같다.",
    "CUI markings are described in 32 CFR 2002.", "(U)",
]


def labelled_set(seed: int, per_type: int) -> tuple[list[tuple[str, Counter]], list[tuple[str, list[Level]]]]:
    rng = random.Random(seed)
    pii: list[tuple[str, Counter]] = []
    for kind, (templates, make) in PII_TEMPLATES.items():
        for _ in range(per_type):
            pii.append((rng.choice(templates).format(v=make(rng)), Counter({kind: 1})))
    for text in pii_negatives(rng, max(300, per_type * 4)):
        pii.append((text, Counter()))
    markings: list[tuple[str, list[Level]]] = []
    fillers = ["본문 내용이다.", "Body text follows.", "작전 지시 제3호", "Para 1."]
    for _ in range(max(300, per_type * 5)):
        mark, level = rng.choice(MARKING_POSITIVES)
        markings.append((f"{rng.choice(fillers)}\n\n{mark}\n{rng.choice(fillers)}", [level]))
    for _ in range(300):
        negative = rng.choice(MARKING_NEGATIVES)
        markings.append((f"{rng.choice(fillers)}\n{negative}\n{rng.choice(fillers)}", []))
    return pii, markings


def score(pii_set, marking_set) -> dict[str, tuple[int, int, int]]:
    totals: dict[str, list[int]] = {kind: [0, 0, 0] for kind in (*PII_TYPES, "markings")}  # tp, fp, fn
    for text, expected in pii_set:
        found = Counter(span.type for span in find_pii(text))
        for kind in PII_TYPES:
            tp = min(found[kind], expected[kind])
            totals[kind][0] += tp
            totals[kind][1] += found[kind] - tp
            totals[kind][2] += expected[kind] - tp
    for text, expected_levels in marking_set:
        found_levels = [marking.level for marking in detect_markings(text)]
        tp = sum((Counter(found_levels) & Counter(expected_levels)).values())
        totals["markings"][0] += tp
        totals["markings"][1] += len(found_levels) - tp
        totals["markings"][2] += len(expected_levels) - tp
    return {kind: tuple(values) for kind, values in totals.items()}


# ---------------------------------------------------------------- throughput

NAIVE = re.compile(
    r"\d{6}-?\d{7}|\d{2}-\d{7,8}|01\d[ \-]?\d{3,4}[ \-]?\d{4}|0\d{1,2}-\d{3,4}-\d{4}"
    r"|[\w.+\-]+@[\w\-]+\.[\w.\-]+"
    r"|[A-Z]\d{8}|\d{3}-\d{2}-\d{4}|(?:\d[ \-]?){13,19}|\d{10}"
    r"|^(?:TOP SECRET|SECRET|CONFIDENTIAL|CUI|[ⅠⅡⅢ]급비밀|대외비).*$|^\((?:TS|S|C|U)[^)]*\)",
    re.MULTILINE,
)


def corpus_texts() -> list[str]:
    texts = [path.read_text(encoding="utf-8") for path in sorted((CORPUS / "ko-defense-law").glob("*.md"))]
    html = CORPUS / "en-army-fm" / "fm6_22.html"
    if html.exists():
        from selectolax.lexbor import LexborHTMLParser

        page = LexborHTMLParser(html.read_text(encoding="utf-8", errors="replace"))
        texts.append(page.body.text(separator="\n"))
    return texts


def throughput(texts: list[str], repeats: int = 3) -> tuple[float, float, int]:
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for text in texts:
                fn(text)
            times.append(time.perf_counter() - start)
        return megabytes / min(times)

    naive_hits = sum(len(NAIVE.findall(text)) for text in texts)
    return best(screen_text), best(lambda text: NAIVE.sub("[REDACTED]", text)), naive_hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--per-type", type=int, default=60, help="positives per PII type (default 60)")
    args = parser.parse_args()

    pii_set, marking_set = labelled_set(args.seed, args.per_type)
    positives = sum(1 for _, c in pii_set if c) + sum(1 for _, levels in marking_set if levels)
    negatives = sum(1 for _, c in pii_set if not c) + sum(1 for _, levels in marking_set if not levels)
    print(f"labelled set: {positives} positives, {negatives} negatives (seed {args.seed})")
    print(f"{'detector':<16}{'tp':>6}{'fp':>6}{'fn':>6}{'recall':>9}{'precision':>11}")
    worst = 1.0
    for kind, (tp, fp, fn) in score(pii_set, marking_set).items():
        recall = tp / (tp + fn) if tp + fn else 1.0
        precision = tp / (tp + fp) if tp + fp else 1.0
        worst = min(worst, recall, precision)
        print(f"{kind:<16}{tp:>6}{fp:>6}{fn:>6}{recall:>9.3f}{precision:>11.3f}")

    if CORPUS.exists():
        texts = corpus_texts()
        screen_mbs, naive_mbs, naive_hits = throughput(texts)
        flagged = sum(sum(screen_text(text).redactions.values()) for text in texts)
        megabytes = sum(len(text.encode()) for text in texts) / 1e6
        print(f"\nthroughput on {CORPUS} ({megabytes:.2f} MB, {len(texts)} texts):")
        print(f"  sovforge.screen.screen_text  {screen_mbs:7.2f} MB/s   {flagged} redactions")
        print(f"  naive combined regex          {naive_mbs:7.2f} MB/s   {naive_hits} hits (1 real e-mail)")
        print(f"  ratio screen/naive            {screen_mbs / naive_mbs:7.2f}x")
    negatives_only = [text for text, expected in pii_set if not expected]
    naive_flagged = sum(1 for text in negatives_only if NAIVE.search(text))
    screen_flagged = sum(1 for text in negatives_only if find_pii(text))
    print(f"\nPII hard negatives flagged: screen {screen_flagged}/{len(negatives_only)}, "
          f"naive regex {naive_flagged}/{len(negatives_only)}")
    print(f"\nworst recall/precision: {worst:.3f} (goal >= 0.98)")
    return 0 if worst >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
