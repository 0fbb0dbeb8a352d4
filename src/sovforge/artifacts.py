"""Artifact directories, their signed manifests, and lineage verification.

Every stage writes one directory with a `manifest.json` (DESIGN.md §3):

    {"kind", "id", "created", "inputs": [ids], "code": {"version", "git"}, "config", "classification",
     "stats", "files": {relpath: sha256}, "input_refs": [{"id", "path", "kind", "classification"}],
     "signature": {"alg": "ed25519", "key_id", "public_key", "value"}}

`id` is the sha256 over the sorted (path, size, file sha256) triples of every file except the manifest, so it
names the content, not the place. `files` lets `verify` name the file that changed. `input_refs` add where the
inputs lived when the artifact was made, so `verify` can walk the lineage; `inputs` stays the plain id list.

Writers never leave a half artifact: `build_artifact` stages into a hidden sibling directory and renames it into
place only once the manifest is signed; an exception removes the staging directory.

    with build_artifact(out, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        ...
        staging.finish(inputs=[base], config=cfg, classification=level, stats=stats)
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sovforge import __version__
from sovforge.classification import Level, max_level, parse_level

MANIFEST = "manifest.json"
KINDS = ("corpus", "model", "adapter", "compressed", "report", "index", "job")
_CHUNK = 1 << 20  # 1 MiB reads: multi-GB safetensors hash in bounded memory


class LineageError(Exception):
    """An artifact failed verification; the message names what and where."""


# ----------------------------------------------------------------------------------------------- keys


def sovforge_home() -> Path:
    """`$SOVFORGE_HOME`, default `~/.sovforge`: signing keys, trusted keys, the artifact registry."""
    home = Path(os.environ.get("SOVFORGE_HOME") or Path.home() / ".sovforge").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_key() -> Ed25519PrivateKey:
    """This installation's Ed25519 key, created on first use with file mode 0600."""
    keys = sovforge_home() / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    path = keys / "signing.ed25519.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # O_EXCL: two processes racing to create the key must not overwrite each other's.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            public = key.public_key()
            (keys / "trusted").mkdir(exist_ok=True)
            (keys / "trusted" / f"{_key_id(public)}.pub").write_bytes(
                public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise LineageError(f"signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LineageError(f"{path} is not an Ed25519 private key")
    return key


def trusted_keys() -> dict[str, Ed25519PublicKey]:
    """Public keys whose signatures `verify` accepts: ours plus any imported with `sovforge lineage trust`."""
    signing_key()  # make sure our own key exists and is trusted
    trusted: dict[str, Ed25519PublicKey] = {}
    for pub in sorted((sovforge_home() / "keys" / "trusted").glob("*.pub")):
        key = serialization.load_pem_public_key(pub.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            trusted[_key_id(key)] = key
    return trusted


def trust_public_key(pem_path: Path) -> str:
    """Import another installation's public key (PEM) so its artifacts verify here; returns its key id."""
    key = serialization.load_pem_public_key(Path(pem_path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise LineageError(f"{pem_path} is not an Ed25519 public key")
    key_id = _key_id(key)
    (sovforge_home() / "keys" / "trusted").mkdir(parents=True, exist_ok=True)
    (sovforge_home() / "keys" / "trusted" / f"{key_id}.pub").write_bytes(Path(pem_path).read_bytes())
    return key_id


def sign_bytes(payload: bytes) -> dict[str, str]:
    """Sign `payload` with this installation's key (also used by the audit log's checkpoints)."""
    key = signing_key()
    public = key.public_key()
    return {
        "alg": "ed25519",
        "key_id": _key_id(public),
        "public_key": base64.b64encode(
            public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ).decode(),
        "value": base64.b64encode(key.sign(payload)).decode(),
    }


def verify_signature(payload: bytes, signature: Mapping[str, str]) -> None:
    """Raise LineageError unless `signature` is a valid Ed25519 signature of `payload` by a trusted key."""
    if signature.get("alg") != "ed25519":
        raise LineageError(f"unsupported signature algorithm {signature.get('alg')!r}")
    key = trusted_keys().get(signature.get("key_id", ""))
    if key is None:
        raise LineageError(
            f"signed by unknown key {signature.get('key_id')!r}; import its public key with "
            "`sovforge lineage trust KEY.pub` if you trust its maker"
        )
    try:
        key.verify(base64.b64decode(signature.get("value", "")), payload)
    except (InvalidSignature, ValueError):
        raise LineageError("signature does not match the manifest (manifest edited or signature swapped)") from None


# -------------------------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _artifact_files(root: Path) -> list[Path]:
    """Every regular file under `root` except the manifest, in a stable order (POSIX relative paths)."""
    files = []
    for path in root.rglob("*"):
        if path.is_symlink():
            raise LineageError(f"{path}: symbolic links are not allowed inside an artifact")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def hash_files(root: Path, progress: bool = False) -> dict[str, str]:
    """{relative path: sha256} for every file of the artifact at `root`."""
    files = _artifact_files(root)
    iterator: Iterable[Path] = files
    if progress and files:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"hashing {root.name}", unit="file", leave=False)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in iterator}


def content_id(files: Mapping[str, str], root: Path | None = None) -> str:
    """The artifact id: sha256 over sorted "path\\0size\\0sha256\\n" lines."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        size = (root / rel).stat().st_size if root is not None else 0
        digest.update(f"{rel}\0{size}\0{files[rel]}\n".encode())
    return digest.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# ------------------------------------------------------------------------------------------ manifests


@dataclass
class Artifact:
    """A verified-on-demand view of an artifact directory (or of a plain local HF checkpoint)."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def classification(self) -> Level:
        return parse_level(self.manifest["classification"])

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def ref(self) -> dict[str, str]:
        ref = {"id": self.id, "path": str(self.path.resolve()), "kind": self.kind,
               "classification": str(self.classification)}
        if self.manifest.get("external"):
            ref["external"] = True  # a plain HF checkpoint: nothing further to walk
        return ref


def load_artifact(path: str | Path, *, kind: str | None = None) -> Artifact:
    """Read an artifact directory's manifest (no re-hash; use `verify` for that)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise LineageError(f"{root}: no such artifact directory")
    if not manifest_path.exists():
        raise LineageError(f"{root}: not an artifact (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LineageError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if kind is not None and manifest.get("kind") != kind:
        raise LineageError(f"{root}: expected a {kind} artifact, found {manifest.get('kind')!r}")
    return Artifact(root, manifest)


def external_model(path: str | Path, classification: str | Level = Level.UNCLASSIFIED) -> Artifact:
    """Wrap a plain local HF checkpoint (no manifest) so it can be an input: its id is its content hash.

    Its classification is what the user declares (default UNCLASSIFIED: a public base model).
    """
    root = Path(path)
    files = hash_files(root, progress=True)
    manifest = {"kind": "model", "id": content_id(files, root), "classification": str(parse_level(classification)),
                "inputs": [], "external": True, "config": {}, "stats": {}}
    return Artifact(root, manifest)


def open_input(path: str | Path, *, kind: str | None = None,
               classification: str | Level = Level.UNCLASSIFIED) -> Artifact:
    """An artifact directory, or — for models only — any local HF checkpoint directory."""
    root = Path(path)
    if (root / MANIFEST).exists():
        return load_artifact(root, kind=kind if kind != "model" else None)
    if kind in (None, "model") and (root / "config.json").exists():
        return external_model(root, classification)
    raise LineageError(f"{root}: neither an artifact (no {MANIFEST}) nor a local HF checkpoint (no config.json)")


def _code_info() -> dict[str, str | None]:
    git = None
    with contextlib.suppress(Exception):
        repo = Path(__file__).resolve().parents[2]
        if (repo / ".git").exists():
            git = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                 text=True, timeout=5).stdout.strip() or None
    return {"version": __version__, "git": git}


def _unsigned(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != "signature"}


def write_manifest(root: Path, *, kind: str, inputs: Iterable[Artifact] = (), config: Mapping[str, Any] | None = None,
                   classification: str | Level | None = None, stats: Mapping[str, Any] | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hash `root`, write its signed manifest and return it.

    The classification is the max of the inputs' and the one given: a stage may raise it (a corpus holding
    RESTRICTED documents) but never lower it below what went in.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; one of {KINDS}")
    inputs = list(inputs)
    level = max_level([a.classification for a in inputs] + ([classification] if classification is not None else []))
    files = hash_files(root, progress=True)
    manifest: dict[str, Any] = {
        "kind": kind,
        "id": content_id(files, root),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [a.id for a in inputs],
        "input_refs": [a.ref() for a in inputs],
        "code": _code_info(),
        "config": dict(config or {}),
        "classification": str(level),
        "stats": dict(stats or {}),
        "files": files,
        **dict(extra or {}),
    }
    manifest["signature"] = sign_bytes(canonical_json(_unsigned(manifest)))
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n",
                                 encoding="utf-8")
    _register(manifest["id"], root)
    return manifest


def _register(artifact_id: str, root: Path) -> None:
    """Remember where an id lives so `verify` can walk inputs whose recorded path moved."""
    with open(sovforge_home() / "registry.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": artifact_id, "path": str(root.resolve())}) + "\n")


def _lookup(artifact_id: str) -> Path | None:
    registry = sovforge_home() / "registry.jsonl"
    if not registry.exists():
        return None
    found = None
    for line in registry.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            row = json.loads(line)
            if row.get("id") == artifact_id and (Path(row["path"]) / MANIFEST).exists():
                found = Path(row["path"])
    return found


class Staging:
    """An artifact being written: files go under `.path`; `finish` signs it; `build_artifact` moves it in place."""

    def __init__(self, path: Path, kind: str):
        self.path = path
        self.kind = kind
        self.manifest: dict[str, Any] | None = None

    def finish(self, **kwargs: Any) -> dict[str, Any]:
        self.manifest = write_manifest(self.path, kind=self.kind, **kwargs)
        return self.manifest


@contextlib.contextmanager
def build_artifact(out: str | Path, *, kind: str, overwrite: bool = True) -> Iterator[Staging]:
    """Stage an artifact next to `out`; on success replace `out` atomically-enough, on error leave nothing."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    staging = Staging(Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent)), kind)
    try:
        yield staging
        if staging.manifest is None:
            raise LineageError(f"stage wrote {out} but never called finish(); artifact discarded")
        staging.path.chmod(0o755)  # mkdtemp makes 0700; an artifact is meant to be read by its users
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        staging.path.rename(out)
        _register(staging.manifest["id"], out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.path.exists():
            shutil.rmtree(staging.path, ignore_errors=True)


# ------------------------------------------------------------------------------------------ verifying


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    warnings: list[str]
    checked: list[str]


def verify(path: str | Path, *, walk_inputs: bool = True, progress: bool = False) -> VerifyReport:
    """Re-hash an artifact, check its signature and (recursively) its inputs; never raises for a bad artifact."""
    problems: list[str] = []
    warnings: list[str] = []
    checked: list[str] = []
    _verify_one(Path(path), problems, warnings, checked, walk_inputs, progress, seen=set())
    return VerifyReport(not problems, problems, warnings, checked)


def _verify_one(root: Path, problems: list[str], warnings: list[str], checked: list[str], walk: bool,
                progress: bool, seen: set[str], expected_id: str | None = None) -> Level | None:
    try:
        artifact = load_artifact(root)
    except LineageError as exc:
        problems.append(str(exc))
        return None
    manifest = artifact.manifest
    where = str(root)
    problems_before = len(problems)
    recorded: dict[str, str] = manifest.get("files", {})
    actual = hash_files(root, progress=progress)
    for rel in sorted(set(recorded) | set(actual)):
        if rel not in actual:
            problems.append(f"{where}: file {rel} is missing")
        elif rel not in recorded:
            problems.append(f"{where}: file {rel} was added after signing")
        elif recorded[rel] != actual[rel]:
            problems.append(f"{where}: file {rel} was changed (sha256 {actual[rel][:12]}… != {recorded[rel][:12]}…)")
    if len(problems) == problems_before and content_id(actual, root) != manifest.get("id"):
        problems.append(f"{where}: content id does not match the files (a file changed size or the id was edited)")
    if expected_id is not None and manifest.get("id") != expected_id:
        problems.append(f"{where}: is {manifest.get('id', '?')[:12]}…, but the child recorded {expected_id[:12]}…")
    signature = manifest.get("signature")
    if not signature:
        problems.append(f"{where}: manifest is not signed")
    else:
        try:
            verify_signature(canonical_json(_unsigned(manifest)), signature)
        except LineageError as exc:
            problems.append(f"{where}: {exc}")
    checked.append(f"{manifest.get('kind')} {manifest.get('id', '?')[:12]} {where}")
    seen.add(manifest.get("id", ""))
    try:
        level = parse_level(manifest.get("classification", ""))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if not walk:
        return level
    for ref in manifest.get("input_refs", []):
        if ref["id"] in seen:
            continue
        seen.add(ref["id"])  # before descending: a path that resolves back to a child must not loop forever
        input_path = Path(ref["path"]) if (Path(ref["path"]) / MANIFEST).exists() else _lookup(ref["id"])
        if input_path is None:
            if not ref.get("external"):
                warnings.append(f"{where}: input {ref['kind']} {ref['id'][:12]}… not found here (was {ref['path']})")
            input_level = parse_level(ref.get("classification", "UNCLASSIFIED"))
        else:
            input_level = _verify_one(input_path, problems, warnings, checked, walk, progress, seen, ref["id"])
        if input_level is not None and input_level > level:
            problems.append(f"{where}: classified {level} but its input {ref['id'][:12]}… is {input_level}")
    return level


def lineage_tree(path: str | Path, indent: str = "") -> list[str]:
    """Lines of `kind id classification path`, inputs indented under their children."""
    artifact = load_artifact(path)
    lines = [f"{indent}{artifact.kind} {artifact.id[:12]} [{artifact.classification}] {artifact.path}"]
    for ref in artifact.manifest.get("input_refs", []):
        found = Path(ref["path"]) if (Path(ref["path"]) / MANIFEST).exists() else _lookup(ref["id"])
        if found is not None:
            lines.extend(lineage_tree(found, indent + "  "))
        else:
            lines.append(f"{indent}  {ref['kind']} {ref['id'][:12]} [{ref['classification']}] {ref['path']}"
                         + ("" if Path(ref["path"]).exists() else " (not found here)"))
    return lines
