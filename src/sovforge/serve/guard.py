"""Per-key quotas and the content guard of `sovforge serve` (rate limits in-process, or shared in Redis with --redis).

The answer guard screens a streamed answer *incrementally*: re-screening the whole answer on every token is quadratic
in its length, so `AnswerGuard` screens only a bounded window — the undecided tail plus a little left context — and
releases text once no later token can still turn it into a PII value, a stop string or a classification marking.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any

from sovforge.classification import Level

# Characters withheld at the end of a streamed answer: longer than any PII value the detectors match plus their
# after-context (15), and than a portion mark with the 12 characters the marking detector reads after it.
HOLD_BACK = 48
# Text kept left of the decided point: PII context words are looked for 40 characters before a value, and markings
# need the start of their line plus two lines before (enumerations such as (B) (C) are told from portion marks).
_CONTEXT = 200
_STEP = 16  # screen again only after this many new characters (screening cost per answer stays linear)
_MAX_RUN = 200  # never split a run of non-space characters shorter than this (e-mail addresses, URLs)


class QuotaExceeded(Exception):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Quotas:
    """requests/minute, tokens/day (UTC day) and concurrent requests, per key.

    In-process: a sliding minute window. With Redis (`redis://...`): every counter lives in Redis, so several gateway
    processes share one limit — requests/minute as a fixed minute window (one INCR per request), tokens/day and the
    concurrency count as counters (the concurrency count expires after `lease_s`, so a crashed gateway cannot leave
    a key blocked forever). One round trip per acquire and one per release.
    """

    def __init__(self, requests_per_minute: int, tokens_per_day: int, max_concurrent: int, redis_url: str | None = None,
                 *, prefix: str = "sovforge:", lease_s: int = 600):
        self.rpm, self.tpd, self.max_concurrent = requests_per_minute, tokens_per_day, max_concurrent
        self.prefix, self.lease_s = prefix, lease_s
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[tuple[str, str], int] = defaultdict(int)
        self._active: dict[str, int] = defaultdict(int)
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
            self.redis.ping()  # fail at start-up, not on the first request

    @staticmethod
    def _day() -> str:
        return datetime.now(timezone.utc).strftime("%Y%m%d")

    def _names(self, key_id: str, now: float) -> tuple[str, str, str]:
        return (f"{self.prefix}rpm:{key_id}:{int(now // 60)}", f"{self.prefix}tpd:{key_id}:{self._day()}",
                f"{self.prefix}active:{key_id}")

    def acquire(self, key_id: str) -> None:
        """Count one request; raise QuotaExceeded (→ 429 + Retry-After) when a limit is hit."""
        now = time.time()
        if self.redis is not None:
            rpm_name, tpd_name, active_name = self._names(key_id, now)
            pipe = self.redis.pipeline()
            pipe.incr(rpm_name).expire(rpm_name, 120).get(tpd_name).incr(active_name).expire(active_name, self.lease_s)
            hits, _, used, active, _ = pipe.execute()
            problem = None
            if hits > self.rpm:
                problem = QuotaExceeded(f"rate limit: {self.rpm} requests/minute", max(1, 60 - int(now % 60)))
            elif int(used or 0) >= self.tpd:
                problem = QuotaExceeded(f"token quota: {self.tpd} tokens/day used up", 86400 - int(now % 86400))
            elif active > self.max_concurrent:
                problem = QuotaExceeded(f"at most {self.max_concurrent} concurrent requests per key", 1)
            if problem is not None:
                self.redis.decr(active_name)
                raise problem
            return
        with self._lock:
            hits = self._hits[key_id]
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self.rpm:
                raise QuotaExceeded(f"rate limit: {self.rpm} requests/minute", max(1, math.ceil(hits[0] + 60 - now)))
            if self._tokens[(key_id, self._day())] >= self.tpd:
                raise QuotaExceeded(f"token quota: {self.tpd} tokens/day used up", 86400 - int(now % 86400))
            if self._active[key_id] >= self.max_concurrent:
                raise QuotaExceeded(f"at most {self.max_concurrent} concurrent requests per key", 1)
            hits.append(now)
            self._active[key_id] += 1

    def release(self, key_id: str, tokens: int) -> None:
        if self.redis is not None:
            _, tpd_name, active_name = self._names(key_id, time.time())
            pipe = self.redis.pipeline()
            pipe.decr(active_name)
            if tokens:
                pipe.incrby(tpd_name, tokens).expire(tpd_name, 2 * 86400)
            pipe.execute()
            return
        with self._lock:
            self._active[key_id] = max(0, self._active[key_id] - 1)
            self._tokens[(key_id, self._day())] += tokens


def screen(text: str, clearance: Level, *, redact: bool) -> tuple[str, dict[str, Any], bool]:
    """(text, decision, blocked): PII redacted when `redact`; blocked when a marking exceeds `clearance`."""
    from sovforge.screen import screen_text

    result = screen_text(text, redact=redact)
    blocked = result.level > clearance
    decision = {"level": result.level.name, "redactions": dict(result.redactions),
                "markings": len(result.markings), "blocked": blocked}
    return result.text, decision, blocked


class AnswerGuard:
    """Screen a streamed answer piece by piece: `feed(piece)` returns text safe to send now, `finish()` the rest.

    Invariants: `raw[:done]` is decided (screened, sent); at least `hold` characters stay undecided while streaming;
    a PII value is never split by the decided point, nor is a run of non-space characters (e-mail addresses); every
    line's markings are decided before any character of that line is released. Once a marking above the caller's
    clearance is seen, `blocked` is set and nothing more is released. The output equals screening the whole answer at
    once (up to values longer than the hold-back window) at a cost linear in the answer's length.
    """

    def __init__(self, clearance: Level, *, hold: int = 0):
        self.clearance, self.hold = clearance, max(hold, HOLD_BACK)
        self.buf, self.base, self.done, self.lines_from = "", 0, 0, 0  # buf = raw[base:]
        self.redactions: dict[str, int] = {}
        self.markings, self.level, self.blocked = 0, Level.UNCLASSIFIED, False

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    def decision(self) -> dict[str, Any]:
        return {"level": self.level.name, "redactions": dict(self.redactions), "markings": self.markings,
                "blocked": self.blocked}

    def feed(self, piece: str) -> str:
        if self.blocked:
            return ""
        self.buf += piece
        if self.end - self.done < self.hold + _STEP:
            return ""
        return self._decide(self._cut(self.end - self.hold), final=False)

    def retract(self, count: int) -> None:
        """Drop the last `count` undecided characters (a stop string that began in an earlier piece)."""
        if count > self.end - self.done:
            raise ValueError("cannot retract text that was already released")
        if count:
            self.buf = self.buf[:-count]

    def finish(self) -> str:
        return "" if self.blocked else self._decide(self.end, final=True)

    def _cut(self, limit: int) -> int:
        """The decided point to aim for: `limit`, moved left so that it does not split a run of non-space chars."""
        at = limit - self.base
        if at < len(self.buf) and self.buf[at].isspace():
            return limit
        start = max(self.done, limit - _MAX_RUN) - self.base
        for index in range(at - 1, start - 1, -1):
            if self.buf[index].isspace():
                return self.base + index + 1
        return limit if limit - self.done >= _MAX_RUN else self.done

    def _decide(self, cut: int, *, final: bool) -> str:
        from sovforge.screen import find_pii, placeholder

        spans = [(s.start + self.base, s.end + self.base, s.type) for s in find_pii(self.buf)]
        if not final:
            for start, end, _ in spans:
                if start < cut < end:
                    cut = start  # a value is released whole or not at all
        if cut <= self.done:
            return ""
        self._check_markings(cut)
        if self.blocked:
            return ""
        pieces, pos = [], self.done
        for start, end, kind in spans:
            if end <= self.done or start >= cut:
                continue
            pieces.append(self.buf[pos - self.base: max(start, pos) - self.base])
            pieces.append(placeholder(kind))
            self.redactions[kind] = self.redactions.get(kind, 0) + 1
            pos = end
        pieces.append(self.buf[pos - self.base: cut - self.base])
        self.done = cut
        keep_from = max(self.base, cut - _CONTEXT)
        self.buf, self.base = self.buf[keep_from - self.base:], keep_from
        return "".join(pieces)

    def _check_markings(self, cut: int) -> None:
        """Decide the markings of every line that starts in [lines_from, cut)."""
        from sovforge.screen import detect_markings

        # the segment starts two lines before the first undecided line (context), or where the window begins
        seg = self.lines_from - self.base
        for _ in range(3):
            newline = self.buf.rfind("\n", 0, max(seg - 1, 0))
            seg = newline + 1 if newline >= 0 else 0
            if seg == 0:
                break
        segment = self.buf[seg:]
        found = detect_markings(segment)
        starts = [self.base + seg]  # absolute start of each line of the segment (only needed when a marking is found)
        at = segment.find("\n") if found else -1
        while at >= 0:
            starts.append(self.base + seg + at + 1)
            at = segment.find("\n", at + 1)
        first_is_line = self.base + seg == 0 or (seg > 0 and self.buf[seg - 1] == "\n")
        for marking in found:
            line_start = starts[marking.line - 1]
            if (marking.line > 1 or first_is_line) and self.lines_from <= line_start < cut:
                self.markings += 1
                self.level = max(self.level, marking.level)
        self.lines_from = cut
        if self.level > self.clearance:
            self.blocked = True
