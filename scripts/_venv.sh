# Sourced by scripts/demo and scripts/test: create .venv and install sovforge with the given extras.
# Idempotent and offline-friendly: torch is pinned to the CPU wheel on disk (an unpinned torch pulls GBs of CUDA).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOVFORGE_VENV:-$ROOT/.venv}"
EXTRAS="${1:-all}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.sovforge-installed-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$STAMP" ]; then
  echo "installing sovforge[$EXTRAS] into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # A failed install stops here with pip's own message (not later as an ImportError deep in a test).
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" || { echo "installing torch failed" >&2; exit 1; }
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" || { echo "installing sovforge[$EXTRAS] failed" >&2; exit 1; }
  "$VENV/bin/python" -c "import sovforge, torch" || { echo "installation failed" >&2; exit 1; }
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
