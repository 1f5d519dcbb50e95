"""Smoke test of the memory benchmark (``--quick``: the script's plumbing, not a result)."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow  # a benchmark run end to end: in the full suite only
def test_memory_quick_run_writes_results_and_a_plot(run_benchmark):
    proc, data, out = run_benchmark("memory", "--quick", "--tasks", "cue", "--learners",
                                    "MAPPO", "MAPPO-GRU", "--seeds", "2")
    assert "MAPPO-GRU - feed-forward:" in proc.stdout  # the table with the pair's gap
    section = data["tasks"]["cue"]
    assert section["env"] == "cue-v1" and section["env_steps_per_seed"] == 5000
    assert [r["variant"] for r in section["runs"]] == ["MAPPO", "MAPPO-GRU"]
    assert section["runs"][1]["config"]["recurrent"] is True
    assert section["runs"][0]["config"]["recurrent"] is False
    assert set(section["references"]) >= {"random", "memory", "memoryless"}
    for run in section["runs"]:
        assert len(run["greedy_evaluation"]["return"]["per_seed"]) == 2
        assert run["timing"]["trace_and_compile_s"] > 0 and run["timing"]["run_s"] > 0
    gap = section["recurrent_gaps"]["MAPPO-GRU"]
    assert math.isfinite(gap["gap"]) and gap["ci95"] > 0
    assert (out / "cue.png").stat().st_size > 0
