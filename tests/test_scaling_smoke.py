"""Smoke test of the scaling benchmark (``--quick``: tiny sizes, not a speed test), and of how
it finds where a curve bends."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a long end-to-end run: not in `pytest -m 'not slow'`

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_find_bend_is_computed_from_the_efficiency_curve() -> None:
    from experiments.benchmarks.scaling import find_bend

    # per-unit throughput flat up to 64, then halving: bends after 64, below from 256
    bend = find_bend([1, 4, 16, 64, 256, 1024], [10.0, 10.0, 9.0, 8.5, 5.0, 2.5])
    assert bend["best_size"] == 1 and bend["bend_size"] == 64
    assert bend["first_below_size"] == 256 and bend["efficiency_at_first_below"] == 0.5
    # a best in the middle: sizes before it do not count as the bend; any order of sizes
    bend = find_bend([32, 2, 8], [1.0, 4.0, 10.0], threshold=0.5)
    assert (bend["best_size"], bend["bend_size"], bend["first_below_size"]) == (8, 8, 32)
    # never below the threshold: no bend in range
    bend = find_bend([1, 2], [3.0, 2.9])
    assert bend["bend_size"] == 2 and bend["first_below_size"] is None
    with pytest.raises(ValueError):
        find_bend([1, 2], [1.0])


def test_scaling_quick_run_writes_results_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "scaling"
    # not a speed test: XLA's backend optimisations off halves the compile time (about 20 s
    # instead of 40 s on 2 CPU cores, most of it the two MAPPO programs of the seeds axis)
    env = {**os.environ, "XLA_FLAGS": " ".join(
        filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.scaling", "--quick", "--envs",
         "spread-v3", "--axes", "agents", "envs", "seeds", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=170, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for axis in ("envs", "seeds", "agents"):
        assert f"\n{axis}: " in proc.stdout  # a table per axis
    assert proc.stdout.count("bend: ") == 3  # one line per series

    data = json.loads((out / "results.json").read_text())
    assert not list(out.glob("*.tmp"))  # the atomic writes left no temp file
    assert data["benchmark"] == "scaling"
    for field in ("cpu_model", "jax_version", "backend", "device_kind"):
        assert data["machine"][field], field
    expected = {"envs": ("spread-v3", [1, 4]), "seeds": ("mappo/spread-v3", [1, 2]),
                "agents": ("spread-v3", [2, 4])}
    assert list(data["axes"]) == ["agents", "envs", "seeds"]  # run (and saved) in the order given
    for axis, (series, sizes) in expected.items():
        section = data["axes"][axis]
        rows = section["rows"]
        assert [(r["series"], r["size"]) for r in rows] == [(series, s) for s in sizes]
        for r in rows:
            assert len(r["run_s"]) == 2 and r["median_run_s"] > 0
            for key in ("env_steps_per_s", "agent_steps_per_s", "per_unit",
                        "trace_and_compile_s"):
                assert math.isfinite(r[key]) and r[key] > 0, (axis, key, r[key])
            assert 0 < r["efficiency"] <= 1
            mem = r["memory"]
            assert mem is not None and mem["temp_bytes"] >= 0 and mem["output_bytes"] > 0
            if data["machine"]["backend"] == "cpu":
                assert r["device_memory"] is None  # the CPU backend keeps no allocator stats
        assert max(r["efficiency"] for r in rows) == 1.0
        (bend,) = section["bends"]
        assert bend["series"] == series and bend["bend_size"] in sizes
        assert bend["first_below_size"] in (*sizes, None)
    assert [r["num_agents"] for r in data["axes"]["agents"]["rows"]] == [2, 4]
    assert all(r["batch"] == 8 for r in data["axes"]["agents"]["rows"])
    assert [r["seeds"] for r in data["axes"]["seeds"]["rows"]] == [1, 2]

    png = out / "scaling.png"
    assert data["plot"] == str(png)
    head = png.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width > 2 * height > 0  # one column per axis, side by side
