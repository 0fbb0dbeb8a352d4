"""Keys and the tamper-evident audit log in SQL (SQLite default, PostgreSQL by URL): used by `sovforge serve|keys|audit`.

Key hashing: keys are `sf-` + 32 random bytes (256 bits), so a fast keyed hash is enough: HMAC-SHA256 with a server
pepper (stored outside the database). Argon2 exists to slow down guessing *low-entropy passwords*; a 256-bit random key
cannot be brute-forced, and a slow hash would only add latency to every request. Compare is constant time
(`hmac.compare_digest`) after an index lookup by the key's non-secret prefix id.

Audit log: every record carries `prev_hash` and `hash = sha256(prev_hash || canonical_json(fields))` (a hash chain), and
every `checkpoint_every` records a checkpoint stores {count, last_hash, merkle_root} signed with the installation's
Ed25519 key. `verify()` names the first edited/deleted/reordered record, and detects truncation because a signed
checkpoint's count/root no longer matches the rows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (JSON, Boolean, Column, Integer, MetaData, String, Table, Text, create_engine, delete, func,
                        insert, select, update)

from sovforge.artifacts import canonical_json, sign_bytes, sovforge_home, verify_signature
from sovforge.classification import Level, parse_level

ROLES = ("user", "operator", "admin")
GENESIS = "0" * 64
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
        self.checkpoint_every = checkpoint_every
        self._lock = threading.Lock()  # one writer at a time keeps the chain linear inside this process
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
        self.metadata = md
        md.create_all(self.engine)

    # ------------------------------------------------------------------------------------------ keys
    def _pepper(self) -> bytes:
        path = self.state_dir / "key_pepper"
        if not path.exists():
            path.write_bytes(secrets.token_bytes(32))
            path.chmod(0o600)
        return path.read_bytes()

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
            return conn.execute(update(self.keys).where(self.keys.c.key_id == key_id).values(revoked=True)).rowcount > 0

    def authenticate(self, key: str) -> dict[str, Any] | None:
        """The key's row (without digest) when `key` is valid and not revoked, else None."""
        parts = key.split("-", 2)
        if len(parts) != 3 or parts[0] != "sf":
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(self.keys).where(self.keys.c.key_id == parts[1])).mappings().first()
        if row is None or not hmac.compare_digest(row["digest"], self._digest(key)) or row["revoked"]:
            return None
        return {k: v for k, v in row.items() if k != "digest"}

    # ----------------------------------------------------------------------------------------- audit
    def append(self, **fields: Any) -> int:
        with self._lock, self.engine.begin() as conn:
            last = conn.execute(select(self.audit.c.seq, self.audit.c.hash).order_by(self.audit.c.seq.desc())
                                .limit(1)).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            record = {name: fields.get(name) for name in AUDIT_FIELDS}
            record.update(seq=seq, ts=fields.get("ts") or now())
            conn.execute(insert(self.audit).values(**record, prev_hash=prev, hash=record_hash(prev, record)))
        if seq % self.checkpoint_every == 0:
            self.checkpoint()
        return seq

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

    def verify(self) -> list[str]:
        """Problems found (empty list = intact). Each names the record (seq) or checkpoint concerned."""
        problems: list[str] = []
        prev, expected_seq, hashes = GENESIS, 1, []
        for row in self.records():
            fields = {name: row[name] for name in AUDIT_FIELDS}
            if row["seq"] != expected_seq:
                problems.append(f"record #{expected_seq} missing or reordered (found #{row['seq']} in its place)")
            if row["prev_hash"] != prev:
                problems.append(f"record #{row['seq']}: chain broken (prev_hash does not match record before it)")
            if record_hash(row["prev_hash"], fields) != row["hash"]:
                problems.append(f"record #{row['seq']}: content edited (hash mismatch)")
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
        """JSONL lines for auditors: every record, then every checkpoint (kind marks which)."""
        for row in self.records():
            yield json.dumps({"kind": "record", **row}, ensure_ascii=False, sort_keys=True)
        with self.engine.connect() as conn:
            for cp in conn.execute(select(self.checkpoints).order_by(self.checkpoints.c.id)).mappings():
                yield json.dumps({"kind": "checkpoint", **dict(cp)}, ensure_ascii=False, sort_keys=True)

    def purge_older_than(self, days: int) -> int:
        """Retention: delete records older than `days` that a checkpoint already covers, oldest first.

        The chain then starts at the first kept record; verify() reports the purge as a gap, so purges are meant to
        be followed by an export of the purged range for the archive.
        """
        cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
        with self._lock, self.engine.begin() as conn:
            return conn.execute(delete(self.audit).where(self.audit.c.ts < cutoff)).rowcount

    def drop_all(self) -> None:
        self.metadata.drop_all(self.engine)
        self.engine.dispose()
