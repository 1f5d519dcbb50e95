"""experiments/sweep.py end to end: one program over grid x seeds, its files, user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import sweep as sweep_cli
from jaxmarl_coop.learners.evaluation import evaluate
from jaxmarl_coop.runs import RunConfig, sweep, training

REPO = Path(__file__).resolve().parents[1]

#: tabular Q on the penalty game: a hyperparameter axis and an env-param axis, 2 seeds
ARGS = ["--learner", "tabular_q", "--env", "penalty-v1", "--grid", "alpha=0.1,0.5",
        "--grid", "k=-50,0", "--seeds", "2", "--env-steps", "2000", "--eval-episodes", "4",
        "--config", "num_envs=4"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sweeps") / "penalty"
    return out, sweep_cli.main([*ARGS, "--out", str(out)])


def test_sweep_writes_every_file(swept):
    out, summary = swept
    assert {p.name for p in out.iterdir()} == {"config.json", "results.csv", "summary.json",
                                                "heatmap.png"}
    config = json.loads((out / "config.json").read_text())
    assert config["axes"] == {"alpha": [0.1, 0.5], "k": [-50, 0]}
    assert config["axis_kinds"] == {"alpha": "hyperparameter", "k": "env param"}
    assert config["runs"] == 8 and config["grid_points"] == 4 and config["seeds"] == 2

    lines = (out / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:6] == ["point", "alpha", "k", "seed", "train_return", "eval_return"]
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    assert len(rows) == 8
    assert {(r["alpha"], r["k"], r["seed"]) for r in rows} == {
        (a, k, s) for a in ("0.1", "0.5") for k in ("-50", "0") for s in ("0", "1")}
    assert all(np.isfinite(float(r["eval_return"])) for r in rows)

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["best"]["values"] == summary["best"]["values"]
    assert [p["point"] for p in on_disk["points"]] == [p["point"] for p in summary["points"]]
    means = [p["eval_return"]["mean"] for p in summary["points"]]
    assert means == sorted(means, reverse=True) and len(means) == 4
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_row_equals_the_same_setting_trained_alone(swept):
    """An env-param lane: the learner built around k=0 alone, seed 1's keys of train.py."""
    _, summary = swept
    point = next(p for p in summary["points"] if p["values"] == {"alpha": 0.5, "k": 0})
    run = RunConfig(learner="tabular_q", env="penalty-v1", env_param=("k=0",),
                          hp=("alpha=0.5",), config=("num_envs=4",), seeds=2, env_steps=2000,
                          chunks=1)
    built = training.build(run)
    module, env, env_params, config, hp, learner = (built.spec.module, built.env,
                                                    built.env_params, built.config, built.hp,
                                                    built.learner)
    key = jax.random.split(jax.random.PRNGKey(0), 2)[1]
    state, metrics = jax.jit(learner.train)(key, hp)
    eval_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(1), training.FINAL_EVAL),
                                2)[1]
    policy = module.make_policy(config, env, module.policy_params(state))
    ret = float(jax.jit(lambda k: evaluate(env, env_params, policy, k, 4)["return"].mean())(
        eval_key))
    train_return = sweep.final_train_return(np.asarray(metrics["episode_return"])[None])[0]
    np.testing.assert_allclose(point["eval_return"]["per_seed"][1], ret, rtol=1e-5)
    np.testing.assert_allclose(point["train_return"]["per_seed"][1], train_return, rtol=1e-5)


def test_the_plot_for_one_axis_and_for_three(tmp_path):
    def point(i, values, mean):
        stat = {"mean": mean, "ci95": 0.5, "per_seed": np.array([mean, mean])}
        return {"point": i, "values": values, "seeds": 2, "eval_return": stat,
                "train_return": stat}

    one = [sweep.Axis("lr", (0.001, 0.003), "hp")]
    sweep.plot(one, [point(1, {"lr": 0.003}, 2.0), point(0, {"lr": 0.001}, 1.0)], "one",
               tmp_path / "one.png")
    three = [sweep.Axis(n, (0.0, 1.0), "hp") for n in ("a", "b", "c")]
    pts = [point(i, {"a": i // 4 % 2, "b": i // 2 % 2, "c": i % 2}, float(i)) for i in range(8)]
    sweep.plot(three, pts, "three", tmp_path / "three.png")
    for name in ("one.png", "three.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "rank  lr" in sweep.table(one, [point(0, {"lr": 0.001}, 1.0)])


def test_an_existing_result_folder_is_not_overwritten(swept, capsys):
    out, _ = swept
    with pytest.raises(SystemExit) as exc:
        sweep_cli.main([*ARGS, "--out", str(out)])
    assert exc.value.code == 2
    assert "already holds results" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["--learner", "tabular_q", "--env", "climbing-v1", "--grid", "lr=0.1"],
     "--grid lr: tabular_q has no hyperparameter and climbing-v1 no param lr"),
    (["--grid", "lr="], "--grid: grid axis 'lr' has no values"),
    (["--grid", "lr=0,0.1"], "--grid lr: lr must be > 0.0, got 0"),
])
def test_bad_sweep_input_is_one_line_without_traceback(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
