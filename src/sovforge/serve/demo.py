"""`python -m sovforge.serve.demo runs/demo`: what scripts/demo-serve should serve, as shell assignments.

Looks in the demo work dir for the evaluation report (`evaluate/`), the model it evaluated (the artifact under
`compress/`, `adapt/` or `base/` whose id is the report's candidate) and the retrieval index (`rag/`). When a piece is
missing it falls back — the newest model without a report is served with --force-unpromoted — and says why in
NOTE lines, so the demo still starts.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

MODEL_STAGES = ("compress", "adapt", "base")  # most derived first
MODEL_KINDS = ("model", "compressed")


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _models(workdir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Servable model artifacts, most derived stage first (a stage dir, or its variant subdirs)."""
    found = []
    for stage in MODEL_STAGES:
        root = workdir / stage
        for path in [root, *sorted(p for p in root.glob("*") if p.is_dir())] if root.is_dir() else []:
            manifest = _manifest(path)
            if manifest and manifest.get("kind") in MODEL_KINDS and (path / "config.json").exists():
                found.append((path, manifest))
    return found


def find_demo_artifacts(workdir: Path) -> dict[str, Any]:
    """{"model", "report", "index", "force", "clearance", "notes"} for serving the demo in `workdir`."""
    notes: list[str] = []
    models = _models(workdir)
    report_dir = workdir / "evaluate"
    report = _manifest(report_dir)
    report = report if report and report.get("kind") == "report" else None
    chosen = None
    force = False
    if report is None:
        notes.append(f"no evaluation report in {report_dir}: serving the newest model with --force-unpromoted "
                     "(run the whole demo recipe to get a promoted one)")
    else:
        stats = report.get("stats", {})
        chosen = next(((p, m) for p, m in models if m.get("id") == stats.get("candidate")), None)
        if chosen is None:
            notes.append(f"the report's candidate {str(stats.get('candidate'))[:12]} is not under {workdir}: "
                         "serving the newest model with --force-unpromoted")
            report = None
        elif stats.get("promoted") is not True:
            force = True
            failed = "; ".join(stats.get("failed_rules") or []) or "no gate"
            notes.append(f"evaluate did not promote {chosen[0]} ({failed}); serving it anyway for the demo "
                         "with --force-unpromoted")
    if chosen is None:
        if not models:
            raise SystemExit(f"no model artifact under {workdir}/{{{','.join(MODEL_STAGES)}}}: run scripts/demo first")
        chosen, force = models[0], True
    index = workdir / "rag"
    index_manifest = _manifest(index)
    if not index_manifest or index_manifest.get("kind") != "index":
        notes.append(f"no retrieval index in {index}: chat without citations (the rag stage builds one)")
        index = None
    return {"model": chosen[0], "report": report_dir if report else None, "index": index, "force": force,
            "clearance": chosen[1].get("classification", "UNCLASSIFIED"), "notes": notes}


def main(argv: list[str]) -> int:
    workdir = Path(argv[1] if len(argv) > 1 else "runs/demo")
    found = find_demo_artifacts(workdir)
    out = {"MODEL": found["model"], "REPORT": found["report"] or "", "INDEX": found["index"] or "",
           "FORCE": "1" if found["force"] else "", "CLEARANCE": found["clearance"]}
    for name, value in out.items():
        print(f"{name}={shlex.quote(str(value))}")
    print(f"NOTES={shlex.quote(chr(10).join(found['notes']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
