"""Keys and the tamper-evident audit log in SQL (SQLite default, PostgreSQL by URL): used by `sovforge serve|keys|audit`.

Key hashing: keys are `sf-` + 32 random bytes (256 bits), so a fast keyed hash is enough: HMAC-SHA256 with a server
pepper (stored outside the database). Argon2 exists to slow down guessing *low-entropy passwords*; a 256-bit random key
cannot be brute-forced, and a slow hash would only add latency to every request. Compare is constant time
(`hmac.compare_digest`) after an index lookup by the key's non-secret prefix id. A successful check is remembered for
`AUTH_CACHE_S` seconds (keyed by the HMAC, never the key): a key revoked through this gateway's admin route stops
working at once, one revoked from another process (`sovforge keys revoke`) within that time.

Audit log: every record carries `prev_hash` and `hash = sha256(prev_hash || canonical_json(fields))` (a hash chain), and
every `checkpoint_every` records a checkpoint stores {count, last_hash, merkle_root} signed with the installation's
Ed25519 key. `verify()` names the first edited/deleted/reordered record, and detects truncation because a signed
checkpoint's count/root no longer matches the rows.

Retention (`purge_older_than`, default 730 days): the *content* of old records that a signed checkpoint already
covers is removed, but each record keeps its seq, prev_hash and hash, and a signed purge anchor records how far the
purge went. The chain and every Merkle checkpoint still verify; a record emptied beyond the anchor is reported.

Writes: the gateway hands records to `AuditWriter`, one thread that commits whatever has queued up in one transaction
(group commit), so the event loop never waits on the database and concurrent requests share a commit. Several
gateways may share one database: `seq` is the primary key, so two writers racing for the same number cannot both
succeed — the loser re-reads the chain head and retries. SQLite runs in WAL mode with synchronous=NORMAL: a commit
survives a crash of the gateway process (the load test kills nothing and loses nothing); after an OS crash or power
loss the newest commits may be missing, which `verify()` reports against the last signed checkpoint. PostgreSQL
(`--db postgresql+psycopg://...`) fsyncs every commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (JSON, Boolean, Column, Integer, MetaData, String, Table, Text, create_engine, event,
                        func, insert, select, update)
from sqlalchemy.exc import IntegrityError, OperationalError

from sovforge.artifacts import canonical_json, sign_bytes, sovforge_home, verify_signature
from sovforge.classification import Level, parse_level

log = logging.getLogger("sovforge.serve.audit")
ROLES = ("user", "operator", "admin")
GENESIS = "0" * 64
AUTH_CACHE_S = 2.0
AUDIT_FIELDS = ("seq", "ts", "who", "key_id", "source_ip", "route", "model", "status", "prompt_tokens",
                "completion_tokens", "guard", "prompt_sha256", "answer_sha256", "prompt_text", "answer_text")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def sha256_text(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def merkle_root(leaves: list[str]) -> str:
    """Root of a binary SHA-256 Merkle tree over hex leaf hashes (last node duplicated on odd levels)."""
    if not leaves:
        return GENESIS
    level = [bytes.fromhex(h) for h in leaves]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0].hex()


def record_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_json(fields)).hexdigest()


class Store:
    """One database: `keys`, `audit`, `checkpoints` tables under `prefix`."""

    def __init__(self, url: str | None = None, *, prefix: str = "sf_", state_dir: Path | None = None,
                 checkpoint_every: int = 100):
        self.state_dir = Path(state_dir) if state_dir else sovforge_home() / "serve"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.url = url or f"sqlite:///{self.state_dir / 'serve.db'}"
        self.engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()  # one writer at a time keeps the chain linear inside this process
        self._pepper_bytes: bytes | None = None
        self._auth_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # HMAC digest → (valid until, key row)
        self._head: tuple[int, str] | None = None  # (seq, hash) of the newest record this Store wrote or read
        md = MetaData()
        self.keys = Table(
            f"{prefix}keys", md,
            Column("key_id", String(32), primary_key=True), Column("name", String(200), nullable=False),
            Column("digest", String(64), nullable=False), Column("role", String(16), nullable=False),
            Column("clearance", String(32), nullable=False), Column("created", String(40), nullable=False),
            Column("revoked", Boolean, nullable=False, default=False),
        )
        self.audit = Table(
            f"{prefix}audit", md,
            Column("seq", Integer, primary_key=True, autoincrement=False), Column("ts", String(40)),
            Column("who", String(200)), Column("key_id", String(32)), Column("source_ip", String(64)),
            Column("route", String(200)), Column("model", String(200)), Column("status", Integer),
            Column("prompt_tokens", Integer), Column("completion_tokens", Integer), Column("guard", JSON),
            Column("prompt_sha256", String(64)), Column("answer_sha256", String(64)),
            Column("prompt_text", Text), Column("answer_text", Text),
            Column("prev_hash", String(64), nullable=False), Column("hash", String(64), nullable=False),
        )
        self.checkpoints = Table(
            f"{prefix}checkpoints", md,
            Column("id", Integer, primary_key=True, autoincrement=True), Column("ts", String(40)),
            Column("count", Integer, nullable=False), Column("last_hash", String(64), nullable=False),
            Column("merkle_root", String(64), nullable=False), Column("signature", JSON, nullable=False),
        )
        self.purges = Table(
            f"{prefix}purges", md,
            Column("id", Integer, primary_key=True, autoincrement=True), Column("ts", String(40)),
            Column("upto", Integer, nullable=False), Column("last_hash", String(64), nullable=False),
            Column("signature", JSON, nullable=False),
        )
        self.metadata = md
        md.create_all(self.engine)

    # ------------------------------------------------------------------------------------------ keys
    def _pepper(self) -> bytes:
        if self._pepper_bytes is None:  # read once: it is on the path of every authenticated request
            path = self.state_dir / "key_pepper"
            if not path.exists():
                path.touch(mode=0o600)
                path.write_bytes(secrets.token_bytes(32))
            self._pepper_bytes = path.read_bytes()
        return self._pepper_bytes

    def _digest(self, secret: str) -> str:
        return hmac.new(self._pepper(), secret.encode("utf-8"), hashlib.sha256).hexdigest()

    def create_key(self, name: str, role: str = "user", clearance: str | Level = Level.UNCLASSIFIED) -> tuple[str, str]:
        """Return (key_id, full key). The full key is shown once and never stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        level = clearance if isinstance(clearance, Level) else parse_level(clearance)
        key_id = secrets.token_hex(6)
        key = f"sf-{key_id}-{secrets.token_urlsafe(32)}"
        with self.engine.begin() as conn:
            conn.execute(insert(self.keys).values(key_id=key_id, name=name, digest=self._digest(key), role=role,
                                                  clearance=level.name, created=now(), revoked=False))
        return key_id, key

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(self.keys).order_by(self.keys.c.created)).mappings().all()
        return [{k: v for k, v in row.items() if k != "digest"} for row in rows]

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            found = conn.execute(update(self.keys).where(self.keys.c.key_id == key_id).values(revoked=True)).rowcount
        self._auth_cache.clear()
        return found > 0

    def authenticate(self, key: str) -> dict[str, Any] | None:
        """The key's row (without digest) when `key` is valid and not revoked, else None."""
        parts = key.split("-", 2)
        if len(parts) != 3 or parts[0] != "sf" or len(key) > 200:
            return None
        digest = self._digest(key)
        cached = self._auth_cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return dict(cached[1])
        with self.engine.connect() as conn:
            row = conn.execute(select(self.keys).where(self.keys.c.key_id == parts[1])).mappings().first()
        if row is None or not hmac.compare_digest(row["digest"], digest) or row["revoked"]:
            return None
        found = {k: v for k, v in row.items() if k != "digest"}
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[digest] = (time.monotonic() + AUTH_CACHE_S, found)
        return dict(found)

    # ----------------------------------------------------------------------------------------- audit
    def append(self, **fields: Any) -> int:
        return self.append_many([fields])[0]

    def append_many(self, records: list[dict[str, Any]], attempts: int = 8) -> list[int]:
        """Chain `records` onto the log in one transaction; their seqs. Retries when another writer won the race."""
        for attempt in range(attempts):
            try:
                with self._lock, self.engine.begin() as conn:
                    if self._head is None:  # otherwise trust our own last write; a stale head loses the PK race
                        last = conn.execute(select(self.audit.c.seq, self.audit.c.hash)
                                            .order_by(self.audit.c.seq.desc()).limit(1)).first()
                        self._head = (last[0], last[1]) if last else (0, GENESIS)
                    seq, prev = self._head
                    rows, seqs = [], []
                    for fields in records:
                        seq += 1
                        record = {name: fields.get(name) for name in AUDIT_FIELDS}
                        record.update(seq=seq, ts=fields.get("ts") or now())
                        digest = record_hash(prev, record)
                        rows.append({**record, "prev_hash": prev, "hash": digest})
                        seqs.append(seq)
                        prev = digest
                    conn.execute(insert(self.audit), rows)
                self._head = (seq, prev)
                break
            except (IntegrityError, OperationalError):
                self._head = None
                if attempt == attempts - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
        if any(seq % self.checkpoint_every == 0 for seq in seqs):
            self.checkpoint()
        return seqs

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign {count, last_hash, merkle_root} of all records so far; None when nothing new since the last one."""
        with self._lock, self.engine.begin() as conn:
            hashes = [h for (h,) in conn.execute(select(self.audit.c.hash).order_by(self.audit.c.seq))]
            last = conn.execute(select(self.checkpoints.c.count).order_by(self.checkpoints.c.id.desc()).limit(1)).first()
            if not hashes or (last and last[0] == len(hashes)):
                return None
            body = {"count": len(hashes), "last_hash": hashes[-1], "merkle_root": merkle_root(hashes), "ts": now()}
            conn.execute(insert(self.checkpoints).values(**body, signature=sign_bytes(canonical_json(body))))
        return body

    def records(self) -> Iterator[dict[str, Any]]:
        with self.engine.connect() as conn:
            for row in conn.execute(select(self.audit).order_by(self.audit.c.seq)).mappings():
                yield dict(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(self.audit)).scalar_one()

    def _purged_upto(self, problems: list[str]) -> tuple[int, str | None]:
        """(seq up to which content was purged under a valid signed anchor, that record's hash)."""
        with self.engine.connect() as conn:
            anchors = conn.execute(select(self.purges).order_by(self.purges.c.id)).mappings().all()
        upto, last_hash = 0, None
        for anchor in anchors:
            body = {"upto": anchor["upto"], "last_hash": anchor["last_hash"], "ts": anchor["ts"]}
            try:
                verify_signature(canonical_json(body), anchor["signature"])
            except Exception as exc:  # LineageError
                problems.append(f"purge anchor {anchor['id']}: bad signature ({exc})")
                continue
            if anchor["upto"] > upto:
                upto, last_hash = anchor["upto"], anchor["last_hash"]
        return upto, last_hash

    def verify(self) -> list[str]:
        """Problems found (empty list = intact). Each names the record (seq) or checkpoint concerned."""
        problems: list[str] = []
        purged_upto, purged_hash = self._purged_upto(problems)
        prev, expected_seq, hashes = GENESIS, 1, []
        for row in self.records():
            fields = {name: row[name] for name in AUDIT_FIELDS}
            if row["seq"] != expected_seq:
                problems.append(f"record #{expected_seq} missing or reordered (found #{row['seq']} in its place)")
            if row["prev_hash"] != prev:
                problems.append(f"record #{row['seq']}: chain broken (prev_hash does not match record before it)")
            emptied = all(fields[name] is None for name in AUDIT_FIELDS if name != "seq")
            if emptied and row["seq"] <= purged_upto:
                pass  # content removed by a signed retention purge; seq, links and hash remain checked
            elif emptied:
                problems.append(f"record #{row['seq']}: content removed without a signed purge")
            elif record_hash(row["prev_hash"], fields) != row["hash"]:
                problems.append(f"record #{row['seq']}: content edited (hash mismatch)")
            if row["seq"] == purged_upto and row["hash"] != purged_hash:
                problems.append(f"record #{row['seq']}: does not match the signed purge anchor")
            prev, expected_seq = row["hash"], row["seq"] + 1
            hashes.append(row["hash"])
        with self.engine.connect() as conn:
            cps = conn.execute(select(self.checkpoints).order_by(self.checkpoints.c.id)).mappings().all()
        for cp in cps:
            body = {"count": cp["count"], "last_hash": cp["last_hash"], "merkle_root": cp["merkle_root"], "ts": cp["ts"]}
            try:
                verify_signature(canonical_json(body), cp["signature"])
            except Exception as exc:  # LineageError: signature or checkpoint edited
                problems.append(f"checkpoint {cp['id']}: bad signature ({exc})")
                continue
            if cp["count"] > len(hashes):
                problems.append(f"truncated: signed checkpoint {cp['id']} covers {cp['count']} records but only "
                                f"{len(hashes)} remain (records #{len(hashes) + 1}..#{cp['count']} deleted)")
            elif merkle_root(hashes[:cp["count"]]) != cp["merkle_root"]:
                problems.append(f"checkpoint {cp['id']}: Merkle root of records #1..#{cp['count']} does not match")
        return problems

    def export(self) -> Iterator[str]:
        """JSONL lines for auditors: every record, then every checkpoint and purge anchor (kind marks which)."""
        for row in self.records():
            yield json.dumps({"kind": "record", **row}, ensure_ascii=False, sort_keys=True)
        with self.engine.connect() as conn:
            for cp in conn.execute(select(self.checkpoints).order_by(self.checkpoints.c.id)).mappings():
                yield json.dumps({"kind": "checkpoint", **dict(cp)}, ensure_ascii=False, sort_keys=True)
            for anchor in conn.execute(select(self.purges).order_by(self.purges.c.id)).mappings():
                yield json.dumps({"kind": "purge", **dict(anchor)}, ensure_ascii=False, sort_keys=True)

    def purge_older_than(self, days: int) -> int:
        """Retention: remove the content of records older than `days` (oldest first, only as far as a signed
        checkpoint covers) and sign a purge anchor; the number of records purged. Export them first to archive."""
        cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="microseconds")
        with self._lock, self.engine.begin() as conn:
            covered = conn.execute(select(func.max(self.checkpoints.c.count))).scalar() or 0
            young = conn.execute(select(func.min(self.audit.c.seq)).where(self.audit.c.ts >= cutoff)).scalar()
            newest = conn.execute(select(func.max(self.audit.c.seq))).scalar() or 0
            done = conn.execute(select(func.max(self.purges.c.upto))).scalar() or 0
            upto = min(covered, (young - 1) if young is not None else newest)
            if upto <= done:
                return 0
            emptied = {name: None for name in AUDIT_FIELDS if name != "seq"}
            count = conn.execute(update(self.audit).where(self.audit.c.seq > done, self.audit.c.seq <= upto)
                                 .values(**emptied)).rowcount
            last_hash = conn.execute(select(self.audit.c.hash).where(self.audit.c.seq == upto)).scalar_one()
            body = {"upto": upto, "last_hash": last_hash, "ts": now()}
            conn.execute(insert(self.purges).values(**body, signature=sign_bytes(canonical_json(body))))
        return count

    def drop_all(self) -> None:
        self.metadata.drop_all(self.engine)
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; commits append to the WAL
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash; see the module docstring
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class AuditWriter:
    """One thread that commits queued audit records in batches; `await writer.write(fields)` returns the seq."""

    def __init__(self, store: Store, *, max_batch: int = 256):
        self.store, self.max_batch = store, max_batch
        self.queue: "queue.Queue[tuple[dict[str, Any], Future] | None]" = queue.Queue()
        self.committed = 0
        self.thread = threading.Thread(target=self._run, name="sovforge-audit", daemon=True)
        self.thread.start()

    def submit(self, fields: dict[str, Any]) -> Future:
        future: Future = Future()
        if not self.thread.is_alive():
            future.set_exception(RuntimeError("audit writer is closed"))
        else:
            self.queue.put((fields, future))
        return future

    async def write(self, fields: dict[str, Any]) -> int:
        return await asyncio.wrap_future(self.submit(fields))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                seqs = self.store.append_many([fields for fields, _ in batch])
            except Exception as exc:  # noqa: BLE001 — every waiting request learns its record was not written
                log.exception("audit write failed", extra={"fields": {"records": len(batch)}})
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.committed += len(batch)
            for (_, future), seq in zip(batch, seqs):
                future.set_result(seq)

    def close(self, timeout: float = 60) -> None:
        """Write everything queued, then stop."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join(timeout=timeout)
