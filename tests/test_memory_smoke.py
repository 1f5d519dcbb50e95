"""Smoke test of the memory benchmark (``--quick``: the script's plumbing, not a result)."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow  # a benchmark run end to end: in the full suite only
def test_memory_quick_run_writes_results_and_a_plot_and_resumes(run_benchmark):
    args = ("memory", "--quick", "--tasks", "cue", "--seeds", "2")
    _, first, _ = run_benchmark(*args, "--learners", "MAPPO")
    # resumed with one more variant: the feed-forward run is kept, the recurrent one trained
    proc, data, out = run_benchmark(*args, "--learners", "MAPPO", "MAPPO-GRU", "--resume")
    assert "(kept from the last run: MAPPO)" in proc.stderr + proc.stdout
    assert "MAPPO-GRU - feed-forward:" in proc.stdout  # the table with the pair's gap
    section = data["tasks"]["cue"]
    assert section["runs"][0] == first["tasks"]["cue"]["runs"][0]
    # a memory task trains to the first mark
    assert section["env"] == "cue-v1" and section["env_steps_per_seed"] == 2560
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
    for run in section["runs"]:  # the training return read at each mark it reached
        assert set(run["training_return_at"]) == {"2560"}


def test_returns_at_a_mark_average_the_updates_ending_there():
    import numpy as np

    from experiments.benchmarks import memory

    steps = np.array([100, 200, 300, 400])
    returns = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0]])  # (seeds, updates)
    got = memory.at_marks(steps, returns, [50, 250, 400], window=2)
    assert got["50"] is None  # no update has ended by then
    assert got["250"]["per_seed"].tolist() == [1.5, 3.5] and got["250"]["env_steps"] == 200
    assert got["400"]["per_seed"].tolist() == [3.5, 5.5] and got["400"]["mean"] == 4.5


def test_marks_beyond_the_run_are_refused(capsys):
    from experiments.benchmarks import memory

    with pytest.raises(SystemExit):
        memory.parse_args(["--out", "x", "--steps", "1000", "--marks", "500", "2000"])
    assert "--marks must lie in 1..--steps (1,000), got [500, 2000]" in capsys.readouterr().err
