"""Jobs benchmark: `.venv/bin/python bench/jobs.py [--reps 5]` — what submitting costs on top of the work.

The same work, side by side in one run on this machine:

  direct   a plain subprocess (`python -m sovforge.cli ...`): what a user runs without sovforge jobs — the peer
  local    `sovforge jobs` local engine: submit → runner subprocess → wait → accounting artifact + audit record
  ray      the same on a real local Ray head (Job Submission API); head start-up timed separately
  slurm    the same on the private single-host Slurm of tests/jobs (root + Debian slurm-wlm only)

Work: (1) `sovforge --version`, i.e. pure overhead (interpreter + import + engine), median of --reps runs;
(2) the tiny `base` stage of a recipe once per engine, whose artifact ids must all be equal.
Reports median seconds from submit to finished-and-accounted, the time `submit()` takes to return, and the
ratio to `direct`. Absolute times on a shared 2-core box are indicative only; ratios are the point.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the overhead probe per engine")
    parser.add_argument("--engines", default="local,ray,slurm", help="engines to compare with direct")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    os.environ["SOVFORGE_HOME"] = str(work / "home")

    from sovforge.artifacts import load_artifact
    from sovforge.jobs import service
    from sovforge.jobs.config import JobSpec, Resources, load_tenants
    from sovforge.offline import enforce_offline
    from tests.jobs.conftest import Unavailable, ray_running, slurm_running, tiny_recipe, write_tenants

    enforce_offline()
    docs = work / "docs"
    docs.mkdir()
    from tests.jobs.conftest import DOCS

    (docs / "sample.txt").write_text("\n".join(d.format(i=i) for i in range(8) for d in DOCS) + "\n")
    db = f"sqlite:///{work / 'audit.db'}"
    rows: dict[str, dict] = {}

    with ExitStack() as stack:
        engines: dict[str, dict] = {"local": {}}
        wanted = args.engines.split(",")
        if "ray" in wanted:
            started = time.perf_counter()
            try:
                head = stack.enter_context(ray_running())
                engines["ray"] = {"address": head.address, "auth_token_file": str(head.token_file)}
                rows.setdefault("ray", {})["startup"] = time.perf_counter() - started
            except Unavailable as exc:
                print(f"ray: skipped ({exc})", file=sys.stderr)
        if "slurm" in wanted:
            started = time.perf_counter()
            try:
                stack.enter_context(slurm_running())
                engines["slurm"] = {"partition": "gpu"}
                rows.setdefault("slurm", {})["startup"] = time.perf_counter() - started
            except Unavailable as exc:
                print(f"slurm: skipped ({exc})", file=sys.stderr)
        tenants = load_tenants(write_tenants(work / "tenants.yaml", {"bench": {"gpu_quota": 0, "slurm_account": "b"}},
                                             {k: v for k, v in engines.items() if v}))

        def timed(engine: str, **work_spec) -> tuple[float, float, object]:
            """(submit() seconds, submit-to-accounted seconds, job) — or the plain subprocess for `direct`."""
            started = time.perf_counter()
            if engine == "direct":
                argv = ["run", str(work_spec["recipe"]), "--only", "base"] if "recipe" in work_spec \
                    else work_spec["command"]
                subprocess.run([sys.executable, "-m", "sovforge.cli", *argv], cwd=work, check=True,
                               capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
                return 0.0, time.perf_counter() - started, None
            job = service.submit(JobSpec(engine=engine, tenant="bench", submitter="bench", cwd=work,
                                         resources=Resources(cpus=2, memory_gb=1), **work_spec), tenants, db=db)
            submitted = time.perf_counter() - started
            job = service.wait(job, 900, poll_s=0.1)
            assert job.state == "SUCCEEDED", job.message
            return submitted, time.perf_counter() - started, job

        names = ["direct"] + [e for e in ("local", "ray", "slurm") if e in engines and e in wanted]
        probes: dict[str, list] = {name: [] for name in names}
        # Round-robin, so the load of a shared machine falls on every engine alike.
        for _ in range(args.reps):
            for name in names:
                probes[name].append(timed(name, command=["--version"]))
        for name in names:
            recipe = tiny_recipe(work / f"{name}.yaml", docs, work / name)
            _, stage_s, job = timed(name, recipe=recipe, stage="base")
            rows.setdefault(name, {}).update(
                probe=statistics.median(r[1] for r in probes[name]), best=min(r[1] for r in probes[name]),
                submit=statistics.median(r[0] for r in probes[name]), stage=stage_s,
                id=load_artifact(work / name / "base").id)
    base = rows["direct"]
    print(f"reps={args.reps}  machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("| engine | engine start-up s | submit() s | `--version` as a job: median s (best) | x direct | "
          "base stage s | x direct | base artifact id |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda kv: ["direct", "local", "ray", "slurm"].index(kv[0])):
        startup = f"{row['startup']:.1f}" if row.get("startup") else "-"
        print(f"| {name} | {startup} | {row['submit']:.2f} | {row['probe']:.2f} ({row['best']:.2f}) "
              f"| {row['probe'] / base['probe']:.2f} "
              f"| {row['stage']:.1f} | {row['stage'] / base['stage']:.2f} | {row['id'][:12]} |")
    same = {row["id"] for row in rows.values()}
    print(f"artifact ids identical across engines: {len(same) == 1}")


if __name__ == "__main__":
    main()
