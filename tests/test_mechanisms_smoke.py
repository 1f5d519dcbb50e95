"""Smoke test of the cooperation-mechanisms benchmark (``--quick``: tiny budgets, no JaxMARL;
the matrix games and the application tasks: the particle-task part runs the same code)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import finite

pytestmark = pytest.mark.slow  # a long end-to-end run: not in `pytest -m 'not slow'`


def test_mechanisms_quick_run_writes_json_and_plots(run_benchmark) -> None:
    proc, data, _ = run_benchmark("mechanisms", "--quick", "--skip-jaxmarl", "--only", "matrix",
                                  "apps", timeout=600)
    assert "reach optimum" in proc.stdout and "load-balancing-v1" in proc.stdout

    rows = data["matrix"]
    learners = ["independent tabular", "hysteretic tabular", "IQL", "hysteretic IQL", "VDN",
                "QMIX", "MAPPO"]
    assert [r["learner"] for r in rows if r["game"] == "climbing-v1"] == learners
    for r in rows:
        assert r["seeds"] == data["settings"]["matrix_seeds"]
        lo, hi = r["optimal_fraction_ci95"]
        assert 0.0 <= lo <= r["optimal_fraction"] <= hi <= 1.0
        assert finite(r["greedy_payoff_per_step"])
        assert r["timing"]["run_s"] > 0 and r["timing"]["trace_and_compile_s"] > 0
    hysteretic = [r for r in rows if r["learner"].startswith("hysteretic")]
    assert all(r["hyperparams"]["hysteretic_beta"] < 1.0 for r in hysteretic)

    apps = data["apps"]["envs"]
    assert [s["env"] for s in apps] == ["load-balancing-v1", "intersection-v1"]
    # --quick: one learner per env, in turn
    assert [[r["variant"] for r in s["runs"]] for s in apps] == [["QMIX"], ["MAPPO"]]
    for section in apps:
        assert "random" in section["references"] and len(section["references"]) >= 3
        for r in section["runs"]:
            ev = r["greedy_evaluation"]
            assert finite(ev["return"]) and len(ev["return"]["per_seed"]) == 2
            assert r["learning_curves"]["episode_return"]["env_steps"]
    assert data["plots"] and all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                                 for p in data["plots"])
