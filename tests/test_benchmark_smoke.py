"""Smoke test of the env-throughput benchmark script (not a speed test: ``--quick``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a benchmark run end to end: in the full suite only
def test_env_throughput_quick_run_writes_the_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "env_throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.env_throughput", "--quick",
         "--skip-peers", "--batch-sizes", "1", "4", "--envs", "spread-v3", "--repeats", "2",
         "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "env steps/s" in proc.stdout  # the table was printed

    data = json.loads(out.read_text())
    assert not list(out.parent.glob("*.tmp"))  # the atomic write left no temp file
    for field in ("cpu_model", "cpu_count", "jax_version", "jaxlib_version", "backend"):
        assert data["machine"][field], field
    assert data["peers"]["jaxmarl"]["status"] == "skipped"
    assert data["complete"] is True  # saved after every row; true once the run finished
    rows = data["results"]
    assert [(r["env"], r["impl"], r["batch"]) for r in rows] == [
        ("spread-v3", "jaxmarl_coop", 1), ("spread-v3", "jaxmarl_coop", 4)]
    for r in rows:
        assert r["num_agents"] == 3
        assert r["steps"] > 0 and len(r["run_s"]) == 2
        for key in ("env_steps_per_s", "agent_steps_per_s", "trace_and_compile_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r[key])
        assert r["agent_steps_per_s"] == r["env_steps_per_s"] * 3
        assert r["ratio_vs_jaxmarl"] is None and r["ratio_vs_mpe2"] is None
