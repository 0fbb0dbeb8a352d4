"""The GPU service as data: `tenants.yaml` (engines + tenants) and one job's request (`JobSpec`).

    sovforge jobs submit --tenants examples/tenants.yaml --tenant army-ai --engine ray --stage base RECIPE

`tenants.yaml` names the engines the ministry runs (a Ray head, a Slurm controller, a Kubernetes cluster with
Kueue) and, per tenant, where its work goes on each (Ray namespace, Slurm account, Kueue LocalQueue), how many
GPUs it may hold at once and the most classified data it may process. Unknown keys are errors naming their path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from sovforge._config_base import StrictModel
from sovforge.classification import parse_level
from sovforge.config import format_validation_error

ENGINES = ("local", "ray", "slurm", "kueue")
Engine = Literal["local", "ray", "slurm", "kueue"]
_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TenantsError(ValueError):
    """A tenants file that cannot be used; the message names the file and the key path."""


def time_limit_seconds(value: str) -> int:
    """`[D-]HH:MM:SS` → seconds (the Slurm `--time` spelling, also used for Kueue's activeDeadlineSeconds)."""
    match = _TIME.match(value)
    if not match:
        raise ValueError(f"time limit {value!r} must be [D-]HH:MM:SS, e.g. 04:00:00 or 2-00:00:00")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class Resources(StrictModel):
    """What one job asks the engine for."""

    gpus: int = Field(0, ge=0)
    """GPUs per node."""
    nodes: int = Field(1, ge=1)
    """Nodes; more than one only for `adapt` on slurm or kueue (launched with `accelerate launch` per node)."""
    cpus: int = Field(2, ge=1)
    """CPU cores per node. Also the job's OMP_NUM_THREADS/MKL_NUM_THREADS, so a CPU run repeats bit for bit."""
    memory_gb: float = Field(8.0, gt=0)
    """Host memory per node, GiB."""
    time_limit: str = "04:00:00"
    """Wall-clock limit, `[D-]HH:MM:SS` (Slurm `--time`, Kubernetes `activeDeadlineSeconds`)."""
    partition: str | None = None
    """Slurm partition; None = the engine's default partition."""

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str) -> str:
        time_limit_seconds(value)
        return value

    @property
    def total_gpus(self) -> int:
        """GPUs held by the whole job (what a tenant's quota counts)."""
        return self.gpus * self.nodes


class LocalEngine(StrictModel):
    """Run the job in a subprocess on this machine (the default engine)."""

    python: str | None = None
    """Interpreter that runs the job; None = the one running sovforge now."""


class RayEngine(StrictModel):
    """An existing Ray cluster, reached through its Job Submission API (the dashboard's HTTP port)."""

    address: str = "http://127.0.0.1:8265"
    """Dashboard URL of the Ray head (`ray start --head --dashboard-host ...`)."""
    connect_timeout_s: float = Field(3.0, gt=0)
    """Give up connecting after this long with a clear error (an unreachable head must not hang the CLI)."""
    auth_token_file: Path | None = None
    """Ray token authentication (RAY_AUTH_MODE=token): file holding the cluster's token; None = Ray's own
    lookup ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token). Sent as `Authorization: Bearer`."""
    python: str | None = None
    """Interpreter on the Ray workers (the already-installed environment); None = the same path as here."""


class SlurmEngine(StrictModel):
    """A Slurm cluster: `sbatch` on this machine, or slurmrestd with a JWT."""

    partition: str | None = None
    """Default partition when the job names none."""
    restd_url: str | None = None
    """slurmrestd base URL (e.g. http://slurmctl:6820); None = the `sbatch`/`squeue`/`scancel` commands."""
    restd_api_version: str = "v0.0.38"
    """slurmrestd OpenAPI version (v0.0.38 on Slurm 22.05; v0.0.39+ on 23.x)."""
    jwt_env: str = "SLURM_JWT"
    """Environment variable holding the JWT (`scontrol token`), as Slurm's own tools expect."""
    jwt_file: Path | None = None
    """Or a file holding the JWT (read at submit time; never logged)."""
    restd_user: str | None = None
    """X-SLURM-USER-NAME sent to slurmrestd; None = the submitter."""
    python: str | None = None
    """Interpreter on the compute nodes; None = the same path as here (a shared filesystem)."""
    main_process_port: int = Field(29500, ge=1024, le=65535)
    """Rendezvous port of multi-node `accelerate launch` on the first node."""
    extra_directives: list[str] = Field(default_factory=list)
    """More `#SBATCH` options, e.g. `--qos=normal`, `--constraint=h100`."""


