"""Slow: the 60-s load run of bench/serve_load.py (zero errors, zero lost audit records). Run with -m slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve_load.py"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_load_60s_no_errors_no_lost_audit_records():
    result = subprocess.run([sys.executable, str(BENCH), "--clients", "8", "--seconds", "60"], capture_output=True,
                            text=True, timeout=580)
    assert result.returncode == 0 and "PASS" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "audit verify: OK" in result.stdout
