#!/bin/bash
# examples/jobs/render.sh   — re-renders the example Slurm script and Kueue manifests shown in docs/jobs.md
# Renders as if from the shared project directory /shared/projects/ax with $SOVFORGE_HOME=/shared/sovforge
# (a throwaway copy there, removed afterwards); nothing is submitted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
sovforge="${SOVFORGE:-$repo/.venv/bin/sovforge}"
if [ -e /shared ]; then echo "/shared exists; render by hand to avoid touching it" >&2; exit 1; fi
trap 'rm -rf /shared' EXIT
mkdir -p /shared/projects/ax/examples/jobs
cp "$here/ax-adapt.yaml" /shared/projects/ax/examples/jobs/
cd /shared/projects/ax
export SOVFORGE_HOME=/shared/sovforge
for engine in slurm kueue; do
  ext=$([ "$engine" = slurm ] && echo sbatch || echo k8s.yaml)
  "$sovforge" jobs render examples/jobs/ax-adapt.yaml --stage adapt --engine "$engine" \
    --tenants "$repo/examples/tenants.yaml" --tenant army-ai --as alice \
    --gpus 8 --nodes 2 --cpus 32 --memory-gb 512 --time 12:00:00 --out "$here/ax-adapt-2x8.$ext"
done
"$sovforge" jobs queues --tenants "$repo/examples/tenants.yaml" > "$here/kueue-queues.k8s.yaml"
