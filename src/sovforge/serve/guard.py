"""Per-key quotas and the content guard used by `sovforge serve` (rate limits in-process, or in Redis with --redis)."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any

from sovforge.classification import Level


class QuotaExceeded(Exception):
    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Quotas:
    """requests/minute (sliding window), tokens/day (UTC day) and concurrent requests, per key."""

    def __init__(self, requests_per_minute: int, tokens_per_day: int, max_concurrent: int, redis_url: str | None = None):
        self.rpm, self.tpd, self.max_concurrent = requests_per_minute, tokens_per_day, max_concurrent
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._tokens: dict[tuple[str, str], int] = defaultdict(int)
        self._active: dict[str, int] = defaultdict(int)
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)
            self.redis.ping()  # fail at start-up, not on the first request

    @staticmethod
    def _day() -> str:
        return datetime.now(timezone.utc).strftime("%Y%m%d")

    def acquire(self, key_id: str) -> None:
        """Count one request; raise QuotaExceeded (→ 429 + Retry-After) when a limit is hit."""
        now = time.time()
        if self.redis is not None:
            minute = int(now // 60)
            name = f"sovforge:rpm:{key_id}:{minute}"
            hits = self.redis.incr(name)
            self.redis.expire(name, 120)
            if hits > self.rpm:
                raise QuotaExceeded(f"rate limit: {self.rpm} requests/minute", max(1, 60 - int(now % 60)))
            used = int(self.redis.get(f"sovforge:tpd:{key_id}:{self._day()}") or 0)
        else:
            with self._lock:
                hits = self._hits[key_id]
                while hits and hits[0] <= now - 60:
                    hits.popleft()
                if len(hits) >= self.rpm:
                    raise QuotaExceeded(f"rate limit: {self.rpm} requests/minute", max(1, math.ceil(hits[0] + 60 - now)))
                hits.append(now)
                used = self._tokens[(key_id, self._day())]
        if used >= self.tpd:
            raise QuotaExceeded(f"token quota: {self.tpd} tokens/day used up", 86400 - int(now % 86400))
        with self._lock:
            if self._active[key_id] >= self.max_concurrent:
                raise QuotaExceeded(f"at most {self.max_concurrent} concurrent requests per key", 1)
            self._active[key_id] += 1

    def release(self, key_id: str, tokens: int) -> None:
        with self._lock:
            self._active[key_id] = max(0, self._active[key_id] - 1)
            if self.redis is None:
                self._tokens[(key_id, self._day())] += tokens
        if self.redis is not None and tokens:
            name = f"sovforge:tpd:{key_id}:{self._day()}"
            self.redis.incrby(name, tokens)
            self.redis.expire(name, 2 * 86400)


def screen(text: str, clearance: Level, *, redact: bool) -> tuple[str, dict[str, Any], bool]:
    """(text, decision, blocked): PII redacted when `redact`; blocked when a marking exceeds `clearance`."""
    from sovforge.screen import screen_text

    result = screen_text(text, redact=redact)
    blocked = result.level > clearance
    decision = {"level": result.level.name, "redactions": dict(result.redactions),
                "markings": len(result.markings), "blocked": blocked}
    return result.text, decision, blocked