class KueueEngine(StrictModel):
    """A Kubernetes cluster with Kueue: jobs are created suspended and Kueue admits them from the tenant's queue."""

    kubeconfig: Path | None = None
    """Kubeconfig to submit with; None = render manifests only (`sovforge jobs render`)."""
    context: str | None = None
    """Kubeconfig context; None = its current context."""
    image: str = "registry.local/sovforge:0.1.0"
    """Container image holding this sovforge installation (from the air-gapped registry)."""
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    """Kubernetes imagePullPolicy."""
    pvc: str = "sovforge-artifacts"
    """PersistentVolumeClaim holding the recipes' workdirs (the shared artifact directory)."""
    mount_path: str = "/srv/sovforge"
    """Where the PVC is mounted in the pod; also the pod's working directory, so recipe paths mean the same."""
    sovforge_home: str = "/srv/sovforge/.sovforge"
    """$SOVFORGE_HOME inside the pod (on the PVC: signing key, job directories)."""
    python: str = "python"
    """Interpreter inside the image."""
    priority_class: str | None = None
    """Kueue WorkloadPriorityClass label; None = the queue's default."""
    main_process_port: int = Field(29500, ge=1024, le=65535)
    """Rendezvous port of multi-node `accelerate launch` (on the index-0 pod)."""


class Engines(StrictModel):
    """Connection settings of each engine (a missing section means its defaults)."""

    local: LocalEngine = Field(default_factory=LocalEngine)
    """Subprocess on this machine."""
    ray: RayEngine = Field(default_factory=RayEngine)
    """Ray Job Submission."""
    slurm: SlurmEngine = Field(default_factory=SlurmEngine)
    """Slurm batch."""
    kueue: KueueEngine = Field(default_factory=KueueEngine)
    """Kubernetes batch/v1 Jobs admitted by Kueue."""


class Tenant(StrictModel):
    """One team using the GPU service."""

    gpu_quota: int = Field(ge=0)
    """GPUs this tenant's sovforge jobs may hold at once (running + pending + the new one)."""
    max_classification: str = "UNCLASSIFIED"
    """Most classified data the tenant may process; a job over it is refused before it reaches an engine."""
    users: list[str] | None = None
    """Who may submit as this tenant (`--as` / $USER); None = anyone."""
    ray_namespace: str | None = None
    """Ray namespace of the tenant's jobs (RAY_NAMESPACE of the job's drivers); None = the tenant name."""
    slurm_account: str | None = None
    """Slurm account charged (`--account`); required for the slurm engine."""
    kueue_queue: str | None = None
    """Kueue LocalQueue (`kueue.x-k8s.io/queue-name`); required for the kueue engine."""
    k8s_namespace: str | None = None
    """Kubernetes namespace holding that LocalQueue; required for the kueue engine."""

    @field_validator("max_classification")
    @classmethod
    def _level(cls, value: str) -> str:
        return str(parse_level(value))

    @field_validator("k8s_namespace", "kueue_queue")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes name (lower-case letters, digits and '-')")
        return value


class TenantsFile(StrictModel):
    """`tenants.yaml`: the engines and the tenants sharing them."""

    engines: Engines = Field(default_factory=Engines)
    """How to reach each engine."""
    tenants: dict[str, Tenant]
    """Tenant name → its mapping onto the engines, quota and clearance."""

    @field_validator("tenants")
    @classmethod
    def _some(cls, tenants: dict[str, Tenant]) -> dict[str, Tenant]:
        if not tenants:
            raise ValueError("name at least one tenant")
        return tenants


class JobSpec(StrictModel):
    """One submission: what to run, for whom, where, with what."""

    engine: Engine = "local"
    """Where it runs: local (subprocess), ray, slurm or kueue."""
    tenant: str
    """The tenant charged for it (a key of tenants.yaml)."""
    submitter: str
    """Who submitted it (`--as`, default $USER); recorded in the audit log."""
    recipe: Path | None = None
    """Recipe YAML to run (`sovforge run RECIPE [--only STAGE]`); snapshotted into the job directory."""
    stage: str | None = None
    """Run only this stage of the recipe; None = every stage of the recipe."""
    command: list[str] = Field(default_factory=list)
    """Instead of a recipe: a sovforge verb and its arguments (`adapt cpt --base ... --out ...`)."""
    resources: Resources = Field(default_factory=Resources)
    """What the job asks the engine for."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables of the job (e.g. NCCL settings)."""
    cwd: Path
    """Directory the job runs in (relative recipe paths resolve here; on a cluster: a shared filesystem)."""
    launch_config: Path | None = None
    """accelerate config (FSDP/DeepSpeed) for multi-GPU adapt; None = plain DDP (`--multi_gpu`)."""

    @model_validator(mode="after")
    def _one_kind_of_work(self) -> JobSpec:
        if (self.recipe is None) == (not self.command):
            raise ValueError("give either a recipe (optionally with a stage) or a sovforge command, not both")
        if self.stage is not None and self.recipe is None:
            raise ValueError("a stage needs a recipe")
        if self.command and self.command[0] in ("jobs", "run"):
            raise ValueError(f"`{self.command[0]}` cannot be a job command; give a recipe or a stage verb")
        return self


def load_tenants(path: str | Path) -> TenantsFile:
    """Read and validate a tenants file; a clear error naming the file and key otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TenantsError(f"{path}: no such tenants file (copy examples/tenants.yaml there, or pass --tenants)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TenantsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TenantsError(f"{path}: a tenants file must be a YAML mapping with `tenants:`")
    try:
        return TenantsFile.model_validate(data)
    except ValidationError as exc:
        raise TenantsError(format_validation_error(exc, str(path), "tenants file")) from None
