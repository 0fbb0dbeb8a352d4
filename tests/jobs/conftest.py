"""Fixtures of the jobs tests: tenants files, a tiny recipe, a corpus, a real single-host Slurm, a real Ray head.

Slurm: Debian's slurm-wlm (`apt-get install slurm-wlm slurmrestd`), started here as root in a temp dir: munged,
slurmctld and two slurmd (`slurmd -N gpu01|gpu02`) posing as two 8-GPU, 2 TB nodes (a DGX-like shape; gres over
placeholder device files), so `sbatch --test-only` judges a 2-node x 8-GPU script and small CPU jobs really run.
Skipped, with the reason, where the binaries are missing or we are not root.

Ray: `ray start --head --block` on 127.0.0.1 in a temp dir with token authentication (its own token), in its own
process group, stopped by killing that group (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path("/usr/lib/x86_64-linux-gnu/slurm-wlm")
DOCS = ["제{i}조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다. "
        "국방부장관은 필요한 사항을 정한다.",
        "{i}-35. Leaders develop subordinates through counseling, coaching and mentoring in garrison and in the field.",
        "훈련 공지 {i}: 전 부대원은 금요일 09시까지 연병장에 집합하여 체력검정을 실시한다."]
DOMAIN = ("제{i}조(군사기밀의 보호) 군사기밀을 취급하는 사람은 보안 규정을 지켜야 한다. "
          "The unit commander shall protect classified information in section {i}. ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_tenants(path: Path, tenants: dict, engines: dict | None = None) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"engines": engines or {}, "tenants": tenants}), encoding="utf-8")
    return path


@pytest.fixture
def audit_db(tmp_path: Path) -> str:
    """A private audit store per test (the serve tests use the session's default one)."""
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jobs-docs")
    (root / "sample.txt").write_text("\n".join(d.format(i=i) for i in range(8) for d in DOCS) + "\n", encoding="utf-8")
    return root


def tiny_recipe(path: Path, docs: Path, workdir: Path, **top) -> Path:
    """A recipe whose `base` stage takes a few seconds on CPU (a 2-layer model, 3 pre-training steps)."""
    import yaml

    recipe = {"name": "jobs-test", "workdir": str(workdir),
              "base": {"text": [str(docs)], "preset": "tiny", "vocab_size": 400, "pretrain_steps": 3, "seq_len": 32,
                       "batch_size": 4, "max_position_embeddings": 128, "seed": 0}, **top}
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def verified_audit_records(db: str) -> list[dict]:
    """Every audit record of `db`, after checking the hash chain and signed checkpoints are intact."""
    from sovforge.serve.store import Store

    store = Store(db)
    try:
        assert store.verify() == []
        return list(store.records())
    finally:
        store.engine.dispose()


def make_corpus(path: Path, classification: str = "UNCLASSIFIED", n: int = 12) -> Path:
    """A small corpus artifact in the layout `sovforge ingest` writes (documents/*.jsonl), for adapt jobs."""
    from tests.conftest import write_corpus_artifact

    return write_corpus_artifact(path, [{"id": f"d{i}", "text": DOMAIN.format(i=i) * 3,
                                         "classification": classification} for i in range(n)])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("jobs-corpus") / "corpus")


@pytest.fixture(scope="session")
def restricted_corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("jobs-corpus") / "corpus-r", classification="RESTRICTED")


# ------------------------------------------------------------------------------------------------ Slurm


def _slurm_missing() -> str | None:
    if os.geteuid() != 0:
        return "a private slurmctld/slurmd needs root"
    for binary in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol"):
        if shutil.which(binary) is None:
            return f"`{binary}` not installed (apt-get install slurm-wlm)"
    return None


class SlurmCluster:
    def __init__(self, root: Path, conf: Path, restd_url: str | None):
        self.root, self.conf, self.restd_url = root, conf, restd_url

    def token(self, user: str) -> str:
        out = subprocess.run(["scontrol", "token", f"username={user}", "lifespan=900"], capture_output=True,
                             text=True, timeout=30, env={**os.environ, "SLURM_CONF": str(self.conf)}).stdout
        return out.strip().removeprefix("SLURM_JWT=")


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Unavailable(RuntimeError):
    """The engine cannot be started here; the message says why (tests skip with it)."""


