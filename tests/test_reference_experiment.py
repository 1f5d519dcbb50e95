"""The default experiment runs end to end and leaves its results on disk."""

from __future__ import annotations

import json

import pytest

from experiments import reference


@pytest.mark.slow  # an experiment run end to end: in the full suite only
def test_reference_experiment_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    results = reference.main(["--seeds", "2", "--episodes", "16", "--chunk", "8",
                              "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    saved = json.loads((out / "results.json").read_text())
    assert config["env"] == "tracking-v1" and config["episodes_per_seed"] == 16
    assert config["params"]["max_steps"] == 50
    assert set(saved) == {"random", "greedy_chase"}
    for policy in saved.values():
        assert len(policy["return"]["per_seed"]) == 2
        assert policy["length"]["mean"] == 50.0
    assert saved["greedy_chase"]["return"]["mean"] > saved["random"]["return"]["mean"]
    assert results["random"]["return"]["mean"] == pytest.approx(saved["random"]["return"]["mean"])
    assert "greedy_chase" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--env", "nope-v1"], ["--seeds", "0"]])
def test_reference_experiment_rejects_bad_input(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        reference.main(argv)
    assert exit_info.value.code != 0
    assert ("nope-v1" if "--env" in argv else "--seeds") in capsys.readouterr().err
