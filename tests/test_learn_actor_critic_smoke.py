"""Smoke test of the actor-critic benchmark script (``--quick``: tiny budgets, no JaxMARL)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _finite(stats: dict) -> bool:
    return isinstance(stats["mean"], float) and math.isfinite(stats["mean"])


def test_learn_actor_critic_quick_run_writes_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "lac"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.learn_actor_critic", "--quick",
         "--skip-jaxmarl", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "greedy team return" in proc.stdout and "env steps/s" in proc.stdout

    data = json.loads((out / "results.json").read_text())
    assert not list(out.glob("*.tmp"))  # the atomic write left no temp file
    for field in ("cpu_model", "cpu_count", "jax_version", "backend"):
        assert data["machine"][field], field
    seeds = data["settings"]["seeds"]
    assert seeds == 2

    spread = data["spread"]
    assert [r["variant"] for r in spread["runs"]] == ["MAPPO", "IPPO", "MAA2C", "IA2C"]
    for r in spread["runs"]:
        assert (r["algorithm"], r["critic"]) == {
            "MAPPO": ("ppo", "centralised"), "IPPO": ("ppo", "local"),
            "MAA2C": ("a2c", "centralised"), "IA2C": ("a2c", "local")}[r["variant"]]
        ev = r["greedy_evaluation"]
        assert _finite(ev["return"]) and len(ev["return"]["per_seed"]) == seeds
        assert ev["completed"]["mean"] == 1.0 and ev["length"]["mean"] == 25.0
        assert _finite(r["training_last_5pct"]["return"])
        curve = r["learning_curves"]["episode_return"]
        assert len(curve["env_steps"]) == len(curve["mean"]) == len(curve["ci95"]) > 0
        t = r["timing"]
        assert t["trace_and_compile_s"] > 0 and t["run_s"] > 0 and t["env_steps_per_s"] > 0
    assert _finite(spread["references"]["random"]["return"])
    assert spread["target"]["level"] == -35.0

    tracking = data["tracking"]
    assert [r["variant"] for r in tracking["runs"]] == ["MAPPO", "IPPO"]
    assert set(tracking["references"]) == {"random", "greedy_chase"}
    for ev in [r["greedy_evaluation"] for r in tracking["runs"]] + list(
            tracking["references"].values()):
        for key in ("return", "mean_distance", "captured", "collisions"):
            assert _finite(ev[key]), key
    assert tracking["references"]["greedy_chase"]["return"]["mean"] > 0  # it tracks

    throughput = data["throughput"]
    assert throughput["jaxmarl"]["status"] == "skipped"
    rows = throughput["rows"]
    assert [(r["impl"], r["algorithm"], r["seeds"]) for r in rows] == [
        ("jaxmarl_coop", "IPPO", 1), ("jaxmarl_coop", "IPPO-1x1", 1), ("jaxmarl_coop", "MAPPO", 1)]
    for r in rows:
        assert r["env_steps_per_s"] > 0 and r["trace_and_compile_s"] > 0
        assert r["ratio_vs_jaxmarl"] is None

    plots = [Path(p) for p in data["plots"]]
    assert {p.name for p in plots} == {"learning_curves_spread-v3.png",
                                       "learning_curves_tracking-v1.png"}
    for p in plots:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