@contextlib.contextmanager
def slurm_running():
    """A private two-node Slurm on this host for the duration of the block (also used by bench/jobs.py)."""
    reason = _slurm_missing()
    if reason:
        raise Unavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="sovforge-slurm-"))
    root.chmod(0o755)  # slurmrestd runs as an unprivileged user and must read slurm.conf and the munge socket
    for sub in ("state", "spool/gpu01", "spool/gpu02", "log", "dev"):
        (root / sub).mkdir(parents=True)
    for i in range(8):
        (root / "dev" / f"nvidia{i}").touch()  # gres File= needs a path per GPU; nothing opens them
    (root / "munge.key").write_bytes(os.urandom(1024))
    (root / "munge.key").chmod(0o600)
    host = socket.gethostname().split(".")[0]
    ctld, node1, node2 = free_port(), free_port(), free_port()
    jwt = (PLUGINS / "auth_jwt.so").exists()
    if jwt:
        (root / "jwt.key").write_bytes(os.urandom(32))
        (root / "jwt.key").chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=sovforge-test", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}",
        "SlurmUser=root", "AuthType=auth/munge", f"AuthInfo=socket={root}/munge.sock", "CredType=cred/munge",
        *(["AuthAltTypes=auth/jwt", f"AuthAltParameters=jwt_key={root}/jwt.key"] if jwt else []),
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool/%n",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd-%n.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory", "SchedulerType=sched/builtin", "MpiDefault=none",
        "ReturnToService=2", "GresTypes=gpu", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "SlurmdParameters=config_overrides", "KillWait=5",
        f"NodeName=gpu01 NodeAddr=127.0.0.1 NodeHostname={host} Port={node1} CPUs=64 RealMemory=2000000 Gres=gpu:8",
        f"NodeName=gpu02 NodeAddr=127.0.0.1 NodeHostname={host} Port={node2} CPUs=64 RealMemory=2000000 Gres=gpu:8",
        "PartitionName=gpu Nodes=gpu01,gpu02 Default=YES MaxTime=INFINITE State=UP", ""]))
    (root / "gres.conf").write_text(f"AutoDetect=off\nNodeName=gpu01,gpu02 Name=gpu File={root}/dev/nvidia[0-7]\n")
    for f in ("slurm.conf", "gres.conf"):
        (root / f).chmod(0o644)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pid_files = [root / "munged.pid", root / "slurmctld.pid", root / "slurmd-gpu01.pid", root / "slurmd-gpu02.pid"]
    restd_pid: int | None = None
    old_conf = os.environ.get("SLURM_CONF")
    try:
        subprocess.run(["munged", "-f", f"--key-file={root}/munge.key", f"--socket={root}/munge.sock",
                        f"--log-file={root}/log/munged.log", f"--pid-file={root}/munged.pid",
                        f"--seed-file={root}/munged.seed"], check=True, timeout=30, env=env)
        subprocess.run(["slurmctld", "-i"], check=True, timeout=30, env=env)
        time.sleep(1)
        for node in ("gpu01", "gpu02"):
            subprocess.run(["slurmd", "-N", node], check=True, timeout=30, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T %D"], capture_output=True, text=True, env=env).stdout
            if state.strip() == "idle 2":
                break
            time.sleep(0.5)
        else:
            log = (root / "log" / "slurmctld.log").read_text()[-1500:]
            raise Unavailable(f"single-host Slurm did not come up (sinfo: {state.strip()!r}); slurmctld log: {log}")
        restd_url = None
        if jwt and shutil.which("slurmrestd"):
            port = free_port()
            # slurmrestd refuses root; SLURM_JWT=daemon puts it in token pass-through mode.
            restd = subprocess.Popen(["slurmrestd", "-a", "rest_auth/jwt", "-s", "openapi/v0.0.38", "-u", "daemon",
                                      f"127.0.0.1:{port}"], env={**env, "SLURM_JWT": "daemon"},
                                     stdout=open(root / "log" / "restd.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
            restd_pid = restd.pid
            for _ in range(50):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        restd_url = f"http://127.0.0.1:{port}"
                        break
                time.sleep(0.1)
        os.environ["SLURM_CONF"] = str(conf)
        yield SlurmCluster(root, conf, restd_url)
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        # End this cluster's jobs first (SLURM_CONF names only ours), so no slurmstepd outlives its slurmd.
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.5)
        pids = [p for p in (_pid(f) for f in reversed(pid_files)) if p] + ([restd_pid] if restd_pid else [])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    try:
        with slurm_running() as cluster:
            yield cluster
    except Unavailable as exc:
        pytest.skip(str(exc))


# -------------------------------------------------------------------------------------------------- Ray


class RayHead:
    def __init__(self, address: str, token_file: Path):
        self.address, self.token_file = address, token_file


@contextlib.contextmanager
def ray_running():
    """A real local Ray head on 127.0.0.1 with token authentication (its own random token, not ~/.ray's);
    yields RayHead(address = dashboard URL = Job Submission API, token_file)."""
    import secrets

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        raise Unavailable("ray is not installed (pip install 'sovforge[dist]')")
    temp = Path(tempfile.mkdtemp(prefix="sfray-"))  # short: Ray's unix socket paths must stay < 108 bytes
    token = secrets.token_hex(32)
    (temp / "token").write_text(token)
    (temp / "token").chmod(0o600)
    dashboard, client, agent = free_port(), free_port(), free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    proc = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", "0",
         "--temp-dir", str(temp), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "true",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
         "--dashboard-agent-listen-port", str(agent), "--object-store-memory", str(100 * 2**20),
         "--disable-usage-stats"],
        env=env, stdout=open(temp / "head.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        import urllib.request

        deadline = time.monotonic() + 300  # a loaded 2-core box can take minutes to bring the dashboard up
        request = urllib.request.Request(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"})
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"ray head did not start: {(temp / 'head.log').read_text()[-1500:]}")
            time.sleep(1)
        yield RayHead(address, temp / "token")
    finally:
        # Everything `ray start` spawned shares its process group: end exactly that group.
        for sig, pause in ((signal.SIGTERM, 5), (signal.SIGKILL, 1)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(pause)
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head():
    try:
        with ray_running() as head:
            yield head
    except Unavailable as exc:
        pytest.skip(str(exc))
