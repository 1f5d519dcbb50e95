"""Smoke test of the actor-critic benchmark script (``--quick``: tiny budgets, no JaxMARL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import finite as _finite

pytestmark = pytest.mark.slow  # a long end-to-end run: not in `pytest -m 'not slow'`


def test_learn_actor_critic_quick_run_writes_json_and_plots(run_benchmark) -> None:
    proc, data, _ = run_benchmark("learn_actor_critic", "--quick", "--skip-jaxmarl")
    assert "greedy team return" in proc.stdout and "env steps/s" in proc.stdout

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
    assert throughput["complete"] is True  # rows are saved as they come; this marks the end
    rows = throughput["rows"]
    # --quick without JaxMARL skips IPPO-1x1 (the IPPO rows' code on other settings)
    assert [(r["impl"], r["algorithm"], r["seeds"]) for r in rows] == [
        ("jaxmarl_coop", "IPPO", 1), ("floor", "IPPO", 1), ("jaxmarl_coop", "MAPPO", 1)]
    ours = {r["algorithm"]: r for r in rows if r["impl"] == "jaxmarl_coop"}
    for r in rows:
        if r["impl"] == "floor":  # the same networks as our IPPO, less its agent-id inputs
            assert ours[r["algorithm"]]["params_per_seed"] - r["params_per_seed"] == 2 * 3 * 64
            assert r["env_steps_per_seed"] == ours[r["algorithm"]]["env_steps_per_seed"]
    for r in rows:
        assert r["env_steps_per_s"] > 0 and r["trace_and_compile_s"] > 0
        assert r["ratio_vs_jaxmarl"] is None

    plots = [Path(p) for p in data["plots"]]
    assert {p.name for p in plots} == {"learning_curves_spread-v3.png",
                                       "learning_curves_tracking-v1.png"}
    for p in plots:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
