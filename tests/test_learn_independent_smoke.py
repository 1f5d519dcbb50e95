"""Smoke test of the independent-learners benchmark script (``--quick``: tiny budgets)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import finite as _finite

pytestmark = pytest.mark.slow  # a long end-to-end run: not in `pytest -m 'not slow'`


def test_learn_independent_quick_run_writes_the_expected_json(run_benchmark) -> None:
    proc, data, _ = run_benchmark("learn_independent", "--quick", "--skip-jaxmarl",
                                    timeout=240)
    assert "Tabular Q" in proc.stdout and "env steps/s" in proc.stdout  # tables printed

    for field in ("cpu_model", "usable_cores", "jax_version", "backend"):
        assert data["machine"][field], field
    assert data["settings"]["quick"] is True
    assert data["jaxmarl"]["status"] == "skipped" and data["comparison"] == {}

    # tabular: every game x exploration setting, with a consistent summary
    tab = data["tabular"]
    assert {(r["game"], r["k"]) for r in tab} == {
        ("climbing-v1", None), ("penalty-v1", 0.0), ("penalty-v1", -25.0),
        ("penalty-v1", -100.0)}
    assert len(tab) == 4 * len({r["exploration"] for r in tab}) >= 8
    for r in tab:
        seeds = r["seeds"]
        assert sum(r["joint_actions"].values()) == seeds
        assert 0.0 <= r["optimal_fraction"] <= 1.0
        lo, hi = r["optimal_fraction_ci95"]
        assert lo <= r["optimal_fraction"] <= hi
        assert r["hyperparams"]["gamma"] == 0.0
        assert len(r["greedy_payoff"]["per_seed"]) == seeds
        table = r["payoff_table"]
        payoffs = [table[int(a[1])][int(a[3])] for a in r["joint_actions"]]  # "(a,b)"
        assert all(min(map(min, table)) <= p <= max(map(max, table)) for p in payoffs)
        assert r["timing"]["run_s"] > 0 and r["timing"]["trace_and_compile_s"] > 0

    # the recurrent row: our GRU Q-network matched to JaxMARL's, timed on spread
    rec = data["dqn_recurrent"]
    assert (rec["config"]["recurrent"], rec["config"]["rnn_hidden"],
            rec["config"]["sequence_length"], rec["config"]["burn_in"]) == (True, 64, 26, 0)
    assert rec["timing"]["env_steps_per_s"] > 0 and rec["timing"]["trace_and_compile_s"] > 0
    assert "ours DQN-GRU spread (matched)" in proc.stdout

    # DQN on both envs: evaluation, timing, learning curve, PNG
    runs = {r["env"]: r for r in data["dqn"]}
    assert set(runs) == {"spread-v3", "tracking-v1"}
    assert set(runs["tracking-v1"]["evaluation"]) == {"dqn_greedy", "random", "greedy_chase"}
    assert set(runs["spread-v3"]["evaluation"]) == {"dqn_greedy", "random"}
    for env_id, r in runs.items():
        assert r["config"]["rollout_length"] == 26 and r["config"]["num_envs"] == 8
        assert r["hyperparams"]["gamma"] == 0.9
        t = r["timing"]
        assert t["seeds"] == data["settings"]["seeds"]
        for key in ("trace_and_compile_s", "run_s", "env_steps_per_s",
                    "env_steps_per_s_per_seed"):
            assert _finite(t[key]) and t[key] > 0, (env_id, key)
        assert math.isclose(t["env_steps_per_s"], t["env_steps_per_s_per_seed"] * t["seeds"])
        for policy, ev in r["evaluation"].items():
            assert _finite(ev["return"]["mean"]), (env_id, policy)
            assert len(ev["return"]["per_seed"]) == t["seeds"]
        curve = r["learning_curve"]
        assert len(curve["env_steps"]) == len(curve["mean"]) >= 1
        assert all(_finite(x) for x in curve["mean"])
    chase = runs["tracking-v1"]["evaluation"]["greedy_chase"]
    for metric in ("mean_distance", "captured", "collisions"):
        assert _finite(chase[metric]["mean"]), metric
    assert chase["return"]["mean"] > runs["tracking-v1"]["evaluation"]["random"]["return"]["mean"]
    assert len(data["plots"]) == 2
    for plot in data["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {m["item"] for m in data["matched_config"]} >= {"gamma", "transitions per gradient step"}
